// Internal: what the Vulkan heatmap renderer's source files share. The renderer's state lives in
// one VulkanHeatmapRenderer::Impl; its methods are defined by seam:
//   vulkan_device.cpp     instance, debug messenger, physical/logical device, command pool, fence,
//                         sampler, destroy
//   vulkan_memory.cpp     memory types, buffers, images, staging uploads, submit and wait
//   vulkan_pipelines.cpp  shader modules, layouts and render passes, pipeline variants and their
//                         lazy creation
//   vulkan_tiles.cpp      uniforms and colormap lookups, variant and pyramid level choice, draw
//                         recording, the window's cache and blit, tiles, the offscreen target
//   vulkan_heatmap.cpp    the public API (create, set_data, render, window hooks)
#pragma once

#include <vulkan/vulkan.h>  // before any Qt header (Qt's define VK_NO_PROTOTYPES)

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "moelab/core/error.h"
#include "moelab/views/vulkan_heatmap.h"

namespace moelab::views {
namespace detail {

constexpr const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";
constexpr VkFormat kTargetFormat = VK_FORMAT_R8G8B8A8_UNORM;  // never the SRGB formats
// Uniform slots: one per frame a window may have in flight (QVulkanWindow: up to 3) + offscreen.
constexpr int kUniformSlots = 4;

// Mirrors shaders/heatmap_common.glsl (std140).
struct HeatmapUniforms {
  glm::mat4 data_to_ndc;
  glm::mat4 pixel_to_data;
  glm::vec4 scale;
  glm::vec4 masked;
  glm::ivec4 map_size;
};
static_assert(sizeof(HeatmapUniforms) == 64 + 64 + 16 + 16 + 16);

struct TilePush {
  glm::vec4 rect;
  glm::ivec4 tile;
  glm::ivec4 tex;
};
static_assert(sizeof(TilePush) == 48);

// Pipeline variants (specialization constants of heatmap.frag): kPool 0..2 x kMapping 0..2.
// Footprint variants: 0 general loop, 1 unrolled 3 x 3, 2 coarse (one read).
constexpr int kPoolModes = 3, kMappings = 3, kFootprints = 3;
struct SpecConstants {
  int32_t pool;
  int32_t mapping;
  VkBool32 small_footprint;
  VkBool32 coarse;
};

// Cells of neighbouring tiles copied around each tile (only when the map is tiled), so max
// pooling near a seam sees the same cells as without tiling (exact up to kMaxPoolCells cells
// per pixel).
constexpr int kTileHalo = kMaxPoolCells;

[[noreturn]] inline void fail(const char* what, VkResult r) {
  throw Error(ErrorKind::Internal,
              std::string("Vulkan: ") + what + " failed (VkResult " + std::to_string(r) + ")");
}
inline void check(VkResult r, const char* what) {
  if (r != VK_SUCCESS) fail(what, r);
}

struct Image {
  VkImage image = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  VkImageView view = VK_NULL_HANDLE;
};

struct Buffer {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  void* mapped = nullptr;
  VkDeviceSize size = 0;
};

struct Tile {
  Image image;                         // level 0: R32F, viewed as (v, v, 0, 1)
  std::vector<Image> pyr;              // pyramid levels 1..: RG32F (max, min)
  std::vector<VkDescriptorSet> sets;   // per level 0..: the level's texture
  int x = 0, y = 0, w = 0, h = 0;      // columns/rows owned (drawn) by this tile
  int tx = 0, ty = 0, tw = 0, th = 0;  // columns/rows held by the texture (owned + halo)
  // The level-k cells covering [tx, tx + tw) x [ty, ty + th): first and count, per level.
  glm::ivec4 level_tex(int k) const {
    const int x0 = tx >> k, y0 = ty >> k;
    return {x0, y0, ((tx + tw - 1) >> k) - x0 + 1, ((ty + th - 1) >> k) - y0 + 1};
  }
};

}  // namespace detail

struct VulkanHeatmapRenderer::Impl {
  using Image = detail::Image;
  using Buffer = detail::Buffer;
  using Tile = detail::Tile;

