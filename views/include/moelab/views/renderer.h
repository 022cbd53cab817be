// The heatmap renderer the views use: Vulkan when a device exists, else the CPU fallback with
// the same colours. status_text() is what the app shows (e.g. in the status bar).
#pragma once

#include <memory>
#include <string>

#include "moelab/views/heatmap.h"
#include "moelab/views/vulkan_heatmap.h"

#include <QImage>

namespace moelab::views {

enum class Backend { kVulkan, kCpu };

class HeatmapRenderer {
 public:
  explicit HeatmapRenderer(const VulkanOptions& options = {});
  ~HeatmapRenderer();

  Backend backend() const { return gpu_ ? Backend::kVulkan : Backend::kCpu; }
  /// "Vulkan: <device>" or "no Vulkan device: views drawn on the CPU (<reason>)".
  const std::string& status_text() const { return status_; }

  void set_data(const Heatmap& map);
  QImage render(const ColorScale& scale, const ViewTransform& view, int width, int height);
  VulkanHeatmapRenderer* vulkan() { return gpu_.get(); }

 private:
  std::unique_ptr<VulkanHeatmapRenderer> gpu_;
  Heatmap cpu_map_;
  HeatmapPyramid cpu_pyramid_;  // built once per set_data (pooled drawing reads it)
  std::string status_;
};

}  // namespace moelab::views
