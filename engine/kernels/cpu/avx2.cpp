// AVX2 + FMA + F16C kernels. Quantized dot products work in int8/int16/int32 like the scalar
// reference: the 32-element formats accumulate d_w * d_x * sum(q_w q_x) in eight float lanes
// (differs from the scalar order by float rounding only); the K-quants compute the same two
// integers per super-block as the reference and combine them with the same float expression,
// so their results equal the scalar ones bit for bit. Dequantization is the element code
// compiled for AVX2 (no FMA contraction), hence exactly equal to the scalar decoding.
#define MOELAB_EL_ABI avx2
#include <cmath>
#include "kernels/cpu/impl.h"
#include "kernels/cpu/x86_common.h"
#include "kernels/element/blocks.h"
#include "kernels/element/reduce.h"
#include "moelab/gguf/types.h"

namespace moelab::kernels::cpu {
namespace {

using gguf::TensorType;
using namespace el;

// ggml_vec_dot_f32's order (kernels/element/reduce.h): 4 accumulators over blocks of 32,
// (acc0+acc2) + (acc1+acc3), two horizontal adds, then the tail one rounded product at a time.
float dot_f32(const void* wp, const void* xp, int64_t n) {
  const float* a = static_cast<const float*>(wp);
  const float* b = static_cast<const float*>(xp);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  const int64_t np = n & ~static_cast<int64_t>(31);
  for (int64_t i = 0; i < np; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  const __m256 r = _mm256_add_ps(_mm256_add_ps(s0, s2), _mm256_add_ps(s1, s3));
  const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
  const __m128 t1 = _mm_hadd_ps(t0, t0);
  float s = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
  for (int64_t i = np; i < n; ++i) {
    const float p = a[i] * b[i];
    s = s + p;
  }
  return s;
}

void swiglu(float* gate, const float* up, int64_t n) {
  el::swiglu_row(gate, up, n);
}
void exp_shifted(const float* x, float max, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] == -INFINITY ? 0.0f : el::expf_ggml(x[i] - max);
}
void axpy_fma(float w, const float* v, float* acc, int64_t n) {
  const __m256 wv = _mm256_set1_ps(w);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(acc + i,
                     _mm256_fmadd_ps(wv, _mm256_loadu_ps(v + i), _mm256_loadu_ps(acc + i)));
  for (; i < n; ++i) acc[i] = std::fma(w, v[i], acc[i]);
}

// llamafile tinyBLAS's order: one 8-lane accumulator, hsum_ps256 ((l0+l4)+(l2+l6) + ...).
float dot_f32_tinyblas(const void* wp, const void* xp, int64_t n) {
  const float* a = static_cast<const float*>(wp);
  const float* b = static_cast<const float*>(xp);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  if (i < n) {
    alignas(32) float ta[8] = {}, tb[8] = {};
    for (int64_t k = i; k < n; ++k) ta[k - i] = a[k], tb[k - i] = b[k];
    acc = _mm256_fmadd_ps(_mm256_load_ps(ta), _mm256_load_ps(tb), acc);
  }
  return hsum_ps256(acc);
}

inline __m256 load_f16x8(const uint16_t* p) {
  return _mm256_cvtph_ps(loadu128(p));
}
inline __m256 load_bf16x8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadu128(p)), 16));
}

