// Vulkan heatmap renderer: uniforms and colormap lookups, variant and pyramid level choice, draw
// recording, the window's cache and blit, tiles and the offscreen target.
#include "vulkan_heatmap_impl.h"  // first: vulkan.h before any Qt header

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

namespace moelab::views {
using namespace detail;

void VulkanHeatmapRenderer::Impl::write_uniforms(int slot, const ColorScale& scale,
                                                 const ViewTransform& view, int width, int height,
                                                 glm::vec2 offset_px, int level) {
  const ScaleParams p = scale_params(scale);
  HeatmapUniforms u{};
  // viewport pixel -> NDC: x' = 2x/W - 1, y' = 2y/H - 1 (Vulkan's y points down, like ours).
  glm::mat4 ndc(1.0f);
  ndc[0][0] = 2.0f / static_cast<float>(width);
  ndc[1][1] = 2.0f / static_cast<float>(height);
  ndc[3][0] = -1.0f;
  ndc[3][1] = -1.0f;
  u.data_to_ndc = ndc * view.view_matrix();
  glm::mat4 unshift(1.0f);
  unshift[3][0] = -offset_px.x;
  unshift[3][1] = -offset_px.y;
  u.pixel_to_data = view.pixel_to_data() * unshift;
  u.scale = {p.offset, p.mul, p.log ? 1.0f : 0.0f, p.categorical ? 1.0f : 0.0f};
  u.masked = glm::vec4(scale.masked.r, scale.masked.g, scale.masked.b, scale.masked.a) / 255.0f;
  u.map_size = {cols, rows, p.lut_size, level};
  std::memcpy(static_cast<uint8_t*>(uniforms.mapped) + slot * slot_stride, &u, sizeof(u));
}

VulkanHeatmapRenderer::Impl::Variant VulkanHeatmapRenderer::Impl::variant(
    const ColorScale& scale, const ViewTransform& view) const {
  const ScaleParams p = scale_params(scale);
  Variant v;
  v.mapping = p.categorical ? 2 : p.log ? 1 : 0;
  v.pool = p.categorical ? 0 : p.pool;
  // At most 0.9 cells per pixel along both axes: every pixel's footprint is its own cell, so
  // pooling reads exactly the nearest cell; the cheaper nearest variant gives the same image.
  const glm::mat4 inv = view.pixel_to_data();
  if (std::fabs(inv[0][0]) < 0.9f && std::fabs(inv[1][1]) < 0.9f) v.pool = 0;
  if (v.pool && scale.coarse_pool) {
    v.level = coarse_pool_level(view, levels);
    v.footprint = 2;
  } else if (v.pool) {
    v.level = pool_level(view, levels);
    // Level-k cells a pixel touches along an axis with f cells per pixel: at most
    // ceil((hi - lo) / 2^k) + 1 with hi - lo <= ceil(f) + 1 (heatmap.frag); 0.01 covers float
    // rounding of the pixel edges.
    const float block = std::ldexp(1.0f, v.level + 1);
    auto small = [&](float f) { return f < 0.9f || std::ceil(f + 0.01f) + 1.0f <= block; };
    v.footprint = small(std::fabs(inv[0][0])) && small(std::fabs(inv[1][1])) ? 1 : 0;
  }
  return v;
}

void VulkanHeatmapRenderer::Impl::draw(VkCommandBuffer c, bool window, bool allow_flat, int slot,
                                       const ColorScale& scale, const ViewTransform& view,
                                       VkRect2D area) {
  const Variant var = variant(scale, view);
  write_uniforms(slot, scale, view, static_cast<int>(area.extent.width),
                 static_cast<int>(area.extent.height),
                 {static_cast<float>(area.offset.x), static_cast<float>(area.offset.y)}, var.level);
  if (tiles.empty()) return;
  if (allow_flat && var.pool == 0 && record_flat(c, window, var.mapping, slot, scale, view, area))
    return;
  record_draws(c, pipeline_for(window, var.pool, var.mapping, var.footprint), slot, scale, area,
               var.level);
}

bool VulkanHeatmapRenderer::Impl::record_flat(VkCommandBuffer c, bool window, int mapping, int slot,
                                              const ColorScale& scale, const ViewTransform& view,
                                              VkRect2D area) {
  const glm::mat4 inv = view.pixel_to_data();
  if (!(std::fabs(inv[0][0]) <= 0.5f && std::fabs(inv[1][1]) <= 0.5f)) return false;
  const float x0 = view.origin.x, y0 = view.origin.y;
  const float x1 = x0 + static_cast<float>(area.extent.width) * inv[0][0];
  const float y1 = y0 + static_cast<float>(area.extent.height) * inv[1][1];
  std::vector<std::pair<const Tile*, glm::ivec4>> blocks;  // tile, (c0, r0, w, h)
  int64_t cells = 0;
  for (const Tile& t : tiles) {
    const int c0 = std::max(t.x, static_cast<int>(std::floor(x0)));
    const int r0 = std::max(t.y, static_cast<int>(std::floor(y0)));
    const int c1 = std::min(t.x + t.w, static_cast<int>(std::ceil(x1)));
    const int r1 = std::min(t.y + t.h, static_cast<int>(std::ceil(y1)));
    if (c1 <= c0 || r1 <= r0) continue;
    blocks.push_back({&t, {c0, r0, c1 - c0, r1 - r0}});
    cells += static_cast<int64_t>(c1 - c0) * (r1 - r0);
  }
  const int64_t pixels = static_cast<int64_t>(area.extent.width) * area.extent.height;
  if (cells * 16 > pixels) return false;
  if (blocks.empty()) return true;
  vkCmdBindPipeline(c, VK_PIPELINE_BIND_POINT_GRAPHICS, flat_pipeline(window, mapping));
  VkViewport vp{static_cast<float>(area.offset.x),
                static_cast<float>(area.offset.y),
                static_cast<float>(area.extent.width),
                static_cast<float>(area.extent.height),
                0,
                1};
  vkCmdSetViewport(c, 0, 1, &vp);
  vkCmdSetScissor(c, 0, 1, scissor.extent.width > 0 ? &scissor : &area);
  const uint32_t dyn = static_cast<uint32_t>(slot * slot_stride);
  vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_layout, 0, 1,
                          &global_sets[static_cast<int>(scale.map)], 1, &dyn);
  for (const auto& [t, b] : blocks) {
    TilePush push{{0.0f, 0.0f, 0.0f, 0.0f}, {b.x, b.y, b.z, b.w}, t->level_tex(0)};
    vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_layout, 1, 1, &t->sets[0],
                            0, nullptr);
    vkCmdPushConstants(c, pipeline_layout,
                       VK_SHADER_STAGE_VERTEX_BIT | VK_SHADER_STAGE_FRAGMENT_BIT, 0, sizeof(push),
                       &push);
    vkCmdDraw(c, 6, static_cast<uint32_t>(b.z) * static_cast<uint32_t>(b.w), 0, 0);
  }
  return true;
}

