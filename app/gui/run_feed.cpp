#include "run_feed.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "card_format.h"
#include "moelab/compare/compare.h"
#include "moelab/core/error.h"
#include "moelab/model/model.h"
#include "moelab/storage/store.h"
#include "run_views.h"

namespace moelab::lab {

namespace {
size_t idx(int a, int b, int n) {
  return static_cast<size_t>(a) * static_cast<size_t>(n) + static_cast<size_t>(b);
}
}  // namespace

RunViewData::RunViewData(int64_t run_id, int n_layer, int expert_count)
    : run_(run_id),
      n_layer_(std::max(0, n_layer)),
      expert_count_(std::max(0, expert_count)),
      experts_(static_cast<size_t>(std::max(0, n_layer))) {}

RunViewData RunViewData::from_store(const storage::Store& store, int64_t run,
                                    std::vector<std::string> prompt_text) {
  const auto rec = store.run(run);
  if (!rec)
    throw storage::StorageError(storage::StorageErrorKind::BadInput,
                                "run #" + std::to_string(run) + " is not in the store");
  int n_layer = 0, experts = 0;
  Router router;
  try {
    const auto j = nlohmann::json::parse(rec->config_json);
    if (j.contains("model") && j["model"].is_object()) {
      n_layer = j["model"].value("n_layer", 0);
      experts = j["model"].value("expert_count", 0);
      router = router_of_config(j["model"]);
    }
  } catch (const std::exception&) {
    // A config without a model object: the records say how many layers and experts there are.
  }
  const auto routing = store.routing(run);
  for (const auto& r : routing) {
    n_layer = std::max(n_layer, r.layer + 1);
    for (uint16_t e : r.experts) experts = std::max(experts, int(e) + 1);
  }
  auto attention = store.attention(run);
  for (const auto& a : attention) n_layer = std::max(n_layer, a.layer + 1);
  RunViewData d(run, n_layer, experts);
  d.set_router(std::move(router));
  for (const auto& t : store.tokens(run))
    d.add_token(t.position, t.piece, t.latency_us, t.energy_uj);
  for (const auto& r : routing) d.add_routing(r);
  d.set_attention(std::move(attention), std::move(prompt_text));
  if (auto ops = op_breakdown_of(store.metrics(run), n_layer)) d.set_op_breakdown(std::move(*ops));
  return d;
}

RunViewData::Router RunViewData::router_of_config(const nlohmann::json& model) {
  Router r;
  if (!model.is_object()) return r;
  auto num = [&](const char* key) {
    const auto it = model.find(key);
    return it != model.end() && it->is_number_integer() ? std::max(0, it->get<int>()) : 0;
  };
  const auto g = model.find("gating");
  if (g != model.end() && g->is_string()) r.gating = g->get<std::string>();
  r.shared_experts = num("shared_experts");
  r.expert_groups = num("expert_groups");
  r.expert_groups_used = num("expert_groups_used");
  return r;
}

RunViewData::Router RunViewData::router_of_card(const ModelCard& c) {
  Router r;
  r.gating = router_gating(c);
  r.shared_experts = static_cast<int>(c.expert_shared_count);
  if (c.expert_group_count > 1) {
    r.expert_groups = static_cast<int>(c.expert_group_count);
    r.expert_groups_used = static_cast<int>(c.expert_group_used_count);
  }
  return r;
}

std::vector<storage::MetricRecord> RunViewData::op_breakdown_metrics(const OpBreakdown& b) {
  std::vector<storage::MetricRecord> m;
  const int rows = b.n_layer + 1;
  if (b.decode_steps <= 0 || b.n_layer < 0 ||
      b.us.size() != static_cast<size_t>(rows) * static_cast<size_t>(OpBreakdown::kOps))
    return m;
  const std::string prefix(compare::kOpTimeMetricPrefix);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < OpBreakdown::kOps; ++k) {
      const double us = b.us[idx(r, k, OpBreakdown::kOps)];
      if (us == 0.0) continue;
      const std::string row = r < b.n_layer ? "L" + std::to_string(r) : std::string("other");
      m.push_back({prefix + row + "." + op_kind_name(static_cast<OpKind>(k)), us, "µs"});
    }
  m.push_back({prefix + "steps", static_cast<double>(b.decode_steps), "steps"});
  return m;
}

