#version 450
// Heatmap cell colour. The cell under a pixel is computed from gl_FragCoord with the inverse
// view matrix (exactly what the CPU fallback in views/src/heatmap.cpp does), fetched with
// texelFetch (nearest, no filtering) and mapped through the colormap lookup texture. Each pixel
// belongs to the one tile that owns its cell; the other (overlapping) tile quads discard it, so
// tiles are seamless.
//
// Variants are specialization constants (one pipeline each), so the driver compiles only the
// path in use: on a software rasterizer (lavapipe) branches cost both sides.
#extension GL_GOOGLE_include_directive : require
#include "heatmap_common.glsl"

// 0: nearest cell; 1: max pooling; 2: max-|v| pooling (sign kept). See ColorScale::max_pool.
layout(constant_id = 0) const int kPool = 0;
// 0: linear; 1: log2; 2: categorical ids (id % kCategoricalSize).
layout(constant_id = 1) const int kMapping = 0;
// Pooling reads at most 3 x 3 level-k cells per pixel (true when the zoom is about the same
// along both axes; the host decides from the transform).
layout(constant_id = 2) const bool kSmallFootprint = false;
// ColorScale::coarse_pool: one read per pixel, the level-k block under the pixel centre.
layout(constant_id = 3) const bool kCoarse = false;

layout(set = 0, binding = 1) uniform sampler2D lut;
// The tile's cells: level 0 (R32F viewed as (v, v)) or pyramid level k (RG32F: max, min).
layout(set = 1, binding = 0) uniform sampler2D cells;

layout(location = 0) out vec4 color;

const float kCellEdgeBias = 1.0 / 4096.0;  // see heatmap.h
const int kMaxPoolCells = 64;              // see colormap.h
const int kCategoricalSize = 64;           // see colormap.h (a power of two)

bool is_nan_bits(float v) {  // immune to fast-math folding of isnan()
  uint b = floatBitsToUint(v);
  return (b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu) != 0u;
}

void main() {
  vec4 d = u.pixel_to_data * vec4(gl_FragCoord.xy, 0.0, 1.0);
  ivec2 cell = ivec2(floor(d.xy + kCellEdgeBias));
  ivec2 local = cell - pc.tile.xy;
  if (any(lessThan(local, ivec2(0))) || any(greaterThanEqual(local, pc.tile.zw))) discard;
  float v;
  bool masked;
  if (kPool == 0 || kMapping == 2) {
    v = texelFetch(cells, cell - pc.tex.xy, 0).r;
    masked = is_nan_bits(v);
  } else if (kCoarse) {
    vec2 mm = texelFetch(cells, (cell >> u.map_size.w) - pc.tex.xy, 0).rg;
    v = (kPool == 1 || abs(mm.x) >= abs(mm.y)) ? mm.x : mm.y;
    masked = is_nan_bits(v);
  } else {
    // Max pooling (heatmap.h: HeatmapPyramid, pool_level): the cells from floor(left edge +
    // bias) to floor(right edge - bias) along each axis that has more than one cell per pixel,
    // widened to the level-k blocks holding them, clipped to this tile's texture (which holds
    // a halo of neighbouring cells), read from pyramid level k = u.map_size.w.
    vec4 e0 = u.pixel_to_data * vec4(gl_FragCoord.xy - 0.5, 0.0, 1.0);
    vec4 e1 = u.pixel_to_data * vec4(gl_FragCoord.xy + 0.5, 0.0, 1.0);
    ivec2 lo = ivec2(floor(e0.xy + kCellEdgeBias));
    ivec2 hi = ivec2(floor(e1.xy - kCellEdgeBias));
    if (e1.x - e0.x <= 1.0) { lo.x = cell.x; hi.x = cell.x; }
    if (e1.y - e0.y <= 1.0) { lo.y = cell.y; hi.y = cell.y; }
    int k = u.map_size.w;
    lo = max((min(lo, cell) >> k) - pc.tex.xy, ivec2(0));
    hi = min((max(hi, cell) >> k) - pc.tex.xy, pc.tex.zw - 1);
    masked = true;
    v = 0.0;
    if (kSmallFootprint) {
      // At most 3 x 3 level-k cells (the host checked): unrolled, no loop (cheaper on a
      // software rasterizer). Cells outside [lo, hi] are read clamped and ignored.
      for (int j = 0; j < 3; ++j) {
        for (int i = 0; i < 3; ++i) {
          ivec2 p = lo + ivec2(i, j);
          vec2 mm = texelFetch(cells, min(p, hi), 0).rg;
          float c = (kPool == 1 || abs(mm.x) >= abs(mm.y)) ? mm.x : mm.y;
          bool use = all(lessThanEqual(p, hi)) && !is_nan_bits(c) &&
                     (masked || (kPool == 1 ? c > v : abs(c) > abs(v)));
          if (use) { v = c; masked = false; }
        }
      }
    } else {
      ivec2 n = hi - lo + 1;
      ivec2 stride = (n + (kMaxPoolCells - 1)) / kMaxPoolCells;
      for (int y = lo.y; y <= hi.y; y += stride.y) {
        for (int x = lo.x; x <= hi.x; x += stride.x) {
          vec2 mm = texelFetch(cells, ivec2(x, y), 0).rg;
          float c = (kPool == 1 || abs(mm.x) >= abs(mm.y)) ? mm.x : mm.y;
          if (is_nan_bits(c)) continue;
          if (masked || (kPool == 1 ? c > v : abs(c) > abs(v))) v = c;
          masked = false;
        }
      }
    }
  }
  int idx;
  if (masked) {
    idx = -1;
  } else if (kMapping == 2) {
    idx = v < 0.0 ? -1 : (int(floor(v + 0.5)) & (kCategoricalSize - 1));
  } else {
    float f = v;
    if (kMapping == 1) f = v > 0.0 ? log2(v) : -1.0e30;
    float x = (f - u.scale.x) * u.scale.y;
    int n = u.map_size.z;
    idx = x >= 0.0 ? (x >= float(n) ? n - 1 : int(x)) : 0;
  }
  color = idx < 0 ? u.masked : texelFetch(lut, ivec2(idx, 0), 0);
}
