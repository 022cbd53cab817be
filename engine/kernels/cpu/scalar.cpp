// Portable scalar reference kernels: every other path is tested against these.
#include <cmath>
#include <cstring>

#include "kernels/cpu/impl.h"
#include "kernels/element/blocks.h"
#include "kernels/element/reduce.h"
#include "moelab/gguf/types.h"

namespace moelab::kernels::cpu {
namespace {

using gguf::TensorType;

// F32 products sum in llama.cpp's orders (kernels/element/reduce.h), so that F32 models agree
// with it to the last bits; the SIMD versions give the same bits.
float dot_f32(const void* w, const void* x, int64_t n) {
  return el::dot_f32_ggml(static_cast<const float*>(w), static_cast<const float*>(x), n);
}
void swiglu(float* gate, const float* up, int64_t n) {
  el::swiglu_row(gate, up, n);
}
void exp_shifted(const float* x, float max, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] == -INFINITY ? 0.0f : el::expf_ggml(x[i] - max);
}
void axpy_fma(float w, const float* v, float* acc, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] = fmaf(w, v[i], acc[i]);
}
float dot_f32_tinyblas(const void* w, const void* x, int64_t n) {
  return el::dot_f32_tinyblas(static_cast<const float*>(w), static_cast<const float*>(x), n);
}
float dot_f16(const void* w, const void* x, int64_t n) {
  const uint16_t* a = static_cast<const uint16_t*>(w);
  const uint16_t* b = static_cast<const uint16_t*>(x);
  double s = 0;
  for (int64_t i = 0; i < n; ++i)
    s += static_cast<double>(el::f16_to_f32(a[i])) * el::f16_to_f32(b[i]);
  return static_cast<float>(s);
}
float dot_bf16(const void* w, const void* x, int64_t n) {
  const uint16_t* a = static_cast<const uint16_t*>(w);
  const uint16_t* b = static_cast<const uint16_t*>(x);
  double s = 0;
  for (int64_t i = 0; i < n; ++i)
    s += static_cast<double>(el::bf16_to_f32(a[i])) * el::bf16_to_f32(b[i]);
  return static_cast<float>(s);
}

template <class WB, class XB, int kBlock>
float dot_blocks(const void* w, const void* x, int64_t n) {
  const WB* wb = static_cast<const WB*>(w);
  const XB* xb = static_cast<const XB*>(x);
  float s = 0;
  for (int64_t i = 0; i < n / kBlock; ++i) s += el::dot(wb[i], xb[i]);
  return s;
}

void dq_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, n * sizeof(float));
}
void dq_f16(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = el::f16_to_f32(s[i]);
}
void dq_bf16(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = el::bf16_to_f32(s[i]);
}
template <class WB, int kBlock>
void dq_blocks(const void* src, float* dst, int64_t n) {
  const WB* b = static_cast<const WB*>(src);
  for (int64_t i = 0; i < n / kBlock; ++i) el::dequant(b[i], dst + i * kBlock);
}

// Repacked Q4_0 / Q8_0 / MXFP4 (impl.h: PackedFn): the reference arithmetic of every SIMD level.
// The int32 sum of a row and block is exact whatever the order, so only the float steps matter:
// d = scale_w * d_x, acc_h = fmaf(d, float(sum), acc_h), out = acc_0 + acc_1. scale_w is the
// FP16 d_w (Q4_0, Q8_0: 32 scale bytes per pair) or el::e8m0_half(e) (MXFP4: 16 bytes), and an
// MXFP4 quant is twice its E2M1 value (el::e2m1_x2) - Q4_0's nibble layout otherwise.
enum class Packed { Q4_0, Q8_0, MXFP4 };
template <Packed kT>
void packed_rows(const uint8_t* w, uint64_t gbytes, int n_groups, const uint8_t* x, int64_t n_pairs,
                 float* out) {
  constexpr int kPair = kT == Packed::Q8_0   ? kPackedPairBytesQ8_0
                        : kT == Packed::Q4_0 ? kPackedPairBytesQ4_0
                                             : kPackedPairBytesMXFP4;
  constexpr int kScales = kT == Packed::MXFP4 ? 16 : 32;  // scale bytes before the quants
  for (int g = 0; g < n_groups; ++g) {
    for (int r = 0; r < 8; ++r) {
      float acc[2] = {0.0f, 0.0f};
      for (int64_t p = 0; p < n_pairs; ++p) {
        const uint8_t* wp = w + g * gbytes + p * kPair;
        const uint8_t* xp = x + p * kPackedXPairBytes;
        for (int h = 0; h < 2; ++h) {
          int32_t sum = 0;
          for (int s = 0; s < 8; ++s) {
            for (int b = 0; b < 4; ++b) {
              const auto y = static_cast<int8_t>(xp[64 * s + 32 * h + b]);
              int q;
              if constexpr (kT == Packed::Q8_0) {
                q = static_cast<int8_t>(wp[kScales + 64 * s + 32 * h + 4 * r + b]);
              } else {
                const uint8_t byte = wp[kScales + 64 * (s & 3) + 32 * h + 4 * r + b];
                const int nib = s < 4 ? byte & 15 : byte >> 4;
                q = kT == Packed::MXFP4 ? el::e2m1_x2(nib) : nib - 8;
              }
              sum += q * y;
            }
          }
          float scale;
          if constexpr (kT == Packed::MXFP4) {
            scale = el::e8m0_half(wp[8 * h + r]);
          } else {
            uint16_t dw;
            std::memcpy(&dw, wp + 2 * (8 * h + r), 2);
            scale = el::h2f(dw);
          }
          float dx;
          std::memcpy(&dx, xp + 512 + 4 * (8 * h), 4);
          const float d = scale * dx;
          acc[h] = fmaf(d, static_cast<float>(sum), acc[h]);
        }
      }
      out[8 * g + r] = acc[0] + acc[1];
    }
  }
}

