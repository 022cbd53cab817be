// Repacked Q4_K / Q6_K (kquant.h): repacking, activation expansion and the scalar reference.
#include <cmath>
#include <cstring>

#include "kernels/cpu/kquant.h"
#include "kernels/element/blocks.h"
#include "moelab/gguf/types.h"

namespace moelab::kernels::cpu {
namespace el = moelab::kernels::el;

namespace {

constexpr int kRows = 8;

// u = q + 32 (0..63) of element e of a Q6_K block (ggml's layout, blocks.h: dequant).
int q6_u(const el::BlockQ6_K& b, int e) {
  const int n = e / 128, i = e % 128, quarter = i / 32, l = i % 32;
  const uint8_t ql = b.ql[64 * n + 32 * (quarter & 1) + l];
  const int lo = quarter < 2 ? (ql & 0x0f) : (ql >> 4);
  const int hi = (b.qh[32 * n + l] >> (2 * quarter)) & 3;
  return lo | (hi << 4);
}

// 64 6-bit values v[k] -> 48 bytes (kquant.h: the Q4_K scales / mins).
void pack6(const uint8_t* v, uint8_t* out) {
  for (int k = 0; k < 32; ++k) out[k] = static_cast<uint8_t>((v[k] & 15) | ((v[k + 32] & 15) << 4));
  for (int k = 0; k < 16; ++k) {
    int b = 0;
    for (int i = 0; i < 4; ++i) b |= ((v[16 * i + k] >> 4) & 3) << (2 * i);
    out[32 + k] = static_cast<uint8_t>(b);
  }
}
int unpack6(const uint8_t* p, int v) {
  const int lo = v < 32 ? (p[v] & 15) : (p[v - 32] >> 4);
  const int hi = (p[32 + v % 16] >> (2 * (v / 16))) & 3;
  return lo | (hi << 4);
}

int32_t ld_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
float ld_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
uint16_t ld_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Scalar reference of the repacked kernels: the integer sums of kquant.h from the repacked
// bytes and the expanded activation (so the layouts themselves are what is tested), then the
// float steps in the documented order.
void packed_q4_k_scalar(const uint8_t* w, uint64_t gbytes, int n_groups, const uint8_t* x,
                        int64_t n_super, float* out) {
  for (int g = 0; g < n_groups; ++g) {
    float acc[kRows] = {}, accm[kRows] = {};
    for (int64_t sb = 0; sb < n_super; ++sb) {
      const uint8_t* wp = w + g * gbytes + sb * kPackedSuperBytesQ4_K;
      const uint8_t* xp = x + sb * kPackedXSuperBytesQ4_K;
      const float dx = ld_f32(xp + 2304);
      for (int r = 0; r < kRows; ++r) {
        int32_t isum = 0, msum = 0;
        for (int c = 0; c < 2; ++c)
          for (int lh = 0; lh < 2; ++lh)
            for (int hh = 0; hh < 2; ++hh) {
              const int lane = 8 * hh + r, v = 16 * (2 * c + lh) + lane;
              int32_t s = 0;
              for (int k = 0; k < 8; ++k)
                for (int b = 0; b < 4; ++b) {
                  const uint8_t q = wp[128 + 64 * (8 * c + k) + 32 * hh + 4 * r + b];
                  const int qv = lh ? (q >> 4) : (q & 15);
                  s += qv *
                       static_cast<int8_t>(xp[64 * (8 * (2 * c + lh) + k) + 32 * hh + 4 * r + b]);
                }
              isum += unpack6(wp + 32, v) * s;
              msum += unpack6(wp + 80, v) * ld_i32(xp + 2048 + 64 * (2 * c + lh) + 4 * lane);
            }
        const float d = el::h2f(ld_u16(wp + 2 * r)) * dx;
        const float dm = el::h2f(ld_u16(wp + 16 + 2 * r)) * dx;
        acc[r] = std::fma(d, static_cast<float>(isum), acc[r]);
        accm[r] = std::fma(dm, static_cast<float>(msum), accm[r]);
      }
    }
    for (int r = 0; r < kRows; ++r) out[8 * g + r] = acc[r] - accm[r];
  }
}

void packed_q6_k_scalar(const uint8_t* w, uint64_t gbytes, int n_groups, const uint8_t* x,
                        int64_t n_super, float* out) {
  for (int g = 0; g < n_groups; ++g) {
    float acc[kRows] = {};
    for (int64_t sb = 0; sb < n_super; ++sb) {
      const uint8_t* wp = w + g * gbytes + sb * kPackedSuperBytesQ6_K;
      const uint8_t* xp = x + sb * kPackedXSuperBytesQ6_K;
      const float dx = ld_f32(xp + 2560);
      for (int r = 0; r < kRows; ++r) {
        int32_t isum = 0;
        for (int P = 0; P < 8; ++P)
          for (int hh = 0; hh < 2; ++hh) {
            const int lane = 8 * hh + r;
            int32_t s = ld_i32(xp + 2048 + 64 * P + 4 * lane);
            for (int k = 0; k < 4; ++k)
              for (int b = 0; b < 4; ++b) {
                const int o = 32 * hh + 4 * r + b;
                const uint8_t nib = wp[64 * (4 * (P % 4) + k) + o];
                const uint8_t hb = wp[1024 + 64 * (4 * (P / 4) + k) + o];
                const int u = ((P < 4 ? nib : nib >> 4) & 15) | (((hb >> (2 * (P % 4))) & 3) << 4);
                s += u * static_cast<int8_t>(xp[64 * (4 * P + k) + o]);
              }
            isum += static_cast<int8_t>(wp[1536 + 16 * P + lane]) * s;
          }
        const float d = el::h2f(ld_u16(wp + 1664 + 2 * r)) * dx;
        acc[r] = std::fma(d, static_cast<float>(isum), acc[r]);
      }
    }
    for (int r = 0; r < kRows; ++r) out[8 * g + r] = acc[r];
  }
}

}  // namespace

void repack_q4_k(const void* src, void* dst, int64_t n_in, int64_t n_out) {
  const int64_t nb = n_in / el::QK_K;
  const auto* in = static_cast<const el::BlockQ4_K*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < n_out / kRows; ++g)
    for (int64_t sb = 0; sb < nb; ++sb) {
      uint8_t* o = out + (g * nb + sb) * kPackedSuperBytesQ4_K;
      uint8_t sc[64], mn[64];
      for (int r = 0; r < kRows; ++r) {
        const el::BlockQ4_K& b = in[(g * kRows + r) * nb + sb];
        std::memcpy(o + 2 * r, &b.d, 2);
        std::memcpy(o + 16 + 2 * r, &b.dmin, 2);
        for (int c = 0; c < 2; ++c)
          for (int lh = 0; lh < 2; ++lh)
            for (int hh = 0; hh < 2; ++hh) {
              const int v = 16 * (2 * c + lh) + 8 * hh + r;
              el::k4_scale_min(2 * (2 * c + hh) + lh, b.scales, &sc[v], &mn[v]);
            }
        for (int c = 0; c < 2; ++c)
          for (int k = 0; k < 8; ++k)
            for (int hh = 0; hh < 2; ++hh)
              std::memcpy(o + 128 + 64 * (8 * c + k) + 32 * hh + 4 * r,
                          b.qs + 32 * (2 * c + hh) + 4 * k, 4);
      }
      pack6(sc, o + 32);
      pack6(mn, o + 80);
    }
}

