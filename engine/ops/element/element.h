// Element math of the transformer ops, shared by the CPU reference (engine/ops/ops.cpp) and the
// future CUDA backend: every function is inline, allocation-free, exception-free and marked
// MOELAB_HD (__host__ __device__ under nvcc).
//
// Sources: RMSNorm (Zhang & Sennrich 2019, arXiv:1910.07467); RoPE (Su et al. 2021,
// arXiv:2104.09864), with ggml's two pairings NORM = (2i, 2i+1) and NEOX = (i, i + n_rot/2);
// SiLU (Elfwing et al. 2017); GELU with the tanh approximation (Hendrycks & Gimpel 2016);
// logit soft-capping cap * tanh(x / cap) (Gemma 2 report, 2024). The binary16 conversions
// come from the kernels' element headers (engine/kernels/element/).
#pragma once

#include <math.h>
#include <stdint.h>

#include "kernels/element/fp16.h"  // f16_to_f32 / f32_to_f16 (IEEE binary16, round to nearest even)
#include "kernels/element/hd.h"    // MOELAB_HD
#include "kernels/element/reduce.h"  // expf_ggml, softmax_row, llama.cpp-order dot products

namespace moelab::ops::element {

using kernels::el::f16_to_f32;
using kernels::el::f32_to_f16;

// e^x (expf_ggml), the softmax (softmax_row) and the F32 dot products in llama.cpp's orders
// live in kernels/element/reduce.h, shared with the SIMD kernels.
using kernels::el::expf_ggml;
using kernels::el::softmax_row;

/// Rounds through binary16 and back.
MOELAB_HD inline float round_f16(float x) {
  return f16_to_f32(f32_to_f16(x));
}

// ---- activations -------------------------------------------------------------------------

MOELAB_HD inline float sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}
MOELAB_HD inline float silu(float x) {
  return x / (1.0f + expf(-x));
}

// silu_ggml and swiglu_row (llama.cpp's SwiGLU arithmetic) live in kernels/element/reduce.h,
// so the SIMD kernels (kernels::swiglu) share them.
using kernels::el::silu_ggml;
using kernels::el::swiglu_row;

/// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
MOELAB_HD inline float gelu_tanh(float x) {
  const float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * x * (1.0f + 0.044715f * x * x)));
}

/// GELU as ggml's CPU backend evaluates it (GGML_GELU_FP16): the input is rounded to binary16,
/// the tanh-approximate GELU of that value is rounded to binary16 (ggml's 64K-entry table), and
/// inputs outside (-10, 10) are clamped to 0 / x. Matching llama.cpp's logits needs this.
/// The table entries are 0.5 x (1 + tanhf(sqrt(2/pi) x (1 + 0.044715 x x))) with the innermost
/// 1 + (0.044715 x) x fused into one multiply-add, as ggml's compiled table initialisation
/// computes it (found bit for bit against llama.cpp: an unfused entry is one binary16 step off
/// for some inputs, e.g. -1.9990234, which moved gemma2-swa's logits by ~1e-3).
MOELAB_HD inline float gelu_ggml(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  const float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  const float v = round_f16(x);
  const float inner = fmaf(0.044715f * v, v, 1.0f);
  return round_f16(0.5f * v * (1.0f + tanhf(kSqrt2OverPi * v * inner)));
}

/// gpt-oss's clamped SwiGLU (OpenAI gpt-oss model card 2025; ggml's swiglu_oai): with
/// g = min(gate, limit) and u = clamp(up, -limit, limit), g * sigmoid(alpha g) * (u + 1),
/// evaluated as ggml's CPU kernel: g / (1 + expf(alpha * -g)) * (u + 1). gpt-oss: alpha 1.702,
/// limit 7.
MOELAB_HD inline float swiglu_oai(float gate, float up, float alpha, float limit) {
  const float g = gate < limit ? gate : limit;
  const float u = up < -limit ? -limit : (up > limit ? limit : up);
  const float glu = g / (1.0f + expf(alpha * (-g)));
  return glu * (u + 1.0f);
}
constexpr float kSwigluOaiAlpha = 1.702f;
constexpr float kSwigluOaiLimit = 7.0f;

/// Logit soft-capping: cap * tanh(x / cap) (cap > 0), evaluated as llama.cpp's graph does it:
/// x * (1/cap) with 1/cap rounded to float, tanhf, then * cap (three roundings).
MOELAB_HD inline float softcap(float x, float cap) {
  const float inv = 1.0f / cap;
  return tanhf(x * inv) * cap;
}

// ---- RMSNorm -----------------------------------------------------------------------------

