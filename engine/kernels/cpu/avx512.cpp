// AVX-512 (F, BW, VL, DQ; VNNI when CPUID has it) kernels. F32/F16/BF16 and the K-quants run
// on 512-bit registers (the K-quants keep the exact integer sums of the reference, so they equal
// the scalar results bit for bit). The 32-element formats use the shared 8-lane algorithm of
// x86_common.h (ggml's reduction order; VPDPBUSD for the integer part when available).
// Dequantization is the element code compiled for AVX-512 (no FMA contraction).
#define MOELAB_EL_ABI avx512
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
// GCC 12's own AVX-512 intrinsic headers trip -W(maybe-)uninitialized on their internal
// "undefined" operands (GCC bug 105593, fixed in GCC 13); nothing in this file is affected.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "kernels/cpu/impl.h"
#include "kernels/cpu/x86_common.h"
#include "kernels/element/blocks.h"
#include "moelab/gguf/types.h"

namespace moelab::kernels::cpu {
namespace {

using gguf::TensorType;
using namespace el;

inline __m512i loadu512(const void* p) {
  return _mm512_loadu_si512(p);
}
inline __m512i join(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

inline __m512 load_f16x16(const uint16_t* p) {
  return _mm512_cvtph_ps(loadu256(p));
}
inline __m512 load_bf16x16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(loadu256(p)), 16));
}
template <__m512 (*Load)(const uint16_t*), float (*Conv)(uint16_t)>
float dot_half(const void* wp, const void* xp, int64_t n) {
  const uint16_t* a = static_cast<const uint16_t*>(wp);
  const uint16_t* b = static_cast<const uint16_t*>(xp);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_fmadd_ps(Load(a + i), Load(b + i), s0);
    s1 = _mm512_fmadd_ps(Load(a + i + 16), Load(b + i + 16), s1);
    s2 = _mm512_fmadd_ps(Load(a + i + 32), Load(b + i + 32), s2);
    s3 = _mm512_fmadd_ps(Load(a + i + 48), Load(b + i + 48), s3);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(Load(a + i), Load(b + i), s0);
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  for (; i < n; ++i) s += Conv(a[i]) * Conv(b[i]);
  return s;
}

// VPDPBUSD (AVX512-VNNI on 256-bit registers): the int32 sums of dot_i8_s / dot_u8_s in one
// instruction (4 adjacent products per lane, the same grouping as maddubs + madd; no int16
// saturation can occur for these ranges either way, so the sums are identical).
struct IdotVnni {
  static constexpr bool kWideU8 = true;  // int32 accumulation: any u8 x s8 products are exact
  static __m256i uns_acc(__m256i acc, __m256i u, __m256i y) {
    return _mm256_dpbusd_epi32(acc, u, y);
  }
  static __m256i sym(__m256i q, __m256i y) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(q, q),
                               _mm256_sign_epi8(y, q));
  }
  static __m256i uns(__m256i q, __m256i y) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, y);
  }
};

// ---- K-quants ---------------------------------------------------------------------------------
inline __m512i scales_4x8(int a, int b, int c, int d) {
  return join(scales_8_8(a, b), scales_8_8(c, d));
}

