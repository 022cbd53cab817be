// Internal: the tiled attention driver of the CPU backend (issue #19): splits causal /
// sliding-window grouped-query attention into jobs (KV head, query tile) over the thread pool
// and runs kernels/cpu/attention_tile.h's kernel at the active SIMD level. Used by
// ops::attention when no probabilities are asked for and the fast kernels are on
// (kernels::exact_kernels() false); see attention_tile.h for the arithmetic.
#pragma once

#include <cstdint>

#include "moelab/core/thread_pool.h"
#include "moelab/ops/ops.h"

namespace moelab::ops::detail {

/// True unless MOELAB_EXACT_KERNELS=1 or MOELAB_TILED_ATTENTION=0 (read once;
/// MOELAB_TILED_ATTENTION=always also uses it below kTiledMinPosition).
bool tiled_attention_enabled();

/// With an F32 KV cache (the fixtures' setting), queries whose positions all lie below this keep
/// the llama.cpp-order kernel: attention over so few keys is a small share of a token's time,
/// and that kernel gives llama.cpp's bits, so near-tied routing decisions of short sequences
/// follow llama.cpp's (test_probes' fixture routing). Decided by position, not cell count, so an
/// evicted cache, the equivalent mask and capture on or off all take the same kernel. An F16
/// cache (llama.cpp's default, the speed setting) takes the tiled kernel at every position: the
/// llama.cpp-order kernel converts and multiplies one element at a time there, which made short
/// prompts and the first decode steps 25-40 % slower (MOELAB_EXACT_KERNELS=1 still has it).
inline constexpr int64_t kTiledMinPosition = 128;

/// tiled_attention_enabled(), GQA shapes it handles, and an F16 cache or a query at position
/// >= kTiledMinPosition.
bool use_tiled_attention(const int32_t* pos, int64_t n_tokens, const AttentionParams& p,
                         const KvLayer& kv);

/// Shapes as ops::attention (cell i of the cache holds position i). Writes out
/// F32 [n_tokens, n_head * head_dim_v]. With `visible` (attention policies): cell i holds
/// position cell_pos[i] (null: i) and a key is visible when visible(ctx, t, position); see
/// kernels/cpu/attention_tile.h (AttnTile::visible).
void attention_tiled(const float* q, const int32_t* pos, int64_t n_tokens, const KvLayer& kv,
                     int64_t n_kv, const AttentionParams& p, float* out, ThreadPool* pool,
                     const int32_t* cell_pos = nullptr,
                     bool (*visible)(const void*, int64_t, int64_t) = nullptr,
                     const void* vis_ctx = nullptr);

}  // namespace moelab::ops::detail
