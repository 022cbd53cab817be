// Routing and attention policies: rules that replace the model's own MoE routing or attention
// mask, so a researcher can trade quality against cost. A policy is a value (parsed from and
// printed as a spec string, so every run records exactly what it used) carried in
// ContextParams; the forward pass (engine/models/forward.cpp, written once for every backend) asks
// the policy at its two decision points: which experts each token goes to, and which keys each
// query may see.
//
// Routing specs (one base rule, optionally followed by constraints joined with '+', e.g.
// "top-p:0.9,1,4+fail:3"):
//   default           the model's own rule: softmax -> top-k (expert_used_count), renormalised
//                     when the architecture renormalises (Mixtral) - Shazeer et al. 2017,
//                     Mixtral arXiv:2401.04088.
//   k:N               fixed top-N, 1 <= N <= expert_count.
//   top-p:P[,min,max] dynamic top-p: the smallest set of most probable experts whose probability
//                     mass reaches P, clamped to [min, max] experts (defaults 1, expert_count);
//                     "Harder Tasks Need More Experts: Dynamic Routing in MoE Models",
//                     Huang et al. 2024, arXiv:2403.07652. P >= 1 selects every expert.
//   entropy:min,max   entropy-adaptive k: k = min + round((max - min) * H / ln(expert_count)),
//                     H the router entropy in nats (confident router -> few experts).
//   mask:L:E,E,...    experts E of layer L (L = * for every layer) are never selected; the
//                     next most probable experts take their place. Repeatable
//                     ("mask:0:1+mask:1:2").
//   fail:E,E,...      simulated failure of experts E in every layer: a token whose base rule
//                     picks a failed expert fails over to the next best available one; every
//                     such event is counted per layer (PolicyStats::failovers).
//   capacity:C        at most C tokens per expert per layer and batch (Switch Transformer,
//                     Fedus et al. 2021, arXiv:2101.03961); tokens are served in batch order
//                     and an overflowing token goes to its next best expert (counted as
//                     PolicyStats::overflows). Decode batches of one token never overflow for
//                     C >= 1.
// The selected experts' probabilities are the weights; architectures that renormalise the
// top-k divide them by their sum, the others apply them as they are.
//
// Gated routers (RouterGating). Every rule above is defined for the three gates of the MoE
// models of 2025-26 in one scheme: each expert e has a gate score s_e, a selection score
// sel_e, a rank in one ranking and a share q_e of one distribution:
//   softmax (Mixtral, Qwen, OLMoE, DeepSeek-V2):  s = softmax(logits) over every expert.
//   sigmoid (DeepSeek-V3, arXiv:2412.19437 §2.1.2; GLM-4.5, arXiv:2508.06471):  s_e =
//                     sigmoid(logit_e), scores in (0, 1) that need not sum to 1.
//   softmax over the selected (gpt-oss: OpenAI, "gpt-oss-120b & gpt-oss-20b Model Card" 2025;
//                     llama.cpp's SOFTMAX_WEIGHT gating):  s = the (router-biased) logits.
//   sel_e = s_e + b_e with the selection-only bias b (DeepSeek-V3's auxiliary-loss-free load
//   balancing bias, §2.1.2: it decides which experts are chosen, never their weight); sel = s
//   without one.
//   Ranking: experts by descending sel (ties: the lower id), the model's own top-k order. With
//   a group limit (DeepSeek-V3 "node-limited routing", §2.1.2: n_group groups of consecutive
//   ids, a group's score the sum of its 2 largest sel): groups in descending group score (ties:
//   the lower group); the experts of the first n_group_used groups merged by descending sel come
//   first, then the experts of each further group in group order (by descending sel within the
//   group). A rule that wants more experts than the kept groups hold (k:N with N > n_group_used
//   x group size, top-p, entropy, or replacements for masked / failed / full experts) so widens
//   the group limit one group at a time; k <= the kept groups' size keeps the model's groups.
//   Distribution q (for top-p's mass and entropy's H): softmax: q = s; sigmoid: q_e = s_e /
//   sum_e' s_e' (the scores normalised over every expert; the bias is not part of it, as it is
//   not part of any weight); softmax over the selected: q = softmax(logits) over every expert
//   (the gate's own softmax taken over all candidates). top-p accumulates q along the ranking.
//   How many experts: the base rule (default: expert_used_count, k:N, top-p, entropy) decides
//   on the ranking and q of every expert; which experts: mask, fail and capacity then walk the
//   ranking skipping unavailable and full experts, as for softmax routers. Masked and failed
//   experts are removed before the group choice (they add nothing to a group's score; their
//   bias is irrelevant); fail-overs are counted on the ranking with only the masked experts
//   removed (the groups the router would have kept had nothing failed).
//   Weights: w_j = s of the chosen expert (probability, sigmoid score or logit); applied =
//   the architecture's normalisation over the experts actually chosen: softmax over the
//   selected: softmax(w) (gpt-oss); otherwise w, divided by sum(w) when the architecture
//   renormalises (DeepSeek-V3, GLM-4.5); then times the routed scale when it has one
//   (expert_weights_scale). The default rule and k:expert_used_count reproduce the model's own
//   routing operation for operation (logits bit-equal to running without a policy).
//
// Attention specs:
//   full              the model's own mask (causal; the model's sliding window where it has one).
//   window:W          sliding window of W tokens (a query sees W keys including itself), on top
//                     of the model's own window (the smaller one wins). W >= sequence length is
//                     full attention (bit for bit).
//   local-global:W,S,G  a query sees the last W keys, the first S (sink) tokens and every G-th
//                     token (pos % G == 0; G = 0: none) - the local + global pattern of
//                     Longformer (arXiv:2004.05150) with attention sinks (StreamingLLM,
//                     arXiv:2309.17453).
//   evict:S,W         StreamingLLM KV eviction: the mask of local-global:W,S,0, and KV cells no
//                     future query can see are dropped, so generation runs past n_ctx
//                     (positions keep counting; RoPE uses the true positions). Needs
//                     S + W <= n_ctx.
// Policies restrict, never widen: on layers with the model's own sliding window that window
// still applies (gpt-oss: its even layers keep their window of 8 under any policy).
// Learned attention sinks (gpt-oss's per-head attn_sinks logit, ops::AttentionParams::sinks) are
// a virtual key of the softmax, not a KV cell: no policy masks them and evict:S,W never drops
// them (S counts the first real tokens kept, separately); they always take their share of each
// row, so the probabilities of a row sum to less than 1 under every policy.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace moelab {

