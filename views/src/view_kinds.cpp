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

std::string shared_label(int n) {
  return "shared x" + std::to_string(n);
}

// Layers with at least one routed token (MoE layers; dense leading layers have none).
std::vector<bool> routed_layers(const RoutingGrid& g) {
  std::vector<bool> r(static_cast<size_t>(std::max(0, g.n_layer)), false);
  for (int l = 0; l < g.n_layer; ++l)
    for (int t = 0; t < g.n_tokens && !r[static_cast<size_t>(l)]; ++t)
      r[static_cast<size_t>(l)] =
          g.top_expert[static_cast<size_t>(l) * static_cast<size_t>(g.n_tokens) +
                       static_cast<size_t>(t)] >= 0;
  return r;
}

// Puts the always-on "shared xN" column in front of the tokens: `value` in routed layers,
// masked in the others.
void prepend_shared_column(HeatmapView& v, const RoutingGrid& g, float value) {
  const auto routed = routed_layers(g);
  std::vector<float> out;
  out.reserve(static_cast<size_t>(v.map.rows) * static_cast<size_t>(v.map.cols + 1));
  for (int r = 0; r < v.map.rows; ++r) {
    out.push_back(routed[static_cast<size_t>(r)] ? value : kNaN);
    for (int c = 0; c < v.map.cols; ++c) out.push_back(v.map.at(r, c));
  }
  v.map.values = std::move(out);
  ++v.map.cols;
  std::vector<std::string> ticks{shared_label(g.shared_experts)};
  for (int t = 0; t < g.n_tokens; ++t)
    ticks.push_back(static_cast<size_t>(t) < g.token_text.size()
                        ? g.token_text[static_cast<size_t>(t)]
                        : std::to_string(t));
  v.x_ticks = std::move(ticks);
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
  if (g.shared_experts > 0) {
    prepend_shared_column(v, g, static_cast<float>(g.expert_count));
    v.subtitle = "column 0: " + shared_label(g.shared_experts) +
                 " always on (shared); then the top routed expert per token";
    if (v.scale.map == Colormap::kCategorical) {
      // The shared column is one more category, past the expert ids, named in the legend.
      v.categories = g.expert_count + 1;
      for (int e = 0; e < g.expert_count; ++e) v.category_labels.push_back(std::to_string(e));
      v.category_labels.push_back(shared_label(g.shared_experts) + " (always on)");
    } else {
      v.scale.max = static_cast<float>(g.expert_count);
    }
  }
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
  if (g.shared_experts > 0) {
    prepend_shared_column(v, g, static_cast<float>(g.shared_experts));
    v.subtitle = "routed experts run per token; column 0: " + shared_label(g.shared_experts) +
                 " shared, always run too";
  }
  return v;
}

