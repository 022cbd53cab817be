// Tiled attention driver; see attention_tiled.h.
#include "ops/attention_tiled.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "kernels/cpu/attention_tile.h"
#include "moelab/kernels/kernels.h"

namespace moelab::ops::detail {

namespace {

kernels::cpu::AttnTileFn tile_fn() {
  switch (kernels::active_simd()) {
#if defined(MOELAB_KERNELS_AVX512)
    case kernels::Simd::Avx512:
      return kernels::cpu::attn_tile_avx512;
#endif
#if defined(MOELAB_KERNELS_AVX2)
    case kernels::Simd::Avx2:
      return kernels::cpu::attn_tile_avx2;
#endif
    default:
      return kernels::cpu::attn_tile_scalar;
  }
}

}  // namespace

namespace {
// MOELAB_TILED_ATTENTION: "0" off, "always" also below kTiledMinPosition (tests: every fixture
// architecture through the tiled kernel), else the default.
int tiled_mode() {
  static const int mode = [] {
    const char* e = std::getenv("MOELAB_TILED_ATTENTION");
    if (e && std::string_view(e) == "0") return 0;
    if (e && std::string_view(e) == "always") return 2;
    return 1;
  }();
  return mode;
}
}  // namespace

bool tiled_attention_enabled() {
  return tiled_mode() != 0 && !kernels::exact_kernels();
}

bool use_tiled_attention(const int32_t* pos, int64_t n_tokens, const AttentionParams& p,
                         const KvLayer& kv) {
  if (!tiled_attention_enabled() || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0) return false;
  if (tiled_mode() == 2 || kv.f16) return true;
  for (int64_t t = 0; t < n_tokens; ++t)
    if (pos[t] >= kTiledMinPosition) return true;
  return false;
}

void attention_tiled(const float* q, const int32_t* pos, int64_t n_tokens, const KvLayer& kv,
                     int64_t n_kv, const AttentionParams& p, float* out, ThreadPool* pool,
                     const int32_t* cell_pos, bool (*visible)(const void*, int64_t, int64_t),
                     const void* vis_ctx) {
  const int G = p.n_head / p.n_head_kv;
  const int64_t tile = std::max<int64_t>(1, kernels::cpu::kAttnRows / G);
  const int64_t n_tiles = (n_tokens + tile - 1) / tile;
  const int64_t n_jobs = n_tiles * p.n_head_kv;
  kernels::cpu::AttnTile base;
  base.q = q;
  base.q_stride = static_cast<int64_t>(p.n_head) * p.head_dim;
  base.pos = pos;
  base.n_group = G;
  base.k = kv.k;
  base.v = kv.v;
  base.f16 = kv.f16;
  base.k_stride = static_cast<int64_t>(p.n_head_kv) * p.head_dim;
  base.v_stride = kv.v_row > 0 ? kv.v_row : static_cast<int64_t>(p.n_head_kv) * p.head_dim_v;
  base.head_dim = p.head_dim;
  base.head_dim_v = p.head_dim_v;
  base.scale = p.scale;
  base.softcap = p.softcap;
  base.window = p.window;
  base.sinks = p.sinks;
  base.out = out;
  base.o_stride = static_cast<int64_t>(p.n_head) * p.head_dim_v;
  base.cell_pos = cell_pos;
  base.visible = visible;
  base.vis_ctx = vis_ctx;
  const kernels::cpu::AttnTileFn fn = tile_fn();
  auto job = [&](int64_t begin, int64_t end, int) {
    for (int64_t j = begin; j < end; ++j) {
      // causal tiles grow in cost with their position: alternate early and late tiles so the
      // pool's contiguous chunks get similar work
      const int64_t k = j / p.n_head_kv;
      const int64_t ti = (k % 2 == 0) ? k / 2 : n_tiles - 1 - k / 2;
      const int hk = static_cast<int>(j % p.n_head_kv);
      kernels::cpu::AttnTile jb = base;
      jb.t0 = ti * tile;
      jb.n_tok = std::min(tile, n_tokens - jb.t0);
      jb.h0 = hk * G;
      jb.k_off = static_cast<int64_t>(hk) * p.head_dim;
      jb.v_off = static_cast<int64_t>(hk) * p.head_dim_v;  // as attention_kernel.h (MLA too)
      int64_t lo = n_kv, hi = 0;
      for (int64_t t = jb.t0; t < jb.t0 + jb.n_tok; ++t) {
        const int64_t ps = pos[t];
        lo = std::min<int64_t>(lo, p.window ? std::max<int64_t>(0, ps - p.window + 1) : 0);
        hi = std::max<int64_t>(hi, ps + 1);
      }
      // blocks start at multiples of kAttnBlock positions whatever the window (so a policy's
      // mask that hides nothing gives these bits)
      jb.kv_begin = std::min(lo - lo % kernels::cpu::kAttnBlock, n_kv);
      jb.kv_end = std::min(hi, n_kv);
      if (visible) {
        jb.kv_begin = 0;
        jb.kv_end = n_kv;
      }
      fn(jb);
    }
  };
  if (pool && pool->size() > 1 && n_jobs > 1)
    pool->parallel_for(n_jobs, job);
  else
    job(0, n_jobs, 0);
}

}  // namespace moelab::ops::detail
