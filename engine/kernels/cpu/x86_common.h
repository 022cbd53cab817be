// Internal: small x86 SIMD helpers shared by the AVX2 and AVX-512 translation units. Included
// only from those files (each compiles it with its own instruction-set flags; everything here
// has internal linkage so the copies never mix).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/element/blocks.h"

namespace moelab::kernels::cpu {
namespace {

inline float hsum_ps256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline int hsum_i32_256(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}
inline __m256i loadu256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
inline __m128i loadu128(const void* p) {
  return _mm_loadu_si128(static_cast<const __m128i*>(p));
}

/// Signed x signed int8 dot in pairs of 4 -> 8 x int32. maddubs wants an unsigned left
/// operand: use |x| and move x's sign onto y (y must be in [-127, 127]; x may be -128).
inline __m256i dot_i8_s(__m256i x, __m256i y) {
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
/// Unsigned (0..127) x signed int8 -> 8 x int32.
inline __m256i dot_u8_s(__m256i u, __m256i y) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1));
}
/// 32 nibbles of a 16-byte array: low nibbles in bytes 0-15, high nibbles in bytes 16-31
/// (the element order of Q4_0 / Q4_1 / Q5_x blocks).
inline __m256i nibbles_32(const uint8_t* qs) {
  // the 16 bytes in both halves, the upper half shifted right by 4, then the low nibbles
  const __m256i b = _mm256_broadcastsi128_si256(loadu128(qs));
  return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_setr_epi64x(0, 0, 4, 4)),
                          _mm256_set1_epi8(0x0f));
}
/// 0x10 in byte j where bit j of the 32-bit little-endian word at qh is set, else 0.
inline __m256i bit4_from_bits_32(const uint8_t* qh) {
  uint32_t x;
  std::memcpy(&x, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(x)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202,
                         0x0303030303030303));  // byte j <- byte j/8 of x
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}
/// int16 x16 vector: a in lanes 0-7, b in lanes 8-15 (two 16-element sub-block scales).
inline __m256i scales_8_8(int a, int b) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(b)),
                          _mm_set1_epi16(static_cast<short>(a)));
}

// ---- 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) against Q8_0 / Q8_1 activations --------
// One algorithm for the AVX2 and the AVX-512 tables: eight F32 lanes per row, block after block
// acc = fma(d_w * d_x, float(int32 partial sums), acc), then hsum_ps256 - the reduction order of
// ggml's x86 kernels (ggml_vec_dot_q4_0_q8_0 etc.), so moelab crosses the same Q8 activation
// rounding boundaries as llama.cpp. (A 16-lane variant that paired blocks per 512-bit register
// summed in another order; its ~1 ulp differences moved single activations across Q8 rounding
// steps and the qwen2moe.Q4_0 fixture's logits by 0.06.) The integer partial sums are exact,
// so the maddubs and the VNNI (VPDPBUSD) variants give bit-identical results.

/// Signed x signed int8 -> 8 x int32 with AVX2 maddubs (see dot_i8_s).
struct IdotMaddubs {
  /// maddubs saturates int16 pair sums: exact only for unsigned operands below 128.
  static constexpr bool kWideU8 = false;
  static __m256i sym(__m256i q, __m256i y) { return dot_i8_s(q, y); }
  static __m256i uns(__m256i q, __m256i y) { return dot_u8_s(q, y); }
  /// acc + the int32 lane sums of uns(u, y).
  static __m256i uns_acc(__m256i acc, __m256i u, __m256i y) {
    return _mm256_add_epi32(acc, dot_u8_s(u, y));
  }
};

