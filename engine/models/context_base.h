// Internal: the backend-neutral half of every Context (CPU: cpu_context.cpp, CUDA:
// backend/cuda/cuda_context.cpp) - everything that is not arithmetic. The forward pass
// (ForwardContext, forward.h) derives from it and calls, per eval:
//
//   begin_eval(tokens)          batch checks, eviction, cancel, positions pos_
//   ... the blocks ...          attention_setup(il), kv_cell0(), key_positions(n), wants(k),
//                               observation(...), count_routing(n, k), check_cancel()
//   check_logits(n, n_out)      logits_ [n_out, n_vocab] must be finite
//   commit_eval(n, n_out, all)  positions / KV bookkeeping after a successful eval
//
// A backend implements move_cells() (the KV cache compaction eviction asks for). Observers, op
// timers, policy statistics (shared through ContextParams::policy_stats), truncate and cancel are
// kept here, so the two backends cannot drift apart on them.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "models/arch.h"
#include "models/context_common.h"
#include "moelab/model/model.h"
#include "moelab/policies/policies.h"

namespace moelab::models {

/// The router an architecture's configuration asks for (its moe_* and expert_groups fields):
/// the one place those fields are read. policies::Router takes it as is; the kernels take the
/// same gate as ops::element::RouteSpec, converted from it by route_spec (forward.h).
RouterGating router_gating(const ArchConfig& c);

/// The attention parameters of one layer, derived from the card, the architecture and the
/// run's attention policy.
struct AttentionSetup {
  /// Heads and head sizes; scale = the K·Q scale (1 when q_scale is set); softcap (0 = none);
  /// window in tokens (0 = none: the architecture's sliding window and/or the Window policy).
  ops::AttentionParams params;
  /// Multiply Q by q_scale before K·Q (one rounding per element; gemma2, as llama.cpp does);
  /// 0 = Q not scaled.
  float q_scale = 0.0f;
};

class ContextBase : public Context {
 public:
  /// `card` and `cfg` must outlive the context (they belong to the model the context holds).
  /// Throws moelab::Error (BadInput) when the policies do not fit the model (init_router,
  /// evicting_policy).
  ContextBase(const ModelCard& card, const ArchConfig& cfg, const ContextParams& p,
              std::shared_ptr<PolicyStats> shared_stats);
  /// Adds this context's statistics to the shared ones (ContextParams::policy_stats).
  ~ContextBase() override;

  std::span<const float> logits(int i) const override;
  uint32_t n_past() const override { return n_past_; }
  uint32_t n_ctx() const override;
  void truncate(uint32_t n) override;
  void request_cancel() override { cancel_.store(true); }
  void set_observer(Observer observer, std::vector<std::string> names) override;
  void set_op_timer(OpTimer timer) override { timer_ = std::move(timer); }
  const RoutingPolicy& routing_policy() const override { return routing_; }
  const AttentionPolicy& attention_policy() const override { return attention_policy_; }
  PolicyStats policy_stats() const override { return stats_; }
  void reset_policy_stats() override;

 protected:
  /// Checks a batch before any arithmetic: at least one token, every id inside the vocabulary,
  /// room in the KV cache (evicting first under an evict policy); then the cancel flag. Fills
  /// pos_ with the batch's positions n_past .. n_past+n-1. Throws moelab::Error (BadInput,
  /// Cancelled).
  void begin_eval(std::span<const int32_t> tokens);
  /// Throws moelab::Error (BadInput) when logits_ (F32 [n_out, n_vocab]) holds NaN / Inf.
  void check_logits(int64_t n, int64_t n_out) const;
  /// After a successful eval of n tokens keeping n_out logits rows: the new cells' positions,
  /// n_past and what logits(i) returns.
  void commit_eval(int64_t n, int64_t n_out, bool all_logits);
  /// Throws moelab::Error (Cancelled) once after request_cancel().
  void check_cancel();

  /// Moves `count` KV cells of every layer from cell `src` to cell `dst` (dst < src; the ranges
  /// may overlap), keeping their order. Called by eviction only.
  virtual void move_cells(size_t dst, size_t src, size_t count) = 0;

  /// The first KV cell of this batch (= n_past without eviction).
  int64_t kv_cell0() const;
  /// Evicting only: the position each KV cell holds for this batch of n tokens (kept cells,
  /// then the batch), in key_pos_; returns it.
  const std::vector<int32_t>& key_positions(int64_t n);
  /// The attention parameters of layer il (architecture, then the Window policy).
  AttentionSetup attention_setup(int il) const;
  /// Whether the attention policy masks keys beyond the causal / window rule (local-global,
  /// evict): those run the policy's own visibility test.
  bool policy_masked() const;
  /// Bytes of one KV cell of one layer: K, V (V 0 for MLA, whose V is the start of each K row:
  /// the attention reads it there, with KvLayer::v_row = the K row width).
  size_t k_cell_bytes() const;
  size_t v_cell_bytes() const;

  bool wants(Key k) const { return (wanted_ >> k) & 1u; }
  /// An observation of intermediate k at layer `layer` with shape [d0, d1] (or [d0, d1, d2]
  /// when d2 > 0), position pos0 = n_past; data and key_pos are the backend's to set.
  Observation observation(Key k, int layer, int64_t d0, int64_t d1, int64_t d2 = 0) const;
  /// Top-k routing without a policy: n tokens, k experts each.
  void count_routing(int64_t n, int k);

  const ModelCard& card_;
  const ArchConfig& cfg_;
  const uint32_t n_ctx_;
  const bool kv_f16_;
  const RoutingPolicy routing_;
  const AttentionPolicy attention_policy_;
  std::optional<policies::Router> router_;
  bool evicting_ = false;
  std::vector<int32_t> cell_pos_;  // evicting only: position held by each KV cell
  PolicyStats stats_;
  uint32_t n_past_ = 0;
  Observer observer_;
  OpTimer timer_;
  std::vector<int32_t> pos_;      // I32 [n] positions of the batch
  std::vector<int32_t> key_pos_;  // see key_positions()
  std::vector<float> logits_;     // F32 [n_logits, n_vocab], filled by the backend's eval

 private:
  void evict_for(int64_t n);
  void flush_shared_stats();

  uint64_t wanted_ = 0;
  std::atomic<bool> cancel_{false};
  PolicyStats flushed_;
  std::shared_ptr<PolicyStats> shared_stats_;
  int64_t n_logits_ = 0, n_batch_ = 0;
  bool logits_all_ = false;
};

}  // namespace moelab::models