  VkInstance instance = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger = VK_NULL_HANDLE;
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  VkPhysicalDeviceProperties props{};
  VkPhysicalDeviceMemoryProperties mem_props{};
  VkDevice device = VK_NULL_HANDLE;
  uint32_t queue_family = 0;
  VkQueue queue = VK_NULL_HANDLE;
  VkCommandPool pool = VK_NULL_HANDLE;
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  VkFence fence = VK_NULL_HANDLE;
  VkSampler sampler = VK_NULL_HANDLE;
  VkDescriptorSetLayout global_layout = VK_NULL_HANDLE;
  VkDescriptorSetLayout tile_layout = VK_NULL_HANDLE;
  VkPipelineLayout pipeline_layout = VK_NULL_HANDLE;
  VkRenderPass render_pass = VK_NULL_HANDLE;
  // Pipelines per variant [pool][mapping], created on first use: offscreen and window pass.
  using Pipelines = VkPipeline[detail::kPoolModes][detail::kMappings][detail::kFootprints];
  Pipelines pipelines = {};
  Pipelines window_pipelines = {};
  // Flat cells (heatmap_cells.vert + heatmap_flat.frag) for the window pass, per mapping.
  VkPipeline window_flat[detail::kMappings] = {};
  VkPipeline offscreen_flat[detail::kMappings] = {};  // also used in cache_pass (compatible)
  VkRenderPass window_pass = VK_NULL_HANDLE;
  // The window's heatmap cache (prepare/record): the plot drawn into `cache` by cache_pass
  // (compatible with render_pass, so the offscreen pipelines draw it) when the data, scale,
  // view or size changed; each window frame then copies it (blit_pipeline). Frames that only
  // change the overlays (hover tooltip, selection outline) skip the heatmap shaders.
  struct CacheKey {
    uint64_t data_version = 0;
    int32_t map = 0, scale = 0, max_pool = 0, coarse = 0, w = 0, h = 0;
    float min = 0, max = 0, zoom_x = 0, zoom_y = 0, origin_x = 0, origin_y = 0;
    uint8_t masked[4] = {0, 0, 0, 0};
    bool operator==(const CacheKey&) const = default;
  };
  VkRenderPass cache_pass = VK_NULL_HANDLE;
  // The same pass loading the cache's contents: update_rows redraws only the band of plot
  // pixels whose cells changed (rows_lo..rows_hi), clipped by `scissor`.
  VkRenderPass cache_load_pass = VK_NULL_HANDLE;
  int rows_lo = -1, rows_hi = -1;  // data rows changed since the cache was drawn (inclusive)
  VkRect2D scissor{};              // when extent.width > 0: draws are clipped to it
  int partial_draws = 0;           // cache band redraws so far (tests, benchmarks)
  VkPipeline blit_pipeline = VK_NULL_HANDLE;
  Image cache;
  VkFramebuffer cache_fb = VK_NULL_HANDLE;
  VkDescriptorPool cache_pool = VK_NULL_HANDLE;
  VkDescriptorSet cache_set = VK_NULL_HANDLE;
  int cache_w = 0, cache_h = 0;
  bool cache_ready = false;
  CacheKey cache_key;
  CacheKey last_key;       // what the previous frame showed
  bool use_cache = false;  // this frame's record() copies the cache
  uint64_t data_version = 0;
  int levels = 0;  // pyramid levels above 0 of the current map
  // Host copy of the current map's pyramid (update_rows recomputes the rows above the changed
  // ones from it instead of rebuilding the whole pyramid; about 2/3 of the map's size).
  HeatmapPyramid pyramid;
  bool owns_device = true;
  VkDeviceSize slot_stride = 256;
  VkDescriptorPool global_pool = VK_NULL_HANDLE;
  VkDescriptorPool tile_pool = VK_NULL_HANDLE;
  std::array<Image, 3> luts;  // indexed by Colormap
  std::array<VkDescriptorSet, 3> global_sets{};
  Buffer uniforms;
  std::vector<Tile> tiles;
  int rows = 0, cols = 0;
  int tile_edge = 0;
  int max_tile_option = 0;
  // Offscreen target.
  Image target;
  VkFramebuffer framebuffer = VK_NULL_HANDLE;
  Buffer readback;
  int target_w = 0, target_h = 0;
  ValidationCounts counts;

  ~Impl() { destroy(); }

  // --- vulkan_device.cpp: instance, device, device objects, teardown.

  void create_instance(const VulkanOptions& opt);

  // Picks the first device with a graphics queue that can sample R32_SFLOAT and render to
  // R8G8B8A8_UNORM. Returns false when there is none.
  bool pick_device();

  void create_device();

  // Command pool, fence, sampler: on our own device or on a window's.
  void create_device_objects();

  void destroy();

  // --- vulkan_memory.cpp: memory, buffers, images, uploads, submission.

  uint32_t memory_type(uint32_t bits, VkMemoryPropertyFlags want) const;

  Buffer make_buffer(VkDeviceSize size, VkBufferUsageFlags usage);
  void free_buffer(Buffer& b);

  Image make_image(int w, int h, VkFormat format, VkImageUsageFlags usage,
                   bool red_as_green = false);
  void free_image(Image& im);

  void begin();
  void submit_and_wait();