float dot_q2_k(const void* wp, const void* xp, int64_t n) {
  const auto* w = static_cast<const BlockQ2_K*>(wp);
  const auto* x = static_cast<const BlockQ8_K*>(xp);
  const __m256i m3 = _mm256_set1_epi8(3);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int summ = 0;
    for (int j = 0; j < 16; ++j) summ += (w[i].scales[j] >> 4) * x[i].bsums[j];
    __m512i acc = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      const __m256i q = loadu256(w[i].qs + 32 * h);
      for (int p = 0; p < 4; p += 2) {
        const __m512i v = join(_mm256_and_si256(_mm256_srli_epi16(q, 2 * p), m3),
                               _mm256_and_si256(_mm256_srli_epi16(q, 2 * p + 2), m3));
        const __m512i pr = _mm512_maddubs_epi16(v, loadu512(x[i].qs + 128 * h + 32 * p));
        const uint8_t* sc = w[i].scales + 8 * h + 2 * p;
        acc = _mm512_add_epi32(
            acc, _mm512_madd_epi16(pr, scales_4x8(sc[0] & 15, sc[1] & 15, sc[2] & 15, sc[3] & 15)));
      }
    }
    s += k_combine(h2f(w[i].d) * x[i].d, h2f(w[i].dmin) * x[i].d, _mm512_reduce_add_epi32(acc),
                   summ);
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
    auto minus4 = [&](int bitno) {
      const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << bitno));
      return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), zero), four);
    };
    __m512i acc = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      const __m256i q = loadu256(w[i].qs + 32 * h);
      for (int p = 0; p < 4; p += 2) {
        const __m512i v = join(_mm256_and_si256(_mm256_srli_epi16(q, 2 * p), m3),
                               _mm256_and_si256(_mm256_srli_epi16(q, 2 * p + 2), m3));
        const __m512i m = join(minus4(4 * h + p), minus4(4 * h + p + 1));
        const __m512i y = loadu512(x[i].qs + 128 * h + 32 * p);
        const __m512i pr = _mm512_sub_epi16(_mm512_maddubs_epi16(v, y), _mm512_maddubs_epi16(m, y));
        const int* c = sc + 8 * h + 2 * p;
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(pr, scales_4x8(c[0], c[1], c[2], c[3])));
      }
    }
    s += k_combine(h2f(w[i].d) * x[i].d, 0.0f, _mm512_reduce_add_epi32(acc), 0);
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
    __m512i acc = _mm512_setzero_si512();
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
      const __m512i pr = _mm512_maddubs_epi16(join(lo, hi), loadu512(x[i].qs + 64 * c));
      const __m512i scv = join(_mm256_set1_epi16(sc[2 * c]), _mm256_set1_epi16(sc[2 * c + 1]));
      acc = _mm512_add_epi32(acc, _mm512_madd_epi16(pr, scv));
    }
    s += k_combine(h2f(w[i].d) * x[i].d, h2f(w[i].dmin) * x[i].d, _mm512_reduce_add_epi32(acc),
                   summ);
  }
  return s;
}
float dot_q6_k(const void* wp, const void* xp, int64_t n) {
  const auto* w = static_cast<const BlockQ6_K*>(wp);
  const auto* x = static_cast<const BlockQ8_K*>(xp);
  const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
  float s = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int bias = 0;
    for (int j = 0; j < 16; ++j) bias += w[i].scales[j] * x[i].bsums[j];
    __m512i acc = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = loadu256(w[i].ql + 64 * h), ql1 = loadu256(w[i].ql + 64 * h + 32);
      const __m256i qh = loadu256(w[i].qh + 32 * h);
      auto hb = [&](int k) {
        return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m3), 4);
      };
      const __m256i q0 = _mm256_or_si256(_mm256_and_si256(ql0, m4), hb(0));
      const __m256i q1 = _mm256_or_si256(_mm256_and_si256(ql1, m4), hb(1));
      const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), hb(2));
      const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), hb(3));
      const int8_t* sc = w[i].scales + 8 * h;
      const __m512i p01 = _mm512_maddubs_epi16(join(q0, q1), loadu512(x[i].qs + 128 * h));
      const __m512i p23 = _mm512_maddubs_epi16(join(q2, q3), loadu512(x[i].qs + 128 * h + 64));
      acc = _mm512_add_epi32(acc, _mm512_madd_epi16(p01, scales_4x8(sc[0], sc[1], sc[2], sc[3])));
      acc = _mm512_add_epi32(acc, _mm512_madd_epi16(p23, scales_4x8(sc[4], sc[5], sc[6], sc[7])));
    }
    s += k_combine(h2f(w[i].d) * x[i].d, 0.0f, _mm512_reduce_add_epi32(acc) - 32 * bias, 0);
  }
  return s;
}

void dq_f16(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load_f16x16(s + i));
  for (; i < n; ++i) dst[i] = f16_to_f32(s[i]);
}
void dq_bf16(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load_bf16x16(s + i));
  for (; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
}
template <class WB, int kBlock>
void dq_blocks(const void* src, float* dst, int64_t n) {
  const WB* b = static_cast<const WB*>(src);
  for (int64_t i = 0; i < n / kBlock; ++i) dequant(b[i], dst + i * kBlock);
}