/// y[i] = x[i] / sqrt(mean(x^2) + eps) * (w ? w[i] : 1). Sum of squares in double, as ggml.
MOELAB_HD inline void rms_norm_row(const float* x, const float* w, float* y, int n, float eps) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / n);
  const float scale = 1.0f / sqrtf(mean + eps);
  if (w) {
    for (int i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
  } else {
    for (int i = 0; i < n; ++i) y[i] = x[i] * scale;
  }
}

// ---- softmax -----------------------------------------------------------------------------

// ---- RoPE --------------------------------------------------------------------------------

enum RopeType : int { kRopeNorm = 0, kRopeNeox = 2 };  // ggml's GGML_ROPE_TYPE_* values

/// YaRN's correction dimension for a rotation count beta (Peng et al. 2023, "YaRN: Efficient
/// Context Window Extension of Large Language Models", arXiv:2309.00071, eq. 17 solved for the
/// dimension): the rotary dimension whose wavelength fits `beta` times into the original
/// context, n_rot * ln(n_ctx_orig / (2 pi beta)) / (2 ln base). Float arithmetic as ggml's
/// ggml_rope_yarn_corr_dim.
MOELAB_HD inline float rope_yarn_corr_dim(int n_rot, int n_ctx_orig, float beta, float freq_base) {
  const float kPi = 3.14159265358979323846f;
  return static_cast<float>(n_rot) * logf(static_cast<float>(n_ctx_orig) / (beta * 2.0f * kPi)) /
         (2.0f * logf(freq_base));
}

/// The YaRN ramp's ends over the rotated pairs: low = max(0, floor(corr_dim(beta_fast))),
/// high = min(n_rot - 1, ceil(corr_dim(beta_slow))) (ggml_rope_yarn_corr_dims).
MOELAB_HD inline void rope_yarn_corr_dims(int n_rot, int n_ctx_orig, float freq_base,
                                          float beta_fast, float beta_slow, float* low,
                                          float* high) {
  const float start = floorf(rope_yarn_corr_dim(n_rot, n_ctx_orig, beta_fast, freq_base));
  const float end = ceilf(rope_yarn_corr_dim(n_rot, n_ctx_orig, beta_slow, freq_base));
  *low = start > 0.0f ? start : 0.0f;
  *high = end < static_cast<float>(n_rot - 1) ? end : static_cast<float>(n_rot - 1);
}

/// YaRN's extrapolation share of rotated pair i: 1 - clamp((i - low) / max(0.001, high - low),
/// 0, 1) (1: keep the unscaled frequency, 0: fully interpolated; ggml's rope_yarn_ramp).
MOELAB_HD inline float rope_yarn_ramp(float low, float high, int i) {
  const float d = high - low;
  const float y = (static_cast<float>(i) - low) / (d > 0.001f ? d : 0.001f);
  const float c = y < 0.0f ? 0.0f : (y > 1.0f ? 1.0f : y);
  return 1.0f - c;
}

/// YaRN settings of one RoPE (ops::RopeParams; all zero/one = plain RoPE).
struct RopeYarn {
  float ext_factor = 0;  // 0: no YaRN ramp (theta = freq_scale * theta_ext); 1: YaRN
  float mscale = 1;      // magnitude m multiplied into cos and sin (YaRN's attention factor)
  float corr_low = 0, corr_high = 0;  // rope_yarn_corr_dims
};

/// Rotates the first n_rot dimensions of one head vector x[head_dim] in place for position pos.
/// theta_ext_i = pos * base^(-2i/n_rot), i in [0, n_rot/2), computed iteratively in float like
/// ggml; theta_i = freq_scale * theta_ext_i, or with YaRN (y.ext_factor != 0, arXiv:2309.00071)
/// theta_int (1 - mix) + theta_ext mix with mix = rope_yarn_ramp(low, high, i) * ext_factor
/// (the first product fused, as ggml's compiled rope_yarn); cos and sin are multiplied by
/// y.mscale (exact no-op for 1). Each rotated value is one fused multiply-add over one rounded
/// product, as ggml's CPU build computes it. NORM rotates pairs (2i, 2i+1); NEOX rotates
/// (i, i + n_rot/2). Dimensions n_rot .. head_dim-1 pass through (partial rotary embedding).
MOELAB_HD inline void rope_head(float* x, int n_rot, float pos, float freq_base, float freq_scale,
                                int rope_type, const RopeYarn& y = RopeYarn()) {
  const float theta_scale = powf(freq_base, -2.0f / static_cast<float>(n_rot));
  float theta = pos;
  const int half = n_rot / 2;
  for (int i = 0; i < half; ++i) {
    float t = theta * freq_scale;
    if (y.ext_factor != 0.0f) {
      const float mix = rope_yarn_ramp(y.corr_low, y.corr_high, i) * y.ext_factor;
      t = fmaf(t, 1.0f - mix, theta * mix);
    }
    const float c = cosf(t) * y.mscale, s = sinf(t) * y.mscale;
    const int a = rope_type == kRopeNeox ? i : 2 * i;
    const int b = rope_type == kRopeNeox ? i + half : 2 * i + 1;
    const float x0 = x[a], x1 = x[b];
    // One product fused, as ggml's compiled rotation (x0 c - x1 s, x0 s + x1 c contracted).
    x[a] = fmaf(x0, c, -(x1 * s));
    x[b] = fmaf(x0, s, x1 * c);
    theta *= theta_scale;
  }
}

