// Internal: the tiled ("flash") attention kernel of the CPU backend (issue #19). One call
// handles one KV head and a tile of queries: the n_head / n_head_kv query heads that share the
// KV head times a run of consecutive tokens, so each K/V block of the cache is read and
// converted (F16 -> F32) once per tile instead of once per query, and the softmax is formed
// online over blocks of kAttnBlock keys (Milakov & Gimelshein 2018, "Online normalizer
// calculation for softmax", arXiv:1805.02867; Dao et al. 2022, "FlashAttention",
// arXiv:2205.14135): per query row a running maximum m, a running sum l and an unnormalised
// output acc, rescaled by e^(m_old - m_new) when the maximum grows; out = acc / l at the end.
//
// Arithmetic, the same at every SIMD level (each level's kernel is the generic code below with
// its own vector width; every output lane is an independent chain of the same IEEE operations):
// score = (sum_d fma over d = 0.. in order of q_d * k_d) * scale (soft-capped when asked);
// p = expf_ggml(score - m) (kernels::exp_shifted); l sums p in 16 lanes (lane = key & 15) and
// the lanes are added in a fixed tree at the end; acc_d = fma(p, v_d, acc_d) over the keys in
// order. With an F16 cache the query is rounded to F16 first (as ggml does), K and V are
// converted exactly. The order differs from the llama.cpp-order kernel
// (ops/attention_kernel.h), which MOELAB_EXACT_KERNELS=1 and attention capture keep using.
#pragma once

#include <cstdint>

namespace moelab::kernels::cpu {

inline constexpr int kAttnBlock = 64;  // keys per block

/// One job: query heads h0 .. h0 + n_group - 1 (all reading KV head hk) of tokens
/// t0 .. t0 + n_tok - 1.
struct AttnTile {
  const float* q =
      nullptr;  // F32 [n_tokens, q_stride]; head h of token t at t * q_stride + h * head_dim
  int64_t q_stride = 0;
  const int32_t* pos = nullptr;  // int32 [n_tokens]: the query positions (cell i holds position i)
  int64_t t0 = 0, n_tok = 0;
  int h0 = 0, n_group = 1;
  const void* k = nullptr;  // cache: cell i, KV head hk at k + i * k_stride + k_off (elements)
  const void* v = nullptr;
  bool f16 = false;
  int64_t k_stride = 0, k_off = 0, v_stride = 0, v_off = 0;
  int64_t kv_begin = 0, kv_end = 0;  // cells [kv_begin, kv_end) are read (others invisible)
  int head_dim = 0, head_dim_v = 0;
  float scale = 1, softcap = 0;
  uint32_t window = 0;
  const float* sinks = nullptr;  // F32 [n_head] or null
  float* out = nullptr;  // F32 [n_tokens, o_stride]; head h at t * o_stride + h * head_dim_v
  int64_t o_stride = 0;
  /// Attention policies (policies/masked_attention.h): cell i holds position cell_pos[i]
  /// (increasing; null: position i), and a key is visible when visible(vis_ctx, t, position)
  /// (null: key_visible with `window`). The keys are blocked by position (block b holds
  /// positions 64 b .. 64 b + 63, missing ones as zero keys that are never visible), so an
  /// evicted cache gives bit for bit the result of the same mask over a full cache.
  const int32_t* cell_pos = nullptr;
  bool (*visible)(const void* vis_ctx, int64_t t, int64_t pos_k) = nullptr;
  const void* vis_ctx = nullptr;
};

using AttnTileFn = void (*)(const AttnTile& job);

/// Rows (query heads x tokens) one call should hold at most: the tile driver picks
/// n_tok = max(1, kAttnRows / n_group).
inline constexpr int kAttnRows = 64;

void attn_tile_scalar(const AttnTile& job);
void attn_tile_avx2(const AttnTile& job);    // defined only when built with the AVX2 kernels
void attn_tile_avx512(const AttnTile& job);  // defined only when built with the AVX-512 kernels

}  // namespace moelab::kernels::cpu
