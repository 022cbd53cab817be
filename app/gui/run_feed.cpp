#include "run_feed.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "card_format.h"
#include "lab_run.h"
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
  const auto metrics = store.metrics(run);
  if (auto ops = op_breakdown_of(metrics, n_layer)) d.set_op_breakdown(std::move(*ops));
  for (const auto& m : metrics)
    if (m.key == "j_per_token") d.j_per_token_ = m.value;
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
  heads_.clear();
  live_ = {};
  prompt_text_ = std::move(prompt_text);
  add_attention(snapshots);
}

void RunViewData::add_attention(const std::vector<storage::AttentionSnapshot>& snapshots) {
  // Prompt snapshots first, so that decode rows stored before them (order of a read) find their
  // layer's prompt rows.
  std::vector<const storage::AttentionSnapshot*> order;
  for (const auto& a : snapshots) order.push_back(&a);
  std::stable_sort(order.begin(), order.end(),
                   [](const auto* x, const auto* y) { return x->position < y->position; });
  for (const auto* p : order) {
    const auto& a = *p;
    if (a.head == -1 && a.position == 0 && a.shape.size() == 2) {
      attention_.push_back(a);
      continue;
    }
    if (a.head != storage::kAttentionAllHeads || a.shape.size() != 3 || a.layer < 0) continue;
    const int64_t nh = a.shape[0], nq = a.shape[1], nk = a.shape[2];
    if (nh < 1 || nq < 1 || nk < nq || static_cast<int64_t>(a.data.size()) != nh * nq * nk ||
        nk > (int64_t(1) << 24))
      continue;
    if (a.position == 0) {
      HeadRows& h = heads_[a.layer];
      h = {};
      h.n_head = static_cast<int>(nh);
      h.n_prompt = static_cast<int>(nk);
      const int64_t offset = nk - nq;  // 0: the prompt from an empty cache
      h.rows.assign(static_cast<size_t>(nk), {});
      h.n_kv.assign(static_cast<size_t>(nk), 0);
      for (int64_t q = 0; q < nq; ++q) {
        auto& row = h.rows[static_cast<size_t>(q + offset)];
        row.resize(static_cast<size_t>(nh * nk));
        for (int64_t hd = 0; hd < nh; ++hd)
          std::copy_n(a.data.begin() + (hd * nq + q) * nk, nk, row.begin() + hd * nk);
        h.n_kv[static_cast<size_t>(q + offset)] = static_cast<int>(nk);
      }
      continue;
    }
    auto it = heads_.find(a.layer);
    if (it == heads_.end() || it->second.n_head != nh || nq != 1) continue;
    HeadRows& h = it->second;
    const size_t q = static_cast<size_t>(nk - 1);
    if (h.rows.size() <= q) {
      h.rows.resize(q + 1);
      h.n_kv.resize(q + 1, 0);
    }
    h.rows[q] = a.data;
    h.n_kv[q] = static_cast<int>(nk);
  }
  std::sort(attention_.begin(), attention_.end(),
            [](const auto& x, const auto& y) { return x.layer < y.layer; });
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
  for (const auto& a : attention_) out.push_back(a.layer);
  for (const auto& [layer, h] : heads_) out.push_back(layer);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int RunViewData::attention_heads(int layer) const {
  const auto it = heads_.find(layer);
  return it == heads_.end() ? 0 : it->second.n_head;
}

int RunViewData::attention_rows(int layer) const {
  const auto it = heads_.find(layer);
  if (it == heads_.end()) return 0;
  int n = 0;
  while (static_cast<size_t>(n) < it->second.n_kv.size() &&
         it->second.n_kv[static_cast<size_t>(n)] > 0)
    ++n;
  return n;
}

namespace {
// Query row q of h as F32 [n_key] for head `head` (-1: mean over heads): keys past the row's
// n_kv or past q are NaN.
void head_row(const std::vector<float>& row, int n_head, int n_kv, int q, int head, float* out,
              int n_key) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::fill(out, out + n_key, nan);
  const int nk = std::min({n_kv, n_key, q + 1});
  for (int k = 0; k < nk; ++k) {
    if (head >= 0) {
      out[k] = row[static_cast<size_t>(head) * static_cast<size_t>(n_kv) + static_cast<size_t>(k)];
    } else {
      double acc = 0;
      for (int h = 0; h < n_head; ++h)
        acc += row[static_cast<size_t>(h) * static_cast<size_t>(n_kv) + static_cast<size_t>(k)];
      out[k] = static_cast<float>(acc / n_head);
    }
  }
}
}  // namespace

