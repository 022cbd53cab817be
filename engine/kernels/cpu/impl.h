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
/// Repacked ("interleaved") weights, issue #19 (kernels.h: repack_rows). n_groups groups of 8
/// weight rows, group g at w + g * group_bytes, times one activation in the expanded form
/// (kPackedXPairBytes per pair of 32-element blocks, see below) of n_pairs block pairs:
/// out[8 g + r] = dot of row r of group g. Every SIMD level forms the same exact int32 sum per
/// row and block, d = fp16(d_w) * d_x, acc_h = fma(d, float(sum), acc_h) over the even (h = 0)
/// and odd (h = 1) blocks in order, and out = acc_0 + acc_1, so all levels agree bit for bit.
/// (Repacked Q4_K / Q6_K use the same signature with n_pairs = 256-element super-blocks and
/// their own layouts and numerics: kquant.h.)
using PackedFn = void (*)(const uint8_t* w, uint64_t group_bytes, int n_groups, const uint8_t* x,
                          int64_t n_pairs, float* out);
inline constexpr int kMaxPackedGroups = 4;
/// Expanded activation, per pair of Q8_0 blocks (2p, 2p + 1): 8 x 64 bytes of quants (64 s +
/// 32 h + 4 r + b = quant 4 s + b of block 2p + h, the same for every lane r), then d_x as F32
/// x 16 ([h * 8 + r]), then -offset * sum(quants of block 2p + h) as int32 x 16 (offset: 8 for
/// Q4_0, 128 for Q8_0, 12 for MXFP4: the SIMD kernels multiply unsigned quant + offset).
inline constexpr int kPackedXPairBytes = 640;
/// Repacked weights, per group of 8 rows and pair of blocks (the same bytes as 8 rows x 2 blocks
/// of the plain layout): d_w as FP16 x 16 ([h * 8 + r]), then quant vectors of 64 bytes, 32 per
/// block h of the pair, 4 per row r: Q4_0 4 vectors (bytes qs[4k .. 4k+3], low nibbles = quants
/// 4k.., high nibbles = 16 + 4k..), Q8_0 8 vectors (qs[4s .. 4s+3]).
inline constexpr int kPackedPairBytesQ4_0 = 288, kPackedPairBytesQ8_0 = 544;
/// Repacked MXFP4 (the same bytes as 8 rows x 2 blocks of the plain layout): the E8M0 scale
/// bytes x 16 ([h * 8 + r]), then Q4_0's 4 quant vectors of 64 bytes (nibbles = E2M1 codes). Its
/// expanded activation carries offset 12 (the SIMD kernels multiply 2 * E2M1 value + 12, 0..24).
/// Every level forms d = el::e8m0_half(e) * d_x and otherwise the Q4_0 arithmetic above.
inline constexpr int kPackedPairBytesMXFP4 = 272;

/// Decodes n elements (a multiple of the block size) to F32.
using DequantFn = void (*)(const void* src, float* dst, int64_t n);
/// Quantizes one F32 activation row of n elements (a multiple of 32) to the activation format
/// it is indexed by (Q8_0, Q8_1): every level gives the bytes of el::quantize_act (blocks.h),
/// the scalar reference, for every input (NaN and infinities included).
using QuantizeFn = void (*)(const float* x, void* dst, int64_t n);

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
  PackedFn packed[kMaxTypeId] = {};     // repacked Q4_0 / Q8_0 (the scalar table has both)
  /// The same products, bit for bit, for weights already in cache (the 2nd..32nd token of a
  /// prefill tile): without packed's software prefetch of the next groups, which there only
  /// costs instructions (prefill of 64 tokens, Q4_0 / Q8_0: 20-35 % faster without).
  PackedFn packed_cached[kMaxTypeId] = {};
  QuantizeFn quantize_act[kMaxTypeId] = {};  // Q8_0, Q8_1 (the scalar table has both)
};

/// Fill a table: scalar fills every supported type; the SIMD fillers overwrite the entries
/// they implement and leave the others (so a table is always complete).
void fill_scalar(Table& t);
void fill_avx2(Table& t);  // defined only when built with the AVX2 kernels
/// vnni: the CPU has AVX512-VNNI (+VL): integer dot products use VPDPBUSD (same int32 sums).
void fill_avx512(Table& t, bool vnni);  // defined only when built with the AVX-512 kernels
/// The repacked MXFP4 kernels (mxfp4_avx2.cpp, mxfp4_avx512.cpp; called by the fillers above).
void fill_mxfp4_avx2(Table& t);
void fill_mxfp4_avx512(Table& t);  // needs AVX512-VNNI (+VL)

}  // namespace moelab::kernels::cpu
