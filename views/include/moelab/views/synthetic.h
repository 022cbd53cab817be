// Synthetic, deterministic view data: the gallery, the tests and bench/views use it. Patterns
// are chosen so each view shows its features (sink and local attention heads, a few hot
// experts per layer, a TTFT much larger than decode steps).
#pragma once

#include <cstdint>

#include "moelab/views/view_models.h"

namespace moelab::views {

struct SyntheticRun {
  RoutingGrid routing;        // n_layer x n_tokens, active_count filled (dynamic policy)
  ExpertLoad load;            // n_layer x expert_count, share of tokens
  ExpertLoad load_b;          // a second run (seed + 1) for the diff view
  CoActivation coactivation;  // layer n_layer / 2
  AttentionMap attention;     // n_tokens x n_tokens causal, head mean of the layer
  AttentionMap attention_b;   // the second run
  AttentionHeads heads;       // n_head heads of that layer
  LatencySeries
      latency;        // n_tokens tokens, breakdown per layer x {attention, router, experts, other}
  PowerSeries power;  // 10 Hz samples
};

/// seed selects the random draw; results are identical for equal arguments.
SyntheticRun synthetic_run(int n_layer = 24, int n_tokens = 48, int expert_count = 64,
                           int top_k = 8, int n_head = 16, uint32_t seed = 1);

/// An n x n causal attention map (NaN above the diagonal) mixing sink, local and random mass.
AttentionMap synthetic_attention(int n, uint32_t seed, float sink = 0.3f, float local = 0.4f);

}  // namespace moelab::views
