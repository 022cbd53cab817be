// The CUDA backend's kernels and runtime wrappers (interface and conventions: cuda_ops.h).
//
// Per-element math is the shared MOELAB_HD code (kernels/element, ops/element); this file adds
// the parallel decomposition: one warp per output row for matvec, one thread per block for
// activation quantization and dequantization, one block per row for norms and softmax, one
// block per (query, head) for attention. Built with --fmad=false so device arithmetic is not
// contracted into FMAs behind the shared code's back (as the CPU kernels' -ffp-contract=off).
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/cuda/cuda_ops.h"
#include "kernels/element/blocks.h"
#include "kernels/element/fp16.h"
#include "kernels/element/reduce.h"  // expf_ggml: the CPU softmax's exponential
#include "moelab/core/error.h"
#include "ops/element/element.h"

#ifndef MOELAB_CUDA_EMU
// Launch syntax that the CPU emulator (emu/include/cuda_runtime.h) can also provide:
// MOELAB_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...).
#define MOELAB_LAUNCH(g, b, m, s, ...) __VA_ARGS__<<<g, b, m, s>>>
#define MOELAB_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

namespace moelab::cuda {

namespace kel = moelab::kernels::el;
namespace oel = moelab::ops::element;

namespace {

[[noreturn]] void fail(const std::string& op, cudaError_t err) {
  cudaGetLastError();  // clear a non-sticky error
  throw Error(ErrorKind::Io, "CUDA error in " + op + ": " + cudaGetErrorName(err) + ": " +
                                 cudaGetErrorString(err));
}
void check(cudaError_t err, const std::string& op) {
  if (err != cudaSuccess) fail(op, err);
}
// After a kernel launch: configuration errors are reported here, execution errors by a later
// synchronising call (stream_sync names the op that waited).
void check_launch(const char* op) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) fail(op, err);
}
void check_launch(const char* op, WType t) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) fail(std::string(op) + "(" + wtype_name(t) + ")", err);
}

constexpr int kWarp = 32;
inline unsigned grid_for(int64_t count, int block) {
  const int64_t g = (count + block - 1) / block;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}
// grid.y is limited to 65535: kernels with a row index in y loop over it with this stride.
inline unsigned grid_y(int64_t rows) {
  return static_cast<unsigned>(rows < 1 ? 1 : (rows > 65535 ? 65535 : rows));
}

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block-wide reductions for blockDim.x a multiple of 32 (<= 1024); every thread gets the result.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* shm /* [32] */) {
  const int lane = threadIdx.x % kWarp, wid = threadIdx.x / kWarp;
  for (int o = kWarp / 2; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();  // shm may still be read by a previous reduction
  if (lane == 0) shm[wid] = v;
  __syncthreads();
  const int nw = (blockDim.x + kWarp - 1) / kWarp;
  T r = shm[0];
  for (int i = 1; i < nw; ++i) r = op(r, shm[i]);
  return r;
}
struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return a > b ? a : b; }
};

// ---- block formats --------------------------------------------------------------------------

// Weight block type -> its ggml activation block type and block size.
template <typename WB>
struct Fmt;
template <>
struct Fmt<kel::BlockQ4_0> {
  using Act = kel::BlockQ8_0;
  static constexpr int kQK = 32;
};
template <>
struct Fmt<kel::BlockQ4_1> {
  using Act = kel::BlockQ8_1;
  static constexpr int kQK = 32;
};
template <>
struct Fmt<kel::BlockQ5_0> {
  using Act = kel::BlockQ8_0;
  static constexpr int kQK = 32;
};
template <>
struct Fmt<kel::BlockQ5_1> {
  using Act = kel::BlockQ8_1;
  static constexpr int kQK = 32;
};
template <>
struct Fmt<kel::BlockQ8_0> {
  using Act = kel::BlockQ8_0;
  static constexpr int kQK = 32;
};
template <>
struct Fmt<kel::BlockMXFP4> {
  using Act = kel::BlockQ8_0;
  static constexpr int kQK = 32;
};
template <>
struct Fmt<kel::BlockQ2_K> {
  using Act = kel::BlockQ8_K;
  static constexpr int kQK = 256;
};
template <>
struct Fmt<kel::BlockQ3_K> {
  using Act = kel::BlockQ8_K;
  static constexpr int kQK = 256;
};
template <>
struct Fmt<kel::BlockQ4_K> {
  using Act = kel::BlockQ8_K;
  static constexpr int kQK = 256;
};
template <>
struct Fmt<kel::BlockQ5_K> {
  using Act = kel::BlockQ8_K;
  static constexpr int kQK = 256;
};
template <>
struct Fmt<kel::BlockQ6_K> {
  using Act = kel::BlockQ8_K;
  static constexpr int kQK = 256;
};

// Calls f(WB{}) with the block type of t (quantized types only); returns false for float types.
template <typename F>
bool with_block(WType t, F&& f) {
  switch (t) {
    case WType::Q4_0:
      f(kel::BlockQ4_0{});
      return true;
    case WType::Q4_1:
      f(kel::BlockQ4_1{});
      return true;
    case WType::Q5_0:
      f(kel::BlockQ5_0{});
      return true;
    case WType::Q5_1:
      f(kel::BlockQ5_1{});
      return true;
    case WType::Q8_0:
      f(kel::BlockQ8_0{});
      return true;
    case WType::MXFP4:
      f(kel::BlockMXFP4{});
      return true;
    case WType::Q2_K:
      f(kel::BlockQ2_K{});
      return true;
    case WType::Q3_K:
      f(kel::BlockQ3_K{});
      return true;
    case WType::Q4_K:
      f(kel::BlockQ4_K{});
      return true;
    case WType::Q5_K:
      f(kel::BlockQ5_K{});
      return true;
    case WType::Q6_K:
      f(kel::BlockQ6_K{});
      return true;
    default:
      return false;
  }
}

// Float element access (F32 / F16 / BF16 stored values).
enum FKind : int { kF32 = 0, kF16 = 1, kBF16 = 2 };
template <int K>
__device__ inline float load_el(const void* p, int64_t i) {
  if constexpr (K == kF32) return static_cast<const float*>(p)[i];
  if constexpr (K == kF16) return kel::f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  return kel::bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

// ---- activation preparation -------------------------------------------------------------------

// Activation values as the CPU kernels see them. kDecode false: the prepared activations matvec
// reads (Q8 blocks, F16 / BF16 values, or an F32 copy). kDecode true (round_act): the same
// values decoded again to F32 for a GEMM. (Q8_1's s = f16(d * sum q), which the CPU's Q4_1 /
// Q5_1 dot uses for the min term, is not representable in a plain GEMM: there the min term
// uses d * sum q unrounded.)
__device__ inline void decode_act(const kel::BlockQ8_0& b, float* y) {
  kel::dequant(b, y);
}
__device__ inline void decode_act(const kel::BlockQ8_1& b, float* y) {
  const float d = kel::f16_to_f32(b.d);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}
__device__ inline void decode_act(const kel::BlockQ8_K& b, float* y) {
  for (int j = 0; j < 256; ++j) y[j] = static_cast<float>(b.qs[j]) * b.d;
}
// One thread per block of QK activations.
template <typename AB, int QK, bool kDecode>
__global__ void k_act_q(const float* x, int64_t ldx, int64_t n_rows, int64_t n_blocks, void* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_rows * n_blocks) return;
  const int64_t r = i / n_blocks, b = i % n_blocks;
  if constexpr (kDecode) {
    AB q;
    kel::quantize_act(x + r * ldx + b * QK, q);
    decode_act(q, static_cast<float*>(out) + r * n_blocks * QK + b * QK);
  } else {
    kel::quantize_act(x + r * ldx + b * QK, static_cast<AB*>(out)[r * n_blocks + b]);
  }
}
// F16 / BF16 rounding (Ggml mode for F16 / BF16 weights), or an F32 copy; one thread per value.
template <int K, bool kDecode>
__global__ void k_act_f(const float* x, int64_t ldx, int64_t n_rows, int64_t n_in, void* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_rows * n_in) return;
  const int64_t r = i / n_in, c = i % n_in;
  const float v = x[r * ldx + c];
  if constexpr (K == kF32) {
    static_cast<float*>(out)[i] = v;
  } else if constexpr (kDecode) {
    static_cast<float*>(out)[i] =
        K == kF16 ? kel::f16_to_f32(kel::f32_to_f16(v)) : kel::bf16_to_f32(kel::f32_to_bf16(v));
  } else {
    static_cast<uint16_t*>(out)[i] = K == kF16 ? kel::f32_to_f16(v) : kel::f32_to_bf16(v);
  }
}