template <class XB>
void quantize_act_row(const float* x, void* dst, int64_t n) {
  XB* b = static_cast<XB*>(dst);
  for (int64_t i = 0; i < n / el::QK; ++i) el::quantize_act(x + i * el::QK, b[i]);
}

template <class WB, class XB, int kBlock>
void set(Table& t, TensorType type) {
  t.dot[static_cast<int>(type)] = &dot_blocks<WB, XB, kBlock>;
  t.dequant[static_cast<int>(type)] = &dq_blocks<WB, kBlock>;
}

}  // namespace

void fill_scalar(Table& t) {
  using namespace el;
  t.dot[int(TensorType::F32)] = dot_f32;
  t.dot_f32_tinyblas = dot_f32_tinyblas;
  t.axpy_fma = axpy_fma;
  t.exp_shifted = exp_shifted;
  t.swiglu = swiglu;
  t.dequant[int(TensorType::F32)] = dq_f32;
  t.dot[int(TensorType::F16)] = dot_f16;
  t.dequant[int(TensorType::F16)] = dq_f16;
  t.dot[int(TensorType::BF16)] = dot_bf16;
  t.dequant[int(TensorType::BF16)] = dq_bf16;
  set<BlockQ4_0, BlockQ8_0, QK>(t, TensorType::Q4_0);
  set<BlockQ4_1, BlockQ8_1, QK>(t, TensorType::Q4_1);
  set<BlockQ5_0, BlockQ8_0, QK>(t, TensorType::Q5_0);
  set<BlockQ5_1, BlockQ8_1, QK>(t, TensorType::Q5_1);
  set<BlockQ8_0, BlockQ8_0, QK>(t, TensorType::Q8_0);
  set<BlockMXFP4, BlockQ8_0, QK>(t, TensorType::MXFP4);
  set<BlockQ2_K, BlockQ8_K, QK_K>(t, TensorType::Q2_K);
  set<BlockQ3_K, BlockQ8_K, QK_K>(t, TensorType::Q3_K);
  set<BlockQ4_K, BlockQ8_K, QK_K>(t, TensorType::Q4_K);
  set<BlockQ5_K, BlockQ8_K, QK_K>(t, TensorType::Q5_K);
  set<BlockQ6_K, BlockQ8_K, QK_K>(t, TensorType::Q6_K);
  t.packed[int(TensorType::Q4_0)] = packed_rows<Packed::Q4_0>;
  t.packed[int(TensorType::Q8_0)] = packed_rows<Packed::Q8_0>;
  t.packed[int(TensorType::MXFP4)] = packed_rows<Packed::MXFP4>;
  t.packed_cached[int(TensorType::Q4_0)] = packed_rows<Packed::Q4_0>;
  t.packed_cached[int(TensorType::Q8_0)] = packed_rows<Packed::Q8_0>;
  t.packed_cached[int(TensorType::MXFP4)] = packed_rows<Packed::MXFP4>;
  t.quantize_act[int(TensorType::Q8_0)] = quantize_act_row<BlockQ8_0>;
  t.quantize_act[int(TensorType::Q8_1)] = quantize_act_row<BlockQ8_1>;
}

}  // namespace moelab::kernels::cpu
