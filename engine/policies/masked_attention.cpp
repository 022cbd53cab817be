#include "policies/masked_attention.h"

#include "ops/attention_kernel.h"

namespace moelab::policies {

void masked_attention(const float* q, const int32_t* pos, int64_t n_tokens, const ops::KvLayer& kv,
                      const int32_t* cell_pos, int64_t n_cells, const ops::AttentionParams& p,
                      const AttentionPolicy& policy, float* out, float* probs, ThreadPool* pool) {
  ops::detail::attention_kernel(
      q, n_tokens, kv, n_cells, p, out, probs, pool,
      [&](int64_t t, int64_t i) {
        const int64_t pk = cell_pos ? cell_pos[i] : i;
        return policy.visible(pos[t], pk, p.window);
      },
      [&](int64_t i) -> int64_t { return cell_pos ? cell_pos[i] : i; });
}

}  // namespace moelab::policies
