// ggml block formats: layouts, per-block decoding, quantizers and per-block dot products.
//
// Sources: the GGUF specification (ggml-org/ggml docs/gguf.md) and the block descriptions in
// ggml's documentation and type table; the bit layouts were checked against
// shared/cases/quant (kquant_expected.json). Written from the format description, not copied.
//
// Notation: a "block" holds block_size weights sharing scales; d (and dmin / m) are binary16.
// Dot products take a weight block and the activation block of ggml's vec_dot_type for that
// type (Q8_0, Q8_1 or Q8_K) and are exact in integer arithmetic inside a block; only the final
// scaling is floating point, with the expression given in each function.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/element/fp16.h"
#include "kernels/element/hd.h"

namespace moelab::kernels::el {
inline namespace MOELAB_EL_ABI {

inline constexpr int QK = 32;     // elements per block of the 32-element formats
inline constexpr int QK_K = 256;  // elements per K-quant super-block

// ---- layouts (byte-exact; all little-endian) ---------------------------------------------
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};  // x = (q - 8) * d
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[16];
};  // x = q * d + m
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};  // x = (q - 16) * d
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};  // x = q * d + m
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};  // x = q * d
struct BlockQ8_1 {
  uint16_t d, s;
  int8_t qs[32];
};  // s = d * sum(q)
// K-quants: 256 weights in sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 32 (Q4_K, Q5_K).
struct BlockQ2_K {
  uint8_t scales[16];
  uint8_t qs[64];
  uint16_t d, dmin;
};  // 4-bit scale|min
struct BlockQ3_K {
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
struct BlockQ8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};  // bsums: sums of 16 qs
// MXFP4 (OCP Microscaling Formats (MX) v1.0, section 5 "MXFP4"): 32 FP4 E2M1 elements sharing
// one E8M0 scale, x = 2^(e - 127) * fp4(q). GGUF stores the scale byte first, then the nibbles
// in the order of the other 32-element formats: low nibble of qs[j] = element j, high nibble
// = element j + 16.
struct BlockMXFP4 {
  uint8_t e;
  uint8_t qs[16];
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockMXFP4) == 17);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);

MOELAB_HD inline float h2f(uint16_t h) {
  return f16_to_f32(h);
}

// ---- scale unpacking -----------------------------------------------------------------------
/// Q4_K / Q5_K: eight 6-bit scales and eight 6-bit mins packed in 12 bytes. Sub-blocks 0-3
/// keep scale and min in the low 6 bits of bytes 0-3 and 4-7; sub-blocks 4-7 take their low 4
/// bits from the nibbles of bytes 8-11 and their top 2 bits from the top bits of bytes 0-7.
MOELAB_HD inline void k4_scale_min(int j, const uint8_t* s, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

/// Q3_K: sixteen 6-bit scales (stored +32) in 12 bytes: low 4 bits in the nibbles of bytes
/// 0-7 (scales 0-7 low nibbles, 8-15 high nibbles), top 2 bits in bytes 8-11 (2 bits each).
MOELAB_HD inline int q3k_scale(int i, const uint8_t* s) {
  const int lo = i < 8 ? (s[i] & 0x0f) : (s[i - 8] >> 4);
  const int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
  return (lo | (hi << 4)) - 32;
}

// ---- decoding one block to F32 -------------------------------------------------------------
MOELAB_HD inline void dequant(const BlockQ4_0& b, float* y) {
  const float d = h2f(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((b.qs[j] & 0x0f) - 8) * d;
    y[j + 16] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
  }
}
MOELAB_HD inline void dequant(const BlockQ4_1& b, float* y) {
  const float d = h2f(b.d), m = h2f(b.m);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(b.qs[j] & 0x0f) * d + m;
    y[j + 16] = static_cast<float>(b.qs[j] >> 4) * d + m;
  }
}
MOELAB_HD inline uint32_t load_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}
/// The 5-bit value of element j (0..31) of a Q5_0 / Q5_1 block: low nibble (j < 16) or high
/// nibble (j >= 16) of qs[j % 16], plus bit j of qh as bit 4.
MOELAB_HD inline int q5_value(const uint8_t* qs, uint32_t qh, int j) {
  const int nib = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
  return nib | static_cast<int>(((qh >> j) & 1u) << 4);
}
MOELAB_HD inline void dequant(const BlockQ5_0& b, float* y) {
  const float d = h2f(b.d);
  const uint32_t qh = load_u32(b.qh);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(q5_value(b.qs, qh, j) - 16) * d;
}
MOELAB_HD inline void dequant(const BlockQ5_1& b, float* y) {
  const float d = h2f(b.d), m = h2f(b.m);
  const uint32_t qh = load_u32(b.qh);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(q5_value(b.qs, qh, j)) * d + m;
}
MOELAB_HD inline void dequant(const BlockQ8_0& b, float* y) {
  const float d = h2f(b.d);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}

