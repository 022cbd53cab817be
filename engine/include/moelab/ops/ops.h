// CPU reference implementations of the transformer ops the architectures in engine/models/ are
// built from. The per-element math lives in engine/ops/element/element.h (shared with CUDA);
// these functions add the loops, the layouts and the threading.
//
// Layouts are row-major with the last dimension contiguous: "F32 [n_tokens, n_embd]" is n_tokens
// rows of n_embd floats. Positions are token positions in the sequence (0-based).
//
// Sources: RMSNorm (arXiv:1910.07467), RoPE (arXiv:2104.09864; ggml's NORM/NEOX pairings),
// grouped-query attention (Ainslie et al. 2023, arXiv:2305.13245: query head h reads KV head
// h / (n_head / n_head_kv)), sliding-window attention (Mistral 7B, arXiv:2310.06825: a window of
// W lets a query see W keys including itself), Mixture-of-Experts top-k gating (Shazeer et al.
// 2017; Mixtral arXiv:2401.04088 renormalises the selected probabilities, Qwen2-MoE and OLMoE do
// not).
#pragma once

#include <cstdint>

#include "moelab/core/thread_pool.h"

namespace moelab::ops {

/// y = RMSNorm(x) * w for n_rows rows of n (w may be null: no weight). x, y: F32 [n_rows, n]
/// (may alias); w: F32 [n].
void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps);

enum class RopeType { Norm, Neox };

struct RopeParams {
  RopeType type = RopeType::Norm;
  int n_rot = 0;            // rotated dimensions per head (<= head_dim, even)
  float freq_base = 10000;  // <arch>.rope.freq_base
  float freq_scale = 1;     // 1 / <arch>.rope.scaling.factor ("linear" and "yarn" scaling)
  // YaRN (Peng et al. 2023, arXiv:2309.00071; ggml's rope_yarn): with ext_factor != 0 the
  // rotated pair i turns by theta_int (1 - mix) + theta_ext mix, theta_ext = pos base^(-2i/n_rot),
  // theta_int = freq_scale theta_ext, mix = ext_factor (1 - clamp((i - low) / max(0.001,
  // high - low), 0, 1)), low = max(0, floor(corr(beta_fast))), high = min(n_rot - 1,
  // ceil(corr(beta_slow))), corr(b) = n_rot ln(n_ctx_orig / (2 pi b)) / (2 ln base).
  float ext_factor = 0;  // 0 = no YaRN ramp, 1 = YaRN
  /// Magnitude m multiplied into cos and sin (so into q and k; K·Q grows by m²). The
  /// architecture chooses it: gpt-oss 1 + 0.1 ln(factor) (ggml's own YaRN factor), deepseek2 1
  /// (its mscale goes into the attention scale instead). 1 = none.
  float attn_factor = 1;
  float beta_fast = 32, beta_slow = 1;  // YaRN's rotation counts (llama.cpp's defaults)
  int n_ctx_orig = 0;                   // <arch>.rope.scaling.original_context_length (YaRN only)
};

/// The YaRN ramp ends (low, high) of p (ggml_rope_yarn_corr_dims); (0, 0) without YaRN.
void rope_yarn_corr_dims(const RopeParams& p, float* low, float* high);

/// Rotates every head of x in place: x F32 [n_tokens, n_head * head_dim], pos int32 [n_tokens].
void rope(float* x, int64_t n_tokens, int n_head, int head_dim, const int32_t* pos,
          const RopeParams& p);

/// Grouped-query attention: the KV head that query head h reads (h / (n_head / n_head_kv)).
inline int kv_head_for(int h, int n_head, int n_head_kv) {
  return h / (n_head / n_head_kv);
}

/// True when a query at pos_q may attend to a key at pos_k: causal (pos_k <= pos_q) and, for a
/// sliding window of `window` tokens (0 = none), pos_q - pos_k < window, i.e. the query sees
/// `window` keys including itself.
inline bool key_visible(int64_t pos_q, int64_t pos_k, uint32_t window) {
  return pos_k <= pos_q && (window == 0 || pos_q - pos_k < static_cast<int64_t>(window));
}

