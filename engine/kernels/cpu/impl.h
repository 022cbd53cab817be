// Internal: per-instruction-set kernel tables of the CPU backend.
#pragma once

#include <cstdint>

namespace moelab::kernels::cpu {

/// Dot product of one weight row (n elements, the weight type's layout) with one activation
/// row already converted to the weight type's vec_dot_type (F32, F16, BF16, Q8_0, Q8_1, Q8_K).
using DotFn = float (*)(const void* w, const void* x, int64_t n);
/// Dot products of one weight row with n_tok (1..kMaxTok) activation rows at x, x + x_stride,
/// ...: out[t * out_stride] = dot(w, x + t * x_stride, n). Each weight block is decoded once
/// for all tokens; every token's sum is formed in exactly the order of the matching DotFn, so
/// the results equal n_tok DotFn calls bit for bit (prefill == decode).
using DotTokFn = void (*)(const void* w, const uint8_t* x, uint64_t x_stride, int n_tok, int64_t n,
                          float* out, int64_t out_stride);
inline constexpr int kMaxTok = 4;
/// Dot products of n_rows (1..kMaxRows) weight rows w, w + w_stride, ... with one activation
/// row (decode): out[r] = dot(w + r * w_stride, x, n). The activation block is loaded and its
/// scale converted once for all rows; each row's sum is formed in exactly the order of the
/// matching DotFn (bit-identical).
using DotRowsFn = void (*)(const uint8_t* w, uint64_t w_stride, int n_rows, const void* x,
                           int64_t n, float* out);
inline constexpr int kMaxRows = 8;
/// Decodes n elements (a multiple of the block size) to F32.
using DequantFn = void (*)(const void* src, float* dst, int64_t n);

inline constexpr int kMaxTypeId = 40;

struct Table {
  /// dot[F32] sums in ggml_vec_dot_f32's order; dot_f32_tinyblas in llamafile tinyBLAS's
  /// (kernels/element/reduce.h): llama.cpp uses the latter for dense products with n % 8 == 0.
  DotFn dot_f32_tinyblas = nullptr;
  void (*axpy_fma)(float w, const float* v, float* acc, int64_t n) = nullptr;
  void (*exp_shifted)(const float* x, float max, float* y, int64_t n) = nullptr;
  void (*swiglu)(float* gate, const float* up, int64_t n) = nullptr;
  DotFn dot[kMaxTypeId] = {};
  DequantFn dequant[kMaxTypeId] = {};
  DotTokFn dot_tok[kMaxTypeId] = {};    // null: no multi-token kernel (matmul calls dot per pair)
  DotRowsFn dot_rows[kMaxTypeId] = {};  // null: no multi-row kernel (matvec calls dot per row)
};

/// Fill a table: scalar fills every supported type; the SIMD fillers overwrite the entries
/// they implement and leave the others (so a table is always complete).
void fill_scalar(Table& t);
void fill_avx2(Table& t);  // defined only when built with the AVX2 kernels
/// vnni: the CPU has AVX512-VNNI (+VL): integer dot products use VPDPBUSD (same int32 sums).
void fill_avx512(Table& t, bool vnni);  // defined only when built with the AVX-512 kernels

}  // namespace moelab::kernels::cpu
