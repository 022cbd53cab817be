// CPU compute kernels on ggml-format weights: dequantization, dot products and matrix products.
// (Contract fixed by the engine lead; the implementation lives in engine/kernels/.)
//
// Layout convention (as ggml): a weight tensor W with ne = [n_in, n_out] is n_out rows of n_in
// contiguous elements; row r starts at byte r * row_bytes(type, n_in).
//
// Numerics: dot products against quantized weights follow ggml's "vec_dot_type": the F32
// activation row is first quantized to Q8_0 (weights Q4_0, Q5_0, Q8_0, MXFP4), Q8_1 (Q4_1, Q5_1) or
// Q8_K (all K-quants), and F16 weights use an F16-rounded activation, so that moelab's logits
// agree with llama.cpp's within a small tolerance. `Precision::Exact` instead dequantizes the
// weights to F32 and keeps the activation in F32 (the reference the fast paths are tested
// against); F32 weights then sum in llamafile tinyBLAS's order, which llama.cpp uses for dense
// F32 products, and everything else (F32 weights under GgmlCompatible, dequantized rows) in
// ggml_vec_dot_f32's order (kernels/element/reduce.h).
//
// Decode speed (issue #19): matvec runs 8 weight rows per activation block, prefetches the next
// row group, and for Q4_0 / Q5_0 / MXFP4 (Q8_0 with AVX512-VNNI) forms the exact int32 sums as
// sum((q + offset) * y) - offset * sum(y); matvec_batch shares activations and threads across
// products. All of these give the reference kernels' results bit for bit (tested). Faster still,
// and not bit-identical, are the repacked Q4_0 / Q8_0 / MXFP4 / Q4_K / Q6_K kernels below (the
// default for models; MOELAB_EXACT_KERNELS=1 keeps the llama.cpp-order kernels everywhere).
#pragma once

#include <cstdint>

#include "moelab/core/thread_pool.h"
#include "moelab/gguf/types.h"