/// A KV cache layer: cell i holds the key/value of position i. K: [n_cells, n_head_kv * head_dim],
/// V: [n_cells, n_head_kv * head_dim_v], F32 or F16 (IEEE binary16 bits).
struct KvLayer {
  const void* k = nullptr;
  const void* v = nullptr;
  bool f16 = false;
  /// Values per V cell (0: n_head_kv * head_dim_v). MLA's absorbed cache keeps V inside the K
  /// rows (v = k, v_row = the K row width: V = the first head_dim_v values of each row).
  int64_t v_row = 0;
};

struct AttentionParams {
  int n_head = 0, n_head_kv = 0, head_dim = 0, head_dim_v = 0;
  float scale = 1;      // applied to K·Q (usually 1/sqrt(head_dim))
  float softcap = 0;    // > 0: scores = softcap * tanh(scores / softcap) before the softmax
  uint32_t window = 0;  // sliding window in tokens, 0 = none
  /// Attention sinks (gpt-oss; Xiao et al. 2023, arXiv:2309.17453, as a learned per-head
  /// logit): F32 [n_head] or null. Head h's softmax gets one virtual key with score sinks[h]
  /// and no value: p_i = exp(s_i - M) / (sum_j exp(s_j - M) + exp(sink - M)),
  /// M = max(max_j s_j, sink), so a row sums to less than 1 (ggml_soft_max_add_sinks). The sink
  /// is not scaled or soft-capped and is never masked or evicted.
  const float* sinks = nullptr;
};

/// Causal (optionally sliding-window) grouped-query attention of n_tokens queries over the
/// first n_kv cells of the cache. q: F32 [n_tokens, n_head * head_dim] (RoPE applied);
/// pos: int32 [n_tokens]; out: F32 [n_tokens, n_head * head_dim_v]; probs (optional, may be
/// null): F32 [n_head, n_tokens, n_kv], the softmax (masked entries 0). K·Q and the softmax are
/// computed in F32; with an F16 cache the query (and the probabilities before ·V) are rounded
/// to F16 as ggml does.
/// Two kernels (issue #19): for a batch with a query at position >= 128 and the fast kernels on
/// (not MOELAB_EXACT_KERNELS=1, not MOELAB_TILED_ATTENTION=0) the output comes from a tiled
/// online-softmax kernel (kernels/cpu/attention_tile.h; FlashAttention, arXiv:2205.14135) that
/// reads each K/V block once per tile of queries and heads sharing a KV head, probabilities not
/// rounded to F16; otherwise, and for probs always, from the llama.cpp-order kernel
/// (ops/attention_kernel.h). They agree within float32 rounding (F32 cache), 2^-11 relative
/// (F16 cache, from the rounded probabilities).
void attention(const float* q, const int32_t* pos, int64_t n_tokens, const KvLayer& kv,
               int64_t n_kv, const AttentionParams& p, float* out, float* probs, ThreadPool* pool);

/// Softmax of each row in place: x F32 [n_rows, n].
void softmax(float* x, int64_t n_rows, int64_t n);

/// MoE routing for one token: probs = softmax(logits) over n_expert; ids = the k most probable
/// experts in descending order (ties: lower id); weights = their probabilities; applied =
/// weights / sum(weights) when renormalise, else weights; with unit_weights 1 for each selected
/// expert (the unit gating of a moefied model, see moelab/runtime/moefy.h).
/// logits, probs: F32 [n_expert]; ids: int32 [k]; weights, applied: F32 [k].
void route_top_k(const float* logits, int n_expert, int k, bool renormalise, float* probs,
                 int32_t* ids, float* weights, float* applied, bool unit_weights = false);

}  // namespace moelab::ops
