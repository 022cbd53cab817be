// Repacked Q4_K / Q6_K (kquant.h), AVX512-VNNI: one 512-bit register holds one int32 lane per
// row and sub-block (lanes 8 hh + r), VPDPBUSD forms the sub-block sums of 8 rows at once
// against the broadcast Q8_K quants, VPMULLD applies the integer scales, and one FMA per
// super-block and 8 rows does the float step (the same integers and float order as the scalar
// reference in kquant_scalar.cpp, so the results are its bits).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
// GCC 12's AVX-512 intrinsic headers trip -W(maybe-)uninitialized on their internal "undefined"
// operands (GCC bug 105593, fixed in GCC 13), as in avx512.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <type_traits>

#include "kernels/cpu/kquant.h"
#include "moelab/gguf/types.h"

namespace moelab::kernels::cpu {
namespace {

inline __m512i ld(const void* p) {
  return _mm512_loadu_si512(p);
}

// The 64 6-bit values of kquant.h's Q4_K scale / min packing as 64 bytes (value v in byte v).
inline __m512i unpack6(const uint8_t* p) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m512i lo64 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(lo, m4)),
                                          _mm256_and_si256(_mm256_srli_epi16(lo, 4), m4), 1);
  const __m512i hi =
      _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32)));
  const __m512i sh =
      _mm512_set_epi64(0x0006000600060006, 0x0006000600060006, 0x0004000400040004,
                       0x0004000400040004, 0x0002000200020002, 0x0002000200020002, 0, 0);
  const __m512i hi64 =
      _mm512_and_si512(_mm512_slli_epi16(_mm512_srlv_epi16(hi, sh), 4), _mm512_set1_epi8(0x30));
  return _mm512_or_si512(lo64, hi64);
}

template <int G, bool kPf>
void q4_k_n(const uint8_t* w, uint64_t gbytes, const uint8_t* x, int64_t n_super, float* out) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  __m256 acc[G], accm[G];
  for (int g = 0; g < G; ++g) acc[g] = accm[g] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < n_super; ++sb) {
    const uint8_t* xp = x + sb * kPackedXSuperBytesQ4_K;
    const __m256 dx = _mm256_loadu_ps(reinterpret_cast<const float*>(xp + 2304));
    for (int g = 0; g < G; ++g) {
      const uint8_t* wp = w + g * gbytes + sb * kPackedSuperBytesQ4_K;
      if constexpr (kPf)
        for (int c = 0; c < kPackedSuperBytesQ4_K; c += 64)
          _mm_prefetch(reinterpret_cast<const char*>(wp) + G * gbytes + c, _MM_HINT_T1);
      __m512i s[4];  // [2 c + lo_hi]
      for (int c = 0; c < 2; ++c) {
        __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
        for (int k = 0; k < 8; ++k) {
          const __m512i q = ld(wp + 128 + 64 * (8 * c + k));
          a = _mm512_dpbusd_epi32(a, _mm512_and_si512(q, m4), ld(xp + 64 * (16 * c + k)));
          b = _mm512_dpbusd_epi32(b, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4),
                                  ld(xp + 64 * (16 * c + 8 + k)));
        }
        s[2 * c] = a, s[2 * c + 1] = b;
      }
      const __m512i sc = unpack6(wp + 32), mn = unpack6(wp + 80);
      __m512i is = _mm512_setzero_si512(), ms = _mm512_setzero_si512();
#define MOELAB_Q4K_STEP(i)                                                                         \
  is = _mm512_add_epi32(                                                                           \
      is, _mm512_mullo_epi32(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(sc, i)), s[i]));       \
  ms = _mm512_add_epi32(ms,                                                                        \
                        _mm512_mullo_epi32(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(mn, i)), \
                                           ld(xp + 2048 + 64 * (i))));
      MOELAB_Q4K_STEP(0)
      MOELAB_Q4K_STEP(1)
      MOELAB_Q4K_STEP(2)
      MOELAB_Q4K_STEP(3)
#undef MOELAB_Q4K_STEP
      const __m256i is8 =
          _mm256_add_epi32(_mm512_castsi512_si256(is), _mm512_extracti64x4_epi64(is, 1));
      const __m256i ms8 =
          _mm256_add_epi32(_mm512_castsi512_si256(ms), _mm512_extracti64x4_epi64(ms, 1));
      const __m256 d =
          _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp))), dx);
      const __m256 dm = _mm256_mul_ps(
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp + 16))), dx);
      acc[g] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(is8), acc[g]);
      accm[g] = _mm256_fmadd_ps(dm, _mm256_cvtepi32_ps(ms8), accm[g]);
    }
  }
  for (int g = 0; g < G; ++g) _mm256_storeu_ps(out + 8 * g, _mm256_sub_ps(acc[g], accm[g]));
}