struct DecQ8_0 {
  using B = el::BlockQ8_0;
  using XB = el::BlockQ8_0;
  static constexpr bool kMin = false, kUnsigned = false;
  static __m256i dec(const B& b) { return loadu256(b.qs); }
  // decu: the quants + kOffset as unsigned bytes (kWide: some exceed 127)
  static constexpr int kOffset = 128;
  static constexpr bool kWide = true;
  static __m256i decu(const B& b) {
    return _mm256_xor_si256(loadu256(b.qs), _mm256_set1_epi8(static_cast<char>(0x80)));
  }
};
struct DecQ4_0 {
  using B = el::BlockQ4_0;
  using XB = el::BlockQ8_0;
  static constexpr bool kMin = false, kUnsigned = false;
  static __m256i dec(const B& b) { return _mm256_sub_epi8(nibbles_32(b.qs), _mm256_set1_epi8(8)); }
  static constexpr int kOffset = 8;
  static constexpr bool kWide = false;
  static __m256i decu(const B& b) { return nibbles_32(b.qs); }
};
struct DecQ5_0 {
  using B = el::BlockQ5_0;
  using XB = el::BlockQ8_0;
  static constexpr bool kMin = false, kUnsigned = false;
  static __m256i dec(const B& b) {
    return _mm256_sub_epi8(_mm256_or_si256(nibbles_32(b.qs), bit4_from_bits_32(b.qh)),
                           _mm256_set1_epi8(16));
  }
  static constexpr int kOffset = 16;
  static constexpr bool kWide = false;
  static __m256i decu(const B& b) {
    return _mm256_or_si256(nibbles_32(b.qs), bit4_from_bits_32(b.qh));
  }
};
/// MXFP4: the nibbles index a 16-entry table of twice the E2M1 values (-12..12), so the block
/// is a signed int8 vector like Q4_0's; its scale (el::w_scale) is 2^(e - 128).
struct DecMXFP4 {
  using B = el::BlockMXFP4;
  using XB = el::BlockQ8_0;
  static constexpr bool kMin = false, kUnsigned = false;
  static __m256i dec(const B& b) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12, 0,
                                         1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    return _mm256_shuffle_epi8(lut, nibbles_32(b.qs));
  }
  static constexpr int kOffset = 12;
  static constexpr bool kWide = false;
  static __m256i decu(const B& b) {
    const __m256i lut = _mm256_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0,
                                         12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0);
    return _mm256_shuffle_epi8(lut, nibbles_32(b.qs));
  }
};
struct DecQ4_1 {
  using B = el::BlockQ4_1;
  using XB = el::BlockQ8_1;
  static constexpr bool kMin = true, kUnsigned = true;
  static __m256i dec(const B& b) { return nibbles_32(b.qs); }
  static constexpr int kOffset = 0;
  static constexpr bool kWide = false;
  static __m256i decu(const B& b) { return dec(b); }
};
struct DecQ5_1 {
  using B = el::BlockQ5_1;
  using XB = el::BlockQ8_1;
  static constexpr bool kMin = true, kUnsigned = true;
  static __m256i dec(const B& b) {
    return _mm256_or_si256(nibbles_32(b.qs), bit4_from_bits_32(b.qh));
  }
  static constexpr int kOffset = 0;
  static constexpr bool kWide = false;
  static __m256i decu(const B& b) { return dec(b); }
};

/// MXFP4 blocks to F32 with the element code's exact arithmetic (el::dequant): |value| =
/// float(2 |fp4|) * 2^(e - 128) (exact), then the code's sign bit - so code 8 gives -0.0f and a
/// NaN scale gives the same NaN bits as the scalar negation.
inline void dq_mxfp4(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const el::BlockMXFP4*>(src);
  const __m256i mag_lut = _mm256_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, 1, 2, 3, 4, 6, 8, 12, 0, 1,
                                           2, 3, 4, 6, 8, 12, 0, 1, 2, 3, 4, 6, 8, 12);
  for (int64_t i = 0; i < n / el::QK; ++i) {
    const __m256i codes = nibbles_32(b[i].qs);
    const __m256i mags = _mm256_shuffle_epi8(mag_lut, codes);
    const __m256 d = _mm256_set1_ps(el::e8m0_half(b[i].e));
    // sign bit of each code moved to bit 7 of its byte (codes < 16: bit 3 << 4 stays in-byte)
    const __m256i signs = _mm256_slli_epi16(_mm256_and_si256(codes, _mm256_set1_epi8(8)), 4);
    const __m128i m[2] = {_mm256_castsi256_si128(mags), _mm256_extracti128_si256(mags, 1)};
    const __m128i s[2] = {_mm256_castsi256_si128(signs), _mm256_extracti128_si256(signs, 1)};
    for (int k = 0; k < 4; ++k) {
      const __m128i mk = k & 1 ? _mm_srli_si128(m[k / 2], 8) : m[k / 2];
      const __m128i sk = k & 1 ? _mm_srli_si128(s[k / 2], 8) : s[k / 2];
      const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mk)), d);
      const __m256i sign = _mm256_slli_epi32(_mm256_cvtepu8_epi32(sk), 24);  // -> bit 31
      _mm256_storeu_ps(dst + i * el::QK + 8 * k, _mm256_xor_ps(v, _mm256_castsi256_ps(sign)));
    }
  }
}

