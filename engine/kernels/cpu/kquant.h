// Internal: repacked ("interleaved") Q4_K and Q6_K weights of the CPU backend (issue #19).
//
// The idea is the one of the repacked Q4_0 / Q8_0 layout (impl.h: PackedFn) and of llama.cpp's
// CPU repack of Q4_K into 8-row blocks: 8 weight rows side by side, so that one 512-bit register
// holds one int32 lane per row and sub-block and one pass over an activation super-block serves
// 8 rows. The layouts and code are moelab's own. The activation is ggml's Q8_K row (kernels.h:
// quantize_activation), expanded once per product into a broadcast form and shared by all the
// selected experts (matvec_batch).
//
// Numerics (the same at every SIMD level, so scalar reference = AVX2 = AVX512-VNNI bit for bit):
// per row and super-block the exact integer sums
//   Q4_K: isum = sum_j sc_j * sum_{i in j} q_i y_i        msum = sum_j m_j * (y sum of sub-block j)
//   Q6_K: isum = sum_j sc_j * (sum_{i in j} u_i y_i - 32 * (y sum of sub-block j)), u = q + 32
// (j: the 8 sub-blocks of 32 of Q4_K, the 16 of 16 of Q6_K), then in float, super-block by
// super-block in order: acc = fma(fp16(d) * d_x, float(isum), acc), and for Q4_K also
// accm = fma(fp16(dmin) * d_x, float(msum), accm), out = acc - accm. ggml sums the same
// integers but in another float order, so results differ from the plain kernels in the last
// bits (tests: within float summation error of the exact dot product).
#pragma once

#include <cstdint>

#include "kernels/cpu/impl.h"

namespace moelab::kernels::cpu {

/// Bytes of one super-block (256 weights) of 8 rows: 8 x 144 (Q4_K) and 8 x 210 (Q6_K), the
/// bytes of the plain layout (the repacked matrix has exactly the plain matrix's size).
///
/// Q4_K, per group of 8 rows and super-block (rows r, sub-blocks j of 32, "pair" c = 0, 1 of
/// 64-element chunk pairs, lane l = 8 hh + r with hh = 0, 1):
///   [0, 16)     d as FP16 x 8 [r]
///   [16, 32)    dmin as FP16 x 8 [r]
///   [32, 80)    the 64 6-bit scales, value v = 16 (2 c + lo_hi) + 8 hh + r is the scale of row r
///               and sub-block j = 2 (2 c + hh) + lo_hi; bytes 32 + k (k < 32): low nibble =
///               bits 0..3 of value k, high nibble = of value k + 32; bytes 64 + k (k < 16): bits
///               2 i, 2 i + 1 = bits 4, 5 of value 16 i + k
///   [80, 128)   the 64 6-bit mins, packed as the scales
///   [128, 1152) 16 vectors of 64 bytes, vector 8 c + s, byte 32 hh + 4 r + b = byte
///               32 (2 c + hh) + 4 s + b of row r's qs (low nibble: element 64 (2 c + hh) + 4 s + b
///               of sub-block 2 (2 c + hh), high nibble: element + 32 of sub-block 2 (2 c + hh) +
///               1)
///
/// Q6_K, per group of 8 rows and super-block (u = q + 32 in 0..63, sub-blocks j of 16, pair
/// P = 0..7 of sub-blocks 2 P, 2 P + 1, lane l = 8 hh + r):
///   [0, 1024)    16 vectors, vector 4 P + s (P < 4), byte 32 hh + 4 r + b: low nibble = bits 0..3
///                of u of element 32 P + 16 hh + 4 s + b of row r, high nibble = of element + 128
///   [1024, 1536) 8 vectors, vector 4 A + s, byte 32 hh + 4 r + b: bits 2 k, 2 k + 1 = bits 4, 5
///                of u of element 32 (4 A + k) + 16 hh + 4 s + b
///   [1536, 1664) scales int8, byte 16 P + 8 hh + r = scale of sub-block 2 P + hh of row r
///   [1664, 1680) d as FP16 x 8 [r]
inline constexpr int kPackedSuperBytesQ4_K = 1152, kPackedSuperBytesQ6_K = 1680;

/// Expanded Q8_K activation per super-block (the same for every lane r):
///   Q4_K: [0, 2048) vectors 8 (2 c + lo_hi) + s, byte 32 hh + 4 r + b = quant
///         64 (2 c + hh) + 32 lo_hi + 4 s + b; [2048, 2304) int32 x 16 per (2 c + lo_hi): lane
///         8 hh + r = sum of the 32 quants of sub-block 2 (2 c + hh) + lo_hi; [2304, 2368) d_x as
///         F32 x 16.
///   Q6_K: [0, 2048) vectors 4 P + s, byte 32 hh + 4 r + b = quant 32 P + 16 hh + 4 s + b;
///         [2048, 2560) int32 x 16 per P: lane 8 hh + r = -32 * (sum of the 16 quants of
///         sub-block 2 P + hh); [2560, 2624) d_x as F32 x 16.
inline constexpr int kPackedXSuperBytesQ4_K = 2368, kPackedXSuperBytesQ6_K = 2624;

/// Writes n_out rows (a multiple of 8) of n_in (a multiple of 256) Q4_K / Q6_K weights from the
/// plain layout at src into the layout above at dst (same size, no overlap).
void repack_q4_k(const void* src, void* dst, int64_t n_in, int64_t n_out);
void repack_q6_k(const void* src, void* dst, int64_t n_in, int64_t n_out);
/// One Q8_K activation row (n_in / 256 blocks at q8k) -> the expanded form above at dst.
void expand_q8_k_for_q4_k(const void* q8k, uint8_t* dst, int64_t n_in);
void expand_q8_k_for_q6_k(const void* q8k, uint8_t* dst, int64_t n_in);

/// PackedFn entries (n_pairs counts super-blocks here) for Q4_K and Q6_K.
void fill_kquant_scalar(Table& t);
void fill_kquant_avx2(Table& t);    // defined only when built with the AVX2 kernels
void fill_kquant_avx512(Table& t);  // defined only when built with the AVX-512 kernels (VNNI)

}  // namespace moelab::kernels::cpu