std::optional<RunViewData::OpBreakdown> RunViewData::op_breakdown_of(
    const std::vector<storage::MetricRecord>& metrics, int n_layer) {
  if (n_layer < 0) return std::nullopt;
  OpBreakdown b;
  b.n_layer = n_layer;
  b.us.assign(static_cast<size_t>(n_layer + 1) * OpBreakdown::kOps, 0.0);
  const std::string_view prefix = compare::kOpTimeMetricPrefix;
  for (const auto& m : metrics) {
    std::string_view key = m.key;
    if (!key.starts_with(prefix)) continue;
    key.remove_prefix(prefix.size());
    if (key == "steps") {
      if (std::isfinite(m.value) && m.value > 0) b.decode_steps = static_cast<int64_t>(m.value);
      continue;
    }
    const size_t dot = key.find('.');
    if (dot == std::string_view::npos || !std::isfinite(m.value) || m.value < 0) continue;
    const std::string_view row = key.substr(0, dot), op = key.substr(dot + 1);
    int r = -1;
    if (row == "other") {
      r = n_layer;
    } else if (row.size() > 1 && row.front() == 'L') {
      int l = 0;
      const auto [end, ec] = std::from_chars(row.data() + 1, row.data() + row.size(), l);
      if (ec == std::errc() && end == row.data() + row.size() && l >= 0 && l < n_layer) r = l;
    }
    if (r < 0) continue;
    for (int k = 0; k < OpBreakdown::kOps; ++k)
      if (op == op_kind_name(static_cast<OpKind>(k))) b.us[idx(r, k, OpBreakdown::kOps)] = m.value;
  }
  if (b.decode_steps <= 0) return std::nullopt;
  return b;
}

void RunViewData::add_token(int64_t position, std::string piece, int64_t latency_us,
                            std::optional<double> energy_uj) {
  if (position < 0) return;
  const size_t p = static_cast<size_t>(position);
  if (p >= text_.size()) {
    text_.resize(p + 1);
    latency_us_.resize(p + 1, 0);
    energy_uj_.resize(p + 1);
  }
  text_[p] = std::move(piece);
  latency_us_[p] = latency_us;
  energy_uj_[p] = energy_uj;
}

void RunViewData::add_routing(const storage::RoutingRecord& r) {
  if (r.layer < 0 || r.layer >= n_layer_ || r.position < 0) return;
  auto& row = experts_[static_cast<size_t>(r.layer)];
  const size_t p = static_cast<size_t>(r.position);
  if (p >= row.size()) row.resize(p + 1);
  auto& dst = row[p];
  dst.clear();
  for (uint16_t e : r.experts)
    if (e < expert_count_) dst.push_back(e);
  if (confidence_.size() < experts_.size()) confidence_.resize(experts_.size());
  auto& conf = confidence_[static_cast<size_t>(r.layer)];
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (p >= conf.size()) conf.resize(p + 1, views::RouterConfidence{nan, nan, nan});
  conf[p] = views::router_confidence(r.probs, r.weights, router_.gating);
  any_probs_ = any_probs_ || !r.probs.empty();
  if (!r.groups.empty()) {
    if (groups_.size() < experts_.size()) groups_.resize(experts_.size());
    auto& g = groups_[static_cast<size_t>(r.layer)];
    if (p >= g.size()) g.resize(p + 1);
    g[p] = r.groups;
  }
}

void RunViewData::set_attention(std::vector<storage::AttentionSnapshot> snapshots,
                                std::vector<std::string> prompt_text) {
  attention_.clear();
  for (auto& a : snapshots)
    if (a.head == -1 && a.position == 0 && a.shape.size() == 2) attention_.push_back(std::move(a));
  std::sort(attention_.begin(), attention_.end(),
            [](const auto& x, const auto& y) { return x.layer < y.layer; });
  prompt_text_ = std::move(prompt_text);
}

