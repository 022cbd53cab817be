// Internal: the one grouped-query attention loop of the CPU backend, parameterised by which key
// cells a query may see. ops::attention (causal / sliding window) and
// policies::masked_attention (attention policies over possibly evicted KV cells) both call it,
// so they share arithmetic and summation order bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "moelab/core/thread_pool.h"
#include "moelab/ops/ops.h"
#include "ops/element/element.h"

namespace moelab::ops::detail {

/// visible(t, i) -> bool: may query token t see key cell i? Shapes as ops::attention:
/// q F32 [n_tokens, n_head*head_dim]; out F32 [n_tokens, n_head*head_dim_v]; probs (optional)
/// F32 [n_head, n_tokens, n_kv]. Jobs (head, token) are split over the pool.
template <typename Visible>
void attention_kernel(const float* q, int64_t n_tokens, const KvLayer& kv, int64_t n_kv,
                      const AttentionParams& p, float* out, float* probs, ThreadPool* pool,
                      const Visible& visible) {
  namespace el = element;
  const int64_t k_stride = static_cast<int64_t>(p.n_head_kv) * p.head_dim;
  const int64_t v_stride = static_cast<int64_t>(p.n_head_kv) * p.head_dim_v;
  const int64_t q_stride = static_cast<int64_t>(p.n_head) * p.head_dim;
  const int64_t o_stride = static_cast<int64_t>(p.n_head) * p.head_dim_v;
  const int64_t n_jobs = static_cast<int64_t>(p.n_head) * n_tokens;
  auto job = [&](int64_t begin, int64_t end, int) {
    std::vector<float> s(static_cast<size_t>(n_kv));
    std::vector<float> qh(static_cast<size_t>(p.head_dim));
    std::vector<float> acc(static_cast<size_t>(p.head_dim_v));
    for (int64_t j = begin; j < end; ++j) {
      const int h = static_cast<int>(j / n_tokens);
      const int64_t t = j % n_tokens;
      const int hk = kv_head_for(h, p.n_head, p.n_head_kv);
      const float* qv = q + t * q_stride + static_cast<int64_t>(h) * p.head_dim;
      for (int d = 0; d < p.head_dim; ++d) qh[d] = kv.f16 ? el::round_f16(qv[d]) : qv[d];
      for (int64_t i = 0; i < n_kv; ++i) {
        if (!visible(t, i)) {
          s[i] = -INFINITY;
          continue;
        }
        float dot = 0;
        if (kv.f16) {
          const uint16_t* kr = static_cast<const uint16_t*>(kv.k) + i * k_stride +
                               static_cast<int64_t>(hk) * p.head_dim;
          for (int d = 0; d < p.head_dim; ++d) dot += qh[d] * el::f16_to_f32(kr[d]);
        } else {
          const float* kr = static_cast<const float*>(kv.k) + i * k_stride +
                            static_cast<int64_t>(hk) * p.head_dim;
          for (int d = 0; d < p.head_dim; ++d) dot += qh[d] * kr[d];
        }
        float x = dot * p.scale;
        if (p.softcap > 0) x = el::softcap(x, p.softcap);
        s[i] = x;
      }
      el::softmax_row(s.data(), static_cast<int>(n_kv));
      if (probs) {
        float* pr = probs + (static_cast<int64_t>(h) * n_tokens + t) * n_kv;
        for (int64_t i = 0; i < n_kv; ++i) pr[i] = s[i];
      }
      for (int d = 0; d < p.head_dim_v; ++d) acc[d] = 0;
      for (int64_t i = 0; i < n_kv; ++i) {
        if (s[i] == 0.0f) continue;
        if (kv.f16) {
          const float w = el::round_f16(s[i]);
          const uint16_t* vr = static_cast<const uint16_t*>(kv.v) + i * v_stride +
                               static_cast<int64_t>(hk) * p.head_dim_v;
          for (int d = 0; d < p.head_dim_v; ++d) acc[d] += w * el::f16_to_f32(vr[d]);
        } else {
          const float w = s[i];
          const float* vr = static_cast<const float*>(kv.v) + i * v_stride +
                            static_cast<int64_t>(hk) * p.head_dim_v;
          for (int d = 0; d < p.head_dim_v; ++d) acc[d] += w * vr[d];
        }
      }
      float* o = out + t * o_stride + static_cast<int64_t>(h) * p.head_dim_v;
      for (int d = 0; d < p.head_dim_v; ++d) o[d] = acc[d];
    }
  };
  if (pool && pool->size() > 1 && n_jobs > 1)
    pool->parallel_for(n_jobs, job);
  else
    job(0, n_jobs, 0);
}

}  // namespace moelab::ops::detail