// ---- matvec -------------------------------------------------------------------------------------

constexpr int kMvWarps = 4;  // warps (output rows) per thread block

template <typename WB>
__global__ void k_matvec_q(const uint8_t* w, uint64_t row_bytes, uint64_t expert_stride,
                           const int32_t* ids, int64_t n_blocks, int64_t n_out, const uint8_t* a,
                           uint64_t a_row_bytes, int x_div, int64_t n_rows, float* y) {
  using AB = typename Fmt<WB>::Act;
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kMvWarps + threadIdx.x / kWarp;
  if (row >= n_out) return;
  for (int64_t j = blockIdx.y; j < n_rows; j += gridDim.y) {
    const int32_t e = ids ? ids[j] : 0;
    if (e < 0) {
      if (lane == 0) y[j * n_out + row] = 0.0f;
      continue;
    }
    const WB* wr = reinterpret_cast<const WB*>(w + static_cast<uint64_t>(e) * expert_stride +
                                               static_cast<uint64_t>(row) * row_bytes);
    const AB* xr = reinterpret_cast<const AB*>(a + static_cast<uint64_t>(j / x_div) * a_row_bytes);
    float s = 0.0f;
    for (int64_t b = lane; b < n_blocks; b += kWarp) s += kel::dot(wr[b], xr[b]);
    s = warp_sum(s);
    if (lane == 0) y[j * n_out + row] = s;
  }
}

// 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4) in the CPU's (ggml's x86) order
// (kernels/cpu/x86_common.h dot32): per row eight F32 lanes, lane l holding the exact int32 sum
// of elements 4l .. 4l+3 of each block, acc_l = fma(d_w * d_x, float(isum_l), acc_l) block after
// (d_w = kel::w_scale: binary16 d, or MXFP4's 2^(e - 128) against its doubled E2M1 values)
// block; then hsum8_tinyblas's association (= hsum_ps256) and, for Q4_1 / Q5_1, + the
// sequential sum of m_w * s_x. Eight threads per row, so each thread is one lane.
template <typename WB>
__device__ inline int q32_value(const WB& b, int j);
template <>
__device__ inline int q32_value(const kel::BlockQ8_0& b, int j) {
  return b.qs[j];
}
template <>
__device__ inline int q32_value(const kel::BlockQ4_0& b, int j) {
  return (j < 16 ? (b.qs[j] & 15) : (b.qs[j - 16] >> 4)) - 8;
}
template <>
__device__ inline int q32_value(const kel::BlockQ4_1& b, int j) {
  return j < 16 ? (b.qs[j] & 15) : (b.qs[j - 16] >> 4);
}
__device__ inline int q5_high(const uint8_t* qh, int j) {
  return ((qh[j >> 3] >> (j & 7)) & 1) << 4;
}
template <>
__device__ inline int q32_value(const kel::BlockQ5_0& b, int j) {
  return ((j < 16 ? (b.qs[j] & 15) : (b.qs[j - 16] >> 4)) | q5_high(b.qh, j)) - 16;
}
template <>
__device__ inline int q32_value(const kel::BlockQ5_1& b, int j) {
  return (j < 16 ? (b.qs[j] & 15) : (b.qs[j - 16] >> 4)) | q5_high(b.qh, j);
}
template <>
__device__ inline int q32_value(const kel::BlockMXFP4& b, int j) {
  return kel::e2m1_x2(kel::mxfp4_code(b, j));  // twice the E2M1 value; scale 2^(e - 128)
}

constexpr int kQ32Rows = 16;  // rows per 128-thread block (8 threads each)

template <typename WB>
__global__ void k_matvec_q32(const uint8_t* w, uint64_t row_bytes, uint64_t expert_stride,
                             const int32_t* ids, int64_t n_blocks, int64_t n_out, const uint8_t* a,
                             uint64_t a_row_bytes, int x_div, int64_t n_rows, float* y) {
  using AB = typename Fmt<WB>::Act;
  constexpr bool kMin = std::is_same_v<AB, kel::BlockQ8_1>;
  const int lane = threadIdx.x % 8;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kQ32Rows + threadIdx.x / 8;
  const bool valid = row < n_out;  // invalid rows still take part in the shuffles
  for (int64_t j = blockIdx.y; j < n_rows; j += gridDim.y) {
    const int32_t e = ids ? ids[j] : 0;  // uniform across the block
    if (e < 0) {
      if (valid && lane == 0) y[j * n_out + row] = 0.0f;
      continue;
    }
    const WB* wr = reinterpret_cast<const WB*>(w + static_cast<uint64_t>(e) * expert_stride +
                                               static_cast<uint64_t>(valid ? row : 0) * row_bytes);
    const AB* xr = reinterpret_cast<const AB*>(a + static_cast<uint64_t>(j / x_div) * a_row_bytes);
    float acc = 0.0f;
    if (valid)
      for (int64_t b = 0; b < n_blocks; ++b) {
        int isum = 0;
        for (int k = 4 * lane; k < 4 * lane + 4; ++k) isum += q32_value(wr[b], k) * xr[b].qs[k];
        const float d = kel::w_scale(wr[b]) * kel::h2f(xr[b].d);
        acc = fmaf(d, static_cast<float>(isum), acc);
      }
    const float b4 = acc + __shfl_xor_sync(0xffffffffu, acc, 4);
    const float b2 = b4 + __shfl_xor_sync(0xffffffffu, b4, 2);
    float s = b2 + __shfl_xor_sync(0xffffffffu, b2, 1);
    if (valid && lane == 0) {
      if constexpr (kMin) {
        float ms = 0.0f;
        for (int64_t b = 0; b < n_blocks; ++b) {
          const float m = kel::h2f(wr[b].m) * kel::h2f(xr[b].s);
          ms = ms + m;
        }
        s = s + ms;
      }
      y[j * n_out + row] = s;
    }
  }
}

// Summation orders of float products, as the CPU kernels (kernels::matmul) sum them:
//   kOrderTinyblas  Exact F32: el::dot_f32_tinyblas (8 fused lanes, hsum8_tinyblas)
//   kOrderGgml      F32 experts, Exact F16 / BF16 (weights decoded to F32): el::dot_f32_ggml
//                   (4 x 8 fused lanes over blocks of 32, its reduction, then the tail)
//   kOrderDouble    F16 / BF16 activations: exact products summed in double, as the CPU's
//                   dot_f16 but in a warp-parallel order (the float result can differ by an ulp
//                   where the double sums' roundings straddle a float rounding boundary)
enum MvOrder : int { kOrderDouble = 0, kOrderGgml = 1, kOrderTinyblas = 2 };