template <__m256 (*Load)(const uint16_t*), float (*Conv)(uint16_t)>
float dot_half(const void* wp, const void* xp, int64_t n) {
  const uint16_t* a = static_cast<const uint16_t*>(wp);
  const uint16_t* b = static_cast<const uint16_t*>(xp);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(Load(a + i), Load(b + i), s0);
    s1 = _mm256_fmadd_ps(Load(a + i + 8), Load(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(Load(a + i + 16), Load(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(Load(a + i + 24), Load(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(Load(a + i), Load(b + i), s0);
  float s = hsum_ps256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) s += Conv(a[i]) * Conv(b[i]);
  return s;
}

// ---- K-quants: exact integer sums, then el::k_combine ----------------------------------------
float dot_q2_k(const void* wp, const void* xp, int64_t n) {
  const auto* w = static_cast<const BlockQ2_K*>(wp);
  const auto* x = static_cast<const BlockQ8_K*>(xp);
  const __m256i m3 = _mm256_set1_epi8(3);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int summ = 0;
    for (int j = 0; j < 16; ++j) summ += (w[i].scales[j] >> 4) * x[i].bsums[j];
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i q = loadu256(w[i].qs + 32 * h);
      for (int p = 0; p < 4; ++p) {
        const __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * p), m3);
        const __m256i pr = _mm256_maddubs_epi16(v, loadu256(x[i].qs + 128 * h + 32 * p));
        const uint8_t* sc = w[i].scales + 8 * h + 2 * p;
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pr, scales_8_8(sc[0] & 15, sc[1] & 15)));
      }
    }
    s += k_combine(h2f(w[i].d) * x[i].d, h2f(w[i].dmin) * x[i].d, hsum_i32_256(acc), summ);
  }
  return s;
}
float dot_q3_k(const void* wp, const void* xp, int64_t n) {
  const auto* w = static_cast<const BlockQ3_K*>(wp);
  const auto* x = static_cast<const BlockQ8_K*>(xp);
  const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4), zero = _mm256_setzero_si256();
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sc[16];
    for (int j = 0; j < 16; ++j) sc[j] = q3k_scale(j, w[i].scales);
    const __m256i hm = loadu256(w[i].hmask);
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i q = loadu256(w[i].qs + 32 * h);
      for (int p = 0; p < 4; ++p) {
        const __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * p), m3);
        const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << (4 * h + p)));
        const __m256i minus4 =
            _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), zero), four);
        const __m256i y = loadu256(x[i].qs + 128 * h + 32 * p);
        const __m256i pr =
            _mm256_sub_epi16(_mm256_maddubs_epi16(v, y), _mm256_maddubs_epi16(minus4, y));
        acc = _mm256_add_epi32(
            acc, _mm256_madd_epi16(pr, scales_8_8(sc[8 * h + 2 * p], sc[8 * h + 2 * p + 1])));
      }
    }
    s += k_combine(h2f(w[i].d) * x[i].d, 0.0f, hsum_i32_256(acc), 0);
  }
  return s;
}
template <bool kFifthBit, class B>
float dot_q45_k(const void* wp, const void* xp, int64_t n) {
  const auto* w = static_cast<const B*>(wp);
  const auto* x = static_cast<const BlockQ8_K*>(xp);
  const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    uint8_t sc[8], mn[8];
    int summ = 0;
    for (int j = 0; j < 8; ++j) {
      k4_scale_min(j, w[i].scales, &sc[j], &mn[j]);
      summ += mn[j] * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
    }
    __m256i acc = _mm256_setzero_si256();
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kFifthBit) qh = loadu256(w[i].qh);
    for (int c = 0; c < 4; ++c) {
      const __m256i q = loadu256(w[i].qs + 32 * c);
      __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      if constexpr (kFifthBit) {
        lo = _mm256_or_si256(
            lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4));
        hi = _mm256_or_si256(
            hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4));
      }
      const __m256i p0 = _mm256_maddubs_epi16(lo, loadu256(x[i].qs + 64 * c));
      const __m256i p1 = _mm256_maddubs_epi16(hi, loadu256(x[i].qs + 64 * c + 32));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * c])));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * c + 1])));
    }
    s += k_combine(h2f(w[i].d) * x[i].d, h2f(w[i].dmin) * x[i].d, hsum_i32_256(acc), summ);
  }
  return s;
}
float dot_q6_k(const void* wp, const void* xp, int64_t n) {
  const auto* w = static_cast<const BlockQ6_K*>(wp);
  const auto* x = static_cast<const BlockQ8_K*>(xp);
  const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int bias = 0;  // quants are stored +32: subtract 32 * sum(scale * y) via the Q8_K bsums
    for (int j = 0; j < 16; ++j) bias += w[i].scales[j] * x[i].bsums[j];
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = loadu256(w[i].ql + 64 * h), ql1 = loadu256(w[i].ql + 64 * h + 32);
      const __m256i qh = loadu256(w[i].qh + 32 * h);
      for (int k = 0; k < 4; ++k) {
        const __m256i l = k == 0   ? _mm256_and_si256(ql0, m4)
                          : k == 1 ? _mm256_and_si256(ql1, m4)
                          : k == 2 ? _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4)
                                   : _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4);
        const __m256i hb = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m3), 4);
        const __m256i q = _mm256_or_si256(l, hb);
        const __m256i pr = _mm256_maddubs_epi16(q, loadu256(x[i].qs + 128 * h + 32 * k));
        const int8_t* sc = w[i].scales + 8 * h + 2 * k;
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pr, scales_8_8(sc[0], sc[1])));
      }
    }
    s += k_combine(h2f(w[i].d) * x[i].d, 0.0f, hsum_i32_256(acc) - 32 * bias, 0);
  }
  return s;
}

