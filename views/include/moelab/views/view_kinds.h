// From view models to heatmaps with their default colour scales: one function per view kind.
#pragma once

#include "moelab/views/heatmap.h"
#include "moelab/views/view_models.h"

namespace moelab::views {

struct HeatmapView {
  Heatmap map;
  ColorScale scale;
  std::string title;
  std::string x_label;
  std::string y_label;
  std::string value_unit;            // legend
  std::vector<std::string> x_ticks;  // one label per column (token text), may be empty
  std::vector<std::string> y_ticks;  // one label per row, may be empty
  std::string subtitle;              // second line under the title (e.g. run names), optional
  int categories = 0;                // kCategorical: ids listed in the legend (0: palette size)
  /// kCategorical: the legend's text for ids 0.. (e.g. "shared x1" for a category past the
  /// expert ids); ids without an entry are shown as numbers.
  std::vector<std::string> category_labels;
};

/// Rows = layers, columns = tokens, value = top expert id (-1 -> masked). Up to 64 experts the
/// categorical palette (every pair of its 64 colours differs by >= 18 CIE76 Delta-E); above 64
/// a labelled sequential scale over the ids 0..expert_count-1, since a categorical palette would
/// have to repeat colours (the documented choice for 128-expert models such as Qwen3-MoE).
/// With shared experts (g.shared_experts > 0) column 0 is "shared xN": value expert_count (its
/// own legend entry) in every routed layer, masked in dense layers; tokens are columns 1...
HeatmapView routing_top_expert_view(const RoutingGrid& g);
/// Rows = layers, columns = tokens, value = routed experts that ran (sequential,
/// 0..expert_count). With shared experts, column 0 is "shared xN" holding N in routed layers
/// (they run besides the routed ones). Throws moelab::Error when the grid has no active-count
/// channel.
HeatmapView routing_active_count_view(const RoutingGrid& g);
/// What the routing grid's colour shows.
enum class RoutingColour {
  kTopExpert = 0,  // routing_top_expert_view
  kActiveCount,    // routing_active_count_view
  kTopProb,        // share of the top expert, 0..1 (router_confidence's distribution)
  kMargin,         // top1 - top2 share, 0..1 (small: the router hesitated)
  kEntropy,        // entropy of that distribution, nats, 0..ln expert_count
  kGroups,         // routing_groups_view (group-limited routers)
};
inline constexpr int kRoutingColourCount = 6;
/// The colour box's entries for a router with gating `gating` (RoutingGrid::gating), in
/// RoutingColour order: sigmoid routers say "scores, not probabilities" and name the
/// normalisation, softmax-over-top-k routers name the selected experts' weights.
std::vector<std::string> routing_colour_names(const std::string& gating);
/// Rows = layers, columns = tokens, value = the router-confidence channel `c` (kTopProb,
/// kMargin or kEntropy) on a sequential scale with its unit in the legend; NaN -> masked. The
/// title and legend state the distribution (router_confidence: probabilities, sigmoid scores
/// normalised over all experts, or the weights over the k selected experts). Throws
/// moelab::Error when the grid has no such channel (no router output recorded) or `c` is not a
/// confidence channel.
HeatmapView routing_confidence_view(const RoutingGrid& g, RoutingColour c);
/// The expert groups a group-limited router kept: rows = (layer, group) for each layer with
/// group records ("L1 g0", "L1 g1", ...), columns = tokens, value = the group's rank among the
/// kept groups (1 = best group score .. expert_groups_used), 0 = dropped (its experts could not
/// be chosen), masked where the token has no record. Throws moelab::Error when the grid has no
/// group records.
HeatmapView routing_groups_view(const RoutingGrid& g);

/// Rows = layers, columns = experts, value = load (sequential, 0..max routed load). With shared
/// experts one more column at the right, "shared xN (every token)", holding ExpertLoad::shared:
/// always on, drawn at the top colour (its value is at or above the routed scale).
HeatmapView expert_load_view(const ExpertLoad& l);
/// Rows = queries, columns = keys, value = attention probability (sequential 0..1, or log
/// 1e-4..1 when log_scale); NaN (causal mask) -> masked.
HeatmapView attention_view(const AttentionMap& a, bool log_scale = false);
/// A - B of two expert-load maps of equal shape (diverging, symmetric around zero).
/// Throws moelab::Error on shape mismatch.
HeatmapView expert_load_diff_view(const ExpertLoad& a, const ExpertLoad& b);
/// A - B of two attention maps of equal shape (diverging; masked where either is masked).
HeatmapView attention_diff_view(const AttentionMap& a, const AttentionMap& b);

/// Compact value text for legends and tooltips: "0.25", "1.5e-05", "masked" for NaN.
std::string format_value(float v);
/// A cell's value as the hover tooltip shows it: categorical ids as their category_labels
/// entry (e.g. "shared x1 (always on)") or the integer id, other values as format_value.
std::string format_cell_value(const HeatmapView& v, float value);

/// Rows and columns = experts of one layer, value = tokens routed to both (sequential, 0..max
/// off-diagonal count, so the diagonal - tokens per expert - saturates at the top colour).
HeatmapView co_activation_view(const CoActivation& c);

/// Co-activation counts from the experts selected per token: ids I32 [n_tokens, k] (the top-k
/// expert ids of each token in `layer`; negative ids and repeats within a token are ignored).
/// Throws moelab::Error when ids.size() is not a multiple of k or an id >= expert_count.
CoActivation co_activation_from_topk(int layer, int expert_count, int k,
                                     const std::vector<int32_t>& ids);

/// Summary of one head's attention map (definitions in view_models.h, HeadSummary). Rows are
/// renormalised over their unmasked entries; rows without mass are skipped.
HeadSummary summarize_head(const AttentionMap& a, int n_sink = 1, int local_window = 16);

/// Latency statistics for the chart annotations (milliseconds; decode = tokens 1..n-1).
struct LatencyStats {
  double ttft_ms = 0.0;
  double decode_mean_ms = 0.0;
  double decode_p50_ms = 0.0;
  double decode_p95_ms = 0.0;
  double decode_tokens_per_s = 0.0;  // 1000 / mean (0 without decode tokens)
};
LatencyStats latency_stats(const LatencySeries& s);

/// Energy over the sampled interval by the trapezoid rule: joules = sum (w_i + w_{i+1}) / 2 *
/// (t_{i+1} - t_i); mean watts = joules / duration. No J/token here: the Power page shows the
/// session's decode J/token (PowerSeries::decode_j_per_token), the figure stored for the run.
struct PowerStats {
  double joules = 0.0;
  double duration_s = 0.0;
  double mean_watts = 0.0;
  double peak_watts = 0.0;
};
PowerStats power_stats(const PowerSeries& s);

}  // namespace moelab::views
