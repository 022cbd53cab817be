// Plain view-model types: what the views know about a run. Filled by the app from probe
// snapshots (or by the gallery with synthetic data); the views never see engine internals or
// the session store. All matrices are row-major, row index first.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moelab::views {

/// Routing of every token through every MoE layer.
/// top_expert: I32 [n_layer, n_tokens], the expert with the largest router weight for
///   (layer, token); -1 where the layer is dense or the token was not routed (drawn masked).
/// active_count: I32 [n_layer, n_tokens], number of experts that ran for (layer, token);
///   equals expert_used_count (top-k) under a fixed policy, varies under dynamic policies.
///   May be empty (no count channel).
struct RoutingGrid {
  int n_layer = 0;
  int n_tokens = 0;
  int expert_count = 0;
  std::vector<int32_t> top_expert;
  std::vector<int32_t> active_count;
  std::vector<std::string> token_text;  // n_tokens labels (may be empty)
};

/// Expert load: F32 [n_layer, expert_count], share of routed tokens per expert (0..1) or raw
/// counts; `unit` names which ("share of tokens", "tokens").
struct ExpertLoad {
  int n_layer = 0;
  int expert_count = 0;
  std::vector<float> load;
  std::string unit = "share of tokens";
};

/// Attention probabilities for one layer/head (or a head mean):
/// F32 [n_query, n_key]; NaN marks entries that do not exist (causal mask: key > query).
struct AttentionMap {
  int n_query = 0;
  int n_key = 0;
  std::vector<float> weight;
  std::vector<std::string> query_text;  // n_query labels (may be empty)
  std::vector<std::string> key_text;    // n_key labels (may be empty)
  int layer = -1;                       // -1: not specified
  int head = -1;                        // -1: mean over heads
};

/// Per-token decode latency. ms[i] is the wall time of token i in milliseconds; token 0 is the
/// first generated token, so ms[0] includes prompt processing (time to first token, TTFT).
struct LatencySeries {
  std::vector<double> ms;
  double ttft_ms = 0.0;
};

/// Power samples: t_s seconds since generation start, watts at that time. Empty when the
/// machine has no sensor (`sensor` then says why, e.g. "no sensor on this machine").
struct PowerSeries {
  std::vector<double> t_s;
  std::vector<double> watts;
  std::string sensor;
};

}  // namespace moelab::views