// ---- MoE routing -------------------------------------------------------------------------

/// Selects the k largest of p[n] in descending order (exact ties: the lower index first) into
/// ids[k]. O(n k), no allocation. k <= n.
MOELAB_HD inline void top_k(const float* p, int n, int k, int32_t* ids) {
  for (int j = 0; j < k; ++j) {
    int best = -1;
    for (int i = 0; i < n; ++i) {
      bool taken = false;
      for (int q = 0; q < j; ++q) taken = taken || ids[q] == i;
      if (taken) continue;
      if (best < 0 || p[i] > p[best]) best = i;
    }
    ids[j] = best;
  }
}

/// MoE routing of one token (Shazeer et al. 2017; Mixtral renormalises): probs = softmax(logits)
/// over n experts; ids = top_k(probs) (ties: lower id); weights[j] = probs[ids[j]]; applied =
/// weights / sum(weights) when renormalise, else weights; with unit, 1 for every selected expert
/// (unit gating of training-free MoE conversions, CMoE arXiv:2502.04416). Shared by
/// ops::route_top_k and the CUDA routing kernel. logits, probs F32 [n]; ids int32 [k]; weights,
/// applied F32 [k].
MOELAB_HD inline void route_token(const float* logits, int n, int k, bool renormalise, float* probs,
                                  int32_t* ids, float* weights, float* applied, bool unit = false) {
  for (int e = 0; e < n; ++e) probs[e] = logits[e];
  softmax_row(probs, n);
  top_k(probs, n, k, ids);
  float sum = 0;
  for (int j = 0; j < k; ++j) {
    weights[j] = probs[ids[j]];
    sum += weights[j];
  }
  for (int j = 0; j < k; ++j)
    applied[j] = unit ? 1.0f : renormalise ? weights[j] / sum : weights[j];
}

/// How a router turns logits into the weights applied to its experts (route_token_gated).
struct RouteSpec {
  /// false: softmax over all experts (probabilities); true: sigmoid of each logit, scores in
  /// (0, 1) that need not sum to 1 (DeepSeek-V3, arXiv:2412.19437; GLM-4.5, arXiv:2508.06471).
  bool sigmoid = false;
  bool renormalise = false;  // divide the k selected scores by their sum
  bool unit = false;         // weight 1 for each selected expert
  float scale = 0;           // then multiply by this (routed scaling factor; 0 = none)
  /// Softmax over the selected (gpt-oss; llama.cpp's SOFTMAX_WEIGHT gating): probs are the
  /// logits themselves (scores, not probabilities; a router bias is added to the logits
  /// before), top-k on them, weights = the k selected logits, applied = softmax(weights)
  /// (then renormalise / scale as above). Overrides sigmoid.
  bool softmax_selected = false;
  /// Group-limited routing (DeepSeek-V3, arXiv:2412.19437, "node-limited routing"): the experts
  /// form n_group equal groups of consecutive ids; only the n_group_used groups with the largest
  /// group scores (sum of the 2 largest selection scores in the group) may be chosen. n_group
  /// <= 1: no limit. At most kMaxExpertGroups groups.
  int n_group = 0;
  int n_group_used = 0;
};

constexpr int kMaxExpertGroups = 64;

