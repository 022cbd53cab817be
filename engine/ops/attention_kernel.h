// Internal: the one grouped-query attention loop of the CPU backend, parameterised by which key
// cells a query may see. ops::attention (causal / sliding window) and
// policies::masked_attention (attention policies over possibly evicted KV cells) both call it,
// so they share arithmetic and summation order bit for bit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "moelab/core/thread_pool.h"
#include "moelab/kernels/kernels.h"
#include "moelab/ops/ops.h"
#include "ops/element/element.h"

namespace moelab::ops::detail {

/// el::softmax_row over cells whose logical indices key(i) ascend (blocks of 8 by key >> 3,
/// lane key & 7); with key(i) = i the two are identical bit for bit. With a finite `sink` (an
/// attention sink's logit, AttentionParams::sinks) the maximum includes it and
/// expf(sink - max) joins the sum after the keys, as ggml's soft_max with sinks.
template <typename Key>
void softmax_keyed(float* x, int64_t n, const Key& key, float sink = -INFINITY) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  const bool has_sink = sink != -INFINITY;
  if (has_sink) mx = sink > mx ? sink : mx;
  if (mx == -INFINITY) {
    std::fill(x, x + n, 0.0f);
    return;
  }
  double sum = 0.0;
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t block = -1;
  kernels::exp_shifted(x, mx, x, n);  // masked (-inf) entries become 0
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] == 0.0f) continue;  // masked, or underflowed: adds nothing
    const int64_t k = key(i);
    if ((k >> 3) != block) {
      if (block >= 0) sum += static_cast<double>(kernels::el::hsum8_tinyblas(lanes));
      std::fill(lanes, lanes + 8, 0.0f);
      block = k >> 3;
    }
    lanes[k & 7] = x[i];
  }
  sum += static_cast<double>(kernels::el::hsum8_tinyblas(lanes));
  if (has_sink) sum += static_cast<double>(expf(sink - mx));
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