class Model;

enum class RoutingRule { Default, FixedK, TopP, Entropy };

struct RoutingPolicy {
  RoutingRule rule = RoutingRule::Default;
  int k = 0;       // FixedK
  double p = 1.0;  // TopP: probability mass to reach
  int min_k = 1;   // TopP / Entropy: fewest experts
  int max_k = 0;   // TopP / Entropy: most experts (0 = expert_count)
  /// (layer, expert) pairs never selected; layer -1 = every layer.
  std::vector<std::pair<int, int>> masked;
  std::vector<int> failed;  // experts unavailable in every layer (fail-over counted)
  int capacity = 0;         // tokens per expert per layer and batch (0 = unlimited)

  /// Parses a spec (see the file comment). Throws moelab::Error (BadInput) naming the problem.
  static RoutingPolicy parse(const std::string& spec);
  /// The canonical spec; parse(describe()) gives an equal policy.
  std::string describe() const;
  bool is_default() const;
  bool operator==(const RoutingPolicy&) const = default;
};

enum class AttentionRule { Full, Window, LocalGlobal, Evict };

struct AttentionPolicy {
  AttentionRule rule = AttentionRule::Full;
  uint32_t window = 0;        // Window: W; LocalGlobal / Evict: local window W
  uint32_t sinks = 0;         // LocalGlobal / Evict: S
  uint32_t global_every = 0;  // LocalGlobal: G (0 = no strided global tokens)

  /// Parses a spec (see the file comment). Throws moelab::Error (BadInput).
  static AttentionPolicy parse(const std::string& spec);
  std::string describe() const;
  bool is_full() const { return rule == AttentionRule::Full; }
  /// True when a query at pos_q may see the key at pos_k under this policy combined with the
  /// model's own sliding window `model_window` (0 = none). Causal.
  bool visible(int64_t pos_q, int64_t pos_k, uint32_t model_window) const;
  bool operator==(const AttentionPolicy&) const = default;
};