/// The group limit of route_token_gated: writes the n_group_used kept groups (descending group
/// score, ties: lower group) into groups, from the selection scores sel[n].
MOELAB_HD inline void top_groups(const float* sel, int n, int n_group, int n_group_used,
                                 int32_t* groups) {
  float gs[kMaxExpertGroups];
  const int per = n / n_group;
  for (int g = 0; g < n_group; ++g) {
    // llama.cpp 0c1e570 build_moe_ffn: sum of the top-2 scores of each group (top-1 when a
    // group has a single expert).
    int32_t best[2] = {-1, -1};
    const int m = per < 2 ? per : 2;
    top_k(sel + g * per, per, m, best);
    float sum = 0;
    for (int j = 0; j < m; ++j) sum += sel[g * per + best[j]];
    gs[g] = sum;
  }
  top_k(gs, n_group, n_group_used, groups);
}

/// MoE routing of one token with a gating function, an optional selection-only bias and a
/// routed scale (llama.cpp 0c1e570's build_moe_ffn, fixtures README "Turn-2 architectures"):
/// probs = softmax(logits) or sigmoid(logits) [n]; selection = probs + sel_bias [n] (only when
/// sel_bias is given; it decides the choice, never the weight: DeepSeek-V3's aux-loss-free
/// balancing bias); ids = top_k(selection) (ties: lower id); weights[j] = probs[ids[j]];
/// applied = weights (/ their sum when renormalise) (x scale). With a group limit (r.n_group > 1,
/// n divisible by it, k <= n_group_used * n / n_group) top_k runs over the kept groups' experts
/// only, and groups int32 [n_group_used] (when given) receives the kept groups (top_groups).
/// With sigmoid false, no bias, no groups and scale 0 it is route_token, operation for operation.
MOELAB_HD inline void route_token_gated(const float* logits, int n, int k, const RouteSpec& r,
                                        const float* sel_bias, float* probs, float* selection,
                                        int32_t* ids, float* weights, float* applied,
                                        int32_t* groups = nullptr) {
  for (int e = 0; e < n; ++e) probs[e] = logits[e];
  if (r.softmax_selected) {
    // the logits are the scores
  } else if (r.sigmoid) {
    for (int e = 0; e < n; ++e) probs[e] = 1.0f / (1.0f + expf(-probs[e]));  // ggml_vec_sigmoid
  } else {
    softmax_row(probs, n);
  }
  const float* sel = probs;
  if (sel_bias) {
    for (int e = 0; e < n; ++e) selection[e] = probs[e] + sel_bias[e];
    sel = selection;
  }
  if (r.n_group > 1) {
    int32_t kept[kMaxExpertGroups];
    top_groups(sel, n, r.n_group, r.n_group_used, kept);
    if (groups)
      for (int g = 0; g < r.n_group_used; ++g) groups[g] = kept[g];
    // top_k over the experts of the kept groups only (the others are -inf in llama.cpp).
    const int per = n / r.n_group;
    for (int j = 0; j < k; ++j) {
      int best = -1;
      for (int i = 0; i < n; ++i) {
        bool allowed = false;
        for (int g = 0; g < r.n_group_used; ++g) allowed = allowed || kept[g] == i / per;
        if (!allowed) continue;
        bool taken = false;
        for (int q = 0; q < j; ++q) taken = taken || ids[q] == i;
        if (taken) continue;
        if (best < 0 || sel[i] > sel[best]) best = i;
      }
      ids[j] = best;
    }
  } else {
    top_k(sel, n, k, ids);
  }
  float sum = 0;
  for (int j = 0; j < k; ++j) {
    weights[j] = probs[ids[j]];
    sum += weights[j];
  }
  if (r.softmax_selected) {
    for (int j = 0; j < k; ++j) applied[j] = weights[j];
    softmax_row(applied, k);
    sum = 0;
    for (int j = 0; j < k; ++j) sum += applied[j];
    for (int j = 0; j < k; ++j) {
      if (r.unit)
        applied[j] = 1.0f;
      else if (r.renormalise)
        applied[j] = applied[j] / sum;
      if (r.scale > 0) applied[j] *= r.scale;
    }
    return;
  }
  for (int j = 0; j < k; ++j) {
    applied[j] = r.unit ? 1.0f : r.renormalise ? weights[j] / sum : weights[j];
    if (r.scale > 0) applied[j] *= r.scale;
  }
}

// ---- attention masks -----------------------------------------------------------------------

/// Causal, optionally sliding-window visibility (Mistral 7B, arXiv:2310.06825): a query at
/// pos_q sees a key at pos_k when pos_k <= pos_q and, for window > 0, pos_q - pos_k < window.
/// Same rule as ops::key_visible.
MOELAB_HD inline bool key_visible(int64_t pos_q, int64_t pos_k, uint32_t window) {
  return pos_k <= pos_q && (window == 0 || pos_q - pos_k < static_cast<int64_t>(window));
}

}  // namespace moelab::ops::element
