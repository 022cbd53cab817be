// CPU compute kernels on ggml-format weights: dequantization, dot products and matrix products.
// (Contract fixed by the engine lead; the implementation lives in engine/kernels/.)
//
// Layout convention (as ggml): a weight tensor W with ne = [n_in, n_out] is n_out rows of n_in
// contiguous elements; row r starts at byte r * row_bytes(type, n_in).
//
// Numerics: dot products against quantized weights follow ggml's "vec_dot_type": the F32
// activation row is first quantized to Q8_0 (weights Q4_0, Q5_0, Q8_0), Q8_1 (Q4_1, Q5_1) or
// Q8_K (all K-quants), and F16 weights use an F16-rounded activation, so that moelab's logits
// agree with llama.cpp's within a small tolerance. `Precision::Exact` instead dequantizes the
// weights to F32 and keeps the activation in F32 (the reference the fast paths are tested
// against).
#pragma once

#include <cstdint>

#include "moelab/core/thread_pool.h"
#include "moelab/gguf/types.h"

namespace moelab::kernels {

enum class Precision {
  GgmlCompatible,  // quantize activations like ggml (default)
  Exact,           // dequantize weights, F32 activations
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

/// Encodes n F32 values into type (F32, F16, BF16, Q8_0, Q4_0 at least) - used by make-model.
/// Throws moelab::Error for a type without a quantizer.
void quantize_row(gguf::TensorType type, const float* src, void* dst, int64_t n);

/// y[r] = sum_i W[r, i] * x[i] for r in [0, n_out).
///   W: type [n_in, n_out]; x: F32 [n_in]; y: F32 [n_out].
void matvec(gguf::TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x,
            float* y, ThreadPool* pool, Precision p = Precision::GgmlCompatible);

/// Y[t, r] = sum_i W[r, i] * X[t, i] (Y = X · Wᵀ), for prefill.
///   W: type [n_in, n_out]; X: F32 [n_tokens, n_in] row-major; Y: F32 [n_tokens, n_out].
void matmul(gguf::TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x,
            int64_t n_tokens, float* y, ThreadPool* pool,
            Precision p = Precision::GgmlCompatible);

}  // namespace moelab::kernels
