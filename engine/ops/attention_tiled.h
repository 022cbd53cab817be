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

/// Shapes as ops::attention (cell i of the cache holds position i). Writes out
/// F32 [n_tokens, n_head * head_dim_v].
void attention_tiled(const float* q, const int32_t* pos, int64_t n_tokens, const KvLayer& kv,
                     int64_t n_kv, const AttentionParams& p, float* out, ThreadPool* pool);

}  // namespace moelab::ops::detail