// ---- Repacked Q4_0 / Q8_0 (impl.h: PackedFn), AVX512-VNNI --------------------------------------
// One 512-bit register holds 8 rows x 2 blocks (lanes h * 8 + r), so a block pair of a group is
// 4 (Q4_0) or 8 (Q8_0) VPDPBUSD on unsigned quants (+ offset) against the broadcast activation
// quants, one scale conversion and one FMA; G row groups share each activation load.
//
// Why repacking speeds up Q4_0 decode but not Q8_0 decode (issue #19): one decode token reads
// every weight byte once from DRAM, so a product's time is its bytes / bandwidth as long as the
// instructions per byte fit under that. Repacking removes instructions (one VPDPBUSD serves 8
// rows, the activation is broadcast once), not bytes: Q8_0 (544 bytes a pair of 8 rows, 8
// VPDPBUSD + 8 XOR) was already under the memory time with the plain 8-row kernel (dot_rows),
// while Q4_0 (288 bytes, with the nibble unpacking on top) was not. Measured in isolation
// (decode-shaped expert products streaming from DRAM, 1 thread, Zen 4) this kernel reads
// 23-25 GB/s for Q4_0 and Q8_0 alike, near the one-thread streaming bandwidth; the rest of the
// gap to the roofline in a decode token is outside the products. A compact activation (192
// bytes a pair, broadcast by VPERMD here) was tried: no faster (the 640-byte form's extra L1
// traffic is not what limits this loop), so the broadcast form stays.
template <bool kQ8, int G, bool kPf>
void packed_n(const uint8_t* w, uint64_t gbytes, const uint8_t* x, int64_t n_pairs, float* out) {
  constexpr int kPair = kQ8 ? kPackedPairBytesQ8_0 : kPackedPairBytesQ4_0;
  const __m512i m4 = _mm512_set1_epi8(0x0f), flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
  for (int64_t p = 0; p < n_pairs; ++p) {
    const uint8_t* xp = x + p * kPackedXPairBytes;
    const __m512 dx = _mm512_loadu_ps(xp + 512);
    const __m512i off = loadu512(xp + 576);
    for (int g = 0; g < G; ++g) {
      const uint8_t* wp = w + g * gbytes + p * kPair;
      // Every cache line of the same pair G groups on: the next call's groups (the caller walks
      // the groups in order, G at a time, and they are contiguous), so one call's stream of
      // G * group_bytes is in cache when the next starts. Into L2 (T1), not L1: a call's
      // stream (18-50 KiB here) would push the activation and the current lines out of L1
      // (decode 1 thread, Mixtral-layout Q4_0 ~150 -> ~195 t/s, Q8_0 ~88 -> ~113 t/s against
      // T0). A prefetch past the end never faults.
      if constexpr (kPf)
        for (int c = 0; c < kPair; c += 64)
          _mm_prefetch(reinterpret_cast<const char*>(wp) + G * gbytes + c, _MM_HINT_T1);
      const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(loadu256(wp)), dx);
      __m512i a = off, b = _mm512_setzero_si512();
      if constexpr (kQ8) {
        for (int s = 0; s < 8; s += 2) {
          a = _mm512_dpbusd_epi32(a, _mm512_xor_si512(loadu512(wp + 32 + 64 * s), flip),
                                  loadu512(xp + 64 * s));
          b = _mm512_dpbusd_epi32(b, _mm512_xor_si512(loadu512(wp + 96 + 64 * s), flip),
                                  loadu512(xp + 64 * s + 64));
        }
      } else {
        for (int k = 0; k < 4; ++k) {
          const __m512i q = loadu512(wp + 32 + 64 * k);
          a = _mm512_dpbusd_epi32(a, _mm512_and_si512(q, m4), loadu512(xp + 64 * k));
          b = _mm512_dpbusd_epi32(b, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4),
                                  loadu512(xp + 256 + 64 * k));
        }
      }
      acc[g] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_add_epi32(a, b)), acc[g]);
    }
  }
  for (int g = 0; g < G; ++g)
    _mm256_storeu_ps(out + 8 * g, _mm256_add_ps(_mm512_castps512_ps256(acc[g]),
                                                _mm512_extractf32x8_ps(acc[g], 1)));
}
template <bool kQ8, bool kPf>
void packed_rows(const uint8_t* w, uint64_t gbytes, int n_groups, const uint8_t* x, int64_t n_pairs,
                 float* out) {
  for (; n_groups >= 4; n_groups -= 4, w += 4 * gbytes, out += 32)
    packed_n<kQ8, 4, kPf>(w, gbytes, x, n_pairs, out);
  if (n_groups >= 2) {
    packed_n<kQ8, 2, kPf>(w, gbytes, x, n_pairs, out);
    n_groups -= 2, w += 2 * gbytes, out += 16;
  }
  if (n_groups == 1) packed_n<kQ8, 1, kPf>(w, gbytes, x, n_pairs, out);
}

