#version 450
// Copies the cached heatmap image to the window: pixel (x, y) of the plot reads texel
// (x, y) - plot offset (push constant, TilePush::tile.xy). Pixels outside the map are
// transparent in the cache and leave the window's background (alpha blending).
layout(push_constant) uniform BlitPush {
  vec4 unused;
  ivec4 offset;  // x, y: framebuffer position of the plot's top-left pixel
} pc;
layout(set = 1, binding = 0) uniform sampler2D cache;
layout(location = 0) out vec4 color;

void main() {
  color = texelFetch(cache, ivec2(gl_FragCoord.xy) - pc.offset.xy, 0);
}
