// Repacked MXFP4 (impl.h: PackedFn, kPackedPairBytesMXFP4), AVX512-VNNI. The Q4_0 kernel of
// avx512.cpp with two changes: each nibble (an E2M1 code, OCP MX v1.0 5.3.3) becomes
// 2 * value + 12 (0..24, unsigned for VPDPBUSD) through a 16-entry byte shuffle, and the block
// scale is the E8M0 byte decoded to el::e8m0_half's float (2^(e - 128); NaN for e = 255). The
// int32 sums are exact and the float steps are the scalar reference's, so the results equal it
// bit for bit.
#define MOELAB_EL_ABI avx512
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
// GCC 12's AVX-512 intrinsic headers trip -W(maybe-)uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/impl.h"
#include "moelab/gguf/types.h"

namespace moelab::kernels::cpu {
namespace {

inline __m512i loadu512(const void* p) {
  return _mm512_loadu_si512(p);
}

/// 16 E8M0 bytes -> el::e8m0_half as F32 bits: (e - 1) << 23 for e = 2..254, the subnormals
/// 2^-128 / 2^-127 (0x00200000 << e) for e = 0, 1, and the quiet NaN for e = 255.
inline __m512 e8m0_half_x16(const uint8_t* e) {
  const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(e)));
  __m512i bits = _mm512_slli_epi32(_mm512_sub_epi32(v, _mm512_set1_epi32(1)), 23);
  bits = _mm512_mask_sllv_epi32(bits, _mm512_cmplt_epu32_mask(v, _mm512_set1_epi32(2)),
                                _mm512_set1_epi32(0x00200000), v);
  bits = _mm512_mask_mov_epi32(bits, _mm512_cmpeq_epi32_mask(v, _mm512_set1_epi32(255)),
                               _mm512_set1_epi32(0x7fc00000));
  return _mm512_castsi512_ps(bits);
}

template <int G, bool kPf>
void packed_n(const uint8_t* w, uint64_t gbytes, const uint8_t* x, int64_t n_pairs, float* out) {
  constexpr int kPair = kPackedPairBytesMXFP4;
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  // 2 * E2M1 value + 12 for codes 0..15, in each 128-bit lane (VPSHUFB works per lane)
  const __m512i lut = _mm512_broadcast_i32x4(
      _mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
  __m512 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
  for (int64_t p = 0; p < n_pairs; ++p) {
    const uint8_t* xp = x + p * kPackedXPairBytes;
    const __m512 dx = _mm512_loadu_ps(xp + 512);
    const __m512i off = loadu512(xp + 576);
    for (int g = 0; g < G; ++g) {
      const uint8_t* wp = w + g * gbytes + p * kPair;
      // the same pair G groups on (the next call's groups), into L2: see avx512.cpp's packed_n
      if constexpr (kPf)
        for (int c = 0; c < kPair; c += 64)
          _mm_prefetch(reinterpret_cast<const char*>(wp) + G * gbytes + c, _MM_HINT_T1);
      const __m512 d = _mm512_mul_ps(e8m0_half_x16(wp), dx);
      __m512i a = off, b = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        const __m512i q = loadu512(wp + 16 + 64 * k);
        a = _mm512_dpbusd_epi32(a, _mm512_shuffle_epi8(lut, _mm512_and_si512(q, m4)),
                                loadu512(xp + 64 * k));
        b = _mm512_dpbusd_epi32(
            b, _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4)),
            loadu512(xp + 256 + 64 * k));
      }
      acc[g] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_add_epi32(a, b)), acc[g]);
    }
  }
  for (int g = 0; g < G; ++g)
    _mm256_storeu_ps(out + 8 * g, _mm256_add_ps(_mm512_castps512_ps256(acc[g]),
                                                _mm512_extractf32x8_ps(acc[g], 1)));
}
template <bool kPf>
void packed_rows(const uint8_t* w, uint64_t gbytes, int n_groups, const uint8_t* x, int64_t n_pairs,
                 float* out) {
  for (; n_groups >= 4; n_groups -= 4, w += 4 * gbytes, out += 32)
    packed_n<4, kPf>(w, gbytes, x, n_pairs, out);
  if (n_groups >= 2) {
    packed_n<2, kPf>(w, gbytes, x, n_pairs, out);
    n_groups -= 2, w += 2 * gbytes, out += 16;
  }
  if (n_groups == 1) packed_n<1, kPf>(w, gbytes, x, n_pairs, out);
}

}  // namespace

void fill_mxfp4_avx512(Table& t) {
  t.packed[static_cast<int>(gguf::TensorType::MXFP4)] = packed_rows<true>;
  t.packed_cached[static_cast<int>(gguf::TensorType::MXFP4)] = packed_rows<false>;
}

}  // namespace moelab::kernels::cpu