template <class D, class I>
inline __m256i idot(__m256i q, __m256i y) {
  if constexpr (D::kUnsigned)
    return I::uns(q, y);
  else
    return I::sym(q, y);
}

template <class D, class I>
float dot32(const void* wp, const void* xp, int64_t n) {
  const auto* w = static_cast<const typename D::B*>(wp);
  const auto* x = static_cast<const typename D::XB*>(xp);
  __m256 acc = _mm256_setzero_ps();
  float ms = 0;
  for (int64_t i = 0; i < n / el::QK; ++i) {
    const __m256 d = _mm256_set1_ps(el::w_scale(w[i]) * el::h2f(x[i].d));
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(idot<D, I>(D::dec(w[i]), loadu256(x[i].qs))), acc);
    if constexpr (D::kMin) ms += el::h2f(w[i].m) * el::h2f(x[i].s);
  }
  if constexpr (D::kMin)
    return hsum_ps256(acc) + ms;
  else
    return hsum_ps256(acc);
}

// dot32 for kT tokens at once: each weight block is decoded once.
template <class D, class I, int kT>
void dot32_tok_n(const void* wp, const uint8_t* xp, uint64_t xs, int64_t n, float* out,
                 int64_t os) {
  const auto* w = static_cast<const typename D::B*>(wp);
  const typename D::XB* x[kT];
  for (int t = 0; t < kT; ++t) x[t] = reinterpret_cast<const typename D::XB*>(xp + t * xs);
  __m256 acc[kT];
  float ms[kT];
  for (int t = 0; t < kT; ++t) acc[t] = _mm256_setzero_ps(), ms[t] = 0;
  for (int64_t i = 0; i < n / el::QK; ++i) {
    const __m256i q = D::dec(w[i]);
    const float dw = el::w_scale(w[i]);
    for (int t = 0; t < kT; ++t) {
      const __m256 d = _mm256_set1_ps(dw * el::h2f(x[t][i].d));
      acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(idot<D, I>(q, loadu256(x[t][i].qs))), acc[t]);
      if constexpr (D::kMin) ms[t] += el::h2f(w[i].m) * el::h2f(x[t][i].s);
    }
  }
  for (int t = 0; t < kT; ++t) {
    if constexpr (D::kMin)
      out[t * os] = hsum_ps256(acc[t]) + ms[t];
    else
      out[t * os] = hsum_ps256(acc[t]);
  }
}

template <class D, class I>
void dot32_tok(const void* w, const uint8_t* x, uint64_t xs, int n_tok, int64_t n, float* out,
               int64_t os) {
  switch (n_tok) {
    case 4:
      return dot32_tok_n<D, I, 4>(w, x, xs, n, out, os);
    case 3:
      return dot32_tok_n<D, I, 3>(w, x, xs, n, out, os);
    case 2:
      return dot32_tok_n<D, I, 2>(w, x, xs, n, out, os);
    default:
      return dot32_tok_n<D, I, 1>(w, x, xs, n, out, os);
  }
}