void VulkanHeatmapRenderer::Impl::free_cache() {
  if (cache_fb) vkDestroyFramebuffer(device, cache_fb, nullptr);
  cache_fb = VK_NULL_HANDLE;
  free_image(cache);
  cache_w = cache_h = 0;
  cache_ready = false;
}

void VulkanHeatmapRenderer::Impl::ensure_cache(int w, int h) {
  if (w == cache_w && h == cache_h) return;
  vkDeviceWaitIdle(device);
  free_cache();
  cache = make_image(w, h, kTargetFormat,
                     VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_SAMPLED_BIT);
  VkFramebufferCreateInfo fi{VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO};
  fi.renderPass = cache_pass;
  fi.attachmentCount = 1;
  fi.pAttachments = &cache.view;
  fi.width = static_cast<uint32_t>(w);
  fi.height = static_cast<uint32_t>(h);
  fi.layers = 1;
  check(vkCreateFramebuffer(device, &fi, nullptr, &cache_fb), "vkCreateFramebuffer(cache)");
  if (!cache_pool) {
    VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, 1};
    VkDescriptorPoolCreateInfo pi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    pi.maxSets = 1;
    pi.poolSizeCount = 1;
    pi.pPoolSizes = &size;
    check(vkCreateDescriptorPool(device, &pi, nullptr, &cache_pool), "cache descriptor pool");
    VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    ai.descriptorPool = cache_pool;
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &tile_layout;
    check(vkAllocateDescriptorSets(device, &ai, &cache_set), "cache set");
  }
  VkDescriptorImageInfo ii{sampler, cache.view, VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL};
  VkWriteDescriptorSet wr{VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
  wr.dstSet = cache_set;
  wr.dstBinding = 0;
  wr.descriptorCount = 1;
  wr.descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER;
  wr.pImageInfo = &ii;
  vkUpdateDescriptorSets(device, 1, &wr, 0, nullptr);
  cache_w = w;
  cache_h = h;
}