void repack_q6_k(const void* src, void* dst, int64_t n_in, int64_t n_out) {
  const int64_t nb = n_in / el::QK_K;
  const auto* in = static_cast<const el::BlockQ6_K*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < n_out / kRows; ++g)
    for (int64_t sb = 0; sb < nb; ++sb) {
      uint8_t* o = out + (g * nb + sb) * kPackedSuperBytesQ6_K;
      std::memset(o, 0, kPackedSuperBytesQ6_K);
      for (int r = 0; r < kRows; ++r) {
        const el::BlockQ6_K& b = in[(g * kRows + r) * nb + sb];
        std::memcpy(o + 1664 + 2 * r, &b.d, 2);
        for (int P = 0; P < 8; ++P)
          for (int hh = 0; hh < 2; ++hh)
            o[1536 + 16 * P + 8 * hh + r] = static_cast<uint8_t>(b.scales[2 * P + hh]);
        for (int P = 0; P < 8; ++P)
          for (int hh = 0; hh < 2; ++hh)
            for (int k = 0; k < 4; ++k)
              for (int bb = 0; bb < 4; ++bb) {
                const int u = q6_u(b, 32 * P + 16 * hh + 4 * k + bb);
                const int off = 32 * hh + 4 * r + bb;
                o[64 * (4 * (P % 4) + k) + off] |=
                    static_cast<uint8_t>((u & 15) << (P < 4 ? 0 : 4));
                o[1024 + 64 * (4 * (P / 4) + k) + off] |=
                    static_cast<uint8_t>((u >> 4) << (2 * (P % 4)));
              }
      }
    }
}

