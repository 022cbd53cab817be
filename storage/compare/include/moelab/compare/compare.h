// A/B comparison of stored runs: pure functions over storage records (no Qt, no engine).
//
// One sign convention everywhere: differences are A - B, B being the baseline (a positive
// delta means A has more: more latency, more share of an expert...). The Compare panel, the
// views' "A - B" modes, `moelab-cli compare` and the reports all take their figures from the
// functions below: latency_figures (TTFT, TPOT, decode tokens/s), expert_share, kl_divergence,
// js_divergence - one definition each.
//
// Sources of the methods:
//  - bootstrap CI: percentile bootstrap of the difference of two independent means
//    (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13); quantiles are
//    Hyndman & Fan type 7 (linear interpolation, the R / NumPy default).
//  - KL divergence: Kullback & Leibler 1951, D(P||Q) = sum_i p_i ln(p_i / q_i), in nats.
//  - Jensen-Shannon divergence: Lin 1991, JS(P,Q) = (D(P||M) + D(Q||M)) / 2, M = (P + Q) / 2,
//    base-2 logarithms so that 0 <= JS <= 1.
//  - token diff: Myers, "An O(ND) Difference Algorithm and Its Variations", 1986 (greedy
//    forward search with a saved frontier per edit distance for the backtrack).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moelab/storage/store.h"

