// Frames per second of the on-screen path: HeatmapWindow (QVulkanWindow + ImGui overlays) draws
// straight into its swapchain, no read-back. Cases: an 8192 x 8192 attention map and a
// 64-layer x 128-expert load grid at 1280 x 800, (a) pan/zoom only (data uploaded once) and
// (b) live: the grid is re-published (re-uploaded) every frame as during generation.
// Needs a display (run under xvfb-run) and a Vulkan ICD. Usage: bench_views_window [seconds]
#include <vulkan/vulkan.h>  // before Qt headers

#include <QElapsedTimer>
#include <QGuiApplication>
#include <QVulkanInstance>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>

#include "moelab/views/heatmap_window.h"
#include "moelab/views/synthetic.h"
#include "moelab/views/view_kinds.h"

using namespace moelab::views;

namespace {

HeatmapView expert_grid(int layers, int experts) {
  ExpertLoad l{layers, experts, {}, "share of tokens"};
  std::mt19937 rng(2);
  std::gamma_distribution<float> g(0.5f, 1.0f);
  l.load.resize(static_cast<size_t>(layers) * experts);
  for (float& x : l.load) x = g(rng) / experts;
  return expert_load_view(l);
}

// Runs the window for `budget` seconds, one frame after another; returns frames per second.
double measure(HeatmapWindow& w, const HeatmapView& v, double budget, bool reupload, bool pool) {
  HeatmapView view = v;
  view.scale.max_pool = pool;
  w.set_view(view);
  const int start = w.frames_drawn();
  while (w.frames_drawn() < start + 3) {
    w.requestUpdate();
    QGuiApplication::processEvents(QEventLoop::AllEvents, 10);
  }
  const ViewTransform fit = w.transform();
  int i = 0;
  QObject conn;
  QObject::connect(&w, &HeatmapWindow::frameDrawn, &conn, [&] {
    ++i;
    if (reupload) w.set_view(view, /*keep_transform=*/true);
    ViewTransform t = fit;  // animate zoom so no frame repeats
    const QRect p = w.plot_rect();
    t.zoom_at({p.width() / 2.0f, p.height() / 2.0f},
              1.0f + 3.0f * static_cast<float>(i % 30) / 30.0f);
    w.transform() = t;
    w.requestUpdate();
  });
  const int f0 = w.frames_drawn();
  QElapsedTimer timer;
  timer.start();
  w.requestUpdate();
  while (timer.elapsed() < budget * 1000) QGuiApplication::processEvents(QEventLoop::AllEvents, 5);
  const double fps = (w.frames_drawn() - f0) / (timer.elapsed() / 1000.0);
  QObject::disconnect(&w, nullptr, &conn, nullptr);
  return fps;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  QGuiApplication app(argc, argv);
  const double budget = argc > 1 ? std::atof(argv[1]) : 3.0;
  QVulkanInstance inst;
  if (!inst.create()) {
    std::printf("no Vulkan instance: nothing to measure\n");
    return 0;
  }
  HeatmapWindow w;
  w.setVulkanInstance(&inst);
  w.resize(1280, 800);
  w.show();
  while (w.frames_drawn() < 2) {
    w.requestUpdate();
    QGuiApplication::processEvents(QEventLoop::AllEvents, 10);
  }
  const QRect p = w.plot_rect();
  std::printf("window 1280 x 800, plot %d x %d, swapchain present (no read-back)\n", p.width(),
              p.height());
  AttentionMap a = synthetic_attention(8192, 1);
  const HeatmapView att = attention_view(a, /*log_scale=*/true);
  a = {};
  const HeatmapView grid = expert_grid(64, 128);
  std::printf("attention 8192 x 8192, max-of-cells pooling: %.1f fps\n",
              measure(w, att, budget, false, true));
  std::printf("attention 8192 x 8192, nearest cell:         %.1f fps\n",
              measure(w, att, budget, false, false));
  std::printf("attention 8192 x 8192, re-upload every frame: %.1f fps\n",
              measure(w, att, budget, true, true));
  std::printf("expert load 64 x 128, pan/zoom:               %.1f fps\n",
              measure(w, grid, budget, false, true));
  std::printf("expert load 64 x 128, re-upload every frame:  %.1f fps\n",
              measure(w, grid, budget, true, true));
  return 0;
}