std::optional<views::AttentionMap> RunViewData::attention(int layer, int head, int room) const {
  const auto label = [this](int pos, int n_prompt) {
    if (pos < n_prompt) {
      return static_cast<size_t>(pos) < prompt_text_.size() ? prompt_text_[static_cast<size_t>(pos)]
                                                            : std::to_string(pos);
    }
    const size_t t = static_cast<size_t>(pos - n_prompt);
    return t < text_.size() ? text_[t] : std::to_string(pos);
  };
  const auto it = heads_.find(layer);
  if (it == heads_.end()) {
    if (head != -1) return std::nullopt;
    for (const auto& a : attention_) {
      if (a.layer != layer) continue;
      views::AttentionMap m = attention_map_of(a);
      // Keys are prompt positions 0..n_key-1; the queries are the last n_query of them.
      const int offset = m.n_key - m.n_query;
      for (int k = 0; k < m.n_key; ++k) m.key_text.push_back(label(k, m.n_key));
      for (int q = 0; q < m.n_query; ++q) m.query_text.push_back(label(q + offset, m.n_key));
      return m;
    }
    return std::nullopt;
  }
  const HeadRows& h = it->second;
  if (head < -1 || head >= h.n_head) return std::nullopt;
  const int n = attention_rows(layer);
  if (n == 0) return std::nullopt;
  const int size = std::max(n, room);
  views::AttentionMap m;
  m.layer = layer;
  m.head = head;
  m.n_query = m.n_key = size;
  m.weight.assign(static_cast<size_t>(size) * static_cast<size_t>(size),
                  std::numeric_limits<float>::quiet_NaN());
  for (int q = 0; q < n; ++q)
    head_row(h.rows[static_cast<size_t>(q)], h.n_head, h.n_kv[static_cast<size_t>(q)], q, head,
             m.weight.data() + static_cast<size_t>(q) * static_cast<size_t>(size), size);
  for (int p = 0; p < size; ++p) m.key_text.push_back(p < n ? label(p, h.n_prompt) : "");
  m.query_text = m.key_text;
  return m;
}

std::optional<views::AttentionRows> RunViewData::attention_rows_since(int layer, int head,
                                                                      int first, int n_key) const {
  const auto it = heads_.find(layer);
  if (it == heads_.end() || first < 0 || head < -1 || head >= it->second.n_head)
    return std::nullopt;
  const HeadRows& h = it->second;
  const int n = attention_rows(layer);
  if (first >= n || n > n_key) return std::nullopt;
  views::AttentionRows r;
  r.layer = layer;
  r.head = head;
  r.first_query = first;
  r.n_key = n_key;
  r.weight.resize(static_cast<size_t>(n - first) * static_cast<size_t>(n_key));
  for (int q = first; q < n; ++q) {
    head_row(h.rows[static_cast<size_t>(q)], h.n_head, h.n_kv[static_cast<size_t>(q)], q, head,
             r.weight.data() + static_cast<size_t>(q - first) * static_cast<size_t>(n_key), n_key);
    const size_t t = static_cast<size_t>(q - h.n_prompt);
    r.token_text.push_back(q < h.n_prompt ? (static_cast<size_t>(q) < prompt_text_.size()
                                                 ? prompt_text_[static_cast<size_t>(q)]
                                                 : std::to_string(q))
                                          : (t < text_.size() ? text_[t] : std::to_string(q)));
  }
  return r;
}

void RunViewData::publish_attention(int layer, int head, bool live,
                                    const std::function<uint64_t(views::AttentionMap)>& map,
                                    const std::function<uint64_t(views::AttentionRows)>& rows) {
  const int n = attention_rows(layer);
  if (live && n > 0 && live_.layer == layer && live_.head == head) {
    if (n == live_.rows) return;  // nothing new
    if (auto r = attention_rows_since(layer, head, live_.rows, live_.n_key)) {
      if (rows(std::move(*r)) != 0) {
        live_.rows = n;
        return;
      }
    }
  }
  // A whole map: live with room for as many rows again (at least 64), else exact.
  const int room = live && n > 0 ? std::max(2 * n, n + 64) : 0;
  auto m = attention(layer, head, room);
  if (!m) {
    live_ = {};
    return;
  }
  live_ = {layer, head, m->n_key, n};
  map(std::move(*m));
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
  p.decode_j_per_token = j_per_token_;
  return p;
}

LiveTokensAdded add_live_tokens(RunViewData& feed, const std::vector<LiveToken>& items) {
  LiveTokensAdded added;
  for (const auto& t : items) {
    if (t.index < 0) continue;
    added.tokens = true;
    feed.add_token(t.index, t.piece, t.latency_us);
    for (size_t l = 0; l < t.experts.size(); ++l) {
      if (t.experts[l].empty()) continue;
      storage::RoutingRecord r;
      r.position = t.index;
      r.layer = static_cast<int32_t>(l);
      r.experts = t.experts[l];
      r.weights = l < t.weights.size() ? t.weights[l] : std::vector<float>{};
      r.probs = l < t.probs.size() ? t.probs[l] : std::vector<float>{};
      r.groups = l < t.groups.size() ? t.groups[l] : std::vector<uint8_t>{};
      feed.add_routing(r);
    }
    if (t.index == 0 && !t.attention.empty()) {
      feed.set_attention(t.attention, t.prompt_text);
      added.attention = true;
    } else if (!t.attention.empty()) {
      feed.add_attention(t.attention);  // the decode step's rows, per head
    }
    if (!t.op_us.empty()) feed.set_op_breakdown({feed.n_layer(), t.decode_steps, t.op_us});
  }
  return added;
}

}  // namespace moelab::lab