void VulkanHeatmapRenderer::Impl::prepare(VkCommandBuffer c, int slot, int w, int h,
                                          const ColorScale& scale, const ViewTransform& view) {
  ensure_cache(w, h);
  CacheKey k;
  k.data_version = data_version;
  k.map = static_cast<int32_t>(scale.map);
  k.scale = static_cast<int32_t>(scale.scale);
  k.max_pool = scale.max_pool;
  k.coarse = scale.coarse_pool;
  k.w = w;
  k.h = h;
  k.min = scale.min;
  k.max = scale.max;
  k.zoom_x = view.zoom.x;
  k.zoom_y = view.zoom.y;
  k.origin_x = view.origin.x;
  k.origin_y = view.origin.y;
  k.masked[0] = scale.masked.r;
  k.masked[1] = scale.masked.g;
  k.masked[2] = scale.masked.b;
  k.masked[3] = scale.masked.a;
  // A hit: copy. Only rows of the data changed since the cache was drawn, same view: redraw
  // the band of pixels showing them into the cache (live attention rows), then copy. The same
  // picture as the previous frame apart from the data (the view stopped changing): fill the
  // cache once, then copy. Else (moving) draw directly: a cache that changes every frame
  // would only add the copy.
  CacheKey same_data = k;
  same_data.data_version = cache_key.data_version;
  if (cache_ready && k != cache_key && same_data == cache_key && rows_lo >= 0) {
    const Variant var = variant(scale, view);
    scissor = row_band(view, var.level, rows_lo, rows_hi, w, h);
    if (scissor.extent.height > 0) {
      VkRenderPassBeginInfo rb{VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO};
      rb.renderPass = cache_load_pass;
      rb.framebuffer = cache_fb;
      rb.renderArea = scissor;
      vkCmdBeginRenderPass(c, &rb, VK_SUBPASS_CONTENTS_INLINE);
      const VkRect2D whole{{0, 0}, {static_cast<uint32_t>(w), static_cast<uint32_t>(h)}};
      // The band is cleared to transparent first (cells may have become masked), then drawn.
      VkClearAttachment ca{VK_IMAGE_ASPECT_COLOR_BIT, 0, {}};
      VkClearRect cr{scissor, 0, 1};
      vkCmdClearAttachments(c, 1, &ca, 1, &cr);
      draw(c, /*window=*/false, /*allow_flat=*/true, slot, scale, view, whole);
      vkCmdEndRenderPass(c);
      ++partial_draws;
    }
    scissor = {};
    rows_lo = rows_hi = -1;
    cache_key = k;
    last_key = k;
    use_cache = true;
    return;
  }
  use_cache = cache_ready && k == cache_key;
  CacheKey view_only = k;  // the view as the previous frame had it, whatever the data did
  view_only.data_version = last_key.data_version;
  const bool still = view_only == last_key;
  last_key = k;
  if (use_cache || !still) return;
  use_cache = true;
  VkClearValue clear{};  // transparent: the window's background shows outside the map
  VkRenderPassBeginInfo rb{VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO};
  rb.renderPass = cache_pass;
  rb.framebuffer = cache_fb;
  rb.renderArea.extent = {static_cast<uint32_t>(w), static_cast<uint32_t>(h)};
  rb.clearValueCount = 1;
  rb.pClearValues = &clear;
  vkCmdBeginRenderPass(c, &rb, VK_SUBPASS_CONTENTS_INLINE);
  draw(c, /*window=*/false, /*allow_flat=*/true, slot, scale, view, rb.renderArea);
  vkCmdEndRenderPass(c);
  rows_lo = rows_hi = -1;
  cache_key = k;
  cache_ready = true;
}