std::vector<std::string> routing_colour_names(const std::string& gating) {
  std::vector<std::string> n{"colour: top expert", "colour: number of active experts"};
  if (gating == "sigmoid") {
    n.push_back("colour: top expert score share (sigmoid scores, not probabilities)");
    n.push_back("colour: score share margin top1 - top2 (sigmoid scores, normalised)");
    n.push_back("colour: entropy of normalised sigmoid scores");
  } else if (gating == "softmax_over_topk") {
    n.push_back("colour: top expert share (router logits, softmax over all experts)");
    n.push_back("colour: share margin top1 - top2 (router logits, softmax over all experts)");
    n.push_back("colour: entropy of the router logits' softmax over all experts");
  } else {
    n.push_back("colour: router probability (top expert)");
    n.push_back("colour: margin top1 - top2");
    n.push_back("colour: router entropy");
  }
  n.push_back("colour: kept expert groups");
  return n;
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
  if (g.gating == "sigmoid") {
    // Sigmoid scores are independent per expert: normalised over all experts to compare them.
    const std::string basis =
        "sigmoid scores, not probabilities: normalised over all experts, s_e / sum s";
    if (c == RoutingColour::kTopProb) {
      v.title = "Top score share (sigmoid scores, not probabilities)";
      v.subtitle = basis;
      v.value_unit = "score share (s / sum s)";
    } else if (c == RoutingColour::kMargin) {
      v.title = "Score share margin (sigmoid scores, not probabilities)";
      v.subtitle = basis;
      v.value_unit = "top1 - top2 score share";
    } else {
      v.title = "Score entropy (sigmoid scores, not probabilities)";
      v.scale.max = std::log(static_cast<float>(std::max(2, g.expert_count)));
      v.subtitle = "s_e / sum s over all experts; ln " +
                   std::to_string(std::max(2, g.expert_count)) + " = " + format_value(v.scale.max) +
                   ": equal scores";
      v.value_unit = "entropy of s / sum s (nats)";
    }
    return v;
  }
  if (g.gating == "softmax_over_topk") {
    // The router outputs logits (any sign): softmaxed over every expert, the distribution the
    // top-p and entropy routing policies use (policies.h); the applied weights are a softmax
    // over the k selected only.
    const int nx = std::max(2, g.expert_count);
    const std::string basis =
        "router logits (not probabilities), softmax over all experts; the weights applied are a "
        "softmax over the selected";
    if (c == RoutingColour::kTopProb) {
      v.title = "Top expert share (router logits, softmax over all experts)";
      v.subtitle = basis;
      v.value_unit = "share (softmax of the logits)";
    } else if (c == RoutingColour::kMargin) {
      v.title = "Share margin top1 - top2 (router logits, softmax over all experts)";
      v.subtitle = basis;
      v.value_unit = "top1 - top2 share";
    } else {
      v.title = "Router entropy (logits, softmax over all experts)";
      v.scale.max = std::log(static_cast<float>(nx));
      v.subtitle = "softmax of the router logits over all experts; ln " + std::to_string(nx) +
                   " = " + format_value(v.scale.max) + ": every expert equal";
      v.value_unit = "entropy (nats)";
    }
    return v;
  }
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

HeatmapView routing_groups_view(const RoutingGrid& g) {
  const int used = g.expert_groups_used;
  if (g.groups.empty() || g.expert_groups <= 0 || used <= 0)
    throw Error(ErrorKind::BadInput, "routing grid: no expert groups recorded");
  if (g.n_layer < 0 || g.n_tokens < 0 ||
      g.groups.size() != static_cast<size_t>(g.n_layer) * static_cast<size_t>(g.n_tokens) *
                             static_cast<size_t>(used))
    throw Error(ErrorKind::BadInput, "routing grid: " + std::to_string(g.groups.size()) +
                                         " group ids for " + std::to_string(g.n_layer) +
                                         " layers x " + std::to_string(g.n_tokens) + " tokens x " +
                                         std::to_string(used) + " kept groups");
  auto at = [&](int l, int t, int j) {
    return g.groups[(static_cast<size_t>(l) * static_cast<size_t>(g.n_tokens) +
                     static_cast<size_t>(t)) *
                        static_cast<size_t>(used) +
                    static_cast<size_t>(j)];
  };
  HeatmapView v;
  v.map.cols = g.n_tokens;
  for (int l = 0; l < g.n_layer; ++l) {
    bool any = false;
    for (int t = 0; t < g.n_tokens && !any; ++t) any = at(l, t, 0) >= 0;
    if (!any) continue;
    for (int grp = 0; grp < g.expert_groups; ++grp) {
      std::string tick = "L";  // (appended: GCC 12 warns falsely on "L" + std::to_string)
      tick += std::to_string(l);
      tick += " g";
      tick += std::to_string(grp);
      v.y_ticks.push_back(std::move(tick));
      for (int t = 0; t < g.n_tokens; ++t) {
        float val = at(l, t, 0) < 0 ? kNaN : 0.0f;
        for (int j = 0; j < used; ++j)
          if (at(l, t, j) == grp) val = static_cast<float>(j + 1);
        v.map.values.push_back(val);
      }
      ++v.map.rows;
    }
  }
  v.scale.map = Colormap::kSequential;
  v.scale.min = 0.0f;
  v.scale.max = static_cast<float>(used);
  const int per = g.expert_count > 0 ? g.expert_count / g.expert_groups : 0;
  v.title = "Expert groups kept per token";
  v.subtitle = std::to_string(g.expert_groups) + " groups of " + std::to_string(per) +
               " (g: experts " + std::to_string(per) + "g.." + std::to_string(per) + "g+" +
               std::to_string(std::max(0, per - 1)) + "), " + std::to_string(used) +
               " kept: 1 = best, 0 = dropped";
  v.x_label = "token";
  v.y_label = "layer, group";
  v.value_unit = "kept rank (0: dropped)";
  v.x_ticks = g.token_text;
  return v;
}

std::string format_cell_value(const HeatmapView& v, float value) {
  if (v.scale.map != Colormap::kCategorical || std::isnan(value)) return format_value(value);
  const int id = static_cast<int>(value);
  if (id >= 0 && static_cast<size_t>(id) < v.category_labels.size())
    return v.category_labels[static_cast<size_t>(id)];
  return std::to_string(id);
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

RouterConfidence router_confidence(const std::vector<float>& scores,
                                   const std::vector<float>& /*weights: unused, see the header*/,
                                   const std::string& gating) {
  if (gating == "softmax_over_topk") {
    // Logits of any sign: their softmax over every expert (NaN entries left out).
    float mx = -std::numeric_limits<float>::infinity();
    for (float s : scores)
      if (std::isfinite(s)) mx = std::max(mx, s);
    if (!std::isfinite(mx)) return router_confidence(std::vector<float>{});
    double sum = 0.0;
    for (float s : scores)
      if (std::isfinite(s)) sum += std::exp(static_cast<double>(s) - mx);
    std::vector<float> p;
    p.reserve(scores.size());
    for (float s : scores)
      p.push_back(std::isfinite(s) ? static_cast<float>(std::exp(static_cast<double>(s) - mx) / sum)
                                   : std::numeric_limits<float>::quiet_NaN());
    return router_confidence(p);
  }
  if (gating != "sigmoid") return router_confidence(scores);
  double sum = 0.0;
  for (float s : scores)
    if (std::isfinite(s) && s > 0.0f) sum += s;
  if (!(sum > 0.0)) return router_confidence(std::vector<float>{});
  std::vector<float> p;
  p.reserve(scores.size());
  for (float s : scores)
    p.push_back(std::isfinite(s) && s > 0.0f ? static_cast<float>(s / sum)
                : std::isnan(s)              ? s
                                             : 0.0f);
  return router_confidence(p);
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
  if (l.shared_experts > 0 && l.shared.size() == static_cast<size_t>(l.n_layer)) {
    // One more column: the shared experts, always on (every token of a MoE layer).
    std::vector<float> out;
    out.reserve(static_cast<size_t>(l.n_layer) * static_cast<size_t>(l.expert_count + 1));
    for (int r = 0; r < l.n_layer; ++r) {
      for (int e = 0; e < l.expert_count; ++e) out.push_back(v.map.at(r, e));
      const float s = l.shared[static_cast<size_t>(r)];
      out.push_back(s > 0.0f ? s : kNaN);
    }
    v.map.values = std::move(out);
    ++v.map.cols;
    for (int e = 0; e < l.expert_count; ++e) v.x_ticks.push_back(std::to_string(e));
    v.x_ticks.push_back(shared_label(l.shared_experts) + " (every token)");
    v.subtitle = "routed share of selections; last column: " + shared_label(l.shared_experts) +
                 ", every token (top colour)";
  }
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
