// Frames per second of the on-screen path: HeatmapWindow (QVulkanWindow + ImGui overlays) draws
// straight into its swapchain, no read-back. Cases: an 8192 x 8192 attention map and a
// 64-layer x 128-expert load grid in a 1280 x 800 window:
//   pan/zoom, moving   the zoom changes every frame and the window is told the view moves
//                      (as wheel/drag do): coarse pooling, one pyramid read per pixel;
//   pan/zoom, exact    the same animation drawn with exact max pooling (what a still view
//                      gets once the movement stops; normally drawn once, not per frame);
//   nearest            pooling off;
//   hover              the mouse moves over a still map: only the tooltip changes, the
//                      heatmap comes from the window's cache (VulkanHeatmapRenderer::prepare);
//   live re-publish    the map is set again every frame (upload + pyramid), as during
//                      generation when the data changes every frame;
//   live rows          the live attention path: one query row changes per frame
//                      (HeatmapWindow::update_rows: that row and the pyramid cells above it
//                      are uploaded), next to "re-published, still view" (the same still view
//                      with the whole map set every frame, the path before update_rows).
// Counted: frames that reached QVulkanWindow::frameReady (queued for present) after a warm-up
// of one full zoom cycle (pipelines built), over `seconds`; the median of `rounds` runs.
// Needs a display (run under xvfb-run) and a Vulkan ICD.
// Usage: bench_views_window [seconds per round, default 2] [rounds, default 3] [live]
// (live: only the two live attention cases)
#include <vulkan/vulkan.h>  // before Qt headers

#include <sys/resource.h>

#include <QElapsedTimer>
#include <QGuiApplication>
#include <QMouseEvent>
#include <QVulkanInstance>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

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

enum class Mode { kMoving, kExact, kNearest, kRepublish, kHover, kRepublishStill, kLiveRows };

// CPU seconds used by this process, all threads (GUI, lavapipe rasterizer threads, ...). On a
// shared machine the CPU time per frame moves much less than frames per second do.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

struct Result {
  double fps = 0.0;
  double cpu_ms_per_frame = 0.0;
};

// Frames per second of one animated run (see the file comment).
Result measure_once(HeatmapWindow& w, const HeatmapView& v, double budget, Mode mode) {
  HeatmapView view = v;
  view.scale.max_pool = mode != Mode::kNearest;
  w.set_view(view);
  const int start = w.frames_drawn();
  while (w.frames_drawn() < start + 3) {
    w.requestUpdate();
    QGuiApplication::processEvents(QEventLoop::AllEvents, 10);
  }
  const ViewTransform fit = w.transform();
  int i = 0;
  QObject conn;
  std::vector<float> row(static_cast<size_t>(view.map.cols));
  QObject::connect(&w, &HeatmapWindow::frameDrawn, &conn, [&] {
    ++i;
    if (mode == Mode::kRepublish || mode == Mode::kRepublishStill)
      w.set_view(view, /*keep_transform=*/true);
    if (mode == Mode::kLiveRows) {  // a new token's row: rows of the lower half in turn
      const int r = view.map.rows / 2 + i % (view.map.rows / 2);
      const float f = (i / (view.map.rows / 2)) % 2 ? 0.5f : 1.0f;  // the picture changes
      for (int c = 0; c < view.map.cols; ++c) row[static_cast<size_t>(c)] = f * view.map.at(r, c);
      w.update_rows(r, 1, row.data());
    }
    if (mode == Mode::kRepublishStill || mode == Mode::kLiveRows) {
      w.requestUpdate();
      return;
    }
    const QRect p = w.plot_rect();
    if (mode == Mode::kHover) {  // the mouse moves over a still map: tooltip changes only
      const QPointF at(p.x() + (i * 37) % p.width(), p.y() + (i * 23) % p.height());
      QMouseEvent e(QEvent::MouseMove, at, w.mapToGlobal(at), Qt::NoButton, Qt::NoButton,
                    Qt::NoModifier);
      QGuiApplication::sendEvent(&w, &e);
      return;
    }
    ViewTransform t = fit;  // animate zoom so no frame repeats
    t.zoom_at({p.width() / 2.0f, p.height() / 2.0f},
              1.0f + 3.0f * static_cast<float>(i % 30) / 30.0f);
    w.transform() = t;
    if (mode == Mode::kMoving || mode == Mode::kRepublish)
      w.view_moved();
    else
      w.requestUpdate();
  });
  w.requestUpdate();
  // Warm-up: one zoom cycle (every pooling level and pipeline variant of the animation).
  while (i < 30) QGuiApplication::processEvents(QEventLoop::AllEvents, 5);
  const int f0 = w.frames_drawn();
  const double cpu0 = cpu_seconds();
  QElapsedTimer timer;
  timer.start();
  while (timer.elapsed() < budget * 1000) QGuiApplication::processEvents(QEventLoop::AllEvents, 5);
  const int frames = w.frames_drawn() - f0;
  const Result res{frames / (timer.elapsed() / 1000.0),
                   frames > 0 ? (cpu_seconds() - cpu0) * 1000.0 / frames : 0.0};
  QObject::disconnect(&w, nullptr, &conn, nullptr);
  // Let the view settle (the settle timer draws one exact frame) before the next run.
  QElapsedTimer idle;
  idle.start();
  while (idle.elapsed() < 2 * HeatmapWindow::kSettleMs)
    QGuiApplication::processEvents(QEventLoop::AllEvents, 5);
  return res;
}