void dq_f16(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_f16x8(s + i));
  for (; i < n; ++i) dst[i] = f16_to_f32(s[i]);
}
void dq_bf16(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16x8(s + i));
  for (; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
}
template <class WB, int kBlock>
void dq_blocks(const void* src, float* dst, int64_t n) {
  const WB* b = static_cast<const WB*>(src);
  for (int64_t i = 0; i < n / kBlock; ++i) dequant(b[i], dst + i * kBlock);
}

// ---- Repacked Q4_0 / Q8_0 (impl.h: PackedFn), AVX2
// ----------------------------------------------- Lane r of a 256-bit register is row r of the
// group; the even and odd block of a pair have their own accumulator (the AVX-512 kernel's lower
// and upper halves), so the results are its bits. Q4_0: unsigned nibbles (maddubs cannot saturate:
// 2 * 15 * 127 < 32768) plus the offset term; Q8_0: signed quants with the sign moved onto the
// activation (dot_i8_s), no offset.
template <bool kQ8, int G, bool kPf>
void packed_n(const uint8_t* w, uint64_t gbytes, const uint8_t* x, int64_t n_pairs, float* out) {
  constexpr int kPair = kQ8 ? kPackedPairBytesQ8_0 : kPackedPairBytesQ4_0;
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  __m256 acc[G][2];
  for (int g = 0; g < G; ++g) acc[g][0] = acc[g][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < n_pairs; ++p) {
    const uint8_t* xp = x + p * kPackedXPairBytes;
    for (int g = 0; g < G; ++g) {
      const uint8_t* wp = w + g * gbytes + p * kPair;
      // the same pair G groups on (the next call's groups), into L2 (see the AVX-512 kernel)
      if constexpr (kPf)
        for (int c = 0; c < kPair; c += 64)
          _mm_prefetch(reinterpret_cast<const char*>(wp) + G * gbytes + c, _MM_HINT_T1);
      for (int h = 0; h < 2; ++h) {
        const __m256 d =
            _mm256_mul_ps(_mm256_cvtph_ps(loadu128(wp + 16 * h)),
                          _mm256_loadu_ps(reinterpret_cast<const float*>(xp + 512 + 32 * h)));
        __m256i a, b = _mm256_setzero_si256();
        if constexpr (kQ8) {
          a = _mm256_setzero_si256();
          for (int s = 0; s < 8; s += 2) {
            a = _mm256_add_epi32(
                a, dot_i8_s(loadu256(wp + 32 + 64 * s + 32 * h), loadu256(xp + 64 * s + 32 * h)));
            b = _mm256_add_epi32(b, dot_i8_s(loadu256(wp + 96 + 64 * s + 32 * h),
                                             loadu256(xp + 64 * s + 64 + 32 * h)));
          }
        } else {
          a = loadu256(xp + 576 + 32 * h);
          for (int k = 0; k < 4; ++k) {
            const __m256i q = loadu256(wp + 32 + 64 * k + 32 * h);
            a = _mm256_add_epi32(
                a, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(q, m4),
                                                          loadu256(xp + 64 * k + 32 * h)),
                                     ones));
            b = _mm256_add_epi32(
                b, _mm256_madd_epi16(
                       _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                            loadu256(xp + 256 + 64 * k + 32 * h)),
                       ones));
          }
        }
        acc[g][h] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_add_epi32(a, b)), acc[g][h]);
      }
    }
  }
  for (int g = 0; g < G; ++g) _mm256_storeu_ps(out + 8 * g, _mm256_add_ps(acc[g][0], acc[g][1]));
}
template <bool kQ8, bool kPf>
void packed_rows(const uint8_t* w, uint64_t gbytes, int n_groups, const uint8_t* x, int64_t n_pairs,
                 float* out) {
  for (; n_groups >= 2; n_groups -= 2, w += 2 * gbytes, out += 16)
    packed_n<kQ8, 2, kPf>(w, gbytes, x, n_pairs, out);
  if (n_groups == 1) packed_n<kQ8, 1, kPf>(w, gbytes, x, n_pairs, out);
}

}  // namespace

