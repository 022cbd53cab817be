#include "moelab/views/view_kinds.h"

#include <algorithm>
#include <cmath>
#include <limits>

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
  v.scale.map = Colormap::kCategorical;
  v.title = "Top expert per token and layer";
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
  v.x_label = "token";
  v.y_label = "layer";
  v.value_unit = "experts";
  v.x_ticks = g.token_text;
  return v;
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
  const float m = std::max(max_finite(v.map.values), 1e-30f);
  v.scale.map = Colormap::kDiverging;
  v.scale.min = -m;
  v.scale.max = m;
  v.title = "Expert load A - B";
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
  const float m = std::max(max_finite(v.map.values), 1e-30f);
  v.scale.map = Colormap::kDiverging;
  v.scale.min = -m;
  v.scale.max = m;
  v.title = "Attention A - B";
  v.x_label = "key token";
  v.y_label = "query token";
  v.value_unit = "attention probability (A - B)";
  return v;
}

}  // namespace moelab::views