// MXFP4 element and scale decoding (OCP MX v1.0, 5.3.3 "FP4 (E2M1)" and 5.4.1 "E8M0").
// E2M1 code c: sign bit 3, exponent bits 2..1 (bias 1), mantissa bit 0; magnitudes
// {0, 0.5, 1, 1.5, 2, 3, 4, 6}. Kept in integers as twice the magnitude, {0, 1, 2, 3, 4, 6, 8,
// 12}, so the integer dot products stay exact; the scale is halved to match (as ggml does).
/// Twice the E2M1 magnitude of the low 3 bits of c - 0, 1 (subnormals), (2 + m) << (exp - 1) -
/// read from the nibbles of one constant (no table in memory, so the same on the device).
MOELAB_HD inline int e2m1_mag2(int c) {
  return static_cast<int>((0xC8643210u >> (4 * (c & 7))) & 15u);
}
/// Twice the signed E2M1 value of code c (0..15): -12..12 (code 8, negative zero, gives 0).
MOELAB_HD inline int e2m1_x2(int c) {
  const int neg = (c >> 3) & 1;
  return (e2m1_mag2(c) ^ -neg) + neg;  // two's complement negation when the sign bit is set
}
/// Half the E8M0 scale, 2^(e - 128), exact in F32 for e = 0..254 (e = 0, 1 are the F32
/// subnormals 2^-128 and 2^-127). e = 255 is the E8M0 NaN (OCP MX 5.4.1): NaN, so a block with
/// that scale decodes to NaN everywhere. (ggml reads 255 as 2^127 instead; its quantizer never
/// writes 255: the largest finite F32 block gives e = 252.)
MOELAB_HD inline float e8m0_half(uint8_t e) {
  if (e == 255) return bits_f32(0x7fc00000u);
  return e < 2 ? bits_f32(0x00200000u << e) : bits_f32(static_cast<uint32_t>(e - 1) << 23);
}
/// Element j (0..31) code of an MXFP4 block.
MOELAB_HD inline int mxfp4_code(const BlockMXFP4& b, int j) {
  return j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4);
}
/// x = sign * mag2 * 2^(e - 128): exact (every product of an E2M1 magnitude and a power of two
/// in range is a float), +-inf where the true value exceeds F32 (e = 254 with |fp4| >= 4: 2^129
/// and up), NaN for e = 255. Code 8 decodes to -0.0f (the format's negative zero).
MOELAB_HD inline void dequant(const BlockMXFP4& b, float* y) {
  const float d = e8m0_half(b.e);
  for (int j = 0; j < 16; ++j) {
    const int lo = b.qs[j] & 0x0f, hi = b.qs[j] >> 4;
    const float vl = static_cast<float>(e2m1_mag2(lo)) * d,
                vh = static_cast<float>(e2m1_mag2(hi)) * d;
    y[j] = (lo & 8) ? -vl : vl;
    y[j + 16] = (hi & 8) ? -vh : vh;
  }
}