void fill_avx2(Table& t) {
  auto set = [&](TensorType type, DotFn dot, DequantFn dq) {
    t.dot[static_cast<int>(type)] = dot;
    if (dq) t.dequant[static_cast<int>(type)] = dq;
  };
  set(TensorType::F32, dot_f32, nullptr);
  t.dot_f32_tinyblas = dot_f32_tinyblas;
  t.axpy_fma = axpy_fma;
  t.exp_shifted = exp_shifted;
  t.swiglu = swiglu;
  set(TensorType::F16, dot_half<load_f16x8, f16_to_f32>, dq_f16);
  set(TensorType::BF16, dot_half<load_bf16x8, bf16_to_f32>, dq_bf16);
  set(TensorType::Q8_0, dot32<DecQ8_0, IdotMaddubs>, dq_blocks<BlockQ8_0, QK>);
  set(TensorType::Q4_0, dot32<DecQ4_0, IdotMaddubs>, dq_blocks<BlockQ4_0, QK>);
  set(TensorType::MXFP4, dot32<DecMXFP4, IdotMaddubs>, dq_mxfp4);
  set(TensorType::Q4_1, dot32<DecQ4_1, IdotMaddubs>, dq_blocks<BlockQ4_1, QK>);
  set(TensorType::Q5_0, dot32<DecQ5_0, IdotMaddubs>, dq_blocks<BlockQ5_0, QK>);
  set(TensorType::Q5_1, dot32<DecQ5_1, IdotMaddubs>, dq_blocks<BlockQ5_1, QK>);
  set(TensorType::Q2_K, dot_q2_k, dq_blocks<BlockQ2_K, QK_K>);
  set(TensorType::Q3_K, dot_q3_k, dq_blocks<BlockQ3_K, QK_K>);
  set(TensorType::Q4_K, dot_q45_k<false, BlockQ4_K>, dq_blocks<BlockQ4_K, QK_K>);
  set(TensorType::Q5_K, dot_q45_k<true, BlockQ5_K>, dq_blocks<BlockQ5_K, QK_K>);
  set(TensorType::Q6_K, dot_q6_k, dq_blocks<BlockQ6_K, QK_K>);
  t.dot_tok[static_cast<int>(TensorType::Q8_0)] = dot32_tok<DecQ8_0, IdotMaddubs>;
  t.dot_tok[static_cast<int>(TensorType::Q4_0)] = dot32_tok<DecQ4_0, IdotMaddubs>;
  t.dot_tok[static_cast<int>(TensorType::MXFP4)] = dot32_tok<DecMXFP4, IdotMaddubs>;
  t.dot_tok[static_cast<int>(TensorType::Q5_0)] = dot32_tok<DecQ5_0, IdotMaddubs>;
  t.dot_tok[static_cast<int>(TensorType::Q4_1)] = dot32_tok<DecQ4_1, IdotMaddubs>;
  t.dot_tok[static_cast<int>(TensorType::Q5_1)] = dot32_tok<DecQ5_1, IdotMaddubs>;
  t.dot_rows[static_cast<int>(TensorType::Q8_0)] = dot32_rows<DecQ8_0, IdotMaddubs>;
  t.dot_rows[static_cast<int>(TensorType::Q4_0)] = dot32_rows<DecQ4_0, IdotMaddubs>;
  t.dot_rows[static_cast<int>(TensorType::MXFP4)] = dot32_rows<DecMXFP4, IdotMaddubs>;
  t.dot_rows[static_cast<int>(TensorType::Q5_0)] = dot32_rows<DecQ5_0, IdotMaddubs>;
  t.dot_rows[static_cast<int>(TensorType::Q4_1)] = dot32_rows<DecQ4_1, IdotMaddubs>;
  t.dot_rows[static_cast<int>(TensorType::Q5_1)] = dot32_rows<DecQ5_1, IdotMaddubs>;
  t.dot_tok[static_cast<int>(TensorType::Q4_K)] = dot_q4_k_tok;
  t.dot_tok[static_cast<int>(TensorType::Q6_K)] = dot_q6_k_tok;
  t.packed[static_cast<int>(TensorType::Q4_0)] = packed_rows<false, true>;
  t.packed_cached[static_cast<int>(TensorType::Q4_0)] = packed_rows<false, false>;
  t.packed[static_cast<int>(TensorType::Q8_0)] = packed_rows<true, true>;
  t.packed_cached[static_cast<int>(TensorType::Q8_0)] = packed_rows<true, false>;
  t.quantize_act[static_cast<int>(TensorType::Q8_0)] = quantize_act_row<BlockQ8_0>;
  t.quantize_act[static_cast<int>(TensorType::Q8_1)] = quantize_act_row<BlockQ8_1>;
}

}  // namespace moelab::kernels::cpu
