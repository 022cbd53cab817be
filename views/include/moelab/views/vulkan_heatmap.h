// Vulkan heatmap renderer, independent of any window: creates its own instance and device
// (any Vulkan 1.0 device; Mesa's lavapipe works), uploads a Heatmap as R32_SFLOAT textures
// (tiled when larger than the device's maxImageDimension2D or a chosen tile size), and draws it
// with a colormap lookup texture into an offscreen R8G8B8A8_UNORM image that is read back.
//
// Shaders: shaders/heatmap.vert, shaders/heatmap.frag (SPIR-V embedded at build time).
// Cells are fetched with texelFetch (nearest, exact), never filtered.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "moelab/views/heatmap.h"

#include <QImage>

namespace moelab::views {

struct VulkanOptions {
  /// Enables VK_LAYER_KHRONOS_validation when installed (also honoured: VK_INSTANCE_LAYERS).
  bool validation = false;
  /// Largest texture tile edge to use (0: the device's maxImageDimension2D, capped at 8192).
  int max_tile = 0;
};

/// Messages reported through VK_EXT_debug_utils while this renderer lived.
struct ValidationCounts {
  int errors = 0;
  int warnings = 0;
  bool layer_active = false;      // VK_LAYER_KHRONOS_validation is enabled on the instance
  bool messenger_active = false;  // a debug-utils messenger is installed
  std::string last_message;
};

/// A device created by someone else (a QVulkanWindow): handles as void* (VkInstance,
/// VkPhysicalDevice, VkDevice, VkQueue) so this header needs no Vulkan include.
struct ExternalDevice {
  void* instance = nullptr;
  void* physical_device = nullptr;
  void* device = nullptr;
  uint32_t queue_family = 0;
  void* queue = nullptr;
};

class VulkanHeatmapRenderer {
 public:
  /// Creates instance, device and pipelines. Returns nullptr and sets *why_not when no usable
  /// Vulkan device exists (no loader/ICD, no graphics queue, shader or pipeline failure).
  static std::unique_ptr<VulkanHeatmapRenderer> create(const VulkanOptions& options,
                                                       std::string* why_not);
  /// Renderer on a window's device (not destroyed with the renderer). Uploads wait for the
  /// queue to go idle; render() still works offscreen on that device.
  static std::unique_ptr<VulkanHeatmapRenderer> create_on_device(const ExternalDevice& device,
                                                                 const VulkanOptions& options,
                                                                 std::string* why_not);
  ~VulkanHeatmapRenderer();
  VulkanHeatmapRenderer(const VulkanHeatmapRenderer&) = delete;
  VulkanHeatmapRenderer& operator=(const VulkanHeatmapRenderer&) = delete;

  /// Uploads the map (replacing any previous one). Throws moelab::Error on Vulkan failure.
  void set_data(const Heatmap& map);
  /// Live update: rows [first_row, first_row + n_rows) of `map` changed, every other cell equals
  /// the map last uploaded (same rows x cols). Uploads only those rows into the existing
  /// textures (each tile's copy, halo included) and the pyramid cells above them (recomputed
  /// from the host copy of the pyramid: update_pyramid_rows), so one generated token's
  /// attention row costs O(cols) uploads instead of a whole map (set_data: O(rows x cols) and
  /// new textures). A map of another shape falls back to set_data. Throws moelab::Error for
  /// rows outside the map or on Vulkan failure.
  void update_rows(const Heatmap& map, int first_row, int n_rows);
  /// Draws the current map into a width x height image and reads it back (Format_RGBA8888).
  QImage render(const ColorScale& scale, const ViewTransform& view, int width, int height);

  /// Creates the pipeline for a window's render pass (subpass 0, 1 sample; colour attachment
  /// 0, any depth attachment is ignored). nullptr releases it. Waits for the device to idle.
  void attach_render_pass(void* render_pass);
  /// Optional, each frame before the window's render pass begins (same slot and size as the
  /// record() that follows): keeps a cached picture of the plot. When this frame shows what the
  /// previous one showed (scale, view and size unchanged) the picture is drawn into the cache
  /// once and record() copies it from then on, so frames that only change overlays (hover
  /// tooltip, selection) skip the heatmap shaders; rows changed by update_rows are redrawn into
  /// the cache as a band of pixel rows (the changed cells and the pooling footprint around
  /// them), not the whole plot; while the view changes every frame, record() draws directly
  /// (no copy overhead).
  void prepare(void* command_buffer, int slot, int width, int height, const ColorScale& scale,
               const ViewTransform& view);
  /// Records the map into `command_buffer` (a VkCommandBuffer inside that render pass), in the
  /// framebuffer rectangle (x, y, width, height); pixels outside the map are left untouched.
  /// slot: the window's current frame index (uniforms are kept per frame in flight).
  void record(void* command_buffer, int slot, int x, int y, int width, int height,
              const ColorScale& scale, const ViewTransform& view);

  std::string device_name() const;
  int max_image_dimension() const;
  int tile_size() const;   // tile edge used by the last set_data
  int tile_count() const;  // textures used by the last set_data
  /// Times prepare() redrew only the band of the cached picture that shows rows changed by
  /// update_rows (instead of the whole plot).
  int band_redraws() const;
  ValidationCounts validation() const;

  /// Raw handles for tests that provoke the validation layer on purpose. VkInstance/VkDevice.
  void* raw_instance() const;
  void* raw_device() const;

 private:
  struct Impl;
  explicit VulkanHeatmapRenderer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moelab::views