/// What the policies did in one context (accumulated over every eval until reset).
struct PolicyStats {
  std::vector<uint64_t> failovers;  // [n_layer] tokens re-routed away from a failed expert
  std::vector<uint64_t> overflows;  // [n_layer] tokens re-routed because an expert was full
  uint64_t routed = 0;              // (token, MoE layer) routing decisions
  uint64_t active = 0;              // experts selected over those decisions
  uint64_t evicted = 0;             // KV cells dropped by evict:S,W
  /// Average experts that run per token and MoE layer (0 before any routing).
  double avg_active_experts() const {
    return routed ? static_cast<double>(active) / static_cast<double>(routed) : 0.0;
  }
  void merge(const PolicyStats& o);
};

/// How the model's router scores, groups and weighs its experts (the architecture's gating; see
/// "Gated routers" in the file comment). The defaults are a softmax router without renormalising.
struct RouterGating {
  bool renormalise = false;       // divide the chosen weights by their sum
  bool unit_weights = false;      // weight 1 for each chosen expert (moefied models)
  bool sigmoid = false;           // s = sigmoid(logits) (else softmax over every expert)
  bool softmax_selected = false;  // s = logits, applied = softmax over the chosen (gpt-oss)
  float scale = 0;                // routed scale applied last (0 = none)
  int n_group = 0;                // group-limited routing: groups of consecutive ids (<= 1: none)
  int n_group_used = 0;           // groups kept per token
};

namespace policies {

/// The routing decision for one layer and batch (stateful for capacity; not thread-safe).
class Router {
 public:
  /// expert_count and expert_used_count from the card; renormalise as the architecture does;
  /// unit_weights: every selected expert's output is applied with weight 1 (the unit gating of
  /// a moefied model, moelab/runtime/moefy.h), whatever the policy selects.
  /// Throws moelab::Error (BadInput) when the policy does not fit the model (k out of range,
  /// expert id or layer out of range).
  Router(const RoutingPolicy& policy, int n_layer, int expert_count, int expert_used_count,
         bool renormalise, bool unit_weights = false);
  /// The same for any gate (sigmoid, softmax over the selected, routed scale, group limit).
  /// Also throws when expert_count is not a multiple of gating.n_group or n_group_used is out
  /// of 1..n_group.
  Router(const RoutingPolicy& policy, int n_layer, int expert_count, int expert_used_count,
         const RouterGating& gating);
  /// Slots per token in the outputs below (the largest number of experts one token can get).
  int max_k() const { return max_k_; }
  /// Routes n tokens of layer `layer`. logits F32 [n, expert_count] -> probs F32
  /// [n, expert_count] (the gate scores s: softmax over all experts, sigmoid scores, or the
  /// logits for a softmax over the selected); ids int32 [n, max_k()] in ranking order, -1 in
  /// unused slots; weights F32 [n, max_k()] (the chosen experts' s, 0 in unused slots); applied
  /// F32 [n, max_k()] (the weights the experts' outputs are scaled by). sel_bias F32
  /// [expert_count] (may be null): the layer's selection-only bias; selection F32 [n,
  /// expert_count] (may be null; written when sel_bias is given) receives s + sel_bias. Adds to
  /// `stats`.
  void route(int layer, int64_t n, const float* logits, float* probs, int32_t* ids, float* weights,
             float* applied, PolicyStats& stats, const float* sel_bias = nullptr,
             float* selection = nullptr);

 private:
  RoutingPolicy policy_;
  int n_layer_, n_expert_, k_model_, max_k_;
  RouterGating gating_;
  /// Writes the ranking of one token into order_ (see the file comment) from the selection
  /// scores sel [n_expert], skipping nothing; with a group limit, experts flagged in `removed`
  /// [n_expert] count for no group's score.
  void rank(const float* sel, const uint8_t* removed);
  std::vector<uint8_t> unavailable_;  // [n_layer][n_expert]: masked or failed
  std::vector<uint8_t> failed_;       // [n_expert]
  std::vector<int> load_;             // [n_expert] tokens this batch (capacity)
  std::vector<int32_t> order_;
  std::vector<uint8_t> masked_only_;  // [n_expert] masked in the layer being routed
  std::vector<float> q_;              // [n_expert] the distribution of top-p / entropy
  std::vector<float> sel_tmp_;        // [n_expert] selection scores when not returned
  std::vector<float> gscore_;         // [n_group]
  std::vector<int32_t> gorder_;       // [n_group]
};

}  // namespace policies
}  // namespace moelab