VkRect2D VulkanHeatmapRenderer::Impl::row_band(const ViewTransform& view, int level, int lo, int hi,
                                               int w, int h) const {
  // Level-k cells above the changed rows cover data rows [lo0, hi0); a pixel reads the level
  // cells its footprint touches (plus one either side at most: heatmap.frag's ranges), so
  // grow by two level cells and two pixels.
  const int block = 1 << level;
  const float lo0 = static_cast<float>((lo / block) * block - 2 * block);
  const float hi0 = static_cast<float>((hi / block + 1) * block + 2 * block);
  const float y0 = (lo0 - view.origin.y) * view.zoom.y - 2.0f;
  const float y1 = (hi0 - view.origin.y) * view.zoom.y + 2.0f;
  const int a = std::clamp(static_cast<int>(std::floor(y0)), 0, h);
  const int b = std::clamp(static_cast<int>(std::ceil(y1)), 0, h);
  return {{0, a}, {static_cast<uint32_t>(w), static_cast<uint32_t>(b - a)}};
}

void VulkanHeatmapRenderer::Impl::record_blit(VkCommandBuffer c, VkRect2D area) {
  if (!blit_pipeline) blit_pipeline = make_pipeline(window_pass, 0, 0, 0, kBlit);
  vkCmdBindPipeline(c, VK_PIPELINE_BIND_POINT_GRAPHICS, blit_pipeline);
  VkViewport vp{static_cast<float>(area.offset.x),
                static_cast<float>(area.offset.y),
                static_cast<float>(area.extent.width),
                static_cast<float>(area.extent.height),
                0,
                1};
  vkCmdSetViewport(c, 0, 1, &vp);
  vkCmdSetScissor(c, 0, 1, scissor.extent.width > 0 ? &scissor : &area);
  vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_layout, 1, 1, &cache_set, 0,
                          nullptr);
  TilePush push{{0.0f, 0.0f, 0.0f, 0.0f}, {area.offset.x, area.offset.y, 0, 0}, {0, 0, 0, 0}};
  vkCmdPushConstants(c, pipeline_layout, VK_SHADER_STAGE_VERTEX_BIT | VK_SHADER_STAGE_FRAGMENT_BIT,
                     0, sizeof(push), &push);
  vkCmdDraw(c, 6, 1, 0, 0);
}

void VulkanHeatmapRenderer::Impl::record_draws(VkCommandBuffer c, VkPipeline pipe, int slot,
                                               const ColorScale& scale, VkRect2D area, int level) {
  if (tiles.empty()) return;
  vkCmdBindPipeline(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipe);
  VkViewport vp{static_cast<float>(area.offset.x),
                static_cast<float>(area.offset.y),
                static_cast<float>(area.extent.width),
                static_cast<float>(area.extent.height),
                0,
                1};
  vkCmdSetViewport(c, 0, 1, &vp);
  vkCmdSetScissor(c, 0, 1, scissor.extent.width > 0 ? &scissor : &area);
  const uint32_t dyn = static_cast<uint32_t>(slot * slot_stride);
  vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_layout, 0, 1,
                          &global_sets[static_cast<int>(scale.map)], 1, &dyn);
  for (const Tile& t : tiles) {
    // The quad is the tile grown by one cell on every side: a pixel whose centre falls in
    // the tile's cells is always covered; the fragment shader discards foreign cells.
    TilePush push{{t.x - 1.0f, t.y - 1.0f, t.x + t.w + 1.0f, t.y + t.h + 1.0f},
                  {t.x, t.y, t.w, t.h},
                  t.level_tex(level)};
    vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline_layout, 1, 1,
                            &t.sets[static_cast<size_t>(level)], 0, nullptr);
    vkCmdPushConstants(c, pipeline_layout,
                       VK_SHADER_STAGE_VERTEX_BIT | VK_SHADER_STAGE_FRAGMENT_BIT, 0, sizeof(push),
                       &push);
    vkCmdDraw(c, 6, 1, 0, 0);
  }
}

