// Internal: small x86 SIMD helpers shared by the AVX2 and AVX-512 translation units. Included
// only from those files (each compiles it with its own instruction-set flags; everything here
// has internal linkage so the copies never mix).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace moelab::kernels::cpu {
namespace {

inline float hsum_ps256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline int hsum_i32_256(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}
inline __m256i loadu256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
inline __m128i loadu128(const void* p) {
  return _mm_loadu_si128(static_cast<const __m128i*>(p));
}

/// Signed x signed int8 dot in pairs of 4 -> 8 x int32. maddubs wants an unsigned left
/// operand: use |x| and move x's sign onto y (y must be in [-127, 127]; x may be -128).
inline __m256i dot_i8_s(__m256i x, __m256i y) {
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
/// Unsigned (0..127) x signed int8 -> 8 x int32.
inline __m256i dot_u8_s(__m256i u, __m256i y) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1));
}
/// 32 nibbles of a 16-byte array: low nibbles in bytes 0-15, high nibbles in bytes 16-31
/// (the element order of Q4_0 / Q4_1 / Q5_x blocks).
inline __m256i nibbles_32(const uint8_t* qs) {
  const __m128i b = loadu128(qs);
  const __m128i m = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}
/// 0x10 in byte j where bit j of the 32-bit little-endian word at qh is set, else 0.
inline __m256i bit4_from_bits_32(const uint8_t* qh) {
  uint32_t x;
  std::memcpy(&x, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(x)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202,
                         0x0303030303030303));  // byte j <- byte j/8 of x
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}
/// int16 x16 vector: a in lanes 0-7, b in lanes 8-15 (two 16-element sub-block scales).
inline __m256i scales_8_8(int a, int b) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(b)),
                          _mm_set1_epi16(static_cast<short>(a)));
}

}  // namespace
}  // namespace moelab::kernels::cpu
