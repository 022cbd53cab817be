// Tiled attention (attention_tile.h), AVX-512F + F16C: 16-float vectors.
#include <immintrin.h>

#include <cstdint>

namespace moelab::kernels::cpu::attn {
namespace {
constexpr int kW = 16, kNV = 4;
typedef float V __attribute__((vector_size(64)));
inline V vfma(V a, V b, V c) {
  return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
}
inline V bcast(float x) {
  return (V)_mm512_set1_ps(x);
}
inline void cvt_f16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)  // F16C (GCC 12 warns about _mm512_cvtph_ps's undefined source)
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}
inline void transpose8x8(const float* src, int64_t stride, float* dst, int64_t dst_stride) {
  __m256 r[8], t[8], s[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * stride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * dst_stride, _mm256_permute2f128_ps(s[i], s[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * dst_stride, _mm256_permute2f128_ps(s[i], s[i + 4], 0x31));
  }
}
}  // namespace
}  // namespace moelab::kernels::cpu::attn

#include "kernels/cpu/attention_tile_impl.h"

namespace moelab::kernels::cpu {
void attn_tile_avx512(const AttnTile& job) {
  attn::run(job);
}
}  // namespace moelab::kernels::cpu