namespace moelab::compare {

using storage::EvalResult;
using storage::MetricRecord;
using storage::NextTokenDist;
using storage::RoutingRecord;

// ---------------------------------------------------------------- config

/// One difference between two configs. path is a JSON pointer ("/sampling/top_p"); objects are
/// compared key by key and arrays element by element, recursively.
struct ConfigChange {
  enum class Kind { Added, Removed, Changed };
  Kind kind;
  std::string path;
  nlohmann::json a, b;  // null when absent on that side
};
std::vector<ConfigChange> config_diff(const nlohmann::json& a, const nlohmann::json& b);
const char* kind_name(ConfigChange::Kind k) noexcept;

// ---------------------------------------------------------------- scalar deltas

/// abs = a - b; rel = (a - b) / |b| (NaN when b == 0 or either side is NaN): A relative to the
/// baseline B.
struct Delta {
  double a = 0, b = 0, abs = 0, rel = 0;
};
Delta delta(double a, double b) noexcept;

double mean(std::span<const double> x) noexcept;
/// Sample standard deviation (n - 1 in the denominator); 0 for n < 2.
double stddev(std::span<const double> x) noexcept;
/// Quantile of type 7 (Hyndman & Fan) of a SORTED sample, p in [0, 1].
double quantile_sorted(std::span<const double> sorted, double p) noexcept;

// ---------------------------------------------------------------- bootstrap

/// Percentile bootstrap confidence interval of mean(b) - mean(a) for two independent samples
/// (per-token TPOT in ms, energy per token in J ...). Each of `resamples` rounds draws n_a
/// values from a and n_b from b with replacement, using std::mt19937_64(seed) and index
/// = draw % n (a first, then b), and records mean(a*) - mean(b*) (A - B); lo / hi are the type-7
/// quantiles (1 - level) / 2 and (1 + level) / 2 of those differences. The same inputs and seed
/// give the same interval on every platform. Throws std::invalid_argument for an empty sample.
struct BootstrapCI {
  double mean_a = 0, mean_b = 0, diff = 0, lo = 0, hi = 0;
  size_t n_a = 0, n_b = 0;
  int resamples = 0;
  uint64_t seed = 0;
  double level = 0.95;
};
inline constexpr uint64_t kDefaultSeed = 0x6d6f656c6162ull;  // "moelab"

/// Metric keys of a run's per layer / op decode time breakdown (the Latency view's layer x op
/// chart): "decode_op_us.<row>.<op>" (row "L<layer>" or "other" for the layer-less embedding
/// and output head, op a moelab::op_kind_name; value: µs summed over the decode steps) and
/// "decode_op_us.steps" (the number of decode steps summed). The lab stores them at the end of a
/// run. They are detail of one run, not figures to compare: compare_runs and the reports leave
/// them out of their metric tables.
inline constexpr std::string_view kOpTimeMetricPrefix = "decode_op_us.";
inline bool is_op_time_metric(std::string_view key) {
  return key.starts_with(kOpTimeMetricPrefix);
}
BootstrapCI bootstrap_mean_diff(std::span<const double> a, std::span<const double> b,
                                int resamples = 10000, uint64_t seed = kDefaultSeed,
                                double level = 0.95);

// ---------------------------------------------------------------- quality

/// Perplexity delta of the first pair of perplexity results with the same method AND the same
/// text (text_sha256); comparable == false (with the reason) otherwise.
struct PerplexityDelta {
  bool comparable = false;
  std::string reason;
  std::string method;
  Delta value;
};
PerplexityDelta perplexity_delta(const std::vector<EvalResult>& a,
                                 const std::vector<EvalResult>& b);

/// D(P||Q) in nats between two next-token distributions over the same vocabulary. Sparse
/// distributions (top-N ids) spread their missing mass 1 - sum(probs) uniformly over the ids
/// they do not list. q is floored at 1e-12 so that D stays finite; terms with p = 0 or p = q add
/// exactly 0 (identical distributions give 0, not a rounding residue), and D is never below 0.
/// Throws std::invalid_argument when the vocabulary sizes differ.
double kl_divergence(const NextTokenDist& p, const NextTokenDist& q);

/// KL over the positions both runs stored (D(A||B) per position).
struct KlSummary {
  size_t n_positions = 0;
  double mean = 0, max = 0;
  std::vector<double> per_position;
};
/// nullopt when no position is stored by both runs, or when the two runs' distributions cover
/// vocabularies of different sizes (runs of different models: not comparable; `why` then says
/// so, with both sizes) - never an exception for data a store can legitimately hold.
std::optional<KlSummary> next_token_kl(const std::vector<NextTokenDist>& a,
                                       const std::vector<NextTokenDist>& b,
                                       std::string* why = nullptr);

// ---------------------------------------------------------------- routing

/// JS divergence (base 2, in [0, 1]) of two distributions given as non-negative weights (each
/// normalised to sum 1 first; an all-zero side is treated as uniform).
double js_divergence(std::span<const double> p, std::span<const double> q);

/// Expert share of one layer - THE definition every surface uses: the fraction of all (token,
/// slot) selections of the layer that went to each expert, share(e) = count(e) / sum_e' count(e')
/// with count(e) = tokens whose chosen experts include e. A row of shares sums to 1 (all zeros
/// stay zeros).
std::vector<double> expert_share(std::span<const double> counts);

/// Expert load of one layer (shares as expert_share) of both runs.
struct LayerRouting {
  int32_t layer = 0;
  std::vector<double> load_a, load_b;  // [expert_count]
  std::vector<double> diff;            // load_a - load_b (A - B)
  double js = 0;                       // JS(load_a, load_b), base 2
  size_t tokens_a = 0, tokens_b = 0;
};
/// Per layer present in both runs. expert_count 0: the largest expert id seen + 1.
std::vector<LayerRouting> routing_divergence(const std::vector<RoutingRecord>& a,
                                             const std::vector<RoutingRecord>& b,
                                             int expert_count = 0);

// ---------------------------------------------------------------- latency

/// Latency figures of one run from its tokens' latency_us (token 0 = prompt prefill plus the
/// first sampling): ttft_ms = token 0; tpot_ms = tokens 1..n-1 (the decode steps; the first
/// token is excluded); tpot_ms_mean = their mean; decode_tokens_per_s = 1000 / tpot_ms_mean
/// (= decode tokens / decode seconds). Unset where undefined (no tokens / no decode token / zero
/// time).
struct LatencyFigures {
  std::optional<double> ttft_ms, tpot_ms_mean, decode_tokens_per_s;
  std::vector<double> tpot_ms;
};
LatencyFigures latency_figures(std::span<const storage::TokenRecord> tokens);

// ---------------------------------------------------------------- outputs

/// A run of the shortest edit script turning a into b.
struct DiffOp {
  enum class Kind { Equal, Delete, Insert };
  Kind kind;
  size_t a_pos = 0, b_pos = 0, len = 0;  // Equal: a[a_pos..+len) == b[b_pos..+len)
};
/// Myers' diff over token ids. Memory O(D^2) for D edits.
std::vector<DiffOp> token_diff(std::span<const int32_t> a, std::span<const int32_t> b);
const char* kind_name(DiffOp::Kind k) noexcept;

struct DiffSummary {
  size_t equal = 0, deleted = 0, inserted = 0;
  size_t common_prefix = 0;  // tokens before the first difference
  double similarity = 1;     // 2 * equal / (n_a + n_b); 1 for two empty outputs
};
DiffSummary summarize(const std::vector<DiffOp>& ops, size_t n_a, size_t n_b);

/// Stability of one configuration over N seeds.
struct MetricSpread {
  std::string key;
  size_t n = 0;
  double mean = 0, stddev = 0, min = 0, max = 0;
  double cv = 0;  // stddev / |mean|, NaN when mean == 0
};
/// Output agreement over the runs of a group that stored output tokens (n_runs of them); with fewer
/// than two there is nothing to compare and the pair figures are NaN (null in JSON).
struct SeedStability {
  size_t n_runs = 0;
  size_t distinct_outputs = 0;
  double identical_pairs = 0;         // fraction of run pairs with identical token ids
  double mean_similarity = 0;         // mean over pairs of DiffSummary::similarity
  double mean_common_prefix = 0;      // mean over pairs, tokens
  std::vector<MetricSpread> metrics;  // keys present in every run, sorted
};
SeedStability seed_stability(const std::vector<std::vector<int32_t>>& outputs,
                             const std::vector<std::vector<MetricRecord>>& metrics);

// ---------------------------------------------------------------- two stored runs

struct MetricRow {
  std::string key, unit;
  std::optional<double> a, b;
  Delta delta;  // only meaningful when both are set
};

struct RunComparison {
  storage::RunRecord a, b;
  std::vector<ConfigChange> config;
  /// Stored metrics (tokens_per_s ...) plus derived ones: ttft_ms (latency_figures: token 0's
  /// latency, the one TTFT of the views and reports; it replaces the stored ttft_ms metric),
  /// n_tokens, tpot_ms_mean and decode_tokens_per_s (latency_figures: decode tokens only),
  /// j_per_token (when energy was measured). Deltas are A - B.
  std::vector<MetricRow> metrics;
  std::optional<BootstrapCI> tpot_ms;      // per decode token latency (tokens 1..n-1), ms
  std::optional<BootstrapCI> j_per_token;  // per-token energy, J
  PerplexityDelta perplexity;
  std::optional<KlSummary> kl;
  std::string kl_reason;  // why kl is absent when the runs have distributions (else empty)
  std::vector<LayerRouting> routing;
  std::vector<DiffOp> diff;
  DiffSummary diff_summary;
  /// Why A and B may not be two measurements of one experiment (check_comparable): different
  /// models, expert counts or prompts, or outputs that diverge inside the KL positions.
  std::vector<std::string> warnings;
  /// The expert counts differ: routing is empty and no per-expert figure may be shown.
  bool per_expert_refused = false;
};

struct CompareOptions {
  int resamples = 10000;
  uint64_t seed = kDefaultSeed;
  double level = 0.95;
};

/// Loads both runs from `store` and compares them (check_comparable included). Throws
/// storage::StorageError(BadInput) for an unknown run id.
RunComparison compare_runs(const storage::Store& store, int64_t a, int64_t b,
                           const CompareOptions& options = {});
nlohmann::json to_json(const RunComparison& c);

// ---------------------------------------------------------------- are A and B comparable

/// What makes two sides of a comparison different experiments rather than two measurements of
/// one: the model (sha256 of the file), its expert_count and the prompt. A side is one run's
/// model row and prompt (for a group: its first run).
struct Side {
  std::string label;  // "A", "B", "run 12"
  int64_t run_id = 0;
  std::optional<storage::ModelRecord> model;
  int64_t expert_count = -1;  // -1: unknown (no model row, or no expert_count in its card)
  std::string prompt;
};
/// The side of run `run_id` (an unknown id gives a side with nothing known).
Side side_of(const storage::Store& store, const std::string& label, int64_t run_id);

/// Warnings that two sides differ in model, expert count or prompt, one sentence each, for
/// `compare` (stderr and the JSON `warnings`), the reports (notes) and the Compare panel.
/// per_expert_refused is set when the expert counts differ: expert i of A against expert i of
/// B then compares unrelated experts, so per-expert routing figures must not be shown.
std::vector<std::string> comparison_warnings(const Side& a, const Side& b,
                                             bool* per_expert_refused);
/// Same prompt, different outputs: from the first differing token on, the next-token
/// distributions follow different prefixes. The warning when c's KL covers positions past the
/// outputs' common prefix, else empty.
std::string diverged_output_warning(const RunComparison& c);
/// Sets c.warnings (comparison_warnings of runs c.a and c.b, then diverged_output_warning when
/// there is no other) and c.per_expert_refused, clearing c.routing when it is set. compare_runs
/// calls it; so does any other assembly of a RunComparison (the reports).
void check_comparable(const storage::Store& store, RunComparison& c);

}  // namespace moelab::compare