void expand_q8_k_for_q4_k(const void* q8k, uint8_t* dst, int64_t n_in) {
  const auto* xb = static_cast<const el::BlockQ8_K*>(q8k);
  for (int64_t sb = 0; sb < n_in / el::QK_K; ++sb) {
    const el::BlockQ8_K& b = xb[sb];
    uint8_t* d = dst + sb * kPackedXSuperBytesQ4_K;
    for (int c = 0; c < 2; ++c)
      for (int lh = 0; lh < 2; ++lh)
        for (int hh = 0; hh < 2; ++hh) {
          const int e0 = 64 * (2 * c + hh) + 32 * lh, j = 2 * (2 * c + hh) + lh;
          for (int k = 0; k < 8; ++k)
            for (int r = 0; r < kRows; ++r)
              std::memcpy(d + 64 * (8 * (2 * c + lh) + k) + 32 * hh + 4 * r, b.qs + e0 + 4 * k, 4);
          const int32_t sum = b.bsums[2 * j] + b.bsums[2 * j + 1];
          for (int r = 0; r < kRows; ++r)
            std::memcpy(d + 2048 + 64 * (2 * c + lh) + 4 * (8 * hh + r), &sum, 4);
        }
    for (int l = 0; l < 16; ++l) std::memcpy(d + 2304 + 4 * l, &b.d, 4);
  }
}

void expand_q8_k_for_q6_k(const void* q8k, uint8_t* dst, int64_t n_in) {
  const auto* xb = static_cast<const el::BlockQ8_K*>(q8k);
  for (int64_t sb = 0; sb < n_in / el::QK_K; ++sb) {
    const el::BlockQ8_K& b = xb[sb];
    uint8_t* d = dst + sb * kPackedXSuperBytesQ6_K;
    for (int P = 0; P < 8; ++P)
      for (int hh = 0; hh < 2; ++hh) {
        for (int k = 0; k < 4; ++k)
          for (int r = 0; r < kRows; ++r)
            std::memcpy(d + 64 * (4 * P + k) + 32 * hh + 4 * r, b.qs + 32 * P + 16 * hh + 4 * k, 4);
        const int32_t off = -32 * b.bsums[2 * P + hh];
        for (int r = 0; r < kRows; ++r) std::memcpy(d + 2048 + 64 * P + 4 * (8 * hh + r), &off, 4);
      }
    for (int l = 0; l < 16; ++l) std::memcpy(d + 2560 + 4 * l, &b.d, 4);
  }
}

void fill_kquant_scalar(Table& t) {
  t.packed[static_cast<int>(gguf::TensorType::Q4_K)] = packed_q4_k_scalar;
  t.packed_cached[static_cast<int>(gguf::TensorType::Q4_K)] = packed_q4_k_scalar;
  t.packed[static_cast<int>(gguf::TensorType::Q6_K)] = packed_q6_k_scalar;
  t.packed_cached[static_cast<int>(gguf::TensorType::Q6_K)] = packed_q6_k_scalar;
}

}  // namespace moelab::kernels::cpu