/// visible(t, i) -> bool: may query token t see key cell i? Shapes as ops::attention:
/// q F32 [n_tokens, n_head*head_dim]; out F32 [n_tokens, n_head*head_dim_v] (null: only the
/// probabilities, for capture beside the tiled kernel); probs (optional)
/// F32 [n_head, n_tokens, n_kv]. Jobs (head, token) are split over the pool.
///
/// key(i) -> int64: the logical index of cell i (its position; ascending over the cells). The
/// summation order follows it as llama.cpp's follows the cell index of its (never evicted,
/// position-ordered) cache: the softmax sums blocks of 8 consecutive keys, probabilities · V
/// accumulates in lane key & 7. With key(i) = i this is exactly llama.cpp's order; with the
/// positions of an evicted cache it equals the order of the same keys in a full cache, so an
/// eviction policy gives bit for bit the logits of the equivalent mask.
template <typename Visible, typename Key>
void attention_kernel(const float* q, int64_t n_tokens, const KvLayer& kv, int64_t n_kv,
                      const AttentionParams& p, float* out, float* probs, ThreadPool* pool,
                      const Visible& visible, const Key& key) {
  namespace el = element;
  const int64_t k_stride = static_cast<int64_t>(p.n_head_kv) * p.head_dim;
  const int64_t v_stride =
      kv.v_row > 0 ? kv.v_row : static_cast<int64_t>(p.n_head_kv) * p.head_dim_v;
  const int64_t q_stride = static_cast<int64_t>(p.n_head) * p.head_dim;
  const int64_t o_stride = static_cast<int64_t>(p.n_head) * p.head_dim_v;
  const int64_t n_jobs = static_cast<int64_t>(p.n_head) * n_tokens;
  auto job = [&](int64_t begin, int64_t end, int) {
    // Scratch kept per thread across calls (a pool thread runs several chunks of every layer):
    // each is fully written before it is read below.
    thread_local std::vector<float> s, qh, acc, vf, kf;
    s.resize(static_cast<size_t>(n_kv));
    qh.resize(static_cast<size_t>(p.head_dim));
    acc.resize(static_cast<size_t>(p.head_dim_v) * 8);  // [8 lanes][head_dim_v]
    vf.resize(static_cast<size_t>(p.head_dim_v));
    kf.resize(static_cast<size_t>(p.head_dim));
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
        // K·Q in llama.cpp's order: an F32 cache goes through ggml_vec_dot_f32 (the query is
        // a permuted, non-contiguous operand, so tinyBLAS is not used); an F16 cache converts
        // the query to F16 first, and tinyBLAS then takes the product.
        float dot;
        if (kv.f16) {
          const uint16_t* kr = static_cast<const uint16_t*>(kv.k) + i * k_stride +
                               static_cast<int64_t>(hk) * p.head_dim;
          // exact F16 -> F32, then tinyBLAS's lanes (reduce.h: dot_f32_tinyblas), SIMD
          kernels::f16_to_f32_row(kr, kf.data(), p.head_dim);
          dot = kernels::dot_f32_tinyblas(qh.data(), kf.data(), p.head_dim);
        } else {
          const float* kr = static_cast<const float*>(kv.k) + i * k_stride +
                            static_cast<int64_t>(hk) * p.head_dim;
          dot = kernels::dot_f32(qh.data(), kr, p.head_dim);  // = el::dot_f32_ggml, SIMD
        }
        float x = dot * p.scale;
        if (p.softcap > 0) x = el::softcap(x, p.softcap);
        s[i] = x;
      }
      softmax_keyed(s.data(), n_kv, key, p.sinks ? p.sinks[h] : -INFINITY);
      if (probs) {
        float* pr = probs + (static_cast<int64_t>(h) * n_tokens + t) * n_kv;
        for (int64_t i = 0; i < n_kv; ++i) pr[i] = s[i];
      }
      if (!out) continue;  // probabilities only (capture beside the tiled kernel)
      // probabilities · V in tinyBLAS order (llama.cpp stores V transposed, so this is a
      // dense product over the KV cells): lane (cell & 7) of each output accumulates with fused
      // multiply-adds; zero probabilities (masked cells) are exact no-ops and skipped.
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t i = 0; i < n_kv; ++i) {
        if (s[i] == 0.0f) continue;
        float* lane = acc.data() + (key(i) & 7) * p.head_dim_v;  // acc: [8 lanes][head_dim_v]
        if (kv.f16) {
          const float w = el::round_f16(s[i]);
          const uint16_t* vr = static_cast<const uint16_t*>(kv.v) + i * v_stride +
                               static_cast<int64_t>(hk) * p.head_dim_v;
          for (int d = 0; d < p.head_dim_v; ++d) vf[d] = el::f16_to_f32(vr[d]);
          kernels::axpy_fma(w, vf.data(), lane, p.head_dim_v);
        } else {
          const float* vr = static_cast<const float*>(kv.v) + i * v_stride +
                            static_cast<int64_t>(hk) * p.head_dim_v;
          kernels::axpy_fma(s[i], vr, lane, p.head_dim_v);
        }
      }
      float* o = out + t * o_stride + static_cast<int64_t>(h) * p.head_dim_v;
      for (int d = 0; d < p.head_dim_v; ++d) {
        float l[8];
        for (int ln = 0; ln < 8; ++ln) l[ln] = acc[ln * p.head_dim_v + d];
        o[d] = kernels::el::hsum8_tinyblas(l);
      }
    }
  };
  if (pool && pool->size() > 1 && n_jobs > 1)
    pool->parallel_for(n_jobs, job);
  else
    job(0, n_jobs, 0);
}

/// The cache in position order (key(i) = i): llama.cpp's own order.
template <typename Visible>
void attention_kernel(const float* q, int64_t n_tokens, const KvLayer& kv, int64_t n_kv,
                      const AttentionParams& p, float* out, float* probs, ThreadPool* pool,
                      const Visible& visible) {
  attention_kernel(q, n_tokens, kv, n_kv, p, out, probs, pool, visible,
                   [](int64_t i) { return i; });
}

}  // namespace moelab::ops::detail
