// Internal: the forward pass, written once (forward.cpp) against the op set each backend
// implements (CPU: cpu_context.cpp, CUDA: backend/cuda/cuda_context.cpp).
//
// One eval = one batch of n tokens at positions n_past .. n_past+n-1:
//   x = token_embd rows (* embd_scale)
//   per layer: x += [rs] [post_attn_norm] Wo · attention(RoPE(qk_norm(Wq·norm(x) + bq)), ...)
//              x += [rs] [post_ffw_norm] FFN(norm(x))  (dense gated FFN, or routed experts
//                                                        plus an optional gated shared expert)
//   logits = [softcap] output · norm(x) [/ logit_scale]
// ([rs]: times residual_scale, Granite.)
// Every architecture is this pre-norm block (arch.h) with the variations its ArchConfig turns
// on; the block emits the observable intermediates (models::Key) and times the OpKind parts.
//
// The op set: each op works on F32 buffers in the backend's memory (host for the CPU, device
// for CUDA) obtained from buf(); weights are named by their host description (models::Weight,
// the F32 vectors of LayerWeights), which a backend maps to its own copy. Ops are issued in
// order; a backend may queue them (CUDA: one stream) as long as finish_batch() waits for all.
// Adding an op: declare it here, implement it in both backends, and add a parity test of the
// CUDA kernel against the CPU one (tests/engine/cuda/test_cuda_parity.cpp).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "models/context_base.h"
#include "ops/element/element.h"

namespace moelab::models {

/// The scratch buffers of a forward pass, one per role (grown, never shrunk below what an eval
/// of the same batch size asked for before).
enum class Slot : int {
  X,             // F32 [n, n_embd] hidden state (the residual stream)
  Cur,           // F32 [n, n_embd] normed state
  Q,             // F32 [n, n_head * head_dim]
  K,             // F32 [n, n_head_kv * head_dim]
  V,             // F32 [n, n_head_kv * head_dim_v]
  Kqv,           // F32 [n, n_head * head_dim_v] attention output before Wo
  Attn,          // F32 [n, n_embd] attention projection
  FfnOut,        // F32 [n, n_embd]
  Tmp,           // F32 [n, n_embd] shared expert output
  HGate,         // F32 [n, n_ff] gated FFN: gate, then act(gate) * up
  HUp,           // F32 [n, n_ff]
  MoeLogits,     // F32 [n, expert_count] router logits
  MoeProbs,      // F32 [n, expert_count]
  MoeWeights,    // F32 [n, k] top-k probabilities
  MoeApplied,    // F32 [n, k] weights applied to the experts' outputs
  MoeSelection,  // F32 [n, expert_count] selection scores (probs + selection bias)
  MoeGroups,     // F32 [n, expert_groups_used] kept expert groups (group-limited routers)
  // MLA (mla_attention_block; r = qk_rope, c = kv_lora_rank, H = n_head):
  MlaLora,     // F32 [n, q_lora_rank] compressed query
  MlaKv,       // F32 [n, c + r] the KV cache row: rmsnorm(c_kv) | roped k_pe
  MlaCkv,      // F32 [n, c] normed c_kv (also the value row)
  MlaPe,       // F32 [n, H, r] roped q_pe (k_pe: [n, r])
  MlaQ,        // F32 [n, H, c + r] absorbed query
  MlaHeadIn,   // F32 [n, max(qk_nope, c)] one head's input to a per-head product
  MlaHeadOut,  // F32 [n, max(c, v_head)] its output
  MlaOut,      // F32 [n, H * v_head] per-head values before attn_output
  Logits,      // F32 [n_out, n_vocab]
  Count
};

class ForwardContext : public ContextBase {
 public:
  using ContextBase::ContextBase;
  /// Context::eval: begin_eval's checks, the blocks, the head; then check_logits and
  /// commit_eval. Throws moelab::Error as Context::eval documents.
  void eval(std::span<const int32_t> tokens, bool all_logits) final;

  // ---- The pieces an architecture's block (ArchConfig::block) is composed of. ----

