#version 450
// Heatmap cell colour. The cell under a pixel is computed from gl_FragCoord with the inverse
// view matrix (exactly what the CPU fallback does), fetched with texelFetch (nearest, no
// filtering of R32F) and mapped through the colormap lookup texture. Each pixel belongs to the
// one tile that owns its cell; the other (overlapping) tile quads discard it, so tiles are
// seamless.
#extension GL_GOOGLE_include_directive : require
#include "heatmap_common.glsl"

layout(set = 0, binding = 1) uniform sampler2D lut;
layout(set = 1, binding = 0) uniform sampler2D cells;

layout(location = 0) out vec4 color;

const float kCellEdgeBias = 1.0 / 4096.0;  // see heatmap.h

bool is_nan_bits(float v) {  // immune to fast-math folding of isnan()
  uint b = floatBitsToUint(v);
  return (b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu) != 0u;
}

// Max pooling when zoomed out (see ColorScale::max_pool; the CPU renderer in heatmap.cpp does
// the same integer steps): along an axis where the pixel covers more than one cell, the cells
// from floor(left edge + bias) to floor(right edge - bias), clipped to the map (this tile's
// texture holds a halo of kMaxPoolCells cells of its neighbours), are read and
// the largest (u.map_size.w == 1) or largest-magnitude (== 2) unmasked value wins.
const int kMaxPoolCells = 64;

void main() {
  vec4 d = u.pixel_to_data * vec4(gl_FragCoord.xy, 0.0, 1.0);
  ivec2 cell = ivec2(floor(d.xy + kCellEdgeBias));
  ivec2 local = cell - pc.tile.xy;
  if (any(lessThan(local, ivec2(0))) || any(greaterThanEqual(local, pc.tile.zw))) discard;
  int pool = u.map_size.w;
  float v;
  bool masked = false;
  if (pool == 0 || u.scale.w > 0.5) {
    v = texelFetch(cells, cell - pc.tex.xy, 0).r;
    masked = is_nan_bits(v);
  } else {
    vec4 e0 = u.pixel_to_data * vec4(gl_FragCoord.xy - 0.5, 0.0, 1.0);
    vec4 e1 = u.pixel_to_data * vec4(gl_FragCoord.xy + 0.5, 0.0, 1.0);
    ivec2 lo = ivec2(floor(e0.xy + kCellEdgeBias));
    ivec2 hi = ivec2(floor(e1.xy - kCellEdgeBias));
    if (e1.x - e0.x <= 1.0) { lo.x = cell.x; hi.x = cell.x; }
    if (e1.y - e0.y <= 1.0) { lo.y = cell.y; hi.y = cell.y; }
    lo = max(min(lo, cell) - pc.tex.xy, ivec2(0));
    hi = min(max(hi, cell) - pc.tex.xy, pc.tex.zw - 1);
    ivec2 n = hi - lo + 1;
    ivec2 stride = (n + (kMaxPoolCells - 1)) / kMaxPoolCells;
    masked = true;
    v = 0.0;
    for (int y = lo.y; y <= hi.y; y += stride.y) {
      for (int x = lo.x; x <= hi.x; x += stride.x) {
        float c = texelFetch(cells, ivec2(x, y), 0).r;
        if (is_nan_bits(c)) continue;
        if (masked || (pool == 1 ? c > v : abs(c) > abs(v))) v = c;
        masked = false;
      }
    }
  }
  int n = u.map_size.z;
  int idx;
  if (masked) {
    idx = -1;
  } else if (u.scale.w > 0.5) {
    idx = v < 0.0 ? -1 : int(floor(v + 0.5)) % n;
  } else {
    float f = v;
    if (u.scale.z > 0.5) f = v > 0.0 ? log2(v) : -1.0e30;
    float x = (f - u.scale.x) * u.scale.y;
    idx = x >= 0.0 ? (x >= float(n) ? n - 1 : int(x)) : 0;
  }
  color = idx < 0 ? u.masked : texelFetch(lut, ivec2(idx, 0), 0);
}