template <int WK, int AK, int ORDER>
__global__ void k_matvec_f(const uint8_t* w, uint64_t row_bytes, uint64_t expert_stride,
                           const int32_t* ids, int64_t n_in, int64_t n_out, const uint8_t* a,
                           uint64_t a_row_bytes, int x_div, int64_t n_rows, float* y) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kMvWarps + threadIdx.x / kWarp;
  if (row >= n_out) return;
  for (int64_t j = blockIdx.y; j < n_rows; j += gridDim.y) {
    const int32_t e = ids ? ids[j] : 0;
    if (e < 0) {
      if (lane == 0) y[j * n_out + row] = 0.0f;
      continue;
    }
    const void* wr =
        w + static_cast<uint64_t>(e) * expert_stride + static_cast<uint64_t>(row) * row_bytes;
    const void* xr = a + static_cast<uint64_t>(j / x_div) * a_row_bytes;
    if constexpr (ORDER == kOrderDouble) {
      double s = 0.0;
      for (int64_t i = lane; i < n_in; i += kWarp)
        s += static_cast<double>(load_el<WK>(wr, i)) * load_el<AK>(xr, i);
      s = warp_sum(s);
      if (lane == 0) y[j * n_out + row] = static_cast<float>(s);
    } else if constexpr (ORDER == kOrderGgml) {
      // Lane c is ggml's accumulator acc[c / 8][c % 8]: elements c, c + 32, ... of the whole
      // blocks of 32. Lanes 0..7 then form r[l] = (acc0 + acc2) + (acc1 + acc3), and lane 0
      // hsum8_ggml(r) = ((r0 + r4) + (r1 + r5)) + ((r2 + r6) + (r3 + r7)).
      const int64_t np = n_in & ~static_cast<int64_t>(31);
      float acc = 0.0f;
      for (int64_t i = lane; i < np; i += kWarp)
        acc = fmaf(load_el<WK>(wr, i), load_el<AK>(xr, i), acc);
      const float a1 = __shfl_xor_sync(0xffffffffu, acc, 8);
      const float a2 = __shfl_xor_sync(0xffffffffu, acc, 16);
      const float a3 = __shfl_xor_sync(0xffffffffu, acc, 24);
      const float r = (acc + a2) + (a1 + a3);
      const float b = r + __shfl_xor_sync(0xffffffffu, r, 4);
      const float c = b + __shfl_xor_sync(0xffffffffu, b, 1);
      float s = c + __shfl_xor_sync(0xffffffffu, c, 2);
      if (lane == 0) {
        for (int64_t i = np; i < n_in; ++i) {
          const float p = load_el<WK>(wr, i) * load_el<AK>(xr, i);
          s = s + p;
        }
        y[j * n_out + row] = s;
      }
    } else {
      // Lanes 0..7 are tinyBLAS's 8 lanes (elements l, l + 8, ...); lane 0 then reduces them
      // as hsum8_tinyblas: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
      float acc = 0.0f;
      if (lane < 8)
        for (int64_t i = lane; i < n_in; i += 8)
          acc = fmaf(load_el<WK>(wr, i), load_el<AK>(xr, i), acc);
      const float b = acc + __shfl_xor_sync(0xffffffffu, acc, 4);
      const float c = b + __shfl_xor_sync(0xffffffffu, b, 2);
      const float s = c + __shfl_xor_sync(0xffffffffu, c, 1);
      if (lane == 0) y[j * n_out + row] = s;
    }
  }
}

// ---- dequantization
// ------------------------------------------------------------------------------

template <typename WB>
__global__ void k_dequant_q(const uint8_t* src, uint64_t row_bytes, int64_t n_in,
                            const int32_t* row_ids, int64_t n_rows, float* dst) {
  constexpr int QK = Fmt<WB>::kQK;
  const int64_t n_blocks = n_in / QK;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_rows * n_blocks) return;
  const int64_t j = i / n_blocks, b = i % n_blocks;
  const int64_t r = row_ids ? row_ids[j] : j;
  const WB* wr = reinterpret_cast<const WB*>(src + static_cast<uint64_t>(r) * row_bytes);
  kel::dequant(wr[b], dst + j * n_in + b * QK);
}
template <int K>
__global__ void k_dequant_f(const uint8_t* src, uint64_t row_bytes, int64_t n_in,
                            const int32_t* row_ids, int64_t n_rows, float* dst) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_rows * n_in) return;
  const int64_t j = i / n_in, c = i % n_in;
  const int64_t r = row_ids ? row_ids[j] : j;
  dst[i] = load_el<K>(src + static_cast<uint64_t>(r) * row_bytes, c);
}

// ---- tiled GEMM (fallback when libcublas cannot be loaded)
// ----------------------------------------

constexpr int kTile = 16;
// Y[t, o] = sum_i X[t, i] * W[o, i]
__global__ void k_gemm_tiled(int64_t n_tok, int64_t n_in, int64_t n_out, const float* x,
                             const float* w, float* y) {
  __shared__ float xs[kTile][kTile + 1];
  __shared__ float ws[kTile][kTile + 1];
  const int64_t t = static_cast<int64_t>(blockIdx.y) * kTile + threadIdx.y;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kTile + threadIdx.x;
  const int64_t o_load = static_cast<int64_t>(blockIdx.x) * kTile + threadIdx.y;
  float acc = 0.0f;
  for (int64_t i0 = 0; i0 < n_in; i0 += kTile) {
    const int64_t i = i0 + threadIdx.x;
    xs[threadIdx.y][threadIdx.x] = (t < n_tok && i < n_in) ? x[t * n_in + i] : 0.0f;
    ws[threadIdx.y][threadIdx.x] = (o_load < n_out && i < n_in) ? w[o_load * n_in + i] : 0.0f;
    __syncthreads();
    for (int kk = 0; kk < kTile; ++kk) acc += xs[threadIdx.y][kk] * ws[threadIdx.x][kk];
    __syncthreads();
  }
  if (t < n_tok && o < n_out) y[t * n_out + o] = acc;
}

// ---- row ops ------------------------------------------------------------------------------------

constexpr int kRowThreads = 256;

__global__ void k_rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  __shared__ double shm[kWarp];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * n;
  float* yr = y + r * n;
  double part = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) part += static_cast<double>(xr[i] * xr[i]);
  const double sum = block_reduce(part, SumOp{}, shm);
  const float mean = static_cast<float>(sum / n);
  const float sc = 1.0f / sqrtf(mean + eps);
  __syncthreads();  // every thread has read x before any writes y (x and y may alias)
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    yr[i] = w ? (xr[i] * sc) * w[i] : xr[i] * sc;
}

__global__ void k_softmax_rows(float* x, int64_t n) {
  __shared__ float shf[kWarp];
  __shared__ double shd[kWarp];
  float* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = xr[i] > mx ? xr[i] : mx;
  mx = block_reduce(mx, MaxOp{}, shf);
  if (mx == -INFINITY) {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) xr[i] = 0.0f;
    return;
  }
  double part = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float e = xr[i] == -INFINITY ? 0.0f : kel::expf_ggml(xr[i] - mx);
    xr[i] = e;
    part += e;
  }
  const double sum = block_reduce(part, SumOp{}, shd);
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) xr[i] *= inv;
}

