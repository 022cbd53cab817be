// CPU reference ops; see moelab/ops/ops.h. Compiled into moelab_engine from
// engine/models/CMakeLists.txt (engine/CMakeLists.txt picks up component folders by name).
#include "moelab/ops/ops.h"

#include <cmath>
#include <vector>

#include "ops/element/element.h"

namespace moelab::ops {

namespace el = element;

void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps) {
  for (int64_t r = 0; r < n_rows; ++r)
    el::rms_norm_row(x + r * n, w, y + r * n, static_cast<int>(n), eps);
}

void rope(float* x, int64_t n_tokens, int n_head, int head_dim, const int32_t* pos,
          const RopeParams& p) {
  const int type = p.type == RopeType::Neox ? el::kRopeNeox : el::kRopeNorm;
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int h = 0; h < n_head; ++h)
      el::rope_head(x + (t * n_head + h) * head_dim, p.n_rot, static_cast<float>(pos[t]),
                    p.freq_base, p.freq_scale, type);
}

void softmax(float* x, int64_t n_rows, int64_t n) {
  for (int64_t r = 0; r < n_rows; ++r) el::softmax_row(x + r * n, static_cast<int>(n));
}

void attention(const float* q, const int32_t* pos, int64_t n_tokens, const KvLayer& kv,
               int64_t n_kv, const AttentionParams& p, float* out, float* probs, ThreadPool* pool) {
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
        if (!key_visible(pos[t], i, p.window)) {
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

void route_top_k(const float* logits, int n_expert, int k, bool renormalise, float* probs,
                 int32_t* ids, float* weights, float* applied) {
  for (int e = 0; e < n_expert; ++e) probs[e] = logits[e];
  el::softmax_row(probs, n_expert);
  el::top_k(probs, n_expert, k, ids);
  float sum = 0;
  for (int j = 0; j < k; ++j) {
    weights[j] = probs[ids[j]];
    sum += weights[j];
  }
  for (int j = 0; j < k; ++j) applied[j] = renormalise ? weights[j] / sum : weights[j];
}

}  // namespace moelab::ops