  // Copies `bytes` into a sampled image (UNDEFINED -> SHADER_READ_ONLY_OPTIMAL), through a
  // staging buffer. row_pitch_texels: texels per source row (sub-rectangle upload).
  void upload(const Image& im, int w, int h, const void* data, size_t texel_bytes,
              size_t src_row_texels);

  // One texture's cells for upload_all: w x h texels of texel_bytes, source rows row_texels
  // texels apart, written at texel (x, y) of the image.
  struct Region {
    VkImage image;
    int w, h;
    const uint8_t* src;
    size_t texel_bytes, row_texels;
    int x = 0, y = 0;
  };
  Buffer staging;  // kept between set_data calls up to kKeepStagingBytes (no page-fault churn)
  static constexpr VkDeviceSize kKeepStagingBytes = VkDeviceSize{64} << 20;

  // Copies every region into its image through one staging buffer, one command buffer and one
  // wait; images end in SHADER_READ_ONLY_OPTIMAL. New images (keep = false) start UNDEFINED;
  // keep = true updates part of images that are in SHADER_READ_ONLY_OPTIMAL (the rest of their
  // texels is preserved).
  void upload_all(const std::vector<Region>& regions, bool keep = false);

  // --- vulkan_pipelines.cpp: shader modules, layouts, render passes, pipeline variants.

  VkShaderModule make_module(const uint32_t* code, size_t words);

  void create_pipeline();

  VkPipeline pipeline_for(bool window, int pool, int mapping, int footprint);
  void destroy_pipelines(Pipelines& ps);

  VkPipeline flat_pipeline(bool window, int mapping);

  enum Kind { kHeat, kFlat, kBlit };
  VkPipeline make_pipeline(VkRenderPass pass, int pool, int mapping, int footprint,
                           Kind kind = kHeat);

  // --- vulkan_tiles.cpp: uniforms, variant choice, draw recording, window cache, tiles,
  // offscreen target.

  // Writes the uniforms of one draw into `slot`. offset_px: framebuffer position of the
  // viewport's top-left corner (gl_FragCoord is framebuffer-absolute).
  void write_uniforms(int slot, const ColorScale& scale, const ViewTransform& view, int width,
                      int height, glm::vec2 offset_px, int level);

  // The variant and pyramid level a draw uses.
  struct Variant {
    int pool = 0, mapping = 0, level = 0;
    int footprint = 0;  // 0: general loop, 1: at most 3 x 3 level-k cells, 2: coarse
  };
  Variant variant(const ColorScale& scale, const ViewTransform& view) const;

  // Uniforms of slot `slot` + the tile draws into `c`, inside a render pass (offscreen or the
  // attached window pass).
  void draw(VkCommandBuffer c, bool window, bool allow_flat, int slot, const ColorScale& scale,
            const ViewTransform& view, VkRect2D area);

  // The window's fast path when zoomed in (>= 2 pixels per cell on both axes and on average
  // >= 16 pixels per visible cell): one instanced quad per visible cell, coloured per cell in
  // the vertex shader, so the per-pixel work is a flat fill. Cell edges then follow the
  // rasterizer's coverage rule instead of heatmap.frag's floor(pixel centre + kCellEdgeBias):
  // a pixel whose centre lies within 1/256 pixel of a cell edge may take the neighbour's
  // colour. The offscreen render() (what the pixel tests compare with the CPU) never uses it.
  // Returns false (nothing recorded) when the view does not qualify.
  bool record_flat(VkCommandBuffer c, bool window, int mapping, int slot, const ColorScale& scale,
                   const ViewTransform& view, VkRect2D area);

  void free_cache();

  // (Re)creates the cache image for a w x h plot; waits for the device (a resize).
  void ensure_cache(int w, int h);

  // The band of plot pixel rows (a w x h plot) that can show data rows [lo, hi] under `view`
  // at pyramid level `level`: the changed level cells plus the pooling footprint's reach.
  VkRect2D row_band(const ViewTransform& view, int level, int lo, int hi, int w, int h) const;

  // Draws the plot into the cache when anything it shows changed (outside any render pass).
  void prepare(VkCommandBuffer c, int slot, int w, int h, const ColorScale& scale,
               const ViewTransform& view);

  void record_blit(VkCommandBuffer c, VkRect2D area);

  // Records the tile draws into `c`, inside a render pass compatible with `pipe`.
  void record_draws(VkCommandBuffer c, VkPipeline pipe, int slot, const ColorScale& scale,
                    VkRect2D area, int level);

  // Uniform buffer, colormap lookup images and the per-colormap descriptor sets (set 0).
  void create_globals();

  void free_tiles();

  void free_target();

  void ensure_target(int w, int h);
};

}  // namespace moelab::views