__global__ void k_add_bias(float* x, const float* b, int64_t n_rows, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n_rows * n) x[i] += b[i % n];
}
__global__ void k_add_bias_ids(float* x, const float* b, const int32_t* ids, int64_t n_rows,
                               int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_rows * n) return;
  const int32_t e = ids[i / n];
  if (e >= 0) x[i] += b[static_cast<int64_t>(e) * n + i % n];
}
__global__ void k_glu_oai(float* gate, const float* up, int64_t count, float alpha, float limit) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) gate[i] = oel::swiglu_oai(gate[i], up[i], alpha, limit);
}
__global__ void k_add(float* x, const float* y, int64_t count) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] += y[i];
}
__global__ void k_scale(float* x, float f, int64_t count) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] *= f;
}
__global__ void k_softcap(float* x, float cap, int64_t count) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] = oel::softcap(x[i], cap);
}
__global__ void k_glu(float* gate, const float* up, int64_t count, int64_t row, bool gelu) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const bool block8 = i % row < (row & ~static_cast<int64_t>(7));  // as el::swiglu_row
  gate[i] =
      (gelu ? oel::gelu_ggml(gate[i]) : (block8 ? oel::silu_ggml(gate[i]) : oel::silu(gate[i]))) *
      up[i];
}
__global__ void k_rope(float* x, int64_t n_tok, int n_head, int head_dim, const int32_t* pos,
                       int n_rot, float freq_base, float freq_scale, int rope_type,
                       oel::RopeYarn yarn) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_tok * n_head) return;
  const int64_t t = i / n_head;
  oel::rope_head(x + i * head_dim, n_rot, static_cast<float>(pos[t]), freq_base, freq_scale,
                 rope_type, yarn);
}
__global__ void k_kv_store(void* kc, void* vc, bool f16, int64_t cell0, const float* k,
                           const float* v, int64_t n, int64_t kw, int64_t vw) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nk = n * kw, nv = n * vw;
  if (i < nk) {
    const int64_t dst = cell0 * kw + i;
    if (f16)
      static_cast<uint16_t*>(kc)[dst] = kel::f32_to_f16(k[i]);
    else
      static_cast<float*>(kc)[dst] = k[i];
  } else if (i < nk + nv) {
    const int64_t j = i - nk;
    const int64_t dst = cell0 * vw + j;
    if (f16)
      static_cast<uint16_t*>(vc)[dst] = kel::f32_to_f16(v[j]);
    else
      static_cast<float*>(vc)[dst] = v[j];
  }
}

// ---- attention
// ------------------------------------------------------------------------------------

constexpr int kAttnThreads = 128;

#ifdef MOELAB_CUDA_EMU
// The device pointers inside AttnArgs, for the emulator's kernel-argument check.
[[maybe_unused]] std::vector<std::pair<const char*, const void*>> emu_device_pointers(
    const AttnArgs& a) {
  return {{"pos", a.pos}, {"mask", a.mask}, {"key", a.key}, {"k", a.k}, {"v", a.v}};
}
#endif

// One block per (query t0 + blockIdx.x, head blockIdx.y), bit for bit the CPU kernel
// (ops/attention_kernel.h: llama.cpp's order). Dynamic shared memory: head_dim floats (the
// query, F16-rounded for an F16 cache as ggml does). Threads take keys for K·Q and output
// elements for probabilities · V; the softmax sum runs on one thread in the CPU's order.
__global__ void k_attention(AttnArgs a, const float* q, int64_t t0, int64_t n_chunk, int64_t n_kv,
                            float* out, float* scores) {
  MOELAB_DYNAMIC_SHARED(float, qh);
  __shared__ float shf[kWarp];
  __shared__ float inv_shared;
  const int64_t tc = blockIdx.x;  // index in the chunk
  const int64_t t = t0 + tc;
  const int h = blockIdx.y;
  const int hk = h / (a.n_head / a.n_head_kv);
  const int64_t k_stride = static_cast<int64_t>(a.n_head_kv) * a.head_dim;
  const int64_t v_stride = a.v_row > 0 ? a.v_row : static_cast<int64_t>(a.n_head_kv) * a.head_dim_v;
  const float* qv =
      q + t * static_cast<int64_t>(a.n_head) * a.head_dim + static_cast<int64_t>(h) * a.head_dim;
  for (int d = threadIdx.x; d < a.head_dim; d += blockDim.x)
    qh[d] = a.f16 ? oel::round_f16(qv[d]) : qv[d];
  __syncthreads();
  float* s = scores + (static_cast<int64_t>(h) * n_chunk + tc) * n_kv;
  const int64_t pos_q = a.pos[t];
  float mx = -INFINITY;
  const float sink = a.sinks ? a.sinks[h] : -INFINITY;  // ops::AttentionParams::sinks
  for (int64_t i = threadIdx.x; i < n_kv; i += blockDim.x) {
    const bool vis = a.mask ? a.mask[t * n_kv + i] != 0 : oel::key_visible(pos_q, i, a.window);
    if (!vis) {
      s[i] = -INFINITY;
      continue;
    }
    // K·Q as llama.cpp: an F16 cache in tinyBLAS's 8 fused lanes over the F16 query, an F32
    // cache in ggml_vec_dot_f32's order.
    float dot;
    if (a.f16) {
      const uint16_t* kr =
          static_cast<const uint16_t*>(a.k) + i * k_stride + static_cast<int64_t>(hk) * a.head_dim;
      float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int d = 0; d < a.head_dim; ++d)
        lanes[d & 7] = fmaf(qh[d], kel::f16_to_f32(kr[d]), lanes[d & 7]);
      dot = kel::hsum8_tinyblas(lanes);
    } else {
      const float* kr =
          static_cast<const float*>(a.k) + i * k_stride + static_cast<int64_t>(hk) * a.head_dim;
      dot = kel::dot_f32_ggml(qh, kr, a.head_dim);
    }
    float x = dot * a.scale;
    if (a.softcap > 0) x = oel::softcap(x, a.softcap);
    s[i] = x;
    mx = x > mx ? x : mx;
  }
  mx = block_reduce(mx, MaxOp{}, shf);  // exact in any order
  if (a.sinks) mx = sink > mx ? sink : mx;
  if (mx == -INFINITY) {
    for (int64_t i = threadIdx.x; i < n_kv; i += blockDim.x) s[i] = 0.0f;
  } else {
    for (int64_t i = threadIdx.x; i < n_kv; i += blockDim.x)
      s[i] = s[i] == -INFINITY ? 0.0f : kel::expf_ggml(s[i] - mx);
    __syncthreads();
    if (threadIdx.x == 0) {
      // ops::detail::softmax_keyed: blocks of 8 keys (key >> 3), lane key & 7, each block
      // reduced as tinyBLAS's hsum, the blocks summed in double in key order.
      double sum = 0.0;
      float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t block = -1;
      for (int64_t i = 0; i < n_kv; ++i) {
        const float e = s[i];
        if (e == 0.0f) continue;
        const int64_t k = a.key ? a.key[i] : i;
        if ((k >> 3) != block) {
          if (block >= 0) sum += static_cast<double>(kel::hsum8_tinyblas(lanes));
          for (int l = 0; l < 8; ++l) lanes[l] = 0.0f;
          block = k >> 3;
        }
        lanes[k & 7] = e;
      }
      sum += static_cast<double>(kel::hsum8_tinyblas(lanes));
      if (a.sinks) sum += static_cast<double>(expf(sink - mx));  // the sink's share
      inv_shared = static_cast<float>(1.0 / sum);
    }
    __syncthreads();
    const float inv = inv_shared;
    for (int64_t i = threadIdx.x; i < n_kv; i += blockDim.x) s[i] *= inv;
  }
  __syncthreads();  // all probabilities written before any thread reads the whole row
  // probabilities · V in tinyBLAS order: lane (key & 7) of each output accumulates with fused
  // multiply-adds (the probability F16-rounded for an F16 cache), masked cells skipped.
  float* o = out + t * static_cast<int64_t>(a.n_head) * a.head_dim_v +
             static_cast<int64_t>(h) * a.head_dim_v;
  for (int d = threadIdx.x; d < a.head_dim_v; d += blockDim.x) {
    float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < n_kv; ++i) {
      const float p = s[i];
      if (p == 0.0f) continue;
      const int lane = static_cast<int>((a.key ? a.key[i] : i) & 7);
      if (a.f16) {
        const uint16_t* vr = static_cast<const uint16_t*>(a.v) + i * v_stride +
                             static_cast<int64_t>(hk) * a.head_dim_v;
        lanes[lane] = fmaf(oel::round_f16(p), kel::f16_to_f32(vr[d]), lanes[lane]);
      } else {
        const float* vr =
            static_cast<const float*>(a.v) + i * v_stride + static_cast<int64_t>(hk) * a.head_dim_v;
        lanes[lane] = fmaf(p, vr[d], lanes[lane]);
      }
    }
    o[d] = kel::hsum8_tinyblas(lanes);
  }
}