// Median fps of `rounds` runs, and the median CPU ms per frame; "12.3 fps (45.6 CPU ms/frame)".
std::string measure(HeatmapWindow& w, const HeatmapView& v, double budget, int rounds, Mode mode) {
  std::vector<double> fps, cpu;
  for (int k = 0; k < rounds; ++k) {
    const Result r = measure_once(w, v, budget, mode);
    fps.push_back(r.fps);
    cpu.push_back(r.cpu_ms_per_frame);
  }
  std::sort(fps.begin(), fps.end());
  std::sort(cpu.begin(), cpu.end());
  char buf[96];
  std::snprintf(buf, sizeof buf, "%5.1f fps (%5.1f CPU ms/frame)", fps[fps.size() / 2],
                cpu[cpu.size() / 2]);
  return buf;
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
  const int rounds = argc > 2 ? std::max(1, std::atoi(argv[2])) : 3;
  std::printf("median of %d rounds of %.1f s, frames queued for present:\n", rounds, budget);
  const bool live_only = argc > 3 && std::string(argv[3]) == "live";
  if (!live_only) {
    std::printf("attention 8192 x 8192, pan/zoom, moving (coarse pool): %s\n",
                measure(w, att, budget, rounds, Mode::kMoving).c_str());
    std::printf("attention 8192 x 8192, pan/zoom, exact max pool:      %s\n",
                measure(w, att, budget, rounds, Mode::kExact).c_str());
    std::printf("attention 8192 x 8192, pan/zoom, nearest cell:        %s\n",
                measure(w, att, budget, rounds, Mode::kNearest).c_str());
    std::printf("attention 8192 x 8192, hover over a still map:       %s\n",
                measure(w, att, budget, rounds, Mode::kHover).c_str());
    std::printf("attention 8192 x 8192, re-published every frame:      %s\n",
                measure(w, att, budget, 1, Mode::kRepublish).c_str());
  }
  std::printf("attention 8192 x 8192, re-published, still view:     %s\n",
              measure(w, att, budget, 1, Mode::kRepublishStill).c_str());
  const int bands0 = w.band_redraws();
  std::printf("attention 8192 x 8192, one row updated per frame:     %s\n",
              measure(w, att, budget, rounds, Mode::kLiveRows).c_str());
  std::printf("  (%d of those frames redrew a band of the cached picture)\n",
              w.band_redraws() - bands0);
  if (live_only) return 0;
  HeatmapView tiny = grid;
  tiny.map = Heatmap{1, 1, {0.5f}};
  std::printf("1 x 1 map (clear + overlays + present):              %s\n",
              measure(w, tiny, budget, rounds, Mode::kExact).c_str());
  std::printf("expert load 64 x 128, pan/zoom, moving:               %s\n",
              measure(w, grid, budget, rounds, Mode::kMoving).c_str());
  std::printf("expert load 64 x 128, pan/zoom, exact:                %s\n",
              measure(w, grid, budget, rounds, Mode::kExact).c_str());
  std::printf("expert load 64 x 128, re-published every frame:       %s\n",
              measure(w, grid, budget, rounds, Mode::kRepublish).c_str());
  return 0;
}
