// IEEE 754 binary16 (F16) and bfloat16 (BF16) <-> binary32 conversions, bit-exact and portable.
// F32 -> F16 rounds to nearest, ties to even (what the x86 F16C instruction vcvtps2ph does with
// rounding mode 0), overflows to infinity and keeps NaNs quiet. F32 -> BF16 rounds to nearest
// even (the rule of ggml's GGML_FP32_TO_BF16 and of PyTorch), NaNs stay quiet NaNs.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/element/hd.h"

// Translation units compiled with F16C (the AVX2 / AVX-512 kernels) convert binary16 scales
// with the hardware instruction: same results for every non-NaN input, much faster.
#if defined(__F16C__) && !defined(__CUDACC__)
#include <immintrin.h>
#define MOELAB_EL_HW_F16 1
#endif

namespace moelab::kernels::el {
inline namespace MOELAB_EL_ABI {

MOELAB_HD inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
MOELAB_HD inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// binary16 -> binary32 (exact for every input, subnormals included).
MOELAB_HD inline float f16_to_f32(uint16_t h) {
#if defined(MOELAB_EL_HW_F16)
  return _cvtsh_ss(h);
#endif
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24, exact in binary32
    const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

/// binary32 -> binary16, round to nearest even.
MOELAB_HD inline uint16_t f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u >= 0x7f800000u)  // inf or NaN (NaN stays a quiet NaN)
    return sign | (u > 0x7f800000u ? static_cast<uint16_t>(0x7e00u | ((u >> 13) & 0x3ffu))
                                   : static_cast<uint16_t>(0x7c00u));
  if (u >= 0x47800000u) return sign | 0x7c00u;  // >= 65536: infinity
  if (u < 0x38800000u) {
    // result is subnormal (or zero): adding 0.5 puts the binary16 ulp (2^-24) at the last
    // mantissa bit of the sum, so the FPU's round-to-nearest-even does the rounding.
    const float sum = bits_f32(u) + 0.5f;
    return sign | static_cast<uint16_t>(f32_bits(sum) - 0x3f000000u);
  }
  const uint32_t odd = (u >> 13) & 1u;
  u += 0xc8000fffu + odd;  // rebias exponent (-112 << 23, mod 2^32) and round half to even
  return sign | static_cast<uint16_t>(u >> 13);
}

MOELAB_HD inline float bf16_to_f32(uint16_t h) {
  return bits_f32(static_cast<uint32_t>(h) << 16);
}

MOELAB_HD inline uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64u);  // quiet NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/// Round to nearest integer, ties to even, for |x| < 2^22 (the quantizers' range); the
/// classic add-1.5*2^23 trick, independent of the FPU rounding-mode functions.
MOELAB_HD inline int round_even(float x) {
  const float t = x + 12582912.0f;
  return static_cast<int>(f32_bits(t) & 0x7fffffu) - 0x400000;
}

}  // namespace MOELAB_EL_ABI
}  // namespace moelab::kernels::el