// ---- MoE
// ------------------------------------------------------------------------------------------

__global__ void k_route(const float* logits, int64_t n, int n_expert, int k, bool renorm,
                        float* probs, int32_t* ids, float* weights, float* applied, bool unit) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  oel::route_token(logits + t * n_expert, n_expert, k, renorm, probs + t * n_expert, ids + t * k,
                   weights + t * k, applied + t * k, unit);
}
__global__ void k_route_gated(const float* logits, int64_t n, int n_expert, int k, oel::RouteSpec r,
                              const float* sel_bias, float* probs, float* selection, int32_t* ids,
                              float* weights, float* applied, int32_t* groups) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  oel::route_token_gated(logits + t * n_expert, n_expert, k, r, sel_bias, probs + t * n_expert,
                         sel_bias ? selection + t * n_expert : nullptr, ids + t * k,
                         weights + t * k, applied + t * k,
                         groups ? groups + t * r.n_group_used : nullptr);
}
__global__ void k_kept_groups(const float* sel, int64_t n, int n_expert, int n_group,
                              int n_group_used, float* out) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  int32_t g[oel::kMaxExpertGroups];
  oel::top_groups(sel + t * n_expert, n_expert, n_group, n_group_used, g);
  for (int j = 0; j < n_group_used; ++j) out[t * n_group_used + j] = static_cast<float>(g[j]);
}
__global__ void k_copy_2d(const float* src, int64_t ss, float* dst, int64_t ds, int64_t rows,
                          int64_t width) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * width) return;
  const int64_t r = i / width, c = i % width;
  dst[r * ds + c] = src[r * ss + c];
}
__global__ void k_moe_sum(const float* res, const int32_t* ids, const float* applied, int64_t n,
                          int k, int64_t E, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * E) return;
  const int64_t t = i / E, c = i % E;
  float acc = 0.0f;
  for (int j = 0; j < k; ++j) {
    if (ids[t * k + j] < 0) continue;
    acc += res[(t * k + j) * E + c] * applied[t * k + j];
  }
  out[i] = acc;
}
__global__ void k_gather(const float* src, const int32_t* rows, int div, int64_t m, int64_t E,
                         float* dst) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * E) return;
  const int64_t r = i / E, c = i % E;
  dst[i] = src[static_cast<int64_t>(rows[r] / div) * E + c];
}
__global__ void k_scatter(const float* src, const int32_t* rows, int64_t m, int64_t E, float* dst) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * E) return;
  const int64_t r = i / E, c = i % E;
  dst[static_cast<int64_t>(rows[r]) * E + c] = src[i];
}
// One block per token: x[t] *= sigmoid(g · cur[t]), the sigmoid as the CPU context computes it
// (silu(x) / x, llama.cpp's graph). The dot is summed in parallel (F32).
__global__ void k_shexp_gate(float* x, const float* g, const float* cur, int64_t E) {
  __shared__ float shf[kWarp];
  const int64_t t = blockIdx.x;
  float part = 0.0f;
  for (int64_t i = threadIdx.x; i < E; i += blockDim.x) part += g[i] * cur[t * E + i];
  const float dot = block_reduce(part, SumOp{}, shf);
  const float gate = dot != 0.0f ? oel::silu(dot) / dot : 0.5f;  // sigmoid as llama.cpp: silu(x)/x
  for (int64_t i = threadIdx.x; i < E; i += blockDim.x) x[t * E + i] *= gate;
}
__global__ void k_ids_to_float(const int32_t* ids, int64_t count, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = static_cast<float>(ids[i]);
}

constexpr int kEw = 256;  // threads per block of element-wise kernels

}  // namespace

// ===== runtime wrappers
// =============================================================================

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why) *why = std::string("no usable NVIDIA GPU: ") + cudaGetErrorString(err);
    cudaGetLastError();
    return 0;
  }
  if (n == 0 && why) *why = "no NVIDIA GPU found";
  return n;
}

std::string use_device() {
  check(cudaSetDevice(0), "cudaSetDevice");
  static const std::string name = [] {
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    return std::string(prop.name);
  }();
  return name;
}

void mem_info(size_t* free_bytes, size_t* total_bytes) {
  check(cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo");
}

void* dmalloc(size_t bytes, const char* what) {
  if (bytes == 0) bytes = 1;
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t f = 0, t = 0;
    cudaMemGetInfo(&f, &t);
    cudaGetLastError();
    throw Error(ErrorKind::Io, std::string("out of GPU memory: ") + what + " needs " +
                                   format_bytes(bytes) + ", " + format_bytes(f) + " of " +
                                   format_bytes(t) + " free (" + cudaGetErrorString(err) + ")");
  }
  return p;
}
void dfree(void* p) noexcept {
  if (p) cudaFree(p);
}
void* hmalloc_pinned(size_t bytes, const char* what) {
  if (bytes == 0) bytes = 1;
  void* p = nullptr;
  check(cudaHostAlloc(&p, bytes, cudaHostAllocDefault), std::string("cudaHostAlloc ") + what);
  return p;
}
void hfree_pinned(void* p) noexcept {
  if (p) cudaFreeHost(p);
}
void memset_async(void* dst, int value, size_t bytes, Stream s) {
  check(cudaMemsetAsync(dst, value, bytes, s), "cudaMemsetAsync");
}
void h2d(void* dst, const void* src, size_t bytes, Stream s) {
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "copy to device");
}
void d2h(void* dst, const void* src, size_t bytes, Stream s) {
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), "copy to host");
}
void d2d(void* dst, const void* src, size_t bytes, Stream s) {
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s), "copy on device");
}
void h2d_sync(void* dst, const void* src, size_t bytes) {
  if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "weight upload");
}

Stream stream_create() {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  return s;
}
void stream_destroy(Stream s) noexcept {
  if (s) cudaStreamDestroy(s);
}
void stream_sync(Stream s, const char* op) {
  check(cudaStreamSynchronize(s), op);
}
Event event_create() {
  cudaEvent_t e = nullptr;
  check(cudaEventCreate(&e), "cudaEventCreate");
  return e;
}
void event_destroy(Event e) noexcept {
  if (e) cudaEventDestroy(e);
}
void event_record(Event e, Stream s) {
  check(cudaEventRecord(e, s), "cudaEventRecord");
}
float event_elapsed_ms(Event a, Event b) {
  float ms = 0;
  check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
  return ms;
}

// ===== ops
// ============================================================================================

