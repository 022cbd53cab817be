// Tiled attention (attention_tile.h), portable reference: 4-float generic vectors, every
// fused multiply-add an fmaf (one rounding), so the SIMD levels reproduce it bit for bit.
#include <cmath>
#include <cstdint>

#include "kernels/element/fp16.h"

namespace moelab::kernels::cpu::attn {
namespace {
constexpr int kW = 4, kNV = 2;
typedef float V __attribute__((vector_size(16)));
inline V vfma(V a, V b, V c) {
  V r;
  for (int l = 0; l < kW; ++l) r[l] = std::fma(a[l], b[l], c[l]);
  return r;
}
inline V bcast(float x) {
  return V{x, x, x, x};
}
inline void cvt_f16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = el::f16_to_f32(src[i]);
}
inline void transpose8x8(const float* src, int64_t stride, float* dst, int64_t dst_stride) {
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) dst[i * dst_stride + j] = src[j * stride + i];
}
}  // namespace
}  // namespace moelab::kernels::cpu::attn

#include "kernels/cpu/attention_tile_impl.h"

namespace moelab::kernels::cpu {
void attn_tile_scalar(const AttnTile& job) {
  attn::run(job);
}
}  // namespace moelab::kernels::cpu
