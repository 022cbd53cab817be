// Helpers for the kernel tests: random rows of any weight type with sane scales.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/element/fp16.h"
#include "moelab/gguf/types.h"
#include "moelab/kernels/kernels.h"

namespace moelab::test {

using gguf::TensorType;

inline const std::vector<TensorType>& all_weight_types() {
  static const std::vector<TensorType> v = {
      TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q8_0, TensorType::Q4_0,
      TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q2_K, TensorType::Q3_K,
      TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::MXFP4};
  return v;
}

inline const char* tname(TensorType t) {
  static thread_local std::string s;
  s = gguf::type_name(static_cast<uint32_t>(t));
  return s.c_str();
}

/// Byte offsets of the binary16 scale fields inside one block of a type.
inline std::vector<int> f16_fields(TensorType t) {
  switch (t) {
    case TensorType::Q4_0:
    case TensorType::Q5_0:
    case TensorType::Q8_0:
      return {0};
    case TensorType::Q4_1:
    case TensorType::Q5_1:
      return {0, 2};
    case TensorType::Q2_K:
      return {80, 82};
    case TensorType::Q3_K:
      return {108};
    case TensorType::Q4_K:
    case TensorType::Q5_K:
      return {0, 2};
    case TensorType::Q6_K:
      return {208};
    default:
      return {};
  }
}

/// n_rows rows of n random weights: quantized types get random bytes (every bit pattern of
/// the quants and scales is exercised) with their binary16 scales replaced by values in
/// [0.005, 0.02) (random signs for d of Q4_1/Q5_1 mins), MXFP4's E8M0 byte by 118..122 (scales
/// 2^-9..2^-5, values up to 0.19 like the others'); float types get N(0, 1) values.
inline std::vector<uint8_t> random_rows(TensorType t, int64_t n, int64_t n_rows, uint32_t seed) {
  std::mt19937 rng(seed);
  const uint64_t rb = kernels::row_bytes(t, n);
  std::vector<uint8_t> out(rb * n_rows);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.005f, 0.02f);
  if (t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16) {
    std::vector<float> f(n * n_rows);
    for (auto& v : f) v = nd(rng);
    if (t == TensorType::F32)
      std::memcpy(out.data(), f.data(), f.size() * 4);
    else
      kernels::quantize_row(t, f.data(), out.data(), n * n_rows);
    return out;
  }
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  const auto tr = *gguf::type_traits(static_cast<uint32_t>(t));
  const int64_t n_blocks = n * n_rows / tr.block_size;
  const auto fields = f16_fields(t);
  if (t == TensorType::MXFP4)
    for (int64_t i = 0; i < n_blocks; ++i)
      out[i * tr.type_size] = static_cast<uint8_t>(118 + rng() % 5);
  for (int64_t i = 0; i < n_blocks; ++i)
    for (size_t k = 0; k < fields.size(); ++k) {
      float v = ud(rng);
      if (k == 1 && (t == TensorType::Q4_1 || t == TensorType::Q5_1)) v = -4 * v;
      const uint16_t h = kernels::el::f32_to_f16(v);
      std::memcpy(out.data() + i * tr.type_size + fields[k], &h, 2);
    }
  return out;
}

inline std::vector<float> random_floats(int64_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

inline std::vector<float> dequant(TensorType t, const void* src, int64_t n,
                                  kernels::Simd s = kernels::Simd::Scalar) {
  std::vector<float> v(n);
  kernels::dequantize_row(t, src, v.data(), n, s);
  return v;
}

}  // namespace moelab::test