  /// x += [post_attn_norm] Wo · attention(RoPE(qk_norm(Wq·norm(x) + bq)), K/V likewise) for
  /// layer il, with the KV cache append; x = Slot::X F32 [n, n_embd].
  void attention_block(int il, int64_t n);
  /// x += [post_ffw_norm] FFN(norm(x)): the dense gated FFN, or (expert_count > 0) the routed
  /// experts plus the optional gated shared expert.
  void ffn_block(int il, int64_t n);
  /// Multi-head latent attention (DeepSeek-V2, arXiv:2405.04434) in the absorbed form, as
  /// llama.cpp 0c1e570 evaluates it (fixtures README "Turn-2 architectures"): q = attn_q(h) or
  /// attn_q_b(rmsnorm(attn_q_a(h))), per head q_nope | q_pe; attn_kv_a_mqa(h) = c_kv | k_pe,
  /// c_kv = rmsnorm(c_kv); RoPE on q_pe and k_pe; the KV cache holds one row per token
  /// [c_kv | k_pe] (one KV head) and V = c_kv; per head the query is [q_nope · attn_k_b[j] |
  /// q_pe], the output (kv_lora wide) goes through attn_v_b[j], then attn_output. x += that.
  void mla_attention_block(int il, int64_t n);

 protected:
  /// The model's weights, as loaded (host description: types, shapes, names).
  virtual const Weights& weights() const = 0;

  // ---- The op set (shapes row-major, outermost first). ----

  /// A buffer of at least `count` floats for role s.
  virtual float* buf(Slot s, size_t count) = 0;
  /// I32 [count] expert ids (-1 = unused slot of a variable-k policy).
  virtual int32_t* expert_ids(size_t count) = 0;
  /// Before any op of an eval: the batch's token ids and positions (pos_) where ops need them.
  virtual void start_batch(std::span<const int32_t> tokens) = 0;
  /// x F32 [n, n_embd] = the token embedding rows of `tokens` (dequantized).
  virtual void embed(std::span<const int32_t> tokens, float* x) = 0;
  /// RMSNorm (Zhang & Sennrich 2019) of `rows` rows of `width`, times w F32 [width]; y may be x.
  virtual void rms_norm(const float* x, const std::vector<float>& w, float* y, int64_t rows,
                        int64_t width) = 0;
  /// y F32 [n, n_out] = x F32 [n, n_in] · Wᵀ, with the precision rule exact_activations().
  virtual void linear(const Weight& w, const float* x, int64_t n, float* y) = 0;
  /// y[i] F32 [n, w[i]->n_out()] = x F32 [n, n_in] · w[i]ᵀ for `count` weights that share x
  /// (e.g. Q, K and V), each exactly as linear() computes it; a backend may run them as one
  /// parallel pass (the CPU does in decode: one synchronisation instead of `count`). Default:
  /// linear() for each.
  virtual void linear_shared_input(const Weight* const* w, float* const* y, int count,
                                   const float* x, int64_t n) {
    for (int i = 0; i < count; ++i) linear(*w[i], x, n, y[i]);
  }
  /// x F32 [n, b.size()] += b per row.
  virtual void add_bias(float* x, const std::vector<float>& b, int64_t n) = 0;
  /// RoPE (Su et al. 2021, arXiv:2104.09864) with cfg_.rope (incl. YaRN) at the batch's
  /// positions, in place on x F32 [n, n_head, head_dim] (head_dim: MLA's rope part or the
  /// model's head_dim).
  virtual void rope_hd(float* x, int64_t n, int n_head, int head_dim) = 0;
  /// rope_hd with the model's head_dim.
  void rope(float* x, int64_t n, int n_head) {
    rope_hd(x, n, n_head, static_cast<int>(card_.head_dim));
  }
  /// dst[r * dst_stride + i] = src[r * src_stride + i] for r < rows, i < width (strided copy of
  /// F32 rows; the ranges must not overlap).
  virtual void copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                       int64_t rows, int64_t width) = 0;
  /// y F32 [n, n_out] = x F32 [n, n_in] · W[j]ᵀ for slice j of a 3-D weight [n_in, n_out, *]
  /// (MLA's per-head attn_k_b / attn_v_b; a dense product, precision as linear()).
  virtual void linear_slice(const Weight& w, int64_t j, const float* x, int64_t n, float* y) = 0;
  /// x[i] *= s for count floats.
  virtual void scale(float* x, float s, int64_t count) = 0;
  /// x[i] = cap * tanh(x[i] / cap) for count floats.
  virtual void softcap(float* x, float cap, int64_t count) = 0;
  /// x[i] += y[i] for count floats.
  virtual void add(float* x, const float* y, int64_t count) = 0;
  /// Stores k F32 [n, n_head_kv*head_dim] and v F32 [n, n_head_kv*head_dim_v] of layer il in
  /// KV cells cell0 .. cell0+n-1 (in the cache's type).
  virtual void store_kv(int il, int64_t cell0, const float* k, const float* v, int64_t n) = 0;
  /// out F32 [n, n_head*head_dim_v] = softmax(K·Q, masked) · V over n_kv cells of layer il:
  /// causal at the batch's positions, the setup's window and softcap, and the attention
  /// policy's mask (with key_pos_ as the cells' positions when evicting). Returns the
  /// probabilities F32 [n_head, n, n_kv] when want_probs, else null.
  virtual const float* attention(int il, const float* q, int64_t n, int64_t n_kv,
                                 const AttentionSetup& setup, float* out, bool want_probs) = 0;
  /// gate F32 [n, ff] = act(gate) * up (cfg_.ffn_act: SiLU as kernels::swiglu, GELU tanh).
  virtual void glu(float* gate, const float* up, int64_t n, int64_t ff) = 0;
  /// Top-k routing without a policy (el::route_token_gated per token, RouteSpec from cfg_):
  /// probs F32 [n, nx], ids, w, applied [n, k]; with sel_bias F32 [nx] non-empty, selection
  /// F32 [n, nx] receives probs + sel_bias (the scores the choice is made on).
  virtual void route_top_k(const float* logits, int64_t n, int nx, int k, float* probs,
                           int32_t* ids, float* w, float* applied,
                           const std::vector<float>& sel_bias, float* selection) = 0;
  /// out F32 [n, expert_groups_used] = the expert groups kept for each token (el::top_groups on
  /// sel F32 [n, nx], the scores the choice was made on), as floats; for the observer only.
  virtual void kept_groups(const float* sel, int64_t n, int nx, float* out) = 0;
  /// Routing by the policy router_ (runs on the host; same outputs as route_top_k, selection
  /// included when sel_bias is non-empty).
  virtual void route_policy(int il, const float* logits, int64_t n, int nx, int k, float* probs,
                            int32_t* ids, float* w, float* applied,
                            const std::vector<float>& sel_bias, float* selection) = 0;
  /// ids as floats, for the observer (F32 [count]).
  virtual const float* ids_as_floats(const int32_t* ids, int64_t count) = 0;
  /// out F32 [n, n_embd] = Σ_slot applied · expert_ids(x) (gated FFN of the expert in that
  /// slot, merged 3-D weights of L), slots in order; ids < 0 are skipped.
  virtual void experts(const LayerWeights& L, const float* x, const int32_t* ids,
                       const float* applied, int64_t n, int k, float* out) = 0;
  /// y F32 [n, n_embd] *= sigmoid(gate · x_t) per token (qwen2moe's shared expert gate).
  virtual void shexp_gate(float* y, const std::vector<float>& gate, const float* x, int64_t n) = 0;
  /// Hands intermediate k (shape [d0, d1(, d2)], backend memory) to the observer, when wanted.
  virtual void emit(Key k, int layer, const float* data, int64_t d0, int64_t d1, int64_t d2 = 0,
                    const std::vector<int32_t>* key_pos = nullptr) = 0;
  /// After the last op: logits_ = `logits` (count floats, backend memory), all work done.
  virtual void finish_batch(const float* logits, int64_t count) = 0;
  /// After check_logits: observations and op times held back until the end of the eval.
  virtual void deliver() {}
  /// Op timing: a mark now (only called with a timer installed) ...
  virtual int64_t clock_mark() = 0;
  /// ... and the time between two marks, reported as op (layer, n tokens).
  virtual void clock_report(OpKind op, int layer, int64_t n, int64_t a, int64_t b) = 0;