bool supported(int t) {
  switch (static_cast<WType>(t)) {
    case WType::F32:
    case WType::F16:
    case WType::BF16:
    case WType::Q4_0:
    case WType::Q4_1:
    case WType::Q5_0:
    case WType::Q5_1:
    case WType::Q8_0:
    case WType::Q2_K:
    case WType::Q3_K:
    case WType::Q4_K:
    case WType::Q5_K:
    case WType::Q6_K:
    case WType::MXFP4:
      return true;
  }
  return false;
}

const char* wtype_name(WType t) {
  switch (t) {
    case WType::F32:
      return "F32";
    case WType::F16:
      return "F16";
    case WType::BF16:
      return "BF16";
    case WType::Q4_0:
      return "Q4_0";
    case WType::Q4_1:
      return "Q4_1";
    case WType::Q5_0:
      return "Q5_0";
    case WType::Q5_1:
      return "Q5_1";
    case WType::Q8_0:
      return "Q8_0";
    case WType::Q2_K:
      return "Q2_K";
    case WType::Q3_K:
      return "Q3_K";
    case WType::Q4_K:
      return "Q4_K";
    case WType::Q5_K:
      return "Q5_K";
    case WType::Q6_K:
      return "Q6_K";
    case WType::MXFP4:
      return "MXFP4";
  }
  return "?";
}

namespace {
int float_kind(WType t) {
  return t == WType::F16 ? kF16 : (t == WType::BF16 ? kBF16 : kF32);
}
bool is_float(WType t) {
  return t == WType::F32 || t == WType::F16 || t == WType::BF16;
}
// The activation element kind for float weights: F32 in Exact mode, else the weight's own.
int act_kind(WType t, ActMode m) {
  return m == ActMode::Exact ? kF32 : float_kind(t);
}
void require_multiple(WType t, int64_t n_in, int qk, const char* op) {
  if (n_in % qk != 0)
    throw Error(ErrorKind::Internal, std::string(op) + "(" + wtype_name(t) + "): n_in " +
                                         std::to_string(n_in) + " is not a multiple of " +
                                         std::to_string(qk));
}
}  // namespace

size_t act_row_bytes(WType t, ActMode m, int64_t n_in) {
  if (is_float(t)) return static_cast<size_t>(n_in) * (act_kind(t, m) == kF32 ? 4 : 2);
  if (m == ActMode::Exact)
    throw Error(ErrorKind::Internal,
                std::string("matvec(") + wtype_name(t) + "): exact mode is for float weights only");
  size_t bytes = 0;
  with_block(t, [&](auto wb) {
    using WB = decltype(wb);
    using AB = typename Fmt<WB>::Act;
    bytes = static_cast<size_t>(n_in / Fmt<WB>::kQK) * sizeof(AB);
  });
  return bytes;
}

namespace {
// prepare_act (kDecode false) and round_act (true): the activations of mode m for weights t.
template <bool kDecode>
void launch_act(WType t, ActMode m, const float* x, int64_t ldx, int64_t n_rows, int64_t n_in,
                void* out, Stream s, const char* op) {
  if (n_rows <= 0) return;
  if (is_float(t)) {
    const int64_t count = n_rows * n_in;
    switch (act_kind(t, m)) {
      case kF32:
        MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_act_f<kF32, kDecode>)
        (x, ldx, n_rows, n_in, out);
        break;
      case kF16:
        MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_act_f<kF16, kDecode>)
        (x, ldx, n_rows, n_in, out);
        break;
      default:
        MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_act_f<kBF16, kDecode>)
        (x, ldx, n_rows, n_in, out);
        break;
    }
    check_launch(op, t);
    return;
  }
  if (m == ActMode::Exact) act_row_bytes(t, m, n_in);  // throws
  with_block(t, [&](auto wb) {
    using WB = decltype(wb);
    using AB = typename Fmt<WB>::Act;
    constexpr int QK = Fmt<WB>::kQK;
    require_multiple(t, n_in, QK, op);
    const int64_t nb = n_in / QK;
    MOELAB_LAUNCH(grid_for(n_rows * nb, 128), 128, 0, s, k_act_q<AB, QK, kDecode>)
    (x, ldx, n_rows, nb, out);
  });
  check_launch(op, t);
}
}  // namespace

void prepare_act(WType t, ActMode m, const float* x, int64_t ldx, int64_t n_rows, int64_t n_in,
                 void* out, Stream s) {
  launch_act<false>(t, m, x, ldx, n_rows, n_in, out, s, "prepare_act");
}

void round_act(WType t, ActMode m, const float* x, int64_t ldx, int64_t n_rows, int64_t n_in,
               float* out, Stream s) {
  launch_act<true>(t, m, x, ldx, n_rows, n_in, out, s, "round_act");
}

void matvec(WType t, ActMode m, const void* w, uint64_t row_bytes, uint64_t expert_stride,
            const int32_t* ids, int64_t n_in, int64_t n_out, const void* a, int x_div,
            int64_t n_rows, float* y, Stream s) {
  if (n_rows <= 0 || n_out <= 0) return;
  if (x_div < 1) throw Error(ErrorKind::Internal, "matvec: x_div must be >= 1");
  const dim3 grid(grid_for(n_out, kMvWarps), grid_y(n_rows));
  const dim3 block(kMvWarps * kWarp);
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* ab = static_cast<const uint8_t*>(a);
  const uint64_t arb = act_row_bytes(t, m, n_in);
  if (is_float(t)) {
    const int wk = float_kind(t), ak = act_kind(t, m);
#define MOELAB_MV_F(WK, AK, ORDER)                            \
  MOELAB_LAUNCH(grid, block, 0, s, k_matvec_f<WK, AK, ORDER>) \
  (wb, row_bytes, expert_stride, ids, n_in, n_out, ab, arb, x_div, n_rows, y)
    if (wk == kF32 && m == ActMode::Exact)
      MOELAB_MV_F(kF32, kF32, kOrderTinyblas);
    else if (wk == kF32)
      MOELAB_MV_F(kF32, kF32, kOrderGgml);
    else if (wk == kF16 && ak == kF16)
      MOELAB_MV_F(kF16, kF16, kOrderDouble);
    else if (wk == kF16)
      MOELAB_MV_F(kF16, kF32, kOrderGgml);
    else if (ak == kBF16)
      MOELAB_MV_F(kBF16, kBF16, kOrderDouble);
    else
      MOELAB_MV_F(kBF16, kF32, kOrderGgml);
#undef MOELAB_MV_F
    check_launch("matvec", t);
    return;
  }
  with_block(t, [&](auto blk) {
    using WB = decltype(blk);
    constexpr int QK = Fmt<WB>::kQK;
    require_multiple(t, n_in, QK, "matvec");
    if constexpr (QK == 32) {
      const dim3 grid32(grid_for(n_out, kQ32Rows), grid_y(n_rows));
      MOELAB_LAUNCH(grid32, kQ32Rows * 8, 0, s, k_matvec_q32<WB>)
      (wb, row_bytes, expert_stride, ids, n_in / QK, n_out, ab, arb, x_div, n_rows, y);
      return;
    }
    MOELAB_LAUNCH(grid, block, 0, s, k_matvec_q<WB>)
    (wb, row_bytes, expert_stride, ids, n_in / QK, n_out, ab, arb, x_div, n_rows, y);
  });
  check_launch("matvec", t);
}

