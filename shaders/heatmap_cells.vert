#version 450
// Flat cells (the window's fast path when zoomed in, see VulkanHeatmapRenderer::record): one
// instance per visible cell, a quad over the cell's unit square in data space, coloured once
// per cell here (the same mapping as heatmap.frag's nearest-cell path) instead of once per
// pixel. push: tile.xy = first column/row of the instanced block, tile.z = its width in cells;
// tex.xy = first column/row held by the bound (level-0) texture.
#extension GL_GOOGLE_include_directive : require
#include "heatmap_common.glsl"

layout(constant_id = 1) const int kMapping = 0;  // 0: linear; 1: log2; 2: categorical
const int kCategoricalSize = 64;                 // see colormap.h (a power of two)

layout(set = 0, binding = 1) uniform sampler2D lut;
layout(set = 1, binding = 0) uniform sampler2D cells;

layout(location = 0) flat out vec4 cell_color;

const vec2 kCorners[6] = vec2[](vec2(0, 0), vec2(1, 0), vec2(1, 1),
                                vec2(0, 0), vec2(1, 1), vec2(0, 1));

bool is_nan_bits(float v) {
  uint b = floatBitsToUint(v);
  return (b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu) != 0u;
}

void main() {
  int i = gl_InstanceIndex;
  ivec2 cell = pc.tile.xy + ivec2(i % pc.tile.z, i / pc.tile.z);
  gl_Position = u.data_to_ndc * vec4(vec2(cell) + kCorners[gl_VertexIndex], 0.0, 1.0);
  float v = texelFetch(cells, cell - pc.tex.xy, 0).r;
  int idx;
  if (is_nan_bits(v)) {
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
  cell_color = idx < 0 ? u.masked : texelFetch(lut, ivec2(idx, 0), 0);
}
