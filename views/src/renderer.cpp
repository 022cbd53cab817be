#include <vulkan/vulkan.h>

#include "moelab/views/renderer.h"

#include <QImage>

#include "moelab/core/log.h"

namespace moelab::views {

HeatmapRenderer::HeatmapRenderer(const VulkanOptions& options) {
  std::string why;
  gpu_ = VulkanHeatmapRenderer::create(options, &why);
  if (gpu_)
    status_ = "Vulkan: " + gpu_->device_name();
  else
    status_ = "no Vulkan device: views drawn on the CPU (" + why + ")";
  log_info("views: " + status_);
}

HeatmapRenderer::~HeatmapRenderer() = default;

void HeatmapRenderer::set_data(const Heatmap& map) {
  if (gpu_)
    gpu_->set_data(map);
  else {
    cpu_map_ = map;
    cpu_pyramid_ = build_pyramid(map);
  }
}

QImage HeatmapRenderer::render(const ColorScale& scale, const ViewTransform& view, int width,
                               int height) {
  if (gpu_) return gpu_->render(scale, view, width, height);
  return render_heatmap_cpu(cpu_map_, scale, view, width, height, &cpu_pyramid_);
}

}  // namespace moelab::views
