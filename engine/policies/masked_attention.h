// Internal (used by engine/models/cpu_context.cpp): grouped-query attention under an attention
// policy, over KV cells that may hold arbitrary (increasing) positions after eviction.
#pragma once

#include <cstdint>

#include "moelab/core/thread_pool.h"
#include "moelab/ops/ops.h"
#include "moelab/policies/policies.h"

namespace moelab::policies {

/// As ops::attention, but key cell i holds position cell_pos[i] (null: position i) and a key is
/// visible when policy.visible(pos_q, cell_pos[i], p.window) (p.window = the model's own
/// sliding window of this layer, 0 = none). q F32 [n_tokens, n_head*head_dim]; pos int32
/// [n_tokens]; out F32 [n_tokens, n_head*head_dim_v]; probs (optional) F32
/// [n_head, n_tokens, n_cells]. Same arithmetic and summation order as ops::attention, so
/// under a mask that hides nothing the result is bit-identical.
void masked_attention(const float* q, const int32_t* pos, int64_t n_tokens, const ops::KvLayer& kv,
                      const int32_t* cell_pos, int64_t n_cells, const ops::AttentionParams& p,
                      const AttentionPolicy& policy, float* out, float* probs, ThreadPool* pool);

}  // namespace moelab::policies