views::RoutingGrid RunViewData::routing_grid() const {
  views::RoutingGrid g;
  g.n_layer = n_layer_;
  g.n_tokens = n_tokens();
  g.expert_count = expert_count_;
  g.token_text = text_;
  g.top_expert.assign(static_cast<size_t>(g.n_layer) * static_cast<size_t>(g.n_tokens), -1);
  g.active_count.assign(g.top_expert.size(), 0);
  for (int l = 0; l < n_layer_; ++l) {
    const auto& row = experts_[static_cast<size_t>(l)];
    for (int t = 0; t < g.n_tokens && static_cast<size_t>(t) < row.size(); ++t) {
      const auto& e = row[static_cast<size_t>(t)];
      if (e.empty()) continue;
      g.top_expert[idx(l, t, g.n_tokens)] = e.front();
      g.active_count[idx(l, t, g.n_tokens)] = static_cast<int32_t>(e.size());
    }
  }
  g.gating = router_.gating;
  g.shared_experts = router_.shared_experts;
  g.expert_groups = router_.expert_groups;
  g.expert_groups_used = router_.expert_groups_used;
  if (!groups_.empty() && g.expert_groups_used > 0) {
    const size_t used = static_cast<size_t>(g.expert_groups_used);
    g.groups.assign(g.top_expert.size() * used, -1);
    for (size_t l = 0; l < groups_.size() && static_cast<int>(l) < n_layer_; ++l)
      for (size_t t = 0; t < groups_[l].size() && static_cast<int>(t) < g.n_tokens; ++t)
        for (size_t j = 0; j < groups_[l][t].size() && j < used; ++j)
          g.groups[idx(static_cast<int>(l), static_cast<int>(t), g.n_tokens) * used + j] =
              groups_[l][t][j];
  }
  if (any_probs_) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    g.top_prob.assign(g.top_expert.size(), nan);
    g.margin.assign(g.top_expert.size(), nan);
    g.entropy.assign(g.top_expert.size(), nan);
    for (size_t l = 0; l < confidence_.size() && static_cast<int>(l) < n_layer_; ++l)
      for (size_t t = 0; t < confidence_[l].size() && static_cast<int>(t) < g.n_tokens; ++t) {
        const size_t i = idx(static_cast<int>(l), static_cast<int>(t), g.n_tokens);
        g.top_prob[i] = confidence_[l][t].top_prob;
        g.margin[i] = confidence_[l][t].margin;
        g.entropy[i] = confidence_[l][t].entropy;
      }
  }
  return g;
}

views::ExpertLoad RunViewData::expert_load(bool counts) const {
  views::ExpertLoad l;
  l.n_layer = n_layer_;
  l.expert_count = expert_count_;
  l.unit = counts ? "tokens" : "share of tokens";
  l.load.assign(static_cast<size_t>(n_layer_) * static_cast<size_t>(expert_count_), 0.f);
  std::vector<double> c(l.load.size(), 0.0);
  for (int layer = 0; layer < n_layer_; ++layer)
    for (const auto& e : experts_[static_cast<size_t>(layer)])
      for (uint16_t x : e) c[idx(layer, x, expert_count_)] += 1.0;
  for (int layer = 0; layer < n_layer_; ++layer) {
    double total = 0;
    for (int e = 0; e < expert_count_; ++e) total += c[idx(layer, e, expert_count_)];
    for (int e = 0; e < expert_count_; ++e) {
      const double v = c[idx(layer, e, expert_count_)];
      l.load[idx(layer, e, expert_count_)] =
          static_cast<float>(counts ? v : (total > 0 ? v / total : 0.0));
    }
  }
  if (router_.shared_experts > 0) {
    // Every routed token of a MoE layer ran the shared experts.
    l.shared_experts = router_.shared_experts;
    l.shared.assign(static_cast<size_t>(n_layer_), 0.f);
    for (int layer = 0; layer < n_layer_; ++layer) {
      size_t routed = 0;
      for (const auto& e : experts_[static_cast<size_t>(layer)]) routed += e.empty() ? 0 : 1;
      if (routed) l.shared[static_cast<size_t>(layer)] = counts ? static_cast<float>(routed) : 1.f;
    }
  }
  return l;
}