// Q2_K / Q3_K element order: two halves of 128; in half h the 32 bytes qs[32h..32h+31] hold
// four 2-bit planes (shift 0, 2, 4, 6); plane p covers elements 128h + 32p + l (l < 32), and
// its two 16-element sub-blocks use scales 8h + 2p and 8h + 2p + 1.
MOELAB_HD inline void dequant(const BlockQ2_K& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  for (int h = 0; h < 2; ++h)
    for (int p = 0; p < 4; ++p)
      for (int l = 0; l < 32; ++l) {
        const uint8_t sc = b.scales[8 * h + 2 * p + l / 16];
        const int q = (b.qs[32 * h + l] >> (2 * p)) & 3;
        y[128 * h + 32 * p + l] = d * static_cast<float>(sc & 0x0f) * static_cast<float>(q) -
                                  dmin * static_cast<float>(sc >> 4);
      }
}
/// Q3_K value of element (h, p, l): 2 low bits as Q2_K, minus 4 unless bit (4h + p) of
/// hmask[l] is set; range [-4, 3].
MOELAB_HD inline int q3k_value(const BlockQ3_K& b, int h, int p, int l) {
  const int lo = (b.qs[32 * h + l] >> (2 * p)) & 3;
  return lo - ((b.hmask[l] >> (4 * h + p)) & 1 ? 0 : 4);
}
MOELAB_HD inline void dequant(const BlockQ3_K& b, float* y) {
  const float d = h2f(b.d);
  for (int h = 0; h < 2; ++h)
    for (int p = 0; p < 4; ++p)
      for (int l = 0; l < 32; ++l) {
        const int sc = q3k_scale(8 * h + 2 * p + l / 16, b.scales);
        y[128 * h + 32 * p + l] =
            d * static_cast<float>(sc) * static_cast<float>(q3k_value(b, h, p, l));
      }
}
// Q4_K / Q5_K element order: four chunks of 64; chunk c reads qs[32c..32c+31]: low nibbles are
// elements 64c + l (sub-block 2c), high nibbles 64c + 32 + l (sub-block 2c + 1). Q5_K's fifth
// bit of element 64c + 32s + l is bit (2c + s) of qh[l].
MOELAB_HD inline void dequant(const BlockQ4_K& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  for (int c = 0; c < 4; ++c)
    for (int s = 0; s < 2; ++s) {
      uint8_t sc, m;
      k4_scale_min(2 * c + s, b.scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const int q = s == 0 ? (b.qs[32 * c + l] & 0x0f) : (b.qs[32 * c + l] >> 4);
        y[64 * c + 32 * s + l] = d1 * static_cast<float>(q) - m1;
      }
    }
}
MOELAB_HD inline void dequant(const BlockQ5_K& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  for (int c = 0; c < 4; ++c)
    for (int s = 0; s < 2; ++s) {
      uint8_t sc, m;
      k4_scale_min(2 * c + s, b.scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const int nib = s == 0 ? (b.qs[32 * c + l] & 0x0f) : (b.qs[32 * c + l] >> 4);
        const int q = nib | (((b.qh[l] >> (2 * c + s)) & 1) << 4);
        y[64 * c + 32 * s + l] = d1 * static_cast<float>(q) - m1;
      }
    }
}
/// Q6_K value of element 128h + 32i + l (h < 2, i < 4, l < 32): low 4 bits from
/// ql[64h + l + 32 (i & 1)] (low nibble for i < 2, high for i >= 2), top 2 bits from
/// qh[32h + l] bits 2i..2i+1; minus 32. Scale: int8 scales[8h + 2i + l / 16].
MOELAB_HD inline int q6k_value(const BlockQ6_K& b, int h, int i, int l) {
  const uint8_t lq = b.ql[64 * h + l + 32 * (i & 1)];
  const int lo = i < 2 ? (lq & 0x0f) : (lq >> 4);
  const int hi = (b.qh[32 * h + l] >> (2 * i)) & 3;
  return (lo | (hi << 4)) - 32;
}
MOELAB_HD inline void dequant(const BlockQ6_K& b, float* y) {
  const float d = h2f(b.d);
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 4; ++i)
      for (int l = 0; l < 32; ++l)
        y[128 * h + 32 * i + l] = d * static_cast<float>(b.scales[8 * h + 2 * i + l / 16]) *
                                  static_cast<float>(q6k_value(b, h, i, l));
}