template <int G, bool kPf>
void q6_k_n(const uint8_t* w, uint64_t gbytes, const uint8_t* x, int64_t n_super, float* out) {
  const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
  __m256 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < n_super; ++sb) {
    const uint8_t* xp = x + sb * kPackedXSuperBytesQ6_K;
    const __m256 dx = _mm256_loadu_ps(reinterpret_cast<const float*>(xp + 2560));
    for (int g = 0; g < G; ++g) {
      const uint8_t* wp = w + g * gbytes + sb * kPackedSuperBytesQ6_K;
      if constexpr (kPf)
        for (int c = 0; c < kPackedSuperBytesQ6_K; c += 64)
          _mm_prefetch(reinterpret_cast<const char*>(wp) + G * gbytes + c, _MM_HINT_T1);
      __m512i is = _mm512_setzero_si512();
      const __m512i h[8] = {ld(wp + 1024), ld(wp + 1088), ld(wp + 1152), ld(wp + 1216),
                            ld(wp + 1280), ld(wp + 1344), ld(wp + 1408), ld(wp + 1472)};
      for (int P = 0; P < 4; ++P) {
        __m512i a = ld(xp + 2048 + 64 * P), b = ld(xp + 2048 + 64 * (P + 4));
        for (int k = 0; k < 4; ++k) {
          const __m512i n = ld(wp + 64 * (4 * P + k));
          __m512i h0, h1;  // bits 2 P, 2 P + 1 of the high-bit bytes, moved to bits 4, 5
          if (P == 3) {
            h0 = _mm512_srli_epi16(h[k], 2), h1 = _mm512_srli_epi16(h[4 + k], 2);
          } else {
            h0 = _mm512_slli_epi16(h[k], 4 - 2 * P), h1 = _mm512_slli_epi16(h[4 + k], 4 - 2 * P);
          }
          // (n & 0x0f) | (h & 0x30), ((n >> 4) & 0x0f) | (h & 0x30): one ternary logic each
          const __m512i u0 = _mm512_or_si512(_mm512_and_si512(n, m4), _mm512_and_si512(h0, m30));
          const __m512i u1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(n, 4), m4),
                                             _mm512_and_si512(h1, m30));
          a = _mm512_dpbusd_epi32(a, u0, ld(xp + 64 * (4 * P + k)));
          b = _mm512_dpbusd_epi32(b, u1, ld(xp + 64 * (4 * (P + 4) + k)));
        }
        is = _mm512_add_epi32(
            is, _mm512_mullo_epi32(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                       reinterpret_cast<const __m128i*>(wp + 1536 + 16 * P))),
                                   a));
        is = _mm512_add_epi32(
            is, _mm512_mullo_epi32(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                       reinterpret_cast<const __m128i*>(wp + 1536 + 16 * (P + 4)))),
                                   b));
      }
      const __m256i is8 =
          _mm256_add_epi32(_mm512_castsi512_si256(is), _mm512_extracti64x4_epi64(is, 1));
      const __m256 d = _mm256_mul_ps(
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp + 1664))), dx);
      acc[g] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(is8), acc[g]);
    }
  }
  for (int g = 0; g < G; ++g) _mm256_storeu_ps(out + 8 * g, acc[g]);
}

template <bool kQ6, bool kPf>
void rows(const uint8_t* w, uint64_t gbytes, int n_groups, const uint8_t* x, int64_t n_super,
          float* out) {
  auto run = [&](auto gtag) {
    constexpr int G = decltype(gtag)::value;
    if constexpr (kQ6)
      q6_k_n<G, kPf>(w, gbytes, x, n_super, out);
    else
      q4_k_n<G, kPf>(w, gbytes, x, n_super, out);
    n_groups -= G, w += G * gbytes, out += 8 * G;
  };
  while (n_groups >= 4) run(std::integral_constant<int, 4>{});
  if (n_groups >= 2) run(std::integral_constant<int, 2>{});
  if (n_groups == 1) run(std::integral_constant<int, 1>{});
}

}  // namespace

void fill_kquant_avx512(Table& t) {
  using gguf::TensorType;
  t.packed[static_cast<int>(TensorType::Q4_K)] = rows<false, true>;
  t.packed_cached[static_cast<int>(TensorType::Q4_K)] = rows<false, false>;
  t.packed[static_cast<int>(TensorType::Q6_K)] = rows<true, true>;
  t.packed_cached[static_cast<int>(TensorType::Q6_K)] = rows<true, false>;
}

}  // namespace moelab::kernels::cpu
