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
// Routing policies are defined for softmax routers only: a sigmoid-gated router, a routed scale
// or a softmax over the selected logits (gpt-oss) makes Context::create refuse them.
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
  /// Slots per token in the outputs below (the largest number of experts one token can get).
  int max_k() const { return max_k_; }
  /// Routes n tokens of layer `layer`. logits F32 [n, expert_count] -> probs F32
  /// [n, expert_count] (softmax over all experts); ids int32 [n, max_k()] in descending
  /// probability order, -1 in unused slots; weights F32 [n, max_k()] (selected probabilities, 0
  /// in unused slots); applied F32 [n, max_k()] (the weights the experts' outputs are scaled
  /// by). Adds to `stats`.
  void route(int layer, int64_t n, const float* logits, float* probs, int32_t* ids, float* weights,
             float* applied, PolicyStats& stats);

 private:
  RoutingPolicy policy_;
  int n_layer_, n_expert_, k_model_, max_k_;
  bool renormalise_;
  bool unit_weights_;
  std::vector<uint8_t> unavailable_;  // [n_layer][n_expert]: masked or failed
  std::vector<uint8_t> failed_;       // [n_expert]
  std::vector<int> load_;             // [n_expert] tokens this batch (capacity)
  std::vector<int32_t> order_;
};

}  // namespace policies
}  // namespace moelab
