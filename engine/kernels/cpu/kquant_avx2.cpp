// Repacked Q4_K / Q6_K (kquant.h), AVX2: each 64-byte vector of the layout as two 256-bit halves
// (hh = 0, 1; one int32 lane per row), VPMADDUBSW + VPMADDWD for the sub-block sums (no
// saturation: unsigned quants <= 63 times int8 activations, two per 16-bit sum), VPMULLD for the
// integer scales; the same integers and float steps as the scalar reference (kquant_scalar.cpp),
// so the results are its bits.
#include <immintrin.h>

#include <type_traits>

#include "kernels/cpu/kquant.h"
#include "moelab/gguf/types.h"

namespace moelab::kernels::cpu {
namespace {

inline __m256i ld(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
// sum of 4 adjacent u8 * s8 products per int32 lane, added to acc
inline __m256i dp(__m256i acc, __m256i u, __m256i y) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1)));
}
// The 64 6-bit values of kquant.h's Q4_K scale / min packing, value v to out[v].
inline void unpack6(const uint8_t* p, uint8_t* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
  const __m256i lo = ld(p);
  const __m256i hi =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32)));
  // 32-bit shifts: what moves in from the next byte lands above bit 1 and is masked off.
  const __m256i h01 =
      _mm256_and_si256(_mm256_srlv_epi32(hi, _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2)), m3);
  const __m256i h23 =
      _mm256_and_si256(_mm256_srlv_epi32(hi, _mm256_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6)), m3);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                      _mm256_or_si256(_mm256_and_si256(lo, m4), _mm256_slli_epi16(h01, 4)));
  _mm256_storeu_si256(
      reinterpret_cast<__m256i*>(out + 32),
      _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lo, 4), m4), _mm256_slli_epi16(h23, 4)));
}
inline __m256i u8x8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

template <int G, bool kPf>
void q4_k_n(const uint8_t* w, uint64_t gbytes, const uint8_t* x, int64_t n_super, float* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
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
      alignas(32) uint8_t sc[64], mn[64];
      unpack6(wp + 32, sc);
      unpack6(wp + 80, mn);
      __m256i is = _mm256_setzero_si256(), ms = _mm256_setzero_si256();
      for (int c = 0; c < 2; ++c)
        for (int hh = 0; hh < 2; ++hh) {
          __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
          for (int k = 0; k < 8; ++k) {
            const __m256i q = ld(wp + 128 + 64 * (8 * c + k) + 32 * hh);
            a = dp(a, _mm256_and_si256(q, m4), ld(xp + 64 * (16 * c + k) + 32 * hh));
            b = dp(b, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                   ld(xp + 64 * (16 * c + 8 + k) + 32 * hh));
          }
          for (int lh = 0; lh < 2; ++lh) {
            const int v0 = 16 * (2 * c + lh) + 8 * hh;
            is = _mm256_add_epi32(is, _mm256_mullo_epi32(u8x8(sc + v0), lh ? b : a));
            ms = _mm256_add_epi32(
                ms, _mm256_mullo_epi32(u8x8(mn + v0), ld(xp + 2048 + 64 * (2 * c + lh) + 32 * hh)));
          }
        }
      const __m256 d =
          _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp))), dx);
      const __m256 dm = _mm256_mul_ps(
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp + 16))), dx);
      acc[g] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(is), acc[g]);
      accm[g] = _mm256_fmadd_ps(dm, _mm256_cvtepi32_ps(ms), accm[g]);
    }
  }
  for (int g = 0; g < G; ++g) _mm256_storeu_ps(out + 8 * g, _mm256_sub_ps(acc[g], accm[g]));
}

template <int G, bool kPf>
void q6_k_n(const uint8_t* w, uint64_t gbytes, const uint8_t* x, int64_t n_super, float* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
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
      __m256i is = _mm256_setzero_si256();
      for (int hh = 0; hh < 2; ++hh)
        for (int P = 0; P < 4; ++P) {
          __m256i a = ld(xp + 2048 + 64 * P + 32 * hh), b = ld(xp + 2048 + 64 * (P + 4) + 32 * hh);
          for (int k = 0; k < 4; ++k) {
            const int o = 32 * hh;
            const __m256i n = ld(wp + 64 * (4 * P + k) + o);
            const __m256i hv0 = ld(wp + 1024 + 64 * k + o), hv1 = ld(wp + 1024 + 64 * (4 + k) + o);
            __m256i h0, h1;  // bits 2 P, 2 P + 1 of the high-bit bytes, moved to bits 4, 5
            if (P == 3) {
              h0 = _mm256_srli_epi16(hv0, 2), h1 = _mm256_srli_epi16(hv1, 2);
            } else {
              const __m128i sh = _mm_cvtsi32_si128(4 - 2 * P);
              h0 = _mm256_sll_epi16(hv0, sh), h1 = _mm256_sll_epi16(hv1, sh);
            }
            const __m256i u0 = _mm256_or_si256(_mm256_and_si256(n, m4), _mm256_and_si256(h0, m30));
            const __m256i u1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(n, 4), m4),
                                               _mm256_and_si256(h1, m30));
            a = dp(a, u0, ld(xp + 64 * (4 * P + k) + o));
            b = dp(b, u1, ld(xp + 64 * (4 * (P + 4) + k) + o));
          }
          const __m256i s0 = _mm256_cvtepi8_epi32(
              _mm_loadl_epi64(reinterpret_cast<const __m128i*>(wp + 1536 + 16 * P + 8 * hh)));
          const __m256i s1 = _mm256_cvtepi8_epi32(
              _mm_loadl_epi64(reinterpret_cast<const __m128i*>(wp + 1536 + 16 * (P + 4) + 8 * hh)));
          is = _mm256_add_epi32(is, _mm256_mullo_epi32(s0, a));
          is = _mm256_add_epi32(is, _mm256_mullo_epi32(s1, b));
        }
      const __m256 d = _mm256_mul_ps(
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wp + 1664))), dx);
      acc[g] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(is), acc[g]);
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
  while (n_groups >= 2) run(std::integral_constant<int, 2>{});
  if (n_groups == 1) run(std::integral_constant<int, 1>{});
}

}  // namespace

void fill_kquant_avx2(Table& t) {
  using gguf::TensorType;
  t.packed[static_cast<int>(TensorType::Q4_K)] = rows<false, true>;
  t.packed_cached[static_cast<int>(TensorType::Q4_K)] = rows<false, false>;
  t.packed[static_cast<int>(TensorType::Q6_K)] = rows<true, true>;
  t.packed_cached[static_cast<int>(TensorType::Q6_K)] = rows<true, false>;
}

}  // namespace moelab::kernels::cpu