// dot32 for kR weight rows and one token (decode): the activation block is loaded once.
template <class D, class I, int kR>
void dot32_rows_n(const uint8_t* wp, uint64_t ws, const void* xp, int64_t n, float* out) {
  const auto* x = static_cast<const typename D::XB*>(xp);
  const typename D::B* w[kR];
  for (int r = 0; r < kR; ++r) w[r] = reinterpret_cast<const typename D::B*>(wp + r * ws);
  __m256 acc[kR];
  float ms[kR];
  for (int r = 0; r < kR; ++r) acc[r] = _mm256_setzero_ps(), ms[r] = 0;
  // Offset form: the weights as unsigned bytes u = q + kOffset, and sum(q * y) computed as
  // sum(u * y) - kOffset * sum(y) per int32 lane, the second term once per activation block for
  // all rows. Integer sums are exact, so the lanes equal idot's and the result is bit-identical
  // (saves the two sign operations per row and block).
  constexpr bool kOffsetForm = D::kOffset > 0 && (I::kWideU8 || !D::kWide);
  // Software prefetch one row group ahead: while block i of rows r..r+kR-1 is used, block i of
  // rows r+kR..r+2kR-1 (the caller's next group) is fetched, so a whole group is in cache when
  // its turn comes. kR interleaved streams that restart every group are more than the hardware
  // prefetcher follows (with n_in 1024 a row is 32 blocks). Into L2 (T1): a group of 8 rows
  // fetched into L1 pushed the activation and the rows in use out of it (decode 1 thread,
  // Mixtral-layout, exact kernels: Q8_0 56-60 -> 110-117 t/s, Q4_0 66-105 -> 142-156 t/s against
  // T0). Past the matrix end this touches memory that is not read: a prefetch never faults.
  for (int64_t i = 0; i < n / el::QK; ++i) {
    const __m256i y = loadu256(x[i].qs);
    const float dx = el::h2f(x[i].d);
    if constexpr (kOffsetForm) {
      const __m256i neg = _mm256_sub_epi32(
          _mm256_setzero_si256(), I::uns(_mm256_set1_epi8(static_cast<char>(D::kOffset)), y));
      for (int r = 0; r < kR; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(w[r] + i) + kR * ws, _MM_HINT_T1);
      for (int r = 0; r < kR; ++r) {
        const __m256 d = _mm256_set1_ps(el::w_scale(w[r][i]) * dx);
        const __m256i s = I::uns_acc(neg, D::decu(w[r][i]), y);
        acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[r]);
      }
      continue;
    }
    for (int r = 0; r < kR; ++r)
      _mm_prefetch(reinterpret_cast<const char*>(w[r] + i) + kR * ws, _MM_HINT_T1);
    for (int r = 0; r < kR; ++r) {
      const __m256 d = _mm256_set1_ps(el::w_scale(w[r][i]) * dx);
      acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(idot<D, I>(D::dec(w[r][i]), y)), acc[r]);
      if constexpr (D::kMin) ms[r] += el::h2f(w[r][i].m) * el::h2f(x[i].s);
    }
  }
  for (int r = 0; r < kR; ++r) {
    if constexpr (D::kMin)
      out[r] = hsum_ps256(acc[r]) + ms[r];
    else
      out[r] = hsum_ps256(acc[r]);
  }
}

template <class D, class I>
void dot32_rows(const uint8_t* w, uint64_t ws, int n_rows, const void* x, int64_t n, float* out) {
  switch (n_rows) {
    case 8:
      return dot32_rows_n<D, I, 8>(w, ws, x, n, out);
    case 7:
      return dot32_rows_n<D, I, 7>(w, ws, x, n, out);
    case 6:
      return dot32_rows_n<D, I, 6>(w, ws, x, n, out);
    case 5:
      return dot32_rows_n<D, I, 5>(w, ws, x, n, out);
    case 4:
      return dot32_rows_n<D, I, 4>(w, ws, x, n, out);
    case 3:
      return dot32_rows_n<D, I, 3>(w, ws, x, n, out);
    case 2:
      return dot32_rows_n<D, I, 2>(w, ws, x, n, out);
    default:
      return dot32_rows_n<D, I, 1>(w, ws, x, n, out);
  }
}

// ---- K-quants, several tokens: the super-block is decoded once (quants and scales), then each
// token's exact int32 sum is formed; the final el::k_combine is the single-token kernels', so
// the results equal theirs (and the scalar reference's) bit for bit.

/// Q4_K: 8 vectors of 32 unsigned 4-bit quants (sub-block j = vector j) and 8 scales / mins.
template <int kT>
void dot_q4_k_tok_n(const void* wp, const uint8_t* xp, uint64_t xs, int64_t n, float* out,
                    int64_t os) {
  const auto* w = static_cast<const el::BlockQ4_K*>(wp);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  float s[kT] = {};
  for (int64_t i = 0; i < n / el::QK_K; ++i) {
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) el::k4_scale_min(j, w[i].scales, &sc[j], &mn[j]);
    __m256i q[8];
    for (int c = 0; c < 4; ++c) {
      const __m256i b = loadu256(w[i].qs + 32 * c);
      q[2 * c] = _mm256_and_si256(b, m4);
      q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
    }
    const float dw = el::h2f(w[i].d), dm = el::h2f(w[i].dmin);
    for (int t = 0; t < kT; ++t) {
      const auto& x = reinterpret_cast<const el::BlockQ8_K*>(xp + t * xs)[i];
      int summ = 0;
      for (int j = 0; j < 8; ++j) summ += mn[j] * (x.bsums[2 * j] + x.bsums[2 * j + 1]);
      __m256i acc = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) {
        const __m256i p = _mm256_maddubs_epi16(q[j], loadu256(x.qs + 32 * j));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(sc[j])));
      }
      s[t] += el::k_combine(dw * x.d, dm * x.d, hsum_i32_256(acc), summ);
    }
  }
  for (int t = 0; t < kT; ++t) out[t * os] = s[t];
}