template <class I>
void set_32(Table& t) {
  t.dot[static_cast<int>(TensorType::Q8_0)] = dot32<DecQ8_0, I>;
  t.dot[static_cast<int>(TensorType::Q4_0)] = dot32<DecQ4_0, I>;
  t.dot[static_cast<int>(TensorType::MXFP4)] = dot32<DecMXFP4, I>;
  t.dot[static_cast<int>(TensorType::Q5_0)] = dot32<DecQ5_0, I>;
  t.dot[static_cast<int>(TensorType::Q4_1)] = dot32<DecQ4_1, I>;
  t.dot[static_cast<int>(TensorType::Q5_1)] = dot32<DecQ5_1, I>;
  t.dot_tok[static_cast<int>(TensorType::Q8_0)] = dot32_tok<DecQ8_0, I>;
  t.dot_tok[static_cast<int>(TensorType::Q4_0)] = dot32_tok<DecQ4_0, I>;
  t.dot_tok[static_cast<int>(TensorType::MXFP4)] = dot32_tok<DecMXFP4, I>;
  t.dot_tok[static_cast<int>(TensorType::Q5_0)] = dot32_tok<DecQ5_0, I>;
  t.dot_tok[static_cast<int>(TensorType::Q4_1)] = dot32_tok<DecQ4_1, I>;
  t.dot_tok[static_cast<int>(TensorType::Q5_1)] = dot32_tok<DecQ5_1, I>;
  t.dot_rows[static_cast<int>(TensorType::Q8_0)] = dot32_rows<DecQ8_0, I>;
  t.dot_rows[static_cast<int>(TensorType::Q4_0)] = dot32_rows<DecQ4_0, I>;
  t.dot_rows[static_cast<int>(TensorType::MXFP4)] = dot32_rows<DecMXFP4, I>;
  t.dot_rows[static_cast<int>(TensorType::Q5_0)] = dot32_rows<DecQ5_0, I>;
  t.dot_rows[static_cast<int>(TensorType::Q4_1)] = dot32_rows<DecQ4_1, I>;
  t.dot_rows[static_cast<int>(TensorType::Q5_1)] = dot32_rows<DecQ5_1, I>;
}

}  // namespace

void fill_avx512(Table& t, bool vnni) {
  auto set = [&](TensorType type, DotFn dot, DequantFn dq) {
    t.dot[static_cast<int>(type)] = dot;
    if (dq) t.dequant[static_cast<int>(type)] = dq;
  };
  // F32: the AVX2 entries stay (llama.cpp-order sums; an AVX-512 order would change bits).
  set(TensorType::F16, dot_half<load_f16x16, f16_to_f32>, dq_f16);
  set(TensorType::BF16, dot_half<load_bf16x16, bf16_to_f32>, dq_bf16);
  if (vnni) {
    set_32<IdotVnni>(t);
    // Q4_0 decode (packed) keeps the AVX2 table's repacked kernel (the same bits): in
    // decode-shaped expert products streaming from DRAM (1 thread, Zen 4) it ran 0.29-0.36 ms a
    // step against this file's 0.37-0.43 (two interleaved runs); 64-byte loads at the 288-byte
    // pair stride straddle cache lines every other pair. Prefill tiles (packed_cached, weights
    // in cache) take the 512-bit kernel: Mixtral-layout prefill of 64 tokens 490-531 against
    // 336-342 t/s with the AVX2 one, decode unchanged (three interleaved runs, 1 thread).
    // Q8_0 keeps the 512-bit kernel for both (not compared).
    t.packed_cached[static_cast<int>(TensorType::Q4_0)] = packed_rows<false, false>;
    t.packed[static_cast<int>(TensorType::Q8_0)] = packed_rows<true, true>;
    t.packed_cached[static_cast<int>(TensorType::Q8_0)] = packed_rows<true, false>;
    fill_mxfp4_avx512(t);
  } else
    set_32<IdotMaddubs>(t);
  t.dequant[static_cast<int>(TensorType::Q8_0)] = dq_blocks<BlockQ8_0, QK>;
  t.dequant[static_cast<int>(TensorType::Q4_0)] = dq_blocks<BlockQ4_0, QK>;
  t.dequant[static_cast<int>(TensorType::MXFP4)] = dq_mxfp4;
  t.dequant[static_cast<int>(TensorType::Q5_0)] = dq_blocks<BlockQ5_0, QK>;
  t.dequant[static_cast<int>(TensorType::Q4_1)] = dq_blocks<BlockQ4_1, QK>;
  t.dequant[static_cast<int>(TensorType::Q5_1)] = dq_blocks<BlockQ5_1, QK>;
  set(TensorType::Q2_K, dot_q2_k, dq_blocks<BlockQ2_K, QK_K>);
  set(TensorType::Q3_K, dot_q3_k, dq_blocks<BlockQ3_K, QK_K>);
  set(TensorType::Q4_K, dot_q45_k<false, BlockQ4_K>, dq_blocks<BlockQ4_K, QK_K>);
  set(TensorType::Q5_K, dot_q45_k<true, BlockQ5_K>, dq_blocks<BlockQ5_K, QK_K>);
  set(TensorType::Q6_K, dot_q6_k, dq_blocks<BlockQ6_K, QK_K>);
  t.dot_tok[static_cast<int>(TensorType::Q4_K)] = dot_q4_k_tok;
  t.dot_tok[static_cast<int>(TensorType::Q6_K)] = dot_q6_k_tok;
  t.quantize_act[static_cast<int>(TensorType::Q8_0)] = quantize_act_row<BlockQ8_0>;
  t.quantize_act[static_cast<int>(TensorType::Q8_1)] = quantize_act_row<BlockQ8_1>;
}

}  // namespace moelab::kernels::cpu
