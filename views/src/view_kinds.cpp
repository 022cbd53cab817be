#include "moelab/views/view_kinds.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

#include "moelab/core/error.h"

namespace moelab::views {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

void check_size(size_t have, int a, int b, const char* what) {
  if (a < 0 || b < 0 || have != static_cast<size_t>(a) * static_cast<size_t>(b))
    throw Error(ErrorKind::BadInput, std::string(what) + ": " + std::to_string(have) +
                                         " values for a " + std::to_string(a) + " x " +
                                         std::to_string(b) + " grid");
}

float max_finite(const std::vector<float>& v) {
  float m = 0.0f;
  for (float x : v)
    if (std::isfinite(x)) m = std::max(m, std::fabs(x));
  return m;
}

}  // namespace

HeatmapView routing_top_expert_view(const RoutingGrid& g) {
  check_size(g.top_expert.size(), g.n_layer, g.n_tokens, "routing grid");
  HeatmapView v;
  v.map.rows = g.n_layer;
  v.map.cols = g.n_tokens;
  v.map.values.resize(g.top_expert.size());
  for (size_t i = 0; i < g.top_expert.size(); ++i)
    v.map.values[i] = g.top_expert[i] < 0 ? kNaN : static_cast<float>(g.top_expert[i]);
  v.title = "Top expert per token and layer";
  if (g.expert_count > kCategoricalSize) {
    // More experts than distinguishable categorical colours (64): a labelled sequential scale
    // over the expert ids instead of colours that repeat (id % 64 would alias 0 and 64).
    v.scale.map = Colormap::kSequential;
    v.scale.min = 0.0f;
    v.scale.max = static_cast<float>(g.expert_count - 1);
    v.subtitle = "colour = expert id on a sequential scale (" + std::to_string(g.expert_count) +
                 " experts: more than 64 categorical colours); hover a cell for the expert";
  } else {
    v.scale.map = Colormap::kCategorical;
    v.categories = g.expert_count;
    v.subtitle = "colour = the expert with the highest router weight; hover a cell for the token";
  }
  v.x_label = "token";
  v.y_label = "layer";
  v.value_unit = "expert id";
  v.x_ticks = g.token_text;
  return v;
}

HeatmapView routing_active_count_view(const RoutingGrid& g) {
  if (g.active_count.empty())
    throw Error(ErrorKind::BadInput, "routing grid: no active-expert counts recorded");
  check_size(g.active_count.size(), g.n_layer, g.n_tokens, "routing grid active counts");
  HeatmapView v;
  v.map.rows = g.n_layer;
  v.map.cols = g.n_tokens;
  v.map.values.assign(g.active_count.begin(), g.active_count.end());
  v.scale.map = Colormap::kSequential;
  v.scale.min = 0.0f;
  v.scale.max = static_cast<float>(std::max(1, g.expert_count));
  v.title = "Active experts per token and layer";
  v.subtitle = "number of experts the routing policy ran for each token";
  v.x_label = "token";
  v.y_label = "layer";
  v.value_unit = "experts";
  v.x_ticks = g.token_text;
  return v;
}

HeatmapView routing_confidence_view(const RoutingGrid& g, RoutingColour c) {
  const std::vector<float>* ch = c == RoutingColour::kTopProb   ? &g.top_prob
                                 : c == RoutingColour::kMargin  ? &g.margin
                                 : c == RoutingColour::kEntropy ? &g.entropy
                                                                : nullptr;
  if (!ch) throw Error(ErrorKind::BadInput, "routing grid: not a router-confidence colour");
  if (ch->empty())
    throw Error(ErrorKind::BadInput, "routing grid: no router probabilities recorded");
  check_size(ch->size(), g.n_layer, g.n_tokens, "routing grid router confidence");
  HeatmapView v;
  v.map.rows = g.n_layer;
  v.map.cols = g.n_tokens;
  v.map.values = *ch;
  v.scale.map = Colormap::kSequential;
  v.scale.min = 0.0f;
  v.scale.max = 1.0f;
  v.x_label = "token";
  v.y_label = "layer";
  v.x_ticks = g.token_text;
  if (c == RoutingColour::kTopProb) {
    v.title = "Router probability of the top expert";
    v.subtitle = "softmax probability the router gave the expert it ranked first";
    v.value_unit = "probability";
  } else if (c == RoutingColour::kMargin) {
    v.title = "Router margin: top1 - top2 probability";
    v.subtitle = "small: the router nearly chose another expert";
    v.value_unit = "top1 - top2 probability";
  } else {
    v.title = "Router entropy per token and layer";
    v.scale.max = std::log(static_cast<float>(std::max(2, g.expert_count)));
    v.subtitle = "0: one expert takes all; ln " + std::to_string(std::max(2, g.expert_count)) +
                 " = " + format_value(v.scale.max) + ": uniform over the experts";
    v.value_unit = "entropy (nats)";
  }
  return v;
}

