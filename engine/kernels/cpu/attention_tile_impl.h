// Internal: the generic body of the tiled attention kernel (attention_tile.h), included by one
// source file per SIMD level after it defines, in namespace moelab::kernels::cpu::attn:
//   kW (floats per vector), kNV (vectors per micro-kernel column chunk), using V = the vector,
//   V vfma(V a, V b, V c) (one rounding per lane), V bcast(float), and
//   void cvt_f16(const uint16_t* src, float* dst, int64_t n) (exact binary16 -> binary32),
//   void transpose8x8(src, src_stride, dst, dst_stride) (dst[i][j] = src[j][i], 8 x 8 floats),
// all in an anonymous namespace (each level has its own copy).
// Not a public header: the file that includes it is the only user.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "kernels/cpu/attention_tile.h"
#include "kernels/element/reduce.h"
#include "moelab/kernels/kernels.h"

namespace moelab::kernels::cpu::attn {
namespace {  // each including file gets its own copy (own vector width)

constexpr int kB = kAttnBlock;
constexpr int kRB = 4;            // query rows per micro-kernel step
constexpr int kChunk = kW * kNV;  // floats per micro-kernel column chunk
static_assert(kB % kChunk == 0, "a key block is whole column chunks");

inline V vload(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
inline void vstore(float* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

inline int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

/// Per-thread scratch, grown on demand and kept (no allocation per call once warm).
struct Scratch {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float[], Free> buf;
  int64_t cap = 0;
  float* get(int64_t n) {
    if (n > cap) {
      const int64_t bytes = round_up(n * static_cast<int64_t>(sizeof(float)), 64);
      buf.reset(static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(bytes))));
      if (!buf) throw std::bad_alloc();
      cap = n;
    }
    return buf.get();
  }
};

inline float round_f16(float x) {
  uint16_t h;
  kernels::f32_to_f16_row(&x, &h, 1);
  float y;
  kernels::f16_to_f32_row(&h, &y, 1);
  return y;
}

/// Kt[d][j] = src[j][d] for kB rows j and D columns d (src rows `stride` floats apart).
inline void transpose_block(const float* src, int64_t stride, int D, float* Kt) {
  int d0 = 0;
  for (; d0 + 8 <= D; d0 += 8)
    for (int j0 = 0; j0 < kB; j0 += 8)
      transpose8x8(src + j0 * stride + d0, stride, Kt + static_cast<int64_t>(d0) * kB + j0, kB);
  for (; d0 < D; ++d0)
    for (int j = 0; j < kB; ++j) Kt[static_cast<int64_t>(d0) * kB + j] = src[j * stride + d0];
}

inline void run(const AttnTile& jb) {
  const int D = jb.head_dim, Dv = jb.head_dim_v, G = jb.n_group;
  const int64_t R = jb.n_tok * G, Rp = round_up(R, kRB);
  const int64_t Dvp = round_up(Dv, kChunk);
  thread_local Scratch scratch;
  // Q [Rp][D] | Kt [D][kB] | Kraw [kB][D] | Vb [kB][Dvp] | S [Rp][kB] | acc [Rp][Dvp] |
  // lsum [Rp][16] | m [Rp]
  const int64_t nQ = round_up(Rp * D, 16), nKt = round_up(static_cast<int64_t>(D) * kB, 16),
                nKr = nKt, nV = kB * Dvp, nS = Rp * kB, nA = Rp * Dvp, nL = Rp * 16,
                nM = round_up(Rp, 16);
  float* Q = scratch.get(nQ + nKt + nKr + nV + nS + nA + nL + nM);
  float* Kt = Q + nQ;
  float* Kr = Kt + nKt;
  float* Vb = Kr + nKr;
  float* S = Vb + nV;
  float* A = S + nS;
  float* L = A + nA;
  float* M = L + nL;
  std::memset(Q, 0, sizeof(float) * nQ);
  std::memset(Vb, 0, sizeof(float) * nV);  // the padding columns Dv.. stay 0
  std::memset(A, 0, sizeof(float) * (nA + nL));
  for (int64_t tt = 0; tt < jb.n_tok; ++tt)
    for (int g = 0; g < G; ++g) {
      const float* src = jb.q + (jb.t0 + tt) * jb.q_stride + static_cast<int64_t>(jb.h0 + g) * D;
      float* dst = Q + (tt * G + g) * D;
      if (jb.f16) {
        for (int d = 0; d < D; ++d) dst[d] = round_f16(src[d]);
      } else {
        std::memcpy(dst, src, sizeof(float) * D);
      }
    }
  for (int64_t r = 0; r < Rp; ++r) {
    const int h = jb.h0 + static_cast<int>(r % G);
    M[r] = (r < R && jb.sinks) ? jb.sinks[h] : -INFINITY;
  }
  // visible key range of each row's token: [lo, hi)
  auto vis_lo = [&](int64_t tt) -> int64_t {
    const int64_t p = jb.pos[jb.t0 + tt];
    return jb.window ? std::max<int64_t>(0, p - static_cast<int64_t>(jb.window) + 1) : 0;
  };
  auto vis_hi = [&](int64_t tt) -> int64_t { return static_cast<int64_t>(jb.pos[jb.t0 + tt]) + 1; };

  bool filled[kB];
  int64_t cell = jb.kv_begin;  // next cell to load
  while (cell < jb.kv_end) {
    // the block of positions [i0, i0 + kB) and the cells [cell, c1) holding them
    const int64_t p0 = jb.cell_pos ? jb.cell_pos[cell] : cell;
    const int64_t i0 = p0 - (p0 % kB);
    int64_t c1 = cell;
    if (jb.cell_pos) {
      while (c1 < jb.kv_end && jb.cell_pos[c1] < i0 + kB) ++c1;
    } else {
      c1 = std::min<int64_t>(i0 + kB, jb.kv_end);
    }
    const int nb = jb.cell_pos ? kB : static_cast<int>(c1 - i0);
    // K block -> Kt [D][kB] (F32, missing keys zero), V block -> Vb [kB][Dvp] (zero padded). A
    // whole F32 block of the plain cache is transposed straight from it, others via Kr [kB][D].
    const bool direct = !jb.f16 && !jb.cell_pos && nb == kB;
    std::fill(filled, filled + kB, false);
    if (jb.cell_pos || nb < kB) {
      std::memset(Kr, 0, sizeof(float) * kB * D);
      std::memset(Vb, 0, sizeof(float) * kB * Dvp);
    }
    for (int64_t c = cell; c < c1; ++c) {
      const int j = static_cast<int>((jb.cell_pos ? jb.cell_pos[c] : c) - i0);
      filled[j] = true;
      float* kr = Kr + static_cast<int64_t>(j) * D;
      float* vr = Vb + static_cast<int64_t>(j) * Dvp;
      if (jb.f16) {
        cvt_f16(static_cast<const uint16_t*>(jb.k) + c * jb.k_stride + jb.k_off, kr, D);
        cvt_f16(static_cast<const uint16_t*>(jb.v) + c * jb.v_stride + jb.v_off, vr, Dv);
      } else {
        if (!direct)
          std::memcpy(kr, static_cast<const float*>(jb.k) + c * jb.k_stride + jb.k_off,
                      sizeof(float) * D);
        std::memcpy(vr, static_cast<const float*>(jb.v) + c * jb.v_stride + jb.v_off,
                    sizeof(float) * Dv);
      }
    }
    cell = c1;
    if (direct)
      transpose_block(static_cast<const float*>(jb.k) + i0 * jb.k_stride + jb.k_off, jb.k_stride, D,
                      Kt);
    else
      transpose_block(Kr, D, D, Kt);

    // S [Rp][kB] = Q Kt: per lane one fma chain over d in order
    for (int64_t r0 = 0; r0 < Rp; r0 += kRB)
      for (int c0 = 0; c0 < kB; c0 += kChunk) {
        V acc[kRB][kNV];
        for (int rr = 0; rr < kRB; ++rr)
          for (int v = 0; v < kNV; ++v) acc[rr][v] = bcast(0.0f);
        const float* qr = Q + r0 * D;
        for (int d = 0; d < D; ++d) {
          V kv[kNV];
#pragma GCC unroll 8
          for (int v = 0; v < kNV; ++v)
            kv[v] = vload(Kt + static_cast<int64_t>(d) * kB + c0 + v * kW);
#pragma GCC unroll 4
          for (int rr = 0; rr < kRB; ++rr) {
            const V qb = bcast(qr[rr * D + d]);
#pragma GCC unroll 8
            for (int v = 0; v < kNV; ++v) acc[rr][v] = vfma(qb, kv[v], acc[rr][v]);
          }
        }
        for (int rr = 0; rr < kRB; ++rr)
          for (int v = 0; v < kNV; ++v) vstore(S + (r0 + rr) * kB + c0 + v * kW, acc[rr][v]);
      }

    // online softmax: scores -> probabilities (in S), rescale acc and l
    for (int64_t r = 0; r < R; ++r) {
      const int64_t tt = r / G;
      int64_t lo = 0, hi = kB;
      float* s = S + r * kB;
      if (jb.visible) {  // a policy: any set of keys
        for (int j = 0; j < kB; ++j)
          if (!filled[j] || !jb.visible(jb.vis_ctx, jb.t0 + tt, i0 + j)) s[j] = -INFINITY;
      } else {
        lo = std::max<int64_t>(vis_lo(tt) - i0, 0);
        hi = std::min<int64_t>(vis_hi(tt) - i0, nb);
        if (hi <= lo) {  // nothing visible in this block: p = 0, acc unchanged
          std::fill(s, s + kB, 0.0f);
          continue;
        }
        for (int64_t j = 0; j < lo; ++j) s[j] = -INFINITY;
        for (int64_t j = hi; j < kB; ++j) s[j] = -INFINITY;
      }
      float mx = -INFINITY;
      if (lo == 0 && hi == kB && !jb.visible &&
          !(jb.softcap > 0)) {  // whole block visible: vector form
        const V sc = bcast(jb.scale);
        V vm = bcast(-INFINITY);
        for (int j = 0; j < kB; j += kW) {
          const V x = vload(s + j) * sc;
          vstore(s + j, x);
          vm = x > vm ? x : vm;
        }
        for (int l = 0; l < kW; ++l) mx = vm[l] > mx ? vm[l] : mx;
      } else {
        for (int64_t j = lo; j < hi; ++j) {
          if (s[j] == -INFINITY) continue;  // masked by the policy
          float x = s[j] * jb.scale;
          if (jb.softcap > 0) x = jb.softcap * tanhf(x / jb.softcap);
          s[j] = x;
          mx = x > mx ? x : mx;
        }
      }
      const float m_old = M[r];
      const float m_new = mx > m_old ? mx : m_old;
      float* lr = L + r * 16;
      if (m_new == -INFINITY) {  // every visible score -inf: p = 0
        std::fill(s, s + kB, 0.0f);
        continue;
      }
      if (m_new != m_old && m_old != -INFINITY) {
        const float c = el::expf_ggml(m_old - m_new);
        for (int l = 0; l < 16; ++l) lr[l] *= c;
        float* a = A + r * Dvp;
        const V cv = bcast(c);
        for (int64_t d = 0; d < Dvp; d += kW) vstore(a + d, vload(a + d) * cv);
      }
      M[r] = m_new;
      kernels::exp_shifted(s, m_new, s, kB);  // -inf -> 0
      for (int j = 0; j < kB; j += kW) vstore(lr + (j & 15), vload(lr + (j & 15)) + vload(s + j));
    }

    // acc [Rp][Dvp] += P Vb: per lane one fma chain over the keys in order
    for (int64_t r0 = 0; r0 < Rp; r0 += kRB)
      for (int64_t c0 = 0; c0 < Dvp; c0 += kChunk) {
        V acc[kRB][kNV];
        for (int rr = 0; rr < kRB; ++rr)
          for (int v = 0; v < kNV; ++v) acc[rr][v] = vload(A + (r0 + rr) * Dvp + c0 + v * kW);
        const float* pr = S + r0 * kB;
        for (int j = 0; j < nb; ++j) {
          V vv[kNV];
#pragma GCC unroll 8
          for (int v = 0; v < kNV; ++v) vv[v] = vload(Vb + j * Dvp + c0 + v * kW);
#pragma GCC unroll 4
          for (int rr = 0; rr < kRB; ++rr) {
            const V pb = bcast(pr[rr * kB + j]);
#pragma GCC unroll 8
            for (int v = 0; v < kNV; ++v) acc[rr][v] = vfma(pb, vv[v], acc[rr][v]);
          }
        }
        for (int rr = 0; rr < kRB; ++rr)
          for (int v = 0; v < kNV; ++v) vstore(A + (r0 + rr) * Dvp + c0 + v * kW, acc[rr][v]);
      }
  }

  // out = acc / (l + e^(sink - m))
  for (int64_t r = 0; r < R; ++r) {
    const int64_t tt = r / G;
    const int h = jb.h0 + static_cast<int>(r % G);
    const float* lr = L + r * 16;
    float l8[8];
    for (int l = 0; l < 8; ++l) l8[l] = lr[l] + lr[l + 8];
    const float l4[4] = {l8[0] + l8[4], l8[1] + l8[5], l8[2] + l8[6], l8[3] + l8[7]};
    float sum = (l4[0] + l4[2]) + (l4[1] + l4[3]);
    if (jb.sinks && M[r] != -INFINITY) sum += el::expf_ggml(jb.sinks[h] - M[r]);
    float* o = jb.out + (jb.t0 + tt) * jb.o_stride + static_cast<int64_t>(h) * Dv;
    const float* a = A + r * Dvp;
    if (!(sum > 0.0f)) {
      std::fill(o, o + Dv, 0.0f);
      continue;
    }
    const float inv = 1.0f / sum;
    for (int d = 0; d < Dv; ++d) o[d] = a[d] * inv;
  }
}

}  // namespace
}  // namespace moelab::kernels::cpu::attn