namespace moelab::kernels {

enum class Precision {
  GgmlCompatible,  // quantize activations like ggml (default)
  Exact,           // dequantize weights, F32 activations (F32 weights: tinyBLAS order)
};

/// Which SIMD path runs ("avx512", "avx2", "scalar"), chosen once at run time from CPUID;
/// the environment variable MOELAB_SIMD=scalar|avx2|avx512 forces a lower level for tests.
const char* simd_level();

/// True when moelab has kernels for this weight type.
bool supports(gguf::TensorType type);

/// Bytes of one row of n elements. Throws moelab::Error if n is not a multiple of the block.
uint64_t row_bytes(gguf::TensorType type, int64_t n);

/// Decodes n elements (a multiple of the block size) starting at src into dst (F32 [n]).
void dequantize_row(gguf::TensorType type, const void* src, float* dst, int64_t n);

/// Encodes n F32 values into type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, MXFP4) - used by
/// make-model. MXFP4 follows the OCP MX v1.0 conversion (kernels/element/blocks.h).
/// Throws moelab::Error for a type without a quantizer.
void quantize_row(gguf::TensorType type, const float* src, void* dst, int64_t n);

/// y[r] = sum_i W[r, i] * x[i] for r in [0, n_out).
///   W: type [n_in, n_out]; x: F32 [n_in]; y: F32 [n_out].
void matvec(gguf::TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x,
            float* y, ThreadPool* pool, Precision p = Precision::GgmlCompatible);

/// Y[t, r] = sum_i W[r, i] * X[t, i] (Y = X · Wᵀ), for prefill.
///   W: type [n_in, n_out]; X: F32 [n_tokens, n_in] row-major; Y: F32 [n_tokens, n_out].
void matmul(gguf::TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x,
            int64_t n_tokens, float* y, ThreadPool* pool, Precision p = Precision::GgmlCompatible);

// ---- Extensions (added by the kernels implementation; the functions above are unchanged) ----

/// One product of matvec_batch: y = W · x. W: type [n_in, n_out] starting at w; x: F32 [n_in];
/// y: F32 [n_out]. repacked: W is in the layout of repack_rows (see there).
struct MatvecJob {
  gguf::TensorType type;
  const void* w;
  int64_t n_in;
  int64_t n_out;
  const float* x;
  float* y;
  bool repacked = false;
};

// ---- Repacked weights (issue #19) -----------------------------------------------------------
enum class Simd;  // below
// Weights can be rewritten once at load into an interleaved layout: each group of 8 rows and
// pair of 32-element blocks holds the 16 block scales, then the quants as 4-byte runs of the 8
// rows side by side (the idea of llama.cpp's CPU "repack" of Q4_0 into 8-row blocks; layout and
// code are moelab's own, see kernels/cpu/impl.h). A SIMD register then holds one lane per row:
// one pass over an activation block serves 8 rows with one scale conversion and one FMA, and the
// activation is quantized to Q8_0 and broadcast once per product (shared across the experts of
// matvec_batch). The repacked matrix has exactly the bytes of the plain one (row group g starts
// where row 8 g did), so expert slices and offsets are unchanged.
// Numerics: the activation is the same Q8_0 row as ggml's, and the int32 sum of each row and
// block is the same exact integer, but the float accumulation order differs from ggml's (one sum
// per block instead of 8 lane partials; even and odd blocks in two sums, added at the end), so
// results differ from matvec on the plain layout in the last bits. They agree bit for bit at
// every SIMD level (scalar reference = AVX2 = AVX512-VNNI). exact_kernels() turns repacking off.

/// True when repack_rows supports this matrix: Q4_0, Q8_0 or MXFP4 (OCP MX v1.0; its E8M0 block
/// scales take the place of the FP16 ones) with n_in a multiple of 64 (pairs of blocks), or Q4_K
/// or Q6_K with n_in a multiple of 256 (super-blocks; layout and numerics in kernels/cpu/kquant.h:
/// ggml's Q8_K activation, the same integer sums, another float order), and n_out a positive
/// multiple of 8.
bool can_repack(gguf::TensorType type, int64_t n_in, int64_t n_out);

/// True when the repacked kernels of this type are worth it at the active SIMD level: always for
/// Q4_0 / Q8_0, for Q4_K / Q6_K only with an AVX2 or AVX512-VNNI kernel (their scalar reference
/// is slower than the plain per-row kernels). Models repack a weight only when this holds.
bool repack_pays(gguf::TensorType type);

/// Writes W (type [n_in, n_out], plain layout, at src) into dst in the repacked layout
/// (row_bytes(type, n_in) * n_out bytes; dst must not overlap src). Throws moelab::Error
/// (BadInput) when !can_repack(type, n_in, n_out).
void repack_rows(gguf::TensorType type, const void* src, void* dst, int64_t n_in, int64_t n_out);

/// True when MOELAB_EXACT_KERNELS=1 is set (read once): models are not repacked, so every product
/// runs the llama.cpp-order kernels above (the bit-exact fixture checks run this way).
bool exact_kernels();

/// matmul (and, with n_tokens == 1, matvec) on repacked weights; x, y as matmul. Each token's
/// result equals the 1-token product bit for bit (prefill == decode). level: the SIMD level
/// (lowered to detected_simd()); the default is active_simd().
void matmul_repacked(gguf::TensorType type, const void* w, int64_t n_in, int64_t n_out,
                     const float* x, int64_t n_tokens, float* y, ThreadPool* pool);
void matmul_repacked(gguf::TensorType type, const void* w, int64_t n_in, int64_t n_out,
                     const float* x, int64_t n_tokens, float* y, ThreadPool* pool, Simd level);

/// Several independent matvecs in one parallel pass (decode through a mixture of experts: the
/// gate and up products of all selected experts, then their down products). Each distinct
/// (x, activation format) is converted once and shared by the jobs that use it, and the pool's
/// threads split the rows of all jobs together instead of job by job. Every y equals matvec's
/// (a repacked job's: matmul_repacked's) bit for bit (the same per-row kernels). y must not
/// alias any x. Precision::Exact runs the jobs one after another through matvec (repacked jobs
/// are refused with moelab::Error Internal: they have no Exact form).
void matvec_batch(const MatvecJob* jobs, int n_jobs, ThreadPool* pool,
                  Precision p = Precision::GgmlCompatible);

/// SIMD levels of the CPU kernels. Avx2 needs AVX2+FMA+F16C; Avx512 needs AVX-512 F/BW/VL/DQ.
enum class Simd { Scalar = 0, Avx2 = 1, Avx512 = 2 };

/// The best level this CPU (and this build) supports.
Simd detected_simd();
/// The level the kernels use now: detected_simd(), lowered by MOELAB_SIMD or set_simd().
Simd active_simd();
/// Forces a level for the whole process (tests, benchmarks); a level above detected_simd() is
/// lowered to it. Returns the level now active. Do not call while kernels run on other threads.
Simd set_simd(Simd level);
/// "scalar", "avx2", "avx512".
const char* simd_name(Simd level);

/// The activation format ggml's CPU backend pairs with a weight type (its "vec_dot_type"):
/// F32 -> F32, F16 -> F16, BF16 -> BF16, Q4_0/Q5_0/Q8_0/MXFP4 -> Q8_0, Q4_1/Q5_1 -> Q8_1,
/// K-quants -> Q8_K. Throws moelab::Error for an unsupported type.
gguf::TensorType vec_dot_type(gguf::TensorType weight_type);

/// Bytes of one activation row of n elements converted for weight_type (under Precision p).
uint64_t activation_row_bytes(gguf::TensorType weight_type, int64_t n,
                              Precision p = Precision::GgmlCompatible);

/// Converts an F32 activation row x (F32 [n]) to vec_dot_type(weight_type) into dst
/// (activation_row_bytes(weight_type, n) bytes). Q8_0/Q8_1 use d = amax/127 and round half to
/// even (ggml's x86 path); Q8_K as in ggml's quantize_row_q8_K (F32 d, sums of 16 quants).
void quantize_activation(gguf::TensorType weight_type, const float* x, void* dst, int64_t n);

/// Dot product of one weight row with an activation row prepared by quantize_activation
/// (GgmlCompatible) or a plain F32 row (Exact: the weight row is dequantized first), at an
/// explicit SIMD level (lowered to detected_simd()). For tests and benchmarks.
float dot_row(gguf::TensorType type, const void* w_row, const void* x, int64_t n, Simd level,
              Precision p = Precision::GgmlCompatible);

/// dequantize_row at an explicit SIMD level (lowered to detected_simd()).
void dequantize_row(gguf::TensorType type, const void* src, float* dst, int64_t n, Simd level);

/// sum_i a[i] * b[i] over F32 [n] vectors with the active SIMD level (attention scores etc.),
/// in ggml_vec_dot_f32's order (kernels/element/reduce.h: dot_f32_ggml), bit-identical at every
/// level.
float dot_f32(const float* a, const float* b, int64_t n);

/// The same sum in llamafile tinyBLAS's order (kernels/element/reduce.h: dot_f32_tinyblas:
/// lane i & 7 accumulates with fused multiply-adds, then hsum8_tinyblas), bit-identical at every
/// level: llama.cpp's K·Q over an F16 cache (the query rounded to F16 first).
float dot_f32_tinyblas(const float* a, const float* b, int64_t n);

/// acc[i] = fma(w, v[i], acc[i]) for i < n (one rounding per element, so identical at every
/// SIMD level): one lane of a tinyBLAS-ordered weighted sum (attention probabilities · V).
void axpy_fma(float w, const float* v, float* acc, int64_t n);

/// y[i] = expf_ggml(x[i] - max) (kernels/element/reduce.h; llama.cpp's vector exponential) for
/// finite x[i], 0 for -inf; identical at every SIMD level. x, y: F32 [n] (may alias).
void exp_shifted(const float* x, float max, float* y, int64_t n);

/// SwiGLU of one row in place with llama.cpp's arithmetic (kernels/element/reduce.h: swiglu_row):
/// gate[i] = silu(gate[i]) * up[i]; identical at every SIMD level. gate, up: F32 [n].
void swiglu(float* gate, const float* up, int64_t n);

/// F32 <-> F16 / BF16 rows (round to nearest even; NaN stays NaN, overflow -> inf for F16).
void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n);
void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n);
void f32_to_bf16_row(const float* src, uint16_t* dst, int64_t n);
void bf16_to_f32_row(const uint16_t* src, float* dst, int64_t n);

}  // namespace moelab::kernels