void dequantize_rows(WType t, const void* src, uint64_t row_bytes, int64_t n_in,
                     const int32_t* row_ids, int64_t n_rows, float* dst, Stream s) {
  if (n_rows <= 0) return;
  const auto* sb = static_cast<const uint8_t*>(src);
  if (is_float(t)) {
    const int64_t count = n_rows * n_in;
    switch (float_kind(t)) {
      case kF32:
        MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_dequant_f<kF32>)
        (sb, row_bytes, n_in, row_ids, n_rows, dst);
        break;
      case kF16:
        MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_dequant_f<kF16>)
        (sb, row_bytes, n_in, row_ids, n_rows, dst);
        break;
      default:
        MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_dequant_f<kBF16>)
        (sb, row_bytes, n_in, row_ids, n_rows, dst);
        break;
    }
    check_launch("dequantize", t);
    return;
  }
  with_block(t, [&](auto blk) {
    using WB = decltype(blk);
    constexpr int QK = Fmt<WB>::kQK;
    require_multiple(t, n_in, QK, "dequantize");
    const int64_t count = n_rows * (n_in / QK);
    MOELAB_LAUNCH(grid_for(count, 128), 128, 0, s, k_dequant_q<WB>)
    (sb, row_bytes, n_in, row_ids, n_rows, dst);
  });
  check_launch("dequantize", t);
}

// ---- cuBLAS, loaded at run time -----------------------------------------------------------------

namespace {
// The few cuBLAS v2 entry points used (signatures of cublas_api.h; enums as int:
// CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_STATUS_SUCCESS = 0).
struct CublasApi {
  int (*create)(void** handle) = nullptr;
  int (*destroy)(void* handle) = nullptr;
  int (*set_stream)(void* handle, cudaStream_t s) = nullptr;
  int (*get_version)(void* handle, int* version) = nullptr;
  int (*sgemm)(void* handle, int transa, int transb, int m, int n, int k, const float* alpha,
               const float* A, int lda, const float* B, int ldb, const float* beta, float* C,
               int ldc) = nullptr;
  std::string error;
  bool ok() const { return sgemm != nullptr; }
};
const CublasApi& cublas() {
  static const CublasApi api = [] {
    CublasApi a;
    // The loader's search path first, then the toolkit's usual places.
    std::vector<std::string> names = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};
    for (const char* env : {"CUDA_HOME", "CUDA_PATH"})
      if (const char* d = std::getenv(env)) names.push_back(std::string(d) + "/lib64/libcublas.so");
    names.push_back("/usr/local/cuda/lib64/libcublas.so");
#ifdef MOELAB_CUDA_EMU
    // The emulator's own libcublas (emu.cpp): the real one would need a real device.
    (void)names;
    auto sym = [](const char* n) { return ::moelab::cuda_emu::cublas_symbol(n); };
    if (!sym("cublasSgemm_v2")) {
      a.error = "MOELAB_CUDA_EMULATOR_CUBLAS=0";
      return a;
    }
#else
    void* lib = nullptr;
    for (const auto& name : names) {
      lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib) break;
    }
    if (!lib) {
      const char* e = dlerror();
      a.error = e ? e : "libcublas not found";
      return a;
    }
    auto sym = [&](const char* n) { return dlsym(lib, n); };
#endif
    a.create = reinterpret_cast<int (*)(void**)>(sym("cublasCreate_v2"));
    a.destroy = reinterpret_cast<int (*)(void*)>(sym("cublasDestroy_v2"));
    a.set_stream = reinterpret_cast<int (*)(void*, cudaStream_t)>(sym("cublasSetStream_v2"));
    a.get_version = reinterpret_cast<int (*)(void*, int*)>(sym("cublasGetVersion_v2"));
    a.sgemm = reinterpret_cast<decltype(a.sgemm)>(sym("cublasSgemm_v2"));
    if (!a.create || !a.destroy || !a.set_stream || !a.sgemm) {
      a.sgemm = nullptr;
      a.error = "libcublas lacks cublasSgemm_v2";
    }
    return a;
  }();
  return api;
}
}  // namespace

Blas::Blas(Stream s) : s_(s) {
  const CublasApi& api = cublas();
  if (api.ok()) {
    void* h = nullptr;
    int st = api.create(&h);
    if (st == 0) st = api.set_stream(h, s);
    if (st == 0) {
      handle_ = h;
      int v = 0;
      if (api.get_version) api.get_version(h, &v);
      what_ = "cuBLAS " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
              std::to_string(v % 100);
      return;
    }
    if (h) api.destroy(h);
    what_ = "tiled kernel (cublasCreate failed with status " + std::to_string(st) + ")";
    return;
  }
  what_ = "tiled kernel (libcublas not loadable: " + api.error + ")";
}
Blas::~Blas() {
  if (handle_) cublas().destroy(handle_);
}

void Blas::gemm(int64_t n_tok, int64_t n_in, int64_t n_out, const float* x, const float* w,
                float* y) {
  if (n_tok <= 0 || n_out <= 0) return;
  if (handle_) {
    if (n_tok > INT32_MAX || n_in > INT32_MAX || n_out > INT32_MAX)
      throw Error(ErrorKind::Internal, "gemm: dimensions exceed cuBLAS's int range");
    // Row-major Y[n_tok, n_out] is column-major Yᵀ (n_out x n_tok) = Wᵀ-as-stored · X:
    // W row-major [n_out, n_in] is column-major (n_in x n_out), so op(A) = Aᵀ.
    const float one = 1.0f, zero = 0.0f;
    const int st = cublas().sgemm(handle_, 1, 0, static_cast<int>(n_out), static_cast<int>(n_tok),
                                  static_cast<int>(n_in), &one, w, static_cast<int>(n_in), x,
                                  static_cast<int>(n_in), &zero, y, static_cast<int>(n_out));
    if (st != 0)
      throw Error(ErrorKind::Io, "cuBLAS error in gemm: cublasSgemm status " + std::to_string(st));
    return;
  }
  const dim3 block(kTile, kTile);
  const dim3 grid(grid_for(n_out, kTile), grid_for(n_tok, kTile));
  if (grid.y > 65535) throw Error(ErrorKind::Internal, "gemm: too many tokens for one launch");
  MOELAB_LAUNCH(grid, block, 0, s_, k_gemm_tiled)(n_tok, n_in, n_out, x, w, y);
  check_launch("gemm");
}

// ---- element-wise and row ops -------------------------------------------------------------------