// ---- quantizers ----------------------------------------------------------------------------
MOELAB_HD inline float fabs_(float x) {
  return x < 0 ? -x : x;
}

/// Q8_0 for weights (ggml's reference quantizer semantics): d = amax / 127, q = round half
/// away from zero of x / d.
MOELAB_HD inline void quantize(const float* x, BlockQ8_0& b) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = fabs_(x[j]) > amax ? fabs_(x[j]) : amax;
  const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_f16(d);
  for (int j = 0; j < 32; ++j) {
    b.qs[j] = static_cast<int8_t>(roundf(x[j] * id));  // half away from zero
  }
}
/// Q4_0 (ggml's reference semantics): d = m / -8 where m is the value of largest magnitude
/// (so m itself maps to q = 0), q = min(15, trunc(x / d + 8.5)).
MOELAB_HD inline void quantize(const float* x, BlockQ4_0& b) {
  float amax = 0, mx = 0;
  for (int j = 0; j < 32; ++j)
    if (fabs_(x[j]) > amax) {
      amax = fabs_(x[j]);
      mx = x[j];
    }
  const float d = mx / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_f16(d);
  for (int j = 0; j < 16; ++j) {
    int q0 = static_cast<int>(x[j] * id + 8.5f), q1 = static_cast<int>(x[j + 16] * id + 8.5f);
    q0 = q0 > 15 ? 15 : (q0 < 0 ? 0 : q0);
    q1 = q1 > 15 ? 15 : (q1 < 0 ? 0 : q1);
    b.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}
/// Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5)).
MOELAB_HD inline void quantize(const float* x, BlockQ4_1& b) {
  float mn = x[0], mx = x[0];
  for (int j = 1; j < 32; ++j) {
    mn = x[j] < mn ? x[j] : mn;
    mx = x[j] > mx ? x[j] : mx;
  }
  const float d = (mx - mn) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_f16(d);
  b.m = f32_to_f16(mn);
  for (int j = 0; j < 16; ++j) {
    int q0 = static_cast<int>((x[j] - mn) * id + 0.5f);
    int q1 = static_cast<int>((x[j + 16] - mn) * id + 0.5f);
    q0 = q0 > 15 ? 15 : q0;
    q1 = q1 > 15 ? 15 : q1;
    b.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}
/// Q5_0: d = m / -16 (m: value of largest magnitude), q = min(31, trunc(x / d + 16.5)).
MOELAB_HD inline void quantize(const float* x, BlockQ5_0& b) {
  float amax = 0, mx = 0;
  for (int j = 0; j < 32; ++j)
    if (fabs_(x[j]) > amax) {
      amax = fabs_(x[j]);
      mx = x[j];
    }
  const float d = mx / -16.0f, id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_f16(d);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    int q0 = static_cast<int>(x[j] * id + 16.5f), q1 = static_cast<int>(x[j + 16] * id + 16.5f);
    q0 = q0 > 31 ? 31 : (q0 < 0 ? 0 : q0);
    q1 = q1 > 31 ? 31 : (q1 < 0 ? 0 : q1);
    b.qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    qh |= static_cast<uint32_t>(q0 >> 4) << j | static_cast<uint32_t>(q1 >> 4) << (j + 16);
  }
  for (int k = 0; k < 4; ++k) b.qh[k] = static_cast<uint8_t>(qh >> (8 * k));
}
/// Q5_1: d = (max - min) / 31, m = min, q = min(31, trunc((x - min) / d + 0.5)).
MOELAB_HD inline void quantize(const float* x, BlockQ5_1& b) {
  float mn = x[0], mx = x[0];
  for (int j = 1; j < 32; ++j) {
    mn = x[j] < mn ? x[j] : mn;
    mx = x[j] > mx ? x[j] : mx;
  }
  const float d = (mx - mn) / 31.0f, id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_f16(d);
  b.m = f32_to_f16(mn);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    int q0 = static_cast<int>((x[j] - mn) * id + 0.5f);
    int q1 = static_cast<int>((x[j + 16] - mn) * id + 0.5f);
    q0 = q0 > 31 ? 31 : q0;
    q1 = q1 > 31 ? 31 : q1;
    b.qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    qh |= static_cast<uint32_t>(q0 >> 4) << j | static_cast<uint32_t>(q1 >> 4) << (j + 16);
  }
  for (int k = 0; k < 4; ++k) b.qh[k] = static_cast<uint8_t>(qh >> (8 * k));
}

