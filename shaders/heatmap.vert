#version 450
// One quad per tile, generated from gl_VertexIndex (no vertex buffer).
#extension GL_GOOGLE_include_directive : require
#include "heatmap_common.glsl"

const vec2 kCorners[6] = vec2[](vec2(0, 0), vec2(1, 0), vec2(1, 1),
                                vec2(0, 0), vec2(1, 1), vec2(0, 1));

void main() {
  vec2 p = mix(pc.rect.xy, pc.rect.zw, kCorners[gl_VertexIndex]);
  gl_Position = u.data_to_ndc * vec4(p, 0.0, 1.0);
}