void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps,
              Stream s) {
  if (n_rows <= 0) return;
  if (n_rows > INT32_MAX) throw Error(ErrorKind::Internal, "rms_norm: too many rows");
  MOELAB_LAUNCH(static_cast<unsigned>(n_rows), kRowThreads, 0, s, k_rms_norm)(x, w, y, n, eps);
  check_launch("rms_norm");
}
void add_bias(float* x, const float* b, int64_t n_rows, int64_t n, Stream s) {
  if (n_rows * n <= 0) return;
  MOELAB_LAUNCH(grid_for(n_rows * n, kEw), kEw, 0, s, k_add_bias)(x, b, n_rows, n);
  check_launch("add_bias");
}
void add(float* x, const float* y, int64_t count, Stream s) {
  if (count <= 0) return;
  MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_add)(x, y, count);
  check_launch("add");
}
void scale(float* x, float f, int64_t count, Stream s) {
  if (count <= 0) return;
  MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_scale)(x, f, count);
  check_launch("scale");
}
void softcap(float* x, float cap, int64_t count, Stream s) {
  if (count <= 0) return;
  MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_softcap)(x, cap, count);
  check_launch("softcap");
}
void softmax_rows(float* x, int64_t n_rows, int64_t n, Stream s) {
  if (n_rows <= 0) return;
  if (n_rows > INT32_MAX) throw Error(ErrorKind::Internal, "softmax: too many rows");
  MOELAB_LAUNCH(static_cast<unsigned>(n_rows), kRowThreads, 0, s, k_softmax_rows)(x, n);
  check_launch("softmax");
}
void glu(float* gate, const float* up, int64_t count, int64_t row, bool gelu, Stream s) {
  if (count <= 0) return;
  if (row <= 0 || count % row != 0) throw Error(ErrorKind::Internal, "glu: count not whole rows");
  MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_glu)(gate, up, count, row, gelu);
  check_launch(gelu ? "geglu" : "swiglu");
}
void glu_oai(float* gate, const float* up, int64_t count, float alpha, float limit, Stream s) {
  if (count <= 0) return;
  MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_glu_oai)(gate, up, count, alpha, limit);
  check_launch("swiglu_oai");
}
void add_bias_ids(float* x, const float* b, const int32_t* ids, int64_t n_rows, int64_t n,
                  Stream s) {
  if (n_rows * n <= 0) return;
  MOELAB_LAUNCH(grid_for(n_rows * n, kEw), kEw, 0, s, k_add_bias_ids)(x, b, ids, n_rows, n);
  check_launch("add_bias_ids");
}
void rope(float* x, int64_t n_tok, int n_head, int head_dim, const int32_t* pos, int n_rot,
          float freq_base, float freq_scale, int rope_type, Stream s, const RopeYarnArgs& yarn) {
  const int64_t count = n_tok * n_head;
  if (count <= 0) return;
  oel::RopeYarn y;
  y.ext_factor = yarn.ext_factor;
  y.mscale = yarn.mscale;
  y.corr_low = yarn.corr_low;
  y.corr_high = yarn.corr_high;
  MOELAB_LAUNCH(grid_for(count, 128), 128, 0, s, k_rope)
  (x, n_tok, n_head, head_dim, pos, n_rot, freq_base, freq_scale, rope_type, y);
  check_launch("rope");
}
void kv_store(void* k_cache, void* v_cache, bool f16, int64_t cell0, const float* k, const float* v,
              int64_t n, int64_t kw, int64_t vw, Stream s) {
  const int64_t count = n * (kw + vw);
  if (count <= 0) return;
  MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_kv_store)
  (k_cache, v_cache, f16, cell0, k, v, n, kw, vw);
  check_launch("kv_store");
}

void attention(const AttnArgs& a, const float* q, int64_t n_tok, int64_t t0, int64_t n_chunk,
               int64_t n_kv, float* out, float* scores, Stream s) {
  if (n_chunk <= 0) return;
  if (t0 < 0 || t0 + n_chunk > n_tok || n_chunk > INT32_MAX || a.n_head > 65535 ||
      a.n_head_kv <= 0 || a.n_head % a.n_head_kv != 0 || !a.pos)
    throw Error(ErrorKind::Internal, "attention: bad arguments");
  const dim3 grid(static_cast<unsigned>(n_chunk), static_cast<unsigned>(a.n_head));
  const size_t shm = static_cast<size_t>(a.head_dim) * sizeof(float);
  MOELAB_LAUNCH(grid, kAttnThreads, shm, s, k_attention)(a, q, t0, n_chunk, n_kv, out, scores);
  check_launch("attention");
}

void route_top_k(const float* logits, int64_t n, int n_expert, int k, bool renormalise,
                 float* probs, int32_t* ids, float* weights, float* applied, Stream s,
                 bool unit_weights) {
  if (n <= 0) return;
  if (k < 1 || k > n_expert) throw Error(ErrorKind::Internal, "route_top_k: bad k");
  MOELAB_LAUNCH(grid_for(n, 64), 64, 0, s, k_route)
  (logits, n, n_expert, k, renormalise, probs, ids, weights, applied, unit_weights);
  check_launch("route_top_k");
}
void route_gated(const float* logits, int64_t n, int n_expert, int k, const oel::RouteSpec& r,
                 const float* sel_bias, float* probs, float* selection, int32_t* ids,
                 float* weights, float* applied, Stream s, int32_t* groups) {
  if (n <= 0) return;
  if (k < 1 || k > n_expert) throw Error(ErrorKind::Internal, "route_gated: bad k");
  if (sel_bias && !selection)
    throw Error(ErrorKind::Internal, "route_gated: a selection bias needs a selection buffer");
  if (r.n_group > 1 &&
      (r.n_group > oel::kMaxExpertGroups || n_expert % r.n_group != 0 || r.n_group_used < 1 ||
       r.n_group_used > r.n_group || k > r.n_group_used * (n_expert / r.n_group)))
    throw Error(ErrorKind::Internal, "route_gated: bad expert groups");
  MOELAB_LAUNCH(grid_for(n, 64), 64, 0, s, k_route_gated)
  (logits, n, n_expert, k, r, sel_bias, probs, selection, ids, weights, applied,
   r.n_group > 1 ? groups : nullptr);
  check_launch("route_gated");
}
void kept_groups(const float* sel, int64_t n, int n_expert, int n_group, int n_group_used,
                 float* out, Stream s) {
  if (n <= 0) return;
  if (n_group < 2 || n_group > oel::kMaxExpertGroups || n_expert % n_group != 0 ||
      n_group_used < 1 || n_group_used > n_group)
    throw Error(ErrorKind::Internal, "kept_groups: bad expert groups");
  MOELAB_LAUNCH(grid_for(n, 64), 64, 0, s, k_kept_groups)
  (sel, n, n_expert, n_group, n_group_used, out);
  check_launch("kept_groups");
}
void copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
             int64_t width, Stream s) {
  if (rows * width <= 0) return;
  MOELAB_LAUNCH(grid_for(rows * width, kEw), kEw, 0, s, k_copy_2d)
  (src, src_stride, dst, dst_stride, rows, width);
  check_launch("copy_2d");
}
void moe_weighted_sum(const float* res, const int32_t* ids, const float* applied, int64_t n, int k,
                      int64_t E, float* out, Stream s) {
  if (n * E <= 0) return;
  MOELAB_LAUNCH(grid_for(n * E, kEw), kEw, 0, s, k_moe_sum)(res, ids, applied, n, k, E, out);
  check_launch("moe_weighted_sum");
}
void gather_rows(const float* src, const int32_t* rows, int div, int64_t m, int64_t E, float* dst,
                 Stream s) {
  if (m * E <= 0) return;
  MOELAB_LAUNCH(grid_for(m * E, kEw), kEw, 0, s, k_gather)(src, rows, div, m, E, dst);
  check_launch("gather_rows");
}
void scatter_rows(const float* src, const int32_t* rows, int64_t m, int64_t E, float* dst,
                  Stream s) {
  if (m * E <= 0) return;
  MOELAB_LAUNCH(grid_for(m * E, kEw), kEw, 0, s, k_scatter)(src, rows, m, E, dst);
  check_launch("scatter_rows");
}
void shexp_gate(float* x, const float* g, const float* cur, int64_t n, int64_t E, Stream s) {
  if (n <= 0) return;
  if (n > INT32_MAX) throw Error(ErrorKind::Internal, "shexp_gate: too many rows");
  MOELAB_LAUNCH(static_cast<unsigned>(n), kRowThreads, 0, s, k_shexp_gate)(x, g, cur, E);
  check_launch("shexp_gate");
}
void ids_to_float(const int32_t* ids, int64_t count, float* out, Stream s) {
  if (count <= 0) return;
  MOELAB_LAUNCH(grid_for(count, kEw), kEw, 0, s, k_ids_to_float)(ids, count, out);
  check_launch("ids_to_float");
}

}  // namespace moelab::cuda
