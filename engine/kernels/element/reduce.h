// Reductions in llama.cpp's summation orders: the F32 dot products of its CPU backend (ggml's
// vec_dot_f32 and llamafile's tinyBLAS, as built for an AVX2/FMA host - the build the fixtures
// come from), its vector exponential and its softmax. Float addition is not associative, so
// agreeing with llama.cpp to ~1e-6 rather than ~1e-4 on deep models (gemma2's 26 layers with a
// binary16-table GELU amplify every last-bit difference) needs the same order, not just the
// same formula. Every function here is the scalar form of a SIMD kernel whose lanes are
// independent: fused multiply-adds are fmaf, and the lane structure is spelled out, so the
// SIMD versions in engine/kernels/cpu/ and the CUDA backend give the same bits.
//
// Sources: ggml-cpu vec.cpp (ggml_vec_dot_f32, ggml_vec_soft_max_f32), vec.h (ggml_v_expf),
// llamafile sgemm.cpp (tinyBLAS: per-output vector accumulators, hsum) - read for the order of
// operations; the code here is our own.
#pragma once

#include <math.h>
#include <stdint.h>

#include "kernels/element/fp16.h"  // f32_bits / bits_f32
#include "kernels/element/hd.h"

namespace moelab::kernels::el {
inline namespace MOELAB_EL_ABI {

/// Reduction of 8 lane sums as llamafile's hsum(__m256): (l0+l4)+(l2+l6) + ((l1+l5)+(l3+l7)).
MOELAB_HD inline float hsum8_tinyblas(const float* l) {
  const float a0 = l[0] + l[4], a1 = l[1] + l[5], a2 = l[2] + l[6], a3 = l[3] + l[7];
  return (a0 + a2) + (a1 + a3);
}

/// Reduction of 8 lane sums as ggml's GGML_F32x8_REDUCE tail (two horizontal adds):
/// ((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7)).
MOELAB_HD inline float hsum8_ggml(const float* l) {
  const float a0 = l[0] + l[4], a1 = l[1] + l[5], a2 = l[2] + l[6], a3 = l[3] + l[7];
  return (a0 + a1) + (a2 + a3);
}

/// sum a[i] * b[i] in tinyBLAS order (llama.cpp's dense F32 and F16-weight products, and the
/// attention's probabilities · V, whenever n % 8 == 0): lane l accumulates the elements
/// l, l+8, l+16, ... with fused multiply-adds from 0, then hsum8_tinyblas. Elements past the
/// last whole block of 8 are summed as if padded with zeros (exact no-ops).
MOELAB_HD inline float dot_f32_tinyblas(const float* a, const float* b, int64_t n) {
  float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) l[i & 7] = fmaf(a[i], b[i], l[i & 7]);
  return hsum8_tinyblas(l);
}

/// sum a[i] * b[i] in the order of ggml_vec_dot_f32 (AVX2 build; llama.cpp's K·Q and F32
/// expert products): 4 x 8 lane accumulators over whole blocks of 32 with fused multiply-adds,
/// reduced as acc0+acc2, acc1+acc3, then +, then hsum8_ggml; the remaining n % 32 elements are
/// added one at a time as rounded products (sum += a*b, no fusion).
MOELAB_HD inline float dot_f32_ggml(const float* a, const float* b, int64_t n) {
  const int64_t np = n & ~static_cast<int64_t>(31);
  float acc[4][8] = {};
  for (int64_t i = 0; i < np; i += 32)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 8; ++l) acc[j][l] = fmaf(a[i + 8 * j + l], b[i + 8 * j + l], acc[j][l]);
  float r[8];
  for (int l = 0; l < 8; ++l) r[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  float s = hsum8_ggml(r);
  for (int64_t i = np; i < n; ++i) {
    const float p = a[i] * b[i];
    s = s + p;
  }
  return s;
}

/// e^x with the arithmetic of ggml's x86 vector exponential (ggml_v_expf): x = n ln2 + b with
/// n = round(x / ln2) (the 1.5 * 2^23 shift trick) and ln2 split in two constants, e^b - 1 by a
/// degree-5 minimax polynomial, then scaled by 2^n, with |n| > 126 split over two factors
/// (overflow to inf, underflow to 0). Accuracy ~1.5 ulp. The SIMD lanes are independent, so this
/// scalar form (every fused multiply-add an fmaf) gives the vector kernel's bits.
MOELAB_HD inline float expf_ggml(float x) {
  const float r = 0x1.8p23f;
  const float z = fmaf(x, 0x1.715476p+0f, r);  // x log2(e) + r: n sits in the low mantissa bits
  const float n = z - r;                       // round(x / ln 2)
  const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));  // x - n ln 2
  const uint32_t e = f32_bits(z) << 23;
  const float k = bits_f32(e + f32_bits(1.0f));  // 2^n
  const float u = b * b;
  const float j = fmaf(
      fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
      0x1.ffffecp-1f * b);  // e^b - 1
  const float an = fabsf(n);
  if (!(an > 126.0f)) return fmaf(j, k, k);
  const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
  const float s1 = bits_f32(g + 0x7f000000u);
  const float s2 = bits_f32(e - g);
  if (an > 192.0f) return s1 * s1;
  return fmaf(s2, j, s2) * s1;
}

/// Softmax of one row in place (-inf entries give 0; an all -inf row gives all 0) with
/// llama.cpp's CPU arithmetic (ggml_vec_soft_max_f32, AVX2 build): e = expf_ggml(x - max); the
/// sum taken per block of 8 in float as llamafile's hsum ((e0+e4)+(e2+e6) + (e1+e5)+(e3+e7))
/// and accumulated over blocks in double; a final partial block counts as padded with masked
/// entries (llama.cpp pads its KV cache, so its rows are whole blocks); then every e is
/// multiplied by (float)(1 / sum).
MOELAB_HD inline void softmax_row(float* x, int n) {
  float mx = -INFINITY;
  for (int i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  if (mx == -INFINITY) {
    for (int i = 0; i < n; ++i) x[i] = 0.0f;
    return;
  }
  double sum = 0.0;
  for (int i0 = 0; i0 < n; i0 += 8) {
    float v[8];
    for (int l = 0; l < 8; ++l) {
      const int i = i0 + l;
      v[l] = (i < n && x[i] != -INFINITY) ? expf_ggml(x[i] - mx) : 0.0f;
      if (i < n) x[i] = v[l];
    }
    sum += static_cast<double>(hsum8_tinyblas(v));
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

/// SiLU as ggml's AVX2 kernel evaluates it (ggml_v_silu): x / (1 + expf_ggml(-x)).
MOELAB_HD inline float silu_ggml(float x) {
  return x / (1.0f + expf_ggml(-x));
}

/// SwiGLU of one row in place, gate[i] = silu(gate[i]) * up[i], with llama.cpp's arithmetic
/// (ggml_vec_swiglu_f32, AVX2 build): whole blocks of 8 through silu_ggml, the last n % 8
/// elements through expf (ggml's scalar tail). gate, up: F32 [n].
MOELAB_HD inline void swiglu_row(float* gate, const float* up, int64_t n) {
  const int64_t nb = n & ~static_cast<int64_t>(7);
  for (int64_t i = 0; i < nb; ++i) gate[i] = silu_ggml(gate[i]) * up[i];
  for (int64_t i = nb; i < n; ++i) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

}  // namespace MOELAB_EL_ABI
}  // namespace moelab::kernels::el
