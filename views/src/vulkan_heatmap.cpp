// Vulkan heatmap renderer, public API. Plain Vulkan 1.0 through the loader (no Qt Vulkan
// classes), so it runs without a window or display: tests and the CPU-comparison oracle use it
// headless. The Impl and its seams: vulkan_heatmap_impl.h.
#include "vulkan_heatmap_impl.h"  // first: vulkan.h before any Qt header

#include <QImage>
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace moelab::views {
using namespace detail;

VulkanHeatmapRenderer::VulkanHeatmapRenderer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VulkanHeatmapRenderer::~VulkanHeatmapRenderer() = default;

std::unique_ptr<VulkanHeatmapRenderer> VulkanHeatmapRenderer::create(const VulkanOptions& options,
                                                                     std::string* why_not) {
  auto impl = std::make_unique<Impl>();
  impl->max_tile_option = options.max_tile;
  try {
    impl->create_instance(options);
    if (!impl->pick_device()) {
      if (why_not) *why_not = "no Vulkan device with a graphics queue";
      return nullptr;
    }
    impl->create_device();
    impl->create_pipeline();
    impl->create_globals();
  } catch (const Error& e) {
    if (why_not) *why_not = e.detail();
    return nullptr;
  }
  return std::unique_ptr<VulkanHeatmapRenderer>(new VulkanHeatmapRenderer(std::move(impl)));
}

void VulkanHeatmapRenderer::set_data(const Heatmap& map) {
  Impl& d = *impl_;
  if (map.rows < 0 || map.cols < 0 ||
      map.values.size() != static_cast<size_t>(map.rows) * static_cast<size_t>(map.cols))
    throw Error(ErrorKind::BadInput, "heatmap: values size does not match rows x cols");
  vkDeviceWaitIdle(d.device);
  d.free_tiles();
  ++d.data_version;
  d.rows_lo = d.rows_hi = -1;
  d.cache_ready = false;
  d.use_cache = false;
  d.rows = map.rows;
  d.cols = map.cols;
  int edge = std::min<int>(static_cast<int>(d.props.limits.maxImageDimension2D), 8192);
  if (d.max_tile_option > 0) edge = std::min(edge, d.max_tile_option);
  d.tile_edge = edge;
  if (map.rows == 0 || map.cols == 0) return;
  const int max_dim = static_cast<int>(d.props.limits.maxImageDimension2D);
  const bool tiled = map.cols > edge || map.rows > edge;
  const int halo = tiled ? kTileHalo : 0;
  if (tiled && edge + 2 * halo > max_dim) edge = max_dim - 2 * halo;
  d.tile_edge = edge;
  // The max-pooled pyramid of the whole map (host side, once per data update); each tile gets
  // the level-k cells covering its texture, so tiled and untiled pooling agree.
  d.pyramid = build_pyramid(map);
  const HeatmapPyramid& pyramid = d.pyramid;
  d.levels = static_cast<int>(pyramid.levels.size());
  const int tx = (map.cols + edge - 1) / edge, ty = (map.rows + edge - 1) / edge;
  const uint32_t n = static_cast<uint32_t>(tx * ty * (d.levels + 1));
  VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, n};
  VkDescriptorPoolCreateInfo pi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  pi.maxSets = n;
  pi.poolSizeCount = 1;
  pi.pPoolSizes = &size;
  check(vkCreateDescriptorPool(d.device, &pi, nullptr, &d.tile_pool), "tile descriptor pool");
  auto add_set = [&](Tile& t, VkImageView view) {
    VkDescriptorSet set;
    VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    ai.descriptorPool = d.tile_pool;
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &d.tile_layout;
    check(vkAllocateDescriptorSets(d.device, &ai, &set), "tile set");
    VkDescriptorImageInfo ii{d.sampler, view, VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL};
    VkWriteDescriptorSet w{VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    w.dstSet = set;
    w.dstBinding = 0;
    w.descriptorCount = 1;
    w.descriptorType = VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER;
    w.pImageInfo = &ii;
    vkUpdateDescriptorSets(d.device, 1, &w, 0, nullptr);
    t.sets.push_back(set);
  };
  const VkImageUsageFlags usage = VK_IMAGE_USAGE_SAMPLED_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT;
  for (int j = 0; j < ty; ++j) {
    for (int i = 0; i < tx; ++i) {
      d.tiles.emplace_back();  // owned by d.tiles from here (freed on failure)
      Tile& t = d.tiles.back();
      t.x = i * edge;
      t.y = j * edge;
      t.w = std::min(edge, map.cols - t.x);
      t.h = std::min(edge, map.rows - t.y);
      t.tx = std::max(0, t.x - halo);
      t.ty = std::max(0, t.y - halo);
      t.tw = std::min(map.cols, t.x + t.w + halo) - t.tx;
      t.th = std::min(map.rows, t.y + t.h + halo) - t.ty;
      t.image = d.make_image(t.tw, t.th, VK_FORMAT_R32_SFLOAT, usage, /*red_as_green=*/true);
      add_set(t, t.image.view);
      for (int k = 1; k <= d.levels; ++k) {
        const glm::ivec4 r = t.level_tex(k);
        t.pyr.push_back(d.make_image(r.z, r.w, VK_FORMAT_R32G32_SFLOAT, usage));
        add_set(t, t.pyr.back().view);
      }
    }
  }
  // Every texture's cells in one staging buffer and one submission.
  std::vector<Impl::Region> regions;
  for (const Tile& t : d.tiles) {
    regions.push_back({t.image.image, t.tw, t.th,
                       reinterpret_cast<const uint8_t*>(
                           map.values.data() + static_cast<size_t>(t.ty) * map.cols + t.tx),
                       sizeof(float), static_cast<size_t>(map.cols)});
    for (int k = 1; k <= d.levels; ++k) {
      const HeatmapPyramid::Level& l = pyramid.level(k);
      const glm::ivec4 r = t.level_tex(k);
      regions.push_back({t.pyr[static_cast<size_t>(k - 1)].image, r.z, r.w,
                         reinterpret_cast<const uint8_t*>(
                             l.max_min.data() + (static_cast<size_t>(r.y) * l.cols + r.x) * 2),
                         2 * sizeof(float), static_cast<size_t>(l.cols)});
    }
  }
  d.upload_all(regions);
}

void VulkanHeatmapRenderer::update_rows(const Heatmap& map, int first_row, int n_rows) {
  Impl& d = *impl_;
  if (map.rows != d.rows || map.cols != d.cols || d.tiles.empty() ||
      map.values.size() != static_cast<size_t>(map.rows) * static_cast<size_t>(map.cols)) {
    set_data(map);
    return;
  }
  if (first_row < 0 || n_rows < 0 || first_row + n_rows > map.rows)
    throw Error(ErrorKind::BadInput, "heatmap: rows " + std::to_string(first_row) + ".." +
                                         std::to_string(first_row + n_rows) +
                                         " lie outside a map of " + std::to_string(map.rows) +
                                         " rows");
  if (n_rows == 0) return;
  update_pyramid_rows(d.pyramid, map, first_row, n_rows);
  const int last_row = first_row + n_rows - 1;
  std::vector<Impl::Region> regions;
  for (const Tile& t : d.tiles) {
    // Level 0: the changed rows this texture holds (owned rows and halo).
    const int r0 = std::max(first_row, t.ty), r1 = std::min(last_row, t.ty + t.th - 1);
    if (r0 > r1) continue;
    regions.push_back({t.image.image, t.tw, r1 - r0 + 1,
                       reinterpret_cast<const uint8_t*>(map.values.data() +
                                                        static_cast<size_t>(r0) * map.cols + t.tx),
                       sizeof(float), static_cast<size_t>(map.cols), 0, r0 - t.ty});
    // Level k: the level-k rows above the changed rows, within this texture's level-k cells.
    for (int k = 1; k <= d.levels; ++k) {
      const HeatmapPyramid::Level& l = d.pyramid.level(k);
      const glm::ivec4 r = t.level_tex(k);
      const int k0 = std::max(first_row >> k, r.y), k1 = std::min(last_row >> k, r.y + r.w - 1);
      if (k0 > k1) continue;
      regions.push_back({t.pyr[static_cast<size_t>(k - 1)].image, r.z, k1 - k0 + 1,
                         reinterpret_cast<const uint8_t*>(
                             l.max_min.data() + (static_cast<size_t>(k0) * l.cols + r.x) * 2),
                         2 * sizeof(float), static_cast<size_t>(l.cols), 0, k0 - r.y});
    }
  }
  vkDeviceWaitIdle(d.device);  // frames in flight may still sample these images
  ++d.data_version;
  // The window's cached picture stays: prepare() redraws only the band showing these rows.
  d.rows_lo = d.rows_lo < 0 ? first_row : std::min(d.rows_lo, first_row);
  d.rows_hi = std::max(d.rows_hi, last_row);
  d.upload_all(regions, /*keep=*/true);
}

QImage VulkanHeatmapRenderer::render(const ColorScale& scale, const ViewTransform& view, int width,
                                     int height) {
  Impl& d = *impl_;
  if (width <= 0 || height <= 0)
    throw Error(ErrorKind::BadInput, "heatmap: image size must be positive");
  const int max_dim = static_cast<int>(d.props.limits.maxFramebufferWidth);
  if (width > max_dim || height > static_cast<int>(d.props.limits.maxFramebufferHeight))
    throw Error(ErrorKind::BadInput, "heatmap: image larger than the device's framebuffer");
  d.ensure_target(width, height);

  d.begin();
  VkClearValue clear{};
  clear.color.float32[0] = scale.background.r / 255.0f;
  clear.color.float32[1] = scale.background.g / 255.0f;
  clear.color.float32[2] = scale.background.b / 255.0f;
  clear.color.float32[3] = scale.background.a / 255.0f;
  VkRenderPassBeginInfo rb{VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO};
  rb.renderPass = d.render_pass;
  rb.framebuffer = d.framebuffer;
  rb.renderArea.extent = {static_cast<uint32_t>(width), static_cast<uint32_t>(height)};
  rb.clearValueCount = 1;
  rb.pClearValues = &clear;
  vkCmdBeginRenderPass(d.cmd, &rb, VK_SUBPASS_CONTENTS_INLINE);
  d.draw(d.cmd, /*window=*/false, /*allow_flat=*/false, 0, scale, view, rb.renderArea);
  vkCmdEndRenderPass(d.cmd);
  VkBufferImageCopy region{};
  region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
  region.imageExtent = {static_cast<uint32_t>(width), static_cast<uint32_t>(height), 1};
  vkCmdCopyImageToBuffer(d.cmd, d.target.image, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL,
                         d.readback.buffer, 1, &region);
  VkBufferMemoryBarrier hb{VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER};
  hb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
  hb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  hb.srcQueueFamilyIndex = hb.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  hb.buffer = d.readback.buffer;
  hb.size = VK_WHOLE_SIZE;
  vkCmdPipelineBarrier(d.cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0,
                       nullptr, 1, &hb, 0, nullptr);
  d.submit_and_wait();

  QImage img(width, height, QImage::Format_RGBA8888);
  const auto* src = static_cast<const uint8_t*>(d.readback.mapped);
  for (int y = 0; y < height; ++y)
    std::memcpy(img.scanLine(y), src + static_cast<size_t>(y) * width * 4,
                static_cast<size_t>(width) * 4);
  return img;
}

std::unique_ptr<VulkanHeatmapRenderer> VulkanHeatmapRenderer::create_on_device(
    const ExternalDevice& ext, const VulkanOptions& options, std::string* why_not) {
  auto impl = std::make_unique<Impl>();
  impl->owns_device = false;
  impl->max_tile_option = options.max_tile;
  impl->instance = static_cast<VkInstance>(ext.instance);
  impl->physical = static_cast<VkPhysicalDevice>(ext.physical_device);
  impl->device = static_cast<VkDevice>(ext.device);
  impl->queue_family = ext.queue_family;
  impl->queue = static_cast<VkQueue>(ext.queue);
  try {
    vkGetPhysicalDeviceProperties(impl->physical, &impl->props);
    vkGetPhysicalDeviceMemoryProperties(impl->physical, &impl->mem_props);
    impl->create_device_objects();
    impl->create_pipeline();
    impl->create_globals();
  } catch (const Error& e) {
    if (why_not) *why_not = e.detail();
    return nullptr;
  }
  return std::unique_ptr<VulkanHeatmapRenderer>(new VulkanHeatmapRenderer(std::move(impl)));
}

void VulkanHeatmapRenderer::attach_render_pass(void* render_pass) {
  Impl& d = *impl_;
  vkDeviceWaitIdle(d.device);
  d.destroy_pipelines(d.window_pipelines);
  for (VkPipeline& p : d.window_flat) {
    if (p) vkDestroyPipeline(d.device, p, nullptr);
    p = VK_NULL_HANDLE;
  }
  if (d.blit_pipeline) vkDestroyPipeline(d.device, d.blit_pipeline, nullptr);
  d.blit_pipeline = VK_NULL_HANDLE;
  d.window_pass = static_cast<VkRenderPass>(render_pass);
  // Build the common variant now (the first frame should not wait for a compile).
  if (d.window_pass) d.pipeline_for(true, 1, 0, 1);
}

void VulkanHeatmapRenderer::prepare(void* command_buffer, int slot, int width, int height,
                                    const ColorScale& scale, const ViewTransform& view) {
  Impl& d = *impl_;
  if (width <= 0 || height <= 0) return;
  slot = 1 + slot % (kUniformSlots - 1);  // slot 0 belongs to offscreen render()
  d.prepare(static_cast<VkCommandBuffer>(command_buffer), slot, width, height, scale, view);
}

void VulkanHeatmapRenderer::record(void* command_buffer, int slot, int x, int y, int width,
                                   int height, const ColorScale& scale, const ViewTransform& view) {
  Impl& d = *impl_;
  if (!d.window_pass)
    throw Error(ErrorKind::Internal, "heatmap: record() before attach_render_pass()");
  if (width <= 0 || height <= 0) return;
  slot = 1 + slot % (kUniformSlots - 1);  // slot 0 belongs to offscreen render()
  VkRect2D area{{x, y}, {static_cast<uint32_t>(width), static_cast<uint32_t>(height)}};
  const bool blit = d.use_cache && d.cache_ready && d.cache_w == width && d.cache_h == height;
  d.use_cache = false;  // prepare() decides again for the next frame
  if (blit) {
    d.record_blit(static_cast<VkCommandBuffer>(command_buffer), area);
    return;
  }
  d.draw(static_cast<VkCommandBuffer>(command_buffer), /*window=*/true, /*allow_flat=*/true, slot,
         scale, view, area);
}

std::string VulkanHeatmapRenderer::device_name() const {
  return impl_->props.deviceName;
}
int VulkanHeatmapRenderer::max_image_dimension() const {
  return static_cast<int>(impl_->props.limits.maxImageDimension2D);
}
int VulkanHeatmapRenderer::tile_size() const {
  return impl_->tile_edge;
}
int VulkanHeatmapRenderer::band_redraws() const {
  return impl_->partial_draws;
}
int VulkanHeatmapRenderer::tile_count() const {
  return static_cast<int>(impl_->tiles.size());
}
ValidationCounts VulkanHeatmapRenderer::validation() const {
  return impl_->counts;
}
void* VulkanHeatmapRenderer::raw_instance() const {
  return impl_->instance;
}
void* VulkanHeatmapRenderer::raw_device() const {
  return impl_->device;
}

}  // namespace moelab::views
