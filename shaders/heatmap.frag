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

void main() {
  vec4 d = u.pixel_to_data * vec4(gl_FragCoord.xy, 0.0, 1.0);
  ivec2 cell = ivec2(floor(d.xy + kCellEdgeBias));
  ivec2 local = cell - pc.tile.xy;
  if (any(lessThan(local, ivec2(0))) || any(greaterThanEqual(local, pc.tile.zw))) discard;
  float v = texelFetch(cells, local, 0).r;
  int n = u.map_size.z;
  int idx;
  if (is_nan_bits(v)) {
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