/// MXFP4 (OCP MX v1.0, 6.3 "Conversion from vector of scalar elements"): shared exponent
/// floor(log2(amax)) - 2 (2 = the largest E2M1 exponent), so amax / scale lies in [4, 8); each
/// x / scale is rounded to the nearest E2M1 value, ties to the even code, and values above 6
/// saturate to +-6 (normal values up to 8 do: the format's clamp). An all-zero block gets
/// e = 0. The exponent comes from frexpf, exact at powers of two (where log2f may round).
MOELAB_HD inline void quantize(const float* x, BlockMXFP4& b) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = fabs_(x[j]) > amax ? fabs_(x[j]) : amax;
  int e = 0;
  if (amax > 0) {
    int ex = 0;
    frexpf(amax, &ex);  // amax = m 2^ex, m in [0.5, 1): floor(log2(amax)) = ex - 1
    e = ex - 1 - 2 + 127;
    e = e < 0 ? 0 : (e > 254 ? 254 : e);
  }
  b.e = static_cast<uint8_t>(e);
  const float inv = 1.0f / (2.0f * e8m0_half(b.e));  // 1 / 2^(e - 127): a power of two
  // midpoints between neighbouring magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6}
  const float mid[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  for (int j = 0; j < 16; ++j) {
    int c[2];
    for (int h = 0; h < 2; ++h) {
      const float v = x[j + 16 * h];
      const float a = fabs_(v) * inv;
      int k = 0;
      for (int i = 0; i < 7; ++i)
        if (a > mid[i] || (a == mid[i] && ((i + 1) & 1) == 0)) k = i + 1;
      c[h] = k | (v < 0 ? 8 : 0);
    }
    b.qs[j] = static_cast<uint8_t>(c[0] | (c[1] << 4));
  }
}

// Activation quantizers (the vec_dot_type side). They follow what ggml's CPU backend does on
// an x86 AVX2 host (where the shared fixtures were made): Q8_0 / Q8_1 scale by 127 / amax and
// round half to even; Q8_K uses the value of largest magnitude m, iscale = -127 / m,
// q = min(127, round_even(iscale * x)), d = 1 / iscale (F32), and stores the sums of each 16
// quants for the K-quant min terms.
MOELAB_HD inline void quantize_act(const float* x, BlockQ8_0& b) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = fabs_(x[j]) > amax ? fabs_(x[j]) : amax;
  const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
  b.d = f32_to_f16(d);
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(round_even(x[j] * id));
}
MOELAB_HD inline void quantize_act(const float* x, BlockQ8_1& b) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = fabs_(x[j]) > amax ? fabs_(x[j]) : amax;
  const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
  b.d = f32_to_f16(d);
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    b.qs[j] = static_cast<int8_t>(round_even(x[j] * id));
    sum += b.qs[j];
  }
  b.s = f32_to_f16(d * static_cast<float>(sum));
}
MOELAB_HD inline void quantize_act(const float* x, BlockQ8_K& b) {
  float amax = 0, mx = 0;
  for (int j = 0; j < 256; ++j)
    if (fabs_(x[j]) > amax) {
      amax = fabs_(x[j]);
      mx = x[j];
    }
  if (amax == 0) {
    b.d = 0;
    for (int j = 0; j < 256; ++j) b.qs[j] = 0;
    for (int j = 0; j < 16; ++j) b.bsums[j] = 0;
    return;
  }
  const float iscale = -127.0f / mx;
  for (int j = 0; j < 256; ++j) {
    const int v = round_even(iscale * x[j]);
    b.qs[j] = static_cast<int8_t>(v > 127 ? 127 : v);
  }
  for (int j = 0; j < 16; ++j) {
    int s = 0;
    for (int l = 0; l < 16; ++l) s += b.qs[16 * j + l];
    b.bsums[j] = static_cast<int16_t>(s);
  }
  b.d = 1.0f / iscale;
}

