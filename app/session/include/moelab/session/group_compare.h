// A/B comparison of two GROUPS of stored runs (e.g. one config over several seeds against
// another), built from storage/compare's maths:
//  - per-token samples (TPOT over each run's decode tokens as compare::latency_figures defines
//    it, energy per token) of all runs of a group are pooled and compared with
//    compare::bootstrap_mean_diff (percentile bootstrap of the difference of means, A - B);
//  - per-run scalars (stored metrics plus n_tokens, tpot_ms_mean and decode_tokens_per_s) are
//    summarised per group
//    with compare::seed_stability (mean, sample stddev, min, max, CV) and compared by their means
//    (compare::delta: A - B, B = the baseline group);
//  - routing: compare::routing_divergence over the pooled routing records of each group;
//  - perplexity: compare::perplexity_delta on the first run of each group that has a comparable
//    result (same method and text), and the mean over each group's comparable results;
//  - seed stability of each group: agreement of the output token ids (compare::seed_stability).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "moelab/compare/compare.h"

namespace moelab::session {

struct GroupMetricRow {
  std::string key, unit;
  compare::MetricSpread a, b;  // n == 0 when the key is missing in that group
  compare::Delta delta;        // of the means; meaningful when both n > 0
};

struct GroupComparison {
  std::vector<int64_t> a_ids, b_ids;
  /// Config differences between the first run of each group.
  std::vector<compare::ConfigChange> config;
  /// Config keys that differ INSIDE a group (e.g. "/seed"), by JSON pointer.
  std::vector<std::string> varying_a, varying_b;
  std::vector<GroupMetricRow> metrics;          // keys present in every run of at least one group
  std::optional<compare::BootstrapCI> tpot_ms;  // pooled per-token latencies, ms
  std::optional<compare::BootstrapCI> j_per_token;  // pooled per-token energy, J
  compare::PerplexityDelta perplexity;
  std::optional<compare::Delta> perplexity_mean;  // mean over each group's comparable results
  std::vector<compare::LayerRouting> routing;     // pooled expert load per layer
  compare::SeedStability stability_a, stability_b;
};

/// Loads the runs and compares the groups. Throws storage::StorageError(BadInput) for an unknown
/// run id or an empty group.
GroupComparison compare_groups(const storage::Store& store, const std::vector<int64_t>& a,
                               const std::vector<int64_t>& b,
                               const compare::CompareOptions& options = {});
nlohmann::json to_json(const GroupComparison& c);

}  // namespace moelab::session
