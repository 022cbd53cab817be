// Shared interface of heatmap.vert / heatmap.frag. Mirrors HeatmapUniforms and TilePush in
// views/src/vulkan_heatmap_impl.h (std140 / push-constant layouts).

layout(std140, set = 0, binding = 0) uniform HeatmapUniforms {
  mat4 data_to_ndc;    // data space (col, row) -> Vulkan clip space
  mat4 pixel_to_data;  // framebuffer pixel (gl_FragCoord) -> data space
  vec4 scale;          // x: offset, y: mul, z: 1 = log2 scale, w: 1 = categorical
  vec4 masked;         // colour of NaN / negative ids (unorm)
  ivec4 map_size;      // x: cols, y: rows, z: lookup table size, w: pyramid level k read
} u;

layout(push_constant) uniform TilePush {
  vec4 rect;    // quad in data space (x0, y0, x1, y1): the tile grown by one cell each side
  ivec4 tile;   // x, y: first column/row of the tile; z, w: tile width/height in cells
  ivec4 tex;    // the bound texture's cells at its level: first column/row, width/height
                //   (tile + halo; at pyramid level k the level-k cells covering them)
} pc;
