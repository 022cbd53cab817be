// Internal: per-instruction-set kernel tables of the CPU backend.
#pragma once

#include <cstdint>

namespace moelab::kernels::cpu {

/// Dot product of one weight row (n elements, the weight type's layout) with one activation
/// row already converted to the weight type's vec_dot_type (F32, F16, BF16, Q8_0, Q8_1, Q8_K).
using DotFn = float (*)(const void* w, const void* x, int64_t n);
/// Decodes n elements (a multiple of the block size) to F32.
using DequantFn = void (*)(const void* src, float* dst, int64_t n);

inline constexpr int kMaxTypeId = 40;

struct Table {
  DotFn dot[kMaxTypeId] = {};
  DequantFn dequant[kMaxTypeId] = {};
};

/// Fill a table: scalar fills every supported type; the SIMD fillers overwrite the entries
/// they implement and leave the others (so a table is always complete).
void fill_scalar(Table& t);
void fill_avx2(Table& t);    // defined only when built with the AVX2 kernels
void fill_avx512(Table& t);  // defined only when built with the AVX-512 kernels

}  // namespace moelab::kernels::cpu