 private:
  class Clock;
  void dense_ffn(const Weight& gate, const Weight& up, const Weight& down, const float* x,
                 int64_t n, float* out);
  void moe_ffn(int il, int64_t n);
};

/// The gate policies::Router uses (RouterGating), as el::route_token_gated takes it. Every
/// field of RouterGating has its counterpart here; the static_assert below fails when a field is
/// added to one struct and not mapped (their sizes then no longer match the recorded ones).
inline ops::element::RouteSpec route_spec(const RouterGating& g) {
  static_assert(sizeof(RouterGating) == 16 && sizeof(ops::element::RouteSpec) == 20,
                "a router field was added: map it in route_spec and update these sizes");
  ops::element::RouteSpec r;
  r.sigmoid = g.sigmoid;
  r.renormalise = g.renormalise;
  r.unit = g.unit_weights;
  r.scale = g.scale;
  r.softmax_selected = g.softmax_selected;
  r.n_group = g.n_group;
  r.n_group_used = g.n_group_used;
  return r;
}

/// The routing an architecture's configuration asks for, for the kernels: the same gate as
/// ContextBase's policies::Router (router_gating), so the two cannot drift apart.
inline ops::element::RouteSpec route_spec(const ArchConfig& c) {
  return route_spec(router_gating(c));
}

/// The pre-norm transformer block (LLaMA, arXiv:2302.13971): attention_block, then ffn_block.
void standard_block(ForwardContext& f, int il, int64_t n);

}  // namespace moelab::models