RouterConfidence router_confidence(const std::vector<float>& probs) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  float top1 = -1.0f, top2 = -1.0f;
  double h = 0.0;
  bool any = false;
  for (float p : probs) {
    if (std::isnan(p)) continue;
    any = true;
    if (p > top1) {
      top2 = top1;
      top1 = p;
    } else if (p > top2) {
      top2 = p;
    }
    if (p > 0.0f) h -= static_cast<double>(p) * std::log(static_cast<double>(p));
  }
  if (!any) return {nan, nan, nan};
  return {top1, top2 < 0.0f ? top1 : top1 - top2, static_cast<float>(h)};
}

HeatmapView expert_load_view(const ExpertLoad& l) {
  check_size(l.load.size(), l.n_layer, l.expert_count, "expert load");
  HeatmapView v;
  v.map.rows = l.n_layer;
  v.map.cols = l.expert_count;
  v.map.values = l.load;
  v.scale.map = Colormap::kSequential;
  v.scale.min = 0.0f;
  v.scale.max = std::max(max_finite(l.load), 1e-30f);
  v.title = "Expert load per layer";
  v.subtitle = l.unit == "tokens"
                   ? "tokens whose chosen experts include the expert"
                   : "share of the layer's expert selections (a routed row sums to 1)";
  v.x_label = "expert";
  v.y_label = "layer";
  v.value_unit = l.unit;
  return v;
}

HeatmapView attention_view(const AttentionMap& a, bool log_scale) {
  check_size(a.weight.size(), a.n_query, a.n_key, "attention map");
  HeatmapView v;
  v.map.rows = a.n_query;
  v.map.cols = a.n_key;
  v.map.values = a.weight;
  v.scale.map = Colormap::kSequential;
  v.scale.scale = log_scale ? Scale::kLog : Scale::kLinear;
  v.scale.min = log_scale ? 1e-4f : 0.0f;
  v.scale.max = 1.0f;
  v.title = "Attention";
  if (a.layer >= 0) v.title += " - layer " + std::to_string(a.layer);
  v.title += a.head >= 0 ? " head " + std::to_string(a.head) : " (mean over heads)";
  v.x_label = "key token";
  v.y_label = "query token";
  v.value_unit = "attention probability";
  v.x_ticks = a.key_text;
  v.y_ticks = a.query_text;
  return v;
}

HeatmapView expert_load_diff_view(const ExpertLoad& a, const ExpertLoad& b) {
  check_size(a.load.size(), a.n_layer, a.expert_count, "expert load A");
  check_size(b.load.size(), b.n_layer, b.expert_count, "expert load B");
  if (a.n_layer != b.n_layer || a.expert_count != b.expert_count)
    throw Error(ErrorKind::BadInput, "expert load diff: runs have different shapes");
  HeatmapView v;
  v.map.rows = a.n_layer;
  v.map.cols = a.expert_count;
  v.map.values.resize(a.load.size());
  for (size_t i = 0; i < a.load.size(); ++i) v.map.values[i] = a.load[i] - b.load[i];
  // Identical runs: every cell is exactly 0; the scale stays +-1 (a +-1e-30 bar reads like noise).
  const float found = max_finite(v.map.values);
  const float m = found > 0 ? found : 1.0f;
  v.scale.map = Colormap::kDiverging;
  v.scale.min = -m;
  v.scale.max = m;
  v.title = found > 0 ? "Expert load A - B" : "Expert load A - B: identical (0 everywhere)";
  v.x_label = "expert";
  v.y_label = "layer";
  v.value_unit = a.unit + " (A - B)";
  return v;
}

HeatmapView attention_diff_view(const AttentionMap& a, const AttentionMap& b) {
  check_size(a.weight.size(), a.n_query, a.n_key, "attention map A");
  check_size(b.weight.size(), b.n_query, b.n_key, "attention map B");
  if (a.n_query != b.n_query || a.n_key != b.n_key)
    throw Error(ErrorKind::BadInput, "attention diff: runs have different shapes");
  HeatmapView v;
  v.map.rows = a.n_query;
  v.map.cols = a.n_key;
  v.map.values.resize(a.weight.size());
  for (size_t i = 0; i < a.weight.size(); ++i) v.map.values[i] = a.weight[i] - b.weight[i];
  const float found = max_finite(v.map.values);
  const float m = found > 0 ? found : 1.0f;
  v.scale.map = Colormap::kDiverging;
  v.scale.min = -m;
  v.scale.max = m;
  v.title = found > 0 ? "Attention A - B" : "Attention A - B: identical (0 everywhere)";
  v.x_label = "key token";
  v.y_label = "query token";
  v.value_unit = "attention probability (A - B)";
  return v;
}

std::string format_value(float v) {
  if (std::isnan(v)) return "masked";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", static_cast<double>(v));  // 0.25, 0.0001, 1.5e-05
  return buf;
}

HeatmapView co_activation_view(const CoActivation& c) {
  check_size(c.count.size(), c.expert_count, c.expert_count, "co-activation");
  HeatmapView v;
  v.map.rows = v.map.cols = c.expert_count;
  v.map.values = c.count;
  float off = 0.0f;
  for (int i = 0; i < c.expert_count; ++i)
    for (int j = 0; j < c.expert_count; ++j)
      if (i != j) off = std::max(off, c.count[static_cast<size_t>(i) * c.expert_count + j]);
  v.scale.map = Colormap::kSequential;
  v.scale.min = 0.0f;
  v.scale.max = std::max(off, 1.0f);
  v.title = "Expert co-activation";
  if (c.layer >= 0) v.title += " - layer " + std::to_string(c.layer);
  v.x_label = "expert";
  v.y_label = "expert";
  v.value_unit = c.unit + " routed to both";
  return v;
}