/// Q6_K: 8 vectors of 32 unsigned 6-bit quants (value + 32) and 16 int8 scales.
template <int kT>
void dot_q6_k_tok_n(const void* wp, const uint8_t* xp, uint64_t xs, int64_t n, float* out,
                    int64_t os) {
  const auto* w = static_cast<const el::BlockQ6_K*>(wp);
  const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
  float s[kT] = {};
  for (int64_t i = 0; i < n / el::QK_K; ++i) {
    __m256i q[8];
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = loadu256(w[i].ql + 64 * h), ql1 = loadu256(w[i].ql + 64 * h + 32);
      const __m256i qh = loadu256(w[i].qh + 32 * h);
      auto hb = [&](int k) {
        return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m3), 4);
      };
      q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), hb(0));
      q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), hb(1));
      q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), hb(2));
      q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), hb(3));
    }
    const int8_t* sc = w[i].scales;
    const float dw = el::h2f(w[i].d);
    for (int t = 0; t < kT; ++t) {
      const auto& x = reinterpret_cast<const el::BlockQ8_K*>(xp + t * xs)[i];
      int bias = 0;
      for (int j = 0; j < 16; ++j) bias += sc[j] * x.bsums[j];
      __m256i acc = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) {
        const __m256i p = _mm256_maddubs_epi16(q[j], loadu256(x.qs + 32 * j));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scales_8_8(sc[2 * j], sc[2 * j + 1])));
      }
      s[t] += el::k_combine(dw * x.d, 0.0f, hsum_i32_256(acc) - 32 * bias, 0);
    }
  }
  for (int t = 0; t < kT; ++t) out[t * os] = s[t];
}

#define MOELAB_TOK_DISPATCH(name)                                                                  \
  inline void name(const void* w, const uint8_t* x, uint64_t xs, int n_tok, int64_t n, float* out, \
                   int64_t os) {                                                                   \
    switch (n_tok) {                                                                               \
      case 4:                                                                                      \
        return name##_n<4>(w, x, xs, n, out, os);                                                  \
      case 3:                                                                                      \
        return name##_n<3>(w, x, xs, n, out, os);                                                  \
      case 2:                                                                                      \
        return name##_n<2>(w, x, xs, n, out, os);                                                  \
      default:                                                                                     \
        return name##_n<1>(w, x, xs, n, out, os);                                                  \
    }                                                                                              \
  }
MOELAB_TOK_DISPATCH(dot_q4_k_tok)
MOELAB_TOK_DISPATCH(dot_q6_k_tok)
#undef MOELAB_TOK_DISPATCH

// ---- Activation quantization (impl.h: QuantizeFn) --------------------------------------------
// el::quantize_act on 8 lanes at a time, the same bytes for every input: amax by max over |x|
// (MAXPS keeps the accumulator when |x| is NaN, as the scalar `>` does), the scale and its
// inverse in scalar code, round_even's add-1.5*2^23 trick on the lanes, and each int32 cut to its
// low byte (as static_cast<int8_t>) rather than saturated.
inline float amax_32(const float* x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k)
    m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)), m);
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}
// round_even(x * id) (fp16.h) of 32 floats -> their low bytes, in order.
inline __m256i quant_32(const float* x, float id) {
  const __m256 s = _mm256_set1_ps(id), magic = _mm256_set1_ps(12582912.0f);
  const __m256i mant = _mm256_set1_epi32(0x7fffff), half = _mm256_set1_epi32(0x400000),
                low = _mm256_set1_epi32(0xff);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    const __m256 t = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), s), magic);
    q[k] = _mm256_and_si256(_mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(t), mant), half),
                            low);
  }
  // unsigned packs of values 0..255 keep them: bytes 0-3 of q0, q1, q2, q3 | 4-7 of each
  const __m256i b =
      _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
template <class XB>
void quantize_act_row(const float* x, void* dst, int64_t n) {
  XB* b = static_cast<XB*>(dst);
  for (int64_t i = 0; i < n / el::QK; ++i) {
    const float* xb = x + i * el::QK;
    const float amax = amax_32(xb);
    const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
    b[i].d = el::f32_to_f16(d);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs), quant_32(xb, id));
    if constexpr (std::is_same_v<XB, el::BlockQ8_1>) {
      int sum = 0;
      for (int j = 0; j < el::QK; ++j) sum += b[i].qs[j];
      b[i].s = el::f32_to_f16(d * static_cast<float>(sum));
    }
  }
}

}  // namespace
}  // namespace moelab::kernels::cpu