// ---- per-block dot products (weight block . activation block) -----------------------------
MOELAB_HD inline float dot(const BlockQ4_0& w, const BlockQ8_0& x) {
  int s = 0;
  for (int j = 0; j < 16; ++j)
    s += ((w.qs[j] & 0x0f) - 8) * x.qs[j] + ((w.qs[j] >> 4) - 8) * x.qs[j + 16];
  return static_cast<float>(s) * (h2f(w.d) * h2f(x.d));
}
MOELAB_HD inline float dot(const BlockQ4_1& w, const BlockQ8_1& x) {
  int s = 0;
  for (int j = 0; j < 16; ++j) s += (w.qs[j] & 0x0f) * x.qs[j] + (w.qs[j] >> 4) * x.qs[j + 16];
  return static_cast<float>(s) * (h2f(w.d) * h2f(x.d)) + h2f(w.m) * h2f(x.s);
}
MOELAB_HD inline float dot(const BlockQ5_0& w, const BlockQ8_0& x) {
  const uint32_t qh = load_u32(w.qh);
  int s = 0;
  for (int j = 0; j < 32; ++j) s += (q5_value(w.qs, qh, j) - 16) * x.qs[j];
  return static_cast<float>(s) * (h2f(w.d) * h2f(x.d));
}
MOELAB_HD inline float dot(const BlockQ5_1& w, const BlockQ8_1& x) {
  const uint32_t qh = load_u32(w.qh);
  int s = 0;
  for (int j = 0; j < 32; ++j) s += q5_value(w.qs, qh, j) * x.qs[j];
  return static_cast<float>(s) * (h2f(w.d) * h2f(x.d)) + h2f(w.m) * h2f(x.s);
}
MOELAB_HD inline float dot(const BlockQ8_0& w, const BlockQ8_0& x) {
  int s = 0;
  for (int j = 0; j < 32; ++j) s += w.qs[j] * x.qs[j];
  return static_cast<float>(s) * (h2f(w.d) * h2f(x.d));
}
/// MXFP4 against Q8_0 (ggml's pairing): exact int32 sum of 2 fp4 * q8, times 2^(e-128) * d_x.
MOELAB_HD inline float dot(const BlockMXFP4& w, const BlockQ8_0& x) {
  int s = 0;
  for (int j = 0; j < 16; ++j)
    s += e2m1_x2(w.qs[j] & 0x0f) * x.qs[j] + e2m1_x2(w.qs[j] >> 4) * x.qs[j + 16];
  return static_cast<float>(s) * (e8m0_half(w.e) * h2f(x.d));
}

/// The float scale of a 32-element weight block as the dot products above use it (d_w, or half
/// the E8M0 scale of MXFP4), for the SIMD and CUDA kernels that sum in ggml's x86 order.
MOELAB_HD inline float w_scale(const BlockQ4_0& b) {
  return h2f(b.d);
}
MOELAB_HD inline float w_scale(const BlockQ4_1& b) {
  return h2f(b.d);
}
MOELAB_HD inline float w_scale(const BlockQ5_0& b) {
  return h2f(b.d);
}
MOELAB_HD inline float w_scale(const BlockQ5_1& b) {
  return h2f(b.d);
}
MOELAB_HD inline float w_scale(const BlockQ8_0& b) {
  return h2f(b.d);
}
MOELAB_HD inline float w_scale(const BlockMXFP4& b) {
  return e8m0_half(b.e);
}