CoActivation co_activation_from_topk(int layer, int expert_count, int k,
                                     const std::vector<int32_t>& ids) {
  if (k <= 0 || expert_count <= 0 || ids.size() % static_cast<size_t>(k) != 0)
    throw Error(ErrorKind::BadInput, "co-activation: " + std::to_string(ids.size()) +
                                         " expert ids are not a multiple of top-k " +
                                         std::to_string(k));
  CoActivation c;
  c.layer = layer;
  c.expert_count = expert_count;
  c.count.assign(static_cast<size_t>(expert_count) * expert_count, 0.0f);
  std::vector<int32_t> set;
  for (size_t t = 0; t < ids.size(); t += static_cast<size_t>(k)) {
    set.clear();
    for (int j = 0; j < k; ++j) {
      const int32_t e = ids[t + static_cast<size_t>(j)];
      if (e < 0) continue;
      if (e >= expert_count)
        throw Error(ErrorKind::BadInput, "co-activation: expert id " + std::to_string(e) +
                                             " >= expert_count " + std::to_string(expert_count));
      if (std::find(set.begin(), set.end(), e) == set.end()) set.push_back(e);
    }
    for (int32_t a : set)
      for (int32_t b : set) c.count[static_cast<size_t>(a) * expert_count + b] += 1.0f;
  }
  return c;
}

HeadSummary summarize_head(const AttentionMap& a, int n_sink, int local_window) {
  check_size(a.weight.size(), a.n_query, a.n_key, "attention map");
  HeadSummary h;
  h.head = a.head;
  // Keys are aligned to the end: query q sits at key position q + (n_key - n_query) (decode
  // steps attend to the whole cache).
  const int shift = a.n_key - a.n_query;
  double ent = 0.0, sink = 0.0, local = 0.0, distant = 0.0;
  int rows = 0;
  for (int q = 0; q < a.n_query; ++q) {
    const float* w = a.weight.data() + static_cast<size_t>(q) * a.n_key;
    double sum = 0.0;
    for (int k = 0; k < a.n_key; ++k)
      if (std::isfinite(w[k]) && w[k] > 0.0f) sum += w[k];
    if (sum <= 0.0) continue;
    const int pos = q + shift;
    double e = 0.0, s = 0.0, l = 0.0, d = 0.0;
    for (int k = 0; k < a.n_key; ++k) {
      if (!std::isfinite(w[k]) || w[k] <= 0.0f) continue;
      const double p = w[k] / sum;
      e -= p * std::log2(p);
      if (k < n_sink)
        s += p;
      else if (k <= pos && pos - k < local_window)
        l += p;
      else
        d += p;
    }
    ent += e;
    sink += s;
    local += l;
    distant += d;
    ++rows;
  }
  if (rows > 0) {
    h.entropy_bits = static_cast<float>(ent / rows);
    h.sink_share = static_cast<float>(sink / rows);
    h.local_share = static_cast<float>(local / rows);
    h.distant_share = static_cast<float>(distant / rows);
  }
  return h;
}

LatencyStats latency_stats(const LatencySeries& s) {
  LatencyStats st;
  st.ttft_ms = s.ttft_ms > 0.0 ? s.ttft_ms : (s.ms.empty() ? 0.0 : s.ms[0]);
  if (s.ms.size() < 2) return st;
  std::vector<double> d(s.ms.begin() + 1, s.ms.end());
  st.decode_mean_ms = std::accumulate(d.begin(), d.end(), 0.0) / static_cast<double>(d.size());
  std::sort(d.begin(), d.end());
  auto pct = [&](double p) {  // nearest rank
    const size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(d.size()))) - 1;
    return d[std::min(i, d.size() - 1)];
  };
  st.decode_p50_ms = pct(0.50);
  st.decode_p95_ms = pct(0.95);
  st.decode_tokens_per_s = st.decode_mean_ms > 0.0 ? 1000.0 / st.decode_mean_ms : 0.0;
  return st;
}

PowerStats power_stats(const PowerSeries& s) {
  PowerStats st;
  const size_t n = std::min(s.t_s.size(), s.watts.size());
  for (size_t i = 0; i < n; ++i) st.peak_watts = std::max(st.peak_watts, s.watts[i]);
  for (size_t i = 0; i + 1 < n; ++i)
    st.joules += 0.5 * (s.watts[i] + s.watts[i + 1]) * (s.t_s[i + 1] - s.t_s[i]);
  if (n >= 2) st.duration_s = s.t_s[n - 1] - s.t_s[0];
  st.mean_watts = st.duration_s > 0.0 ? st.joules / st.duration_s : (n ? s.watts[0] : 0.0);
  return st;
}

}  // namespace moelab::views
