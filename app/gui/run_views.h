// Stored runs -> the views' data (views/view_models.h), for the Compare panel's diff modes: the
// expert load and the prompt attention of runs A and B as the store holds them (routing and
// attention records written by moelab_session's GenerationRecorder). No Qt widgets; built with
// the views panel (MOELAB_HAVE_VIEWS_PANEL).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "moelab/storage/records.h"
#include "moelab/views/view_models.h"

namespace moelab::storage {
class Store;
}

namespace moelab::lab {

/// Expert share of stored routing: load(l, e) = count(l, e) / sum_e' count(l, e'), count(l, e)
/// = tokens at layer l whose selected experts include e - the fraction of layer l's (token, slot)
/// selections, as compare::routing_divergence defines the load (a routed row sums to 1).
/// F32 [n_layer, expert_count]; rows without routing are 0. Expert ids >= expert_count are
/// ignored.
views::ExpertLoad expert_load_of(const std::vector<storage::RoutingRecord>& routing, int n_layer,
                                 int expert_count);

/// A stored attention snapshot as a map: F32 [n_query, n_key] with the causal mask (a query at
/// position q cannot see keys after q; the last n_query of n_key positions are the queries) as
/// NaN. Throws moelab::Error (BadInput) when the snapshot is not 2-D.
views::AttentionMap attention_map_of(const storage::AttentionSnapshot& a);

/// What the views show for a comparison of runs A and B: loads of equal shape (layers and
/// experts of both runs; n_layer 0 when neither run has routing) and the attention of the
/// deepest layer both runs stored (cropped to the queries and keys both have, which are the
/// same prompt positions from 0), nullopt when one has none.
struct CompareViews {
  int64_t a = 0, b = 0;
  views::ExpertLoad load_a, load_b;
  std::optional<views::AttentionMap> attention_a, attention_b;
};

/// Reads runs `a` and `b` from `store` (routing, attention, config for expert_count).
CompareViews read_compare_views(const storage::Store& store, int64_t a, int64_t b);

}  // namespace moelab::lab