// K-quants: sumi = sum over sub-blocks of scale * sum(q * y) (exact int32), summ = sum over
// sub-blocks of min * (sum of y) from the Q8_K bsums; the block's value is
//   (d_w * d_y) * sumi - (dmin_w * d_y) * summ.
// The SIMD kernels compute the same two integers and use this very expression.
MOELAB_HD inline float k_combine(float dall, float dmin, int sumi, int summ) {
  return dall * static_cast<float>(sumi) - dmin * static_cast<float>(summ);
}
MOELAB_HD inline float dot(const BlockQ2_K& w, const BlockQ8_K& x) {
  int sumi = 0, summ = 0;
  for (int j = 0; j < 16; ++j) summ += (w.scales[j] >> 4) * x.bsums[j];
  for (int h = 0; h < 2; ++h)
    for (int p = 0; p < 4; ++p)
      for (int half = 0; half < 2; ++half) {
        int s = 0;
        for (int l = 16 * half; l < 16 * half + 16; ++l)
          s += ((w.qs[32 * h + l] >> (2 * p)) & 3) * x.qs[128 * h + 32 * p + l];
        sumi += (w.scales[8 * h + 2 * p + half] & 0x0f) * s;
      }
  return k_combine(h2f(w.d) * x.d, h2f(w.dmin) * x.d, sumi, summ);
}
MOELAB_HD inline float dot(const BlockQ3_K& w, const BlockQ8_K& x) {
  int sumi = 0;
  for (int h = 0; h < 2; ++h)
    for (int p = 0; p < 4; ++p)
      for (int half = 0; half < 2; ++half) {
        int s = 0;
        for (int l = 16 * half; l < 16 * half + 16; ++l)
          s += q3k_value(w, h, p, l) * x.qs[128 * h + 32 * p + l];
        sumi += q3k_scale(8 * h + 2 * p + half, w.scales) * s;
      }
  return k_combine(h2f(w.d) * x.d, 0.0f, sumi, 0);
}
MOELAB_HD inline float dot(const BlockQ4_K& w, const BlockQ8_K& x) {
  int sumi = 0, summ = 0;
  for (int sb = 0; sb < 8; ++sb) {
    uint8_t sc, m;
    k4_scale_min(sb, w.scales, &sc, &m);
    summ += m * (x.bsums[2 * sb] + x.bsums[2 * sb + 1]);
    const int c = sb / 2, s = sb % 2;
    int acc = 0;
    for (int l = 0; l < 32; ++l) {
      const int q = s == 0 ? (w.qs[32 * c + l] & 0x0f) : (w.qs[32 * c + l] >> 4);
      acc += q * x.qs[32 * sb + l];
    }
    sumi += sc * acc;
  }
  return k_combine(h2f(w.d) * x.d, h2f(w.dmin) * x.d, sumi, summ);
}
MOELAB_HD inline float dot(const BlockQ5_K& w, const BlockQ8_K& x) {
  int sumi = 0, summ = 0;
  for (int sb = 0; sb < 8; ++sb) {
    uint8_t sc, m;
    k4_scale_min(sb, w.scales, &sc, &m);
    summ += m * (x.bsums[2 * sb] + x.bsums[2 * sb + 1]);
    const int c = sb / 2, s = sb % 2;
    int acc = 0;
    for (int l = 0; l < 32; ++l) {
      const int nib = s == 0 ? (w.qs[32 * c + l] & 0x0f) : (w.qs[32 * c + l] >> 4);
      acc += (nib | (((w.qh[l] >> sb) & 1) << 4)) * x.qs[32 * sb + l];
    }
    sumi += sc * acc;
  }
  return k_combine(h2f(w.d) * x.d, h2f(w.dmin) * x.d, sumi, summ);
}
MOELAB_HD inline float dot(const BlockQ6_K& w, const BlockQ8_K& x) {
  int sumi = 0;
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 4; ++i)
      for (int half = 0; half < 2; ++half) {
        int s = 0;
        for (int l = 16 * half; l < 16 * half + 16; ++l)
          s += q6k_value(w, h, i, l) * x.qs[128 * h + 32 * i + l];
        sumi += w.scales[8 * h + 2 * i + half] * s;
      }
  return k_combine(h2f(w.d) * x.d, 0.0f, sumi, 0);
}

}  // namespace MOELAB_EL_ABI
}  // namespace moelab::kernels::el
