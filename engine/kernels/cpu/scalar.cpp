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
}

}  // namespace moelab::kernels::cpu
