#version 450
// The window's cached heatmap (VulkanHeatmapRenderer::prepare): one quad over the viewport.
const vec2 kCorners[6] = vec2[](vec2(-1, -1), vec2(1, -1), vec2(1, 1),
                                vec2(-1, -1), vec2(1, 1), vec2(-1, 1));

void main() {
  gl_Position = vec4(kCorners[gl_VertexIndex], 0.0, 1.0);
}
