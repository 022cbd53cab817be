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
};

/// Rows = layers, columns = tokens, value = top expert id (categorical; -1 -> masked).
HeatmapView routing_top_expert_view(const RoutingGrid& g);
/// Rows = layers, columns = tokens, value = active experts (sequential, 0..expert_count).
/// Throws moelab::Error when the grid has no active-count channel.
HeatmapView routing_active_count_view(const RoutingGrid& g);
/// Rows = layers, columns = experts, value = load (sequential, 0..max load).
HeatmapView expert_load_view(const ExpertLoad& l);
/// Rows = queries, columns = keys, value = attention probability (sequential 0..1, or log
/// 1e-4..1 when log_scale); NaN (causal mask) -> masked.
HeatmapView attention_view(const AttentionMap& a, bool log_scale = false);
/// A - B of two expert-load maps of equal shape (diverging, symmetric around zero).
/// Throws moelab::Error on shape mismatch.
HeatmapView expert_load_diff_view(const ExpertLoad& a, const ExpertLoad& b);
/// A - B of two attention maps of equal shape (diverging; masked where either is masked).
HeatmapView attention_diff_view(const AttentionMap& a, const AttentionMap& b);

}  // namespace moelab::views