void VulkanHeatmapRenderer::Impl::create_globals() {
  const VkDeviceSize align =
      std::max<VkDeviceSize>(props.limits.minUniformBufferOffsetAlignment, 16);
  slot_stride = (sizeof(HeatmapUniforms) + align - 1) / align * align;
  uniforms = make_buffer(slot_stride * kUniformSlots, VK_BUFFER_USAGE_UNIFORM_BUFFER_BIT);
  VkDescriptorPoolSize sizes[2] = {{VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC, 3},
                                   {VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, 3}};
  VkDescriptorPoolCreateInfo pi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  pi.maxSets = 3;
  pi.poolSizeCount = 2;
  pi.pPoolSizes = sizes;
  check(vkCreateDescriptorPool(device, &pi, nullptr, &global_pool), "descriptor pool");
  for (int m = 0; m < 3; ++m) {
    const auto table = colormap_table(static_cast<Colormap>(m));
    luts[m] = make_image(static_cast<int>(table.size()), 1, VK_FORMAT_R8G8B8A8_UNORM,
                         VK_IMAGE_USAGE_SAMPLED_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT);
    upload(luts[m], static_cast<int>(table.size()), 1, table.data(), 4, table.size());
    VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    ai.descriptorPool = global_pool;
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &global_layout;
    check(vkAllocateDescriptorSets(device, &ai, &global_sets[m]), "descriptor set 0");
    VkDescriptorBufferInfo bi{uniforms.buffer, 0, sizeof(HeatmapUniforms)};
    VkDescriptorImageInfo ii{sampler, luts[m].view, VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL};
    VkWriteDescriptorSet w[2]{};
    w[0].sType = w[1].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    w[0].dstSet = w[1].dstSet = global_sets[m];
    w[0].dstBinding = 0;
    w[0].descriptorCount = 1;
    w[0].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC;
    w[0].pBufferInfo = &bi;
    w[1].dstBinding = 1;
    w[1].descriptorCount = 1;
    w[1].descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER;
    w[1].pImageInfo = &ii;
    vkUpdateDescriptorSets(device, 2, w, 0, nullptr);
  }
}

void VulkanHeatmapRenderer::Impl::free_tiles() {
  if (!device) return;
  for (auto& t : tiles) {
    free_image(t.image);
    for (Image& im : t.pyr) free_image(im);
  }
  tiles.clear();
  levels = 0;
  pyramid = {};
  if (tile_pool) vkDestroyDescriptorPool(device, tile_pool, nullptr);
  tile_pool = VK_NULL_HANDLE;
}

void VulkanHeatmapRenderer::Impl::free_target() {
  if (framebuffer) vkDestroyFramebuffer(device, framebuffer, nullptr);
  framebuffer = VK_NULL_HANDLE;
  free_image(target);
  free_buffer(readback);
  target_w = target_h = 0;
}

void VulkanHeatmapRenderer::Impl::ensure_target(int w, int h) {
  if (w == target_w && h == target_h) return;
  free_target();
  target = make_image(w, h, kTargetFormat,
                      VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT);
  VkFramebufferCreateInfo fi{VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO};
  fi.renderPass = render_pass;
  fi.attachmentCount = 1;
  fi.pAttachments = &target.view;
  fi.width = static_cast<uint32_t>(w);
  fi.height = static_cast<uint32_t>(h);
  fi.layers = 1;
  check(vkCreateFramebuffer(device, &fi, nullptr, &framebuffer), "vkCreateFramebuffer");
  readback = make_buffer(static_cast<VkDeviceSize>(w) * h * 4, VK_BUFFER_USAGE_TRANSFER_DST_BIT);
  target_w = w;
  target_h = h;
}

}  // namespace moelab::views
