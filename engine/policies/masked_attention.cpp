#include "policies/masked_attention.h"

#include <vector>

#include "ops/attention_kernel.h"
#include "ops/attention_tiled.h"

namespace moelab::policies {

void masked_attention(const float* q, const int32_t* pos, int64_t n_tokens, const ops::KvLayer& kv,
                      const int32_t* cell_pos, int64_t n_cells, const ops::AttentionParams& p,
                      const AttentionPolicy& policy, float* out, float* probs, ThreadPool* pool) {
  if (ops::detail::use_tiled_attention(pos, n_tokens, p, kv)) {
    // as ops::attention: probabilities (capture) from the llama.cpp-order kernel, the output
    // from the tiled one, whose position blocks make an evicted cache and the equivalent mask
    // over a full cache (and a mask that hides nothing and no mask) agree bit for bit
    struct Vis {
      const AttentionPolicy* policy;
      const int32_t* pos;
      uint32_t window;
    } vis{&policy, pos, p.window};
    if (probs) {
      ops::detail::attention_kernel(
          q, n_tokens, kv, n_cells, p, nullptr, probs, pool,
          [&](int64_t t, int64_t i) {
            const int64_t pk = cell_pos ? cell_pos[i] : i;
            return policy.visible(pos[t], pk, p.window);
          },
          [&](int64_t i) -> int64_t { return cell_pos ? cell_pos[i] : i; });
    }
    ops::detail::attention_tiled(
        q, pos, n_tokens, kv, n_cells, p, out, pool, cell_pos,
        [](const void* c, int64_t t, int64_t pk) {
          const Vis& v = *static_cast<const Vis*>(c);
          return v.policy->visible(v.pos[t], pk, v.window);
        },
        &vis);
    return;
  }
  ops::detail::attention_kernel(
      q, n_tokens, kv, n_cells, p, out, probs, pool,
      [&](int64_t t, int64_t i) {
        const int64_t pk = cell_pos ? cell_pos[i] : i;
        return policy.visible(pos[t], pk, p.window);
      },
      [&](int64_t i) -> int64_t { return cell_pos ? cell_pos[i] : i; });
}

}  // namespace moelab::policies
