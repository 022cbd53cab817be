// Repacked MXFP4 (impl.h: PackedFn, kPackedPairBytesMXFP4), AVX2: the Q4_0 kernel of avx2.cpp
// with each nibble (an E2M1 code, OCP MX v1.0 5.3.3) turned into 2 * value + 12 (0..24) by a
// byte shuffle (maddubs cannot saturate: 2 * 24 * 128 < 32768) and the E8M0 block scale decoded
// to el::e8m0_half's float. Lane r is row r of the group, the even and odd block of a pair have
// their own accumulator, so the results are the scalar reference's (and AVX-512's) bits.
#define MOELAB_EL_ABI avx2
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/impl.h"
#include "moelab/gguf/types.h"

namespace moelab::kernels::cpu {
namespace {

inline __m256i loadu256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

/// 8 E8M0 bytes -> el::e8m0_half as F32 bits (see mxfp4_avx512.cpp's e8m0_half_x16).
inline __m256 e8m0_half_x8(const uint8_t* e) {
  const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(e)));
  const __m256i normal = _mm256_slli_epi32(_mm256_sub_epi32(v, _mm256_set1_epi32(1)), 23);
  const __m256i sub = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), v);
  __m256i bits = _mm256_blendv_epi8(normal, sub, _mm256_cmpgt_epi32(_mm256_set1_epi32(2), v));
  bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7fc00000),
                            _mm256_cmpeq_epi32(v, _mm256_set1_epi32(255)));
  return _mm256_castsi256_ps(bits);
}

template <int G, bool kPf>
void packed_n(const uint8_t* w, uint64_t gbytes, const uint8_t* x, int64_t n_pairs, float* out) {
  constexpr int kPair = kPackedPairBytesMXFP4;
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  const __m256i lut = _mm256_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0,
                                       12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0);
  __m256 acc[G][2];
  for (int g = 0; g < G; ++g) acc[g][0] = acc[g][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < n_pairs; ++p) {
    const uint8_t* xp = x + p * kPackedXPairBytes;
    for (int g = 0; g < G; ++g) {
      const uint8_t* wp = w + g * gbytes + p * kPair;
      if constexpr (kPf)  // the same pair G groups on, into L2 (see avx512.cpp's packed_n)
        for (int c = 0; c < kPair; c += 64)
          _mm_prefetch(reinterpret_cast<const char*>(wp) + G * gbytes + c, _MM_HINT_T1);
      for (int h = 0; h < 2; ++h) {
        const __m256 d =
            _mm256_mul_ps(e8m0_half_x8(wp + 8 * h),
                          _mm256_loadu_ps(reinterpret_cast<const float*>(xp + 512 + 32 * h)));
        // int16 pair sums of the 4 low-nibble and the 4 high-nibble vectors added in int16
        // (|each| <= 2 * 24 * 128, four of them < 32768: exact), then widened once each
        __m256i lo16 = _mm256_setzero_si256(), hi16 = _mm256_setzero_si256();
        for (int k = 0; k < 4; ++k) {
          const __m256i q = loadu256(wp + 16 + 64 * k + 32 * h);
          const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(q, m4));
          const __m256i hi =
              _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
          lo16 = _mm256_add_epi16(lo16, _mm256_maddubs_epi16(lo, loadu256(xp + 64 * k + 32 * h)));
          hi16 = _mm256_add_epi16(hi16,
                                  _mm256_maddubs_epi16(hi, loadu256(xp + 256 + 64 * k + 32 * h)));
        }
        const __m256i a =
            _mm256_add_epi32(loadu256(xp + 576 + 32 * h), _mm256_madd_epi16(lo16, ones));
        const __m256i s = _mm256_add_epi32(a, _mm256_madd_epi16(hi16, ones));
        acc[g][h] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[g][h]);
      }
    }
  }
  for (int g = 0; g < G; ++g) _mm256_storeu_ps(out + 8 * g, _mm256_add_ps(acc[g][0], acc[g][1]));
}
template <bool kPf>
void packed_rows(const uint8_t* w, uint64_t gbytes, int n_groups, const uint8_t* x, int64_t n_pairs,
                 float* out) {
  for (; n_groups >= 2; n_groups -= 2, w += 2 * gbytes, out += 16)
    packed_n<2, kPf>(w, gbytes, x, n_pairs, out);
  if (n_groups == 1) packed_n<1, kPf>(w, gbytes, x, n_pairs, out);
}

}  // namespace

void fill_mxfp4_avx2(Table& t) {
  t.packed[static_cast<int>(gguf::TensorType::MXFP4)] = packed_rows<true>;
  t.packed_cached[static_cast<int>(gguf::TensorType::MXFP4)] = packed_rows<false>;
}

}  // namespace moelab::kernels::cpu
