// Plain view-model types: what the views know about a run. Filled by the app from probe
// snapshots (or by the gallery with synthetic data); the views never see engine internals or
// the session store. All matrices are row-major, row index first.
#pragma once

#include <cstdint>
#include <optional>
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
  /// How sure the router was, from a distribution over experts that `gating` defines
  /// (router_confidence in view_kinds.h): F32 [n_layer, n_tokens] each; NaN where the layer is
  /// dense, the token was not routed or no router output was recorded for it. Empty: the run
  /// recorded no router output.
  /// top_prob: share of the top expert; margin: top1 - top2 share; entropy: -sum_e p_e ln p_e in
  /// nats (0 .. ln expert_count).
  std::vector<float> top_prob;
  std::vector<float> margin;
  std::vector<float> entropy;
  /// The router's gating function (run config "model"."gating"): "softmax" (or "" unknown:
  /// probabilities), "sigmoid" (independent scores in (0, 1), not probabilities) or
  /// "softmax_over_topk" (gpt-oss: scores = router logits + bias; the weights are a softmax over
  /// the k selected experts).
  std::string gating;
  /// Shared experts every token of a MoE layer runs through besides the routed ones (DeepSeek,
  /// GLM-4.5, Qwen2-MoE); drawn as an always-on column "shared xN".
  int shared_experts = 0;
  /// Group-limited routers (DeepSeek-V3): expert_groups groups of expert_count / expert_groups
  /// consecutive experts, expert_groups_used kept per token. groups: I32 [n_layer, n_tokens,
  /// expert_groups_used], the kept group ids in descending group score, -1 where none recorded
  /// (empty: no group records).
  int expert_groups = 0;
  int expert_groups_used = 0;
  std::vector<int32_t> groups;
};

/// The confidence of one routing decision (any order; NaN entries ignored): the top expert's
/// share, the margin top1 - top2 (top1 when there is one expert), and the entropy -sum p ln p in
/// nats (0 ln 0 = 0), on the distribution the gating defines:
///  * "softmax" / "": the router's probabilities `scores` over all experts as given;
///  * "sigmoid": the sigmoid scores normalised over all experts, p_e = s_e / sum s (sigmoid
///    scores are independent per expert and do not sum to 1; DeepSeek-V3, arXiv:2412.19437 §2.1);
///  * "softmax_over_topk" (gpt-oss): the scores are router logits of any sign; p = their softmax
///    over all experts (the distribution moelab/policies/policies.h's top-p and entropy rules
///    and RoutingProbe use; the applied weights are a softmax over the k selected only).
///    `weights` is not used (kept for the callers' one signature).
/// All NaN for an empty input. (Defined in view_kinds.cpp.)
struct RouterConfidence {
  float top_prob, margin, entropy;
};
RouterConfidence router_confidence(const std::vector<float>& probs);
RouterConfidence router_confidence(const std::vector<float>& scores,
                                   const std::vector<float>& weights, const std::string& gating);

/// Expert load: F32 [n_layer, expert_count], either the share of the layer's expert selections
/// (0..1, a routed row sums to 1: compare::expert_share) or raw counts of tokens routed to the
/// expert; `unit` names which ("share of tokens", "tokens").
/// Shared experts (always on) are not in `load`: shared: F32 [n_layer], per MoE layer the value
/// of the "shared xN" column (unit "tokens": the tokens routed in that layer, all of which ran
/// the shared experts; share: 1 = every token), 0 for dense layers; empty when shared_experts
/// is 0.
struct ExpertLoad {
  int n_layer = 0;
  int expert_count = 0;
  std::vector<float> load;
  std::string unit = "share of tokens";
  int shared_experts = 0;
  std::vector<float> shared;
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

/// Live attention of newly generated tokens: query rows [first_query, first_query + n) of the
/// AttentionMap last published (same layer and head, same n_key), weight F32 [n, n_key] (NaN:
/// masked). token_text: text of tokens first_query .. first_query + n - 1, the labels of those
/// query rows and of the key columns with the same index (may be empty). The map keeps its
/// shape: a live map is published once with room for every token the run may make (rows of
/// tokens not made yet are NaN), then filled row by row (ViewsPanel::publish(AttentionRows)).
struct AttentionRows {
  int layer = -1;
  int head = -1;  // -1: mean over heads
  int first_query = 0;
  int n_key = 0;
  std::vector<float> weight;
  std::vector<std::string> token_text;
};

/// Co-activation of experts in one MoE layer: F32 [expert_count, expert_count], symmetric;
/// entry (i, j) = number of tokens whose top-k set contains both expert i and expert j; the
/// diagonal (i, i) = tokens routed to expert i. Build with co_activation_from_topk (view_kinds.h).
struct CoActivation {
  int layer = -1;
  int expert_count = 0;
  std::vector<float> count;
  std::string unit = "tokens";
};

/// Summary of one attention head over all its query rows (rows of probabilities summing to 1):
/// entropy_bits = mean over queries of -sum_k p log2 p;
/// sink_share = mean over queries of the mass on keys [0, n_sink) ("attention sink", Xiao et al.
/// 2023, Efficient Streaming Language Models with Attention Sinks);
/// local_share = mass on keys within local_window of the query (q - local_window < k <= q,
/// excluding sink keys); distant_share = the rest. The three shares sum to 1.
struct HeadSummary {
  int head = 0;
  float entropy_bits = 0.0f;
  float sink_share = 0.0f;
  float local_share = 0.0f;
  float distant_share = 0.0f;
};

/// The per-head summary strip of one layer.
struct AttentionHeads {
  int layer = -1;
  int n_sink = 1;
  int local_window = 16;
  std::vector<HeadSummary> heads;
};

/// Per-token latency. ms[i] is the wall time of token i in milliseconds; token 0 is the first
/// generated token, so ms[0] includes prompt processing (time to first token, TTFT = ttft_ms).
/// Optional breakdown: F64 [rows.size(), parts.size()] mean milliseconds per token spent in
/// each part (op: "attention", "router", "experts", ...) of each row (layer: "layer 0", ...).
struct LatencySeries {
  std::vector<double> ms;
  double ttft_ms = 0.0;
  std::vector<std::string> rows;
  std::vector<std::string> parts;
  std::vector<double> part_ms;
};

/// Power samples: t_s seconds since generation start, watts at that time. Empty when the
/// machine has no sensor; `sensor` then says why (e.g. "no readable RAPL counter"), otherwise
/// it names the sensor ("NVML: NVIDIA H200", "RAPL package-0"). n_tokens: tokens generated over
/// the sampled interval (0 = unknown). decode_j_per_token: the run's J/token as the session
/// accounts it (session::decode_j_per_token, stored as the run's "j_per_token" metric: decode
/// energy over decode tokens, the first token's prefill excluded) - the one figure the status
/// bar, Compare, moelab-cli and the reports show under "J/token"; nullopt while the run streams,
/// without a sensor or without a decode token. The chart never derives its own J/token.
struct PowerSeries {
  std::vector<double> t_s;
  std::vector<double> watts;
  std::string sensor;
  int n_tokens = 0;
  std::optional<double> decode_j_per_token;
};

}  // namespace moelab::views
