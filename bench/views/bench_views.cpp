// Frames per second of the heatmap renderer: an 8192 x 8192 attention map (causal mask) and a
// 64-layer x 128-expert load grid, drawn into a 1280 x 800 image with the Vulkan renderer
// (offscreen, including the read-back a window would not need) and with the CPU fallback.
// Reports fps and the GPU/CPU ratio; no timed assertions. Usage: bench_views [seconds/case]
#include <QImage>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>

#include "moelab/views/heatmap.h"
#include "moelab/views/view_kinds.h"
#include "moelab/views/vulkan_heatmap.h"

using namespace moelab::views;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Calls frame(i) until `budget` seconds pass (at least 3 frames); returns frames per second.
double fps(double budget, const std::function<void(int)>& frame) {
  frame(0);  // warm-up (pipeline compile, target allocation)
  int n = 0;
  const auto t0 = Clock::now();
  while (n < 3 || seconds_since(t0) < budget) frame(++n);
  return n / seconds_since(t0);
}

HeatmapView attention_8k(int n) {
  AttentionMap a;
  a.n_query = a.n_key = n;
  a.weight.resize(static_cast<size_t>(n) * n);
  std::mt19937 rng(1);
  std::exponential_distribution<float> e(1.0f);
  for (int q = 0; q < n; ++q) {
    float* row = a.weight.data() + static_cast<size_t>(q) * n;
    float sum = 0.0f;
    for (int k = 0; k <= q; ++k) sum += row[k] = e(rng) * (k == 0 ? 20.0f : 1.0f);
    for (int k = 0; k <= q; ++k) row[k] /= sum;
    for (int k = q + 1; k < n; ++k) row[k] = std::numeric_limits<float>::quiet_NaN();
  }
  return attention_view(a, /*log_scale=*/true);
}

HeatmapView expert_grid(int layers, int experts) {
  ExpertLoad l{layers, experts, {}, "share of tokens"};
  std::mt19937 rng(2);
  std::gamma_distribution<float> g(0.5f, 1.0f);
  l.load.resize(static_cast<size_t>(layers) * experts);
  for (float& x : l.load) x = g(rng) / experts;
  return expert_load_view(l);
}

void run_case(const char* name, const HeatmapView& v, VulkanHeatmapRenderer* gpu, double budget) {
  const int w = 1280, h = 800;
  const ViewTransform fit = ViewTransform::fit(v.map.rows, v.map.cols, w, h);
  // Animate pan/zoom a little so no frame is a repeat: zoom in up to 4x about the centre.
  auto view_for = [&](int i) {
    ViewTransform t = fit;
    t.zoom_at({w / 2.0f, h / 2.0f}, 1.0f + 3.0f * static_cast<float>(i % 30) / 30.0f);
    return t;
  };
  std::printf("%s: %d x %d cells -> %d x %d pixels\n", name, v.map.rows, v.map.cols, w, h);
  double gpu_fps = 0.0;
  if (gpu) {
    const auto t0 = Clock::now();
    gpu->set_data(v.map);
    std::printf("  vulkan upload: %.3f s (%d tile(s) of <= %d)\n", seconds_since(t0),
                gpu->tile_count(), gpu->tile_size());
    gpu_fps = fps(budget, [&](int i) { (void)gpu->render(v.scale, view_for(i), w, h); });
    std::printf("  vulkan (%s): %.1f fps (render + read-back, max-of-cells pooling)\n",
                gpu->device_name().c_str(), gpu_fps);
    ColorScale nearest = v.scale;
    nearest.max_pool = false;
    std::printf("  vulkan, nearest cell: %.1f fps\n",
                fps(budget, [&](int i) { (void)gpu->render(nearest, view_for(i), w, h); }));
  }
  // The CPU fallback keeps the pyramid of its data (HeatmapRenderer builds it in set_data).
  const auto p0 = Clock::now();
  const HeatmapPyramid pyramid = build_pyramid(v.map);
  std::printf("  cpu pyramid build: %.3f s\n", seconds_since(p0));
  const double cpu_fps = fps(budget, [&](int i) {
    (void)render_heatmap_cpu(v.map, v.scale, view_for(i), w, h, &pyramid);
  });
  std::printf("  cpu fallback: %.1f fps\n", cpu_fps);
  if (gpu) std::printf("  vulkan / cpu: %.2fx\n", gpu_fps / cpu_fps);
}

}  // namespace

int main(int argc, char** argv) {
  const double budget = argc > 1 ? std::atof(argv[1]) : 2.0;
  std::string why;
  auto gpu = VulkanHeatmapRenderer::create({}, &why);
  if (!gpu) std::printf("no Vulkan device (%s): CPU fallback only\n", why.c_str());
  const auto t0 = Clock::now();
  const HeatmapView att = attention_8k(8192);
  std::printf("(synthetic 8192 x 8192 attention built in %.2f s)\n", seconds_since(t0));
  run_case("attention 8192 x 8192 (log scale, causal mask)", att, gpu.get(), budget);
  run_case("expert load 64 layers x 128 experts", expert_grid(64, 128), gpu.get(), budget);
  return 0;
}
