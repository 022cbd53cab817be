// CPU reference ops; see moelab/ops/ops.h. Compiled into moelab_engine from
// engine/models/CMakeLists.txt (engine/CMakeLists.txt picks up component folders by name).
#include "moelab/ops/ops.h"

#include <cmath>
#include <vector>

#include "ops/attention_kernel.h"
#include "ops/attention_tiled.h"
#include "ops/element/element.h"

namespace moelab::ops {

namespace el = element;

void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps) {
  for (int64_t r = 0; r < n_rows; ++r)
    el::rms_norm_row(x + r * n, w, y + r * n, static_cast<int>(n), eps);
}

void rope_yarn_corr_dims(const RopeParams& p, float* low, float* high) {
  *low = *high = 0;
  if (p.ext_factor != 0)
    el::rope_yarn_corr_dims(p.n_rot, p.n_ctx_orig, p.freq_base, p.beta_fast, p.beta_slow, low,
                            high);
}

void rope(float* x, int64_t n_tokens, int n_head, int head_dim, const int32_t* pos,
          const RopeParams& p) {
  const int type = p.type == RopeType::Neox ? el::kRopeNeox : el::kRopeNorm;
  el::RopeYarn y;
  y.ext_factor = p.ext_factor;
  y.mscale = p.attn_factor;
  rope_yarn_corr_dims(p, &y.corr_low, &y.corr_high);
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int h = 0; h < n_head; ++h)
      el::rope_head(x + (t * n_head + h) * head_dim, p.n_rot, static_cast<float>(pos[t]),
                    p.freq_base, p.freq_scale, type, y);
}

void softmax(float* x, int64_t n_rows, int64_t n) {
  for (int64_t r = 0; r < n_rows; ++r) el::softmax_row(x + r * n, static_cast<int>(n));
}

void attention(const float* q, const int32_t* pos, int64_t n_tokens, const KvLayer& kv,
               int64_t n_kv, const AttentionParams& p, float* out, float* probs, ThreadPool* pool) {
  // The tiled kernel forms no probability rows: capture (probs) gets them from the llama.cpp-order
  // kernel and the output from the tiled one (probes change no logit bit); MOELAB_EXACT_KERNELS=1
  // keeps the llama.cpp-order kernel for both.
  if (detail::use_tiled_attention(pos, n_tokens, p, kv)) {
    if (probs) {
      detail::attention_kernel(
          q, n_tokens, kv, n_kv, p, nullptr, probs, pool,
          [&](int64_t t, int64_t i) { return key_visible(pos[t], i, p.window); },
          [](int64_t i) { return i; });
    }
    detail::attention_tiled(q, pos, n_tokens, kv, n_kv, p, out, pool);
    return;
  }
  detail::attention_kernel(
      q, n_tokens, kv, n_kv, p, out, probs, pool,
      [&](int64_t t, int64_t i) { return key_visible(pos[t], i, p.window); },
      [](int64_t i) { return i; });
}

void route_top_k(const float* logits, int n_expert, int k, bool renormalise, float* probs,
                 int32_t* ids, float* weights, float* applied, bool unit_weights) {
  el::route_token(logits, n_expert, k, renormalise, probs, ids, weights, applied, unit_weights);
}

}  // namespace moelab::ops