views::CoActivation RunViewData::co_activation(int layer) const {
  if (layer < 0 || layer >= n_layer_)
    throw Error(ErrorKind::BadInput, "co-activation: layer " + std::to_string(layer) +
                                         " is not in [0, " + std::to_string(n_layer_) + ")");
  views::CoActivation c;
  c.layer = layer;
  c.expert_count = expert_count_;
  c.count.assign(static_cast<size_t>(expert_count_) * static_cast<size_t>(expert_count_), 0.f);
  for (const auto& e : experts_[static_cast<size_t>(layer)]) {
    std::vector<uint16_t> u = e;
    std::sort(u.begin(), u.end());
    u.erase(std::unique(u.begin(), u.end()), u.end());
    for (uint16_t i : u)
      for (uint16_t j : u) c.count[idx(i, j, expert_count_)] += 1.f;
  }
  return c;
}

std::vector<int64_t> RunViewData::tokens_of_expert(int layer, int expert) const {
  std::vector<int64_t> out;
  if (layer < 0 || layer >= n_layer_ || expert < 0 || expert >= expert_count_) return out;
  const auto& row = experts_[static_cast<size_t>(layer)];
  for (size_t t = 0; t < row.size(); ++t)
    if (std::find(row[t].begin(), row[t].end(), static_cast<uint16_t>(expert)) != row[t].end())
      out.push_back(static_cast<int64_t>(t));
  return out;
}

std::vector<int> RunViewData::attention_layers() const {
  std::vector<int> out;
  for (const auto& a : attention_)
    if (out.empty() || out.back() != a.layer) out.push_back(a.layer);
  return out;
}

std::optional<views::AttentionMap> RunViewData::attention(int layer) const {
  for (const auto& a : attention_) {
    if (a.layer != layer) continue;
    views::AttentionMap m = attention_map_of(a);
    // Keys are prompt positions 0..n_key-1; the queries are the last n_query of them.
    const int offset = m.n_key - m.n_query;
    auto label = [this](int pos) {
      return static_cast<size_t>(pos) < prompt_text_.size() ? prompt_text_[static_cast<size_t>(pos)]
                                                            : std::to_string(pos);
    };
    for (int k = 0; k < m.n_key; ++k) m.key_text.push_back(label(k));
    for (int q = 0; q < m.n_query; ++q) m.query_text.push_back(label(q + offset));
    return m;
  }
  return std::nullopt;
}

views::LatencySeries RunViewData::latency() const {
  views::LatencySeries s;
  s.ms.reserve(latency_us_.size());
  for (int64_t us : latency_us_) s.ms.push_back(static_cast<double>(us) / 1000.0);
  s.ttft_ms = s.ms.empty() ? 0.0 : s.ms.front();
  const int rows = ops_.n_layer + 1;
  if (ops_.decode_steps > 0 &&
      ops_.us.size() == static_cast<size_t>(rows) * static_cast<size_t>(OpBreakdown::kOps)) {
    for (int k = 0; k < OpBreakdown::kOps; ++k)
      s.parts.push_back(op_kind_name(static_cast<OpKind>(k)));
    for (int r = 0; r < rows; ++r) {
      s.rows.push_back(r < ops_.n_layer ? "layer " + std::to_string(r) : "embed + head");
      for (int k = 0; k < OpBreakdown::kOps; ++k)
        s.part_ms.push_back(ops_.us[idx(r, k, OpBreakdown::kOps)] / 1000.0 /
                            static_cast<double>(ops_.decode_steps));
    }
  }
  return s;
}

views::PowerSeries RunViewData::power(const std::string& no_sensor_reason) const {
  views::PowerSeries p;
  double t_us = 0;
  for (size_t i = 0; i < latency_us_.size(); ++i) {
    t_us += static_cast<double>(latency_us_[i]);
    if (!energy_uj_[i] || latency_us_[i] <= 0) continue;
    p.t_s.push_back(t_us * 1e-6);
    p.watts.push_back(*energy_uj_[i] / static_cast<double>(latency_us_[i]));
  }
  if (p.watts.empty())
    p.sensor = no_sensor_reason;
  else {
    p.sensor = "energy per token as stored";
    p.n_tokens = n_tokens();
  }
  return p;
}

}  // namespace moelab::lab
