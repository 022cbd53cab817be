// The Vulkan heatmap renderer, offscreen on whatever ICD exists (lavapipe on CI): known cells,
// GPU == CPU, tiling, pan/zoom, and a silent validation layer. Skips without a Vulkan device.
#include <vulkan/vulkan.h>  // before Qt headers

#include <QtTest>
#include <cmath>
#include <limits>
#include <random>

#include "moelab/core/error.h"
#include "moelab/views/renderer.h"
#include "moelab/views/view_kinds.h"
#include "moelab/views/vulkan_heatmap.h"
#include "view_test_util.h"

using namespace moelab::views;
using moelab::test::compare;
using moelab::test::describe;
using moelab::test::ImageDiff;
using moelab::test::maybe_save;
using moelab::test::pixel;

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::unique_ptr<VulkanHeatmapRenderer> make_renderer(int max_tile = 0) {
  std::string why;
  auto r = VulkanHeatmapRenderer::create({.validation = true, .max_tile = max_tile}, &why);
  return r;
}

#define REQUIRE_VULKAN(r)                                                    \
  if (!(r)) {                                                                \
    std::string why_;                                                        \
    VulkanHeatmapRenderer::create({}, &why_);                                \
    QSKIP(qPrintable(QString("skipped: no Vulkan device (no ICD found): ") + \
                     QString::fromStdString(why_)));                         \
  }

QString diff_text(const ImageDiff& d) {
  return QString("max diff %1 levels, %2 pixels differ, %3 by more than 2")
      .arg(d.max_diff)
      .arg(d.differing)
      .arg(d.over_two);
}

Heatmap random_map(int rows, int cols, uint32_t seed, float lo, float hi, float nan_share) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> val(lo, hi), u01(0.0f, 1.0f);
  Heatmap m{rows, cols, {}};
  m.values.resize(static_cast<size_t>(rows) * cols);
  for (float& v : m.values) v = u01(rng) < nan_share ? kNaN : val(rng);
  return m;
}

// Renders on the GPU and on the CPU; returns the comparison (and saves both when asked).
ImageDiff gpu_vs_cpu(VulkanHeatmapRenderer& r, const Heatmap& m, const ColorScale& s,
                     const ViewTransform& v, int w, int h, const QString& name) {
  r.set_data(m);
  const QImage gpu = r.render(s, v, w, h);
  const QImage cpu = render_heatmap_cpu(m, s, v, w, h);
  maybe_save(gpu, name + "_gpu");
  maybe_save(cpu, name + "_cpu");
  return compare(gpu, cpu);
}

}  // namespace

class ViewsVulkanTest : public QObject {
  Q_OBJECT
  std::unique_ptr<VulkanHeatmapRenderer> r_;

 private slots:
  void initTestCase() {
    r_ = make_renderer();
    if (r_)
      qInfo("Vulkan device: %s, maxImageDimension2D %d, validation layer %s",
            r_->device_name().c_str(), r_->max_image_dimension(),
            r_->validation().layer_active ? "on" : "off");
  }

  void sequential_endpoints_and_mask() {
    REQUIRE_VULKAN(r_);
    Heatmap m{2, 2, {0.0f, 1.0f, 0.5f, kNaN}};
    ColorScale s;
    s.masked = {255, 0, 255, 255};
    r_->set_data(m);
    const QImage img = r_->render(s, ViewTransform::fit(2, 2, 64, 64), 64, 64);
    maybe_save(img, "gpu_known_cells");
    const auto seq = colormap_table(Colormap::kSequential);
    QCOMPARE(pixel(img, 16, 16), seq[0]);
    QCOMPARE(pixel(img, 48, 16), seq[kLutSize - 1]);
    QCOMPARE(pixel(img, 16, 48), seq[kLutSize / 2]);
    QCOMPARE(pixel(img, 48, 48), s.masked);
    // Every pixel of the masked cell is masked (a region, not a point).
    for (int y = 32; y < 64; ++y)
      for (int x = 32; x < 64; ++x) QCOMPARE(pixel(img, x, y), s.masked);
  }

  void log_scale_decades() {
    REQUIRE_VULKAN(r_);
    Heatmap m{1, 4, {1e-4f, 1e-2f, 1.0f, 0.0f}};
    ColorScale s;
    s.scale = Scale::kLog;
    s.min = 1e-4f;
    s.max = 1.0f;
    r_->set_data(m);
    const QImage img = r_->render(s, ViewTransform::fit(1, 4, 40, 4), 40, 4);
    const auto seq = colormap_table(Colormap::kSequential);
    QCOMPARE(pixel(img, 5, 2), seq[0]);
    QVERIFY(moelab::test::channel_diff(pixel(img, 15, 2), seq[kLutSize / 2]) <= 1);
    QCOMPARE(pixel(img, 25, 2), seq[kLutSize - 1]);
    QCOMPARE(pixel(img, 35, 2), seq[0]);  // zero under a log scale: below range
  }

  void diff_sign_is_red_or_blue() {
    REQUIRE_VULKAN(r_);
    ExpertLoad a{2, 2, {0.5f, 0.1f, 0.2f, 0.2f}};
    ExpertLoad b{2, 2, {0.1f, 0.5f, 0.2f, 0.3f}};
    const HeatmapView v = expert_load_diff_view(a, b);
    r_->set_data(v.map);
    const QImage img = r_->render(v.scale, ViewTransform::fit(2, 2, 64, 64), 64, 64);
    maybe_save(img, "gpu_diff");
    const Rgba8 pos = pixel(img, 16, 16), neg = pixel(img, 48, 16), zero = pixel(img, 16, 48),
                small_neg = pixel(img, 48, 48);
    const auto div = colormap_table(Colormap::kDiverging);
    QCOMPARE(pos, div[kLutSize - 1]);  // +0.4 = max: full red
    QCOMPARE(neg, div[0]);             // -0.4 = min: full blue
    QVERIFY2(pos.r > pos.b + 80, qPrintable(describe(pos)));
    QVERIFY2(neg.b > neg.r + 80, qPrintable(describe(neg)));
    QVERIFY2(moelab::test::channel_diff(zero, Rgba8{236, 236, 236, 255}) <= 1,
             qPrintable(describe(zero)));                                  // A == B: neutral
    QVERIFY2(small_neg.b > small_neg.r, qPrintable(describe(small_neg)));  // -0.1: light blue
  }

  void categorical_expert_ids() {
    REQUIRE_VULKAN(r_);
    const int n = kCategoricalSize + 1;  // ids 0..64: 64 distinct colours, then a wrap
    RoutingGrid g;
    g.n_layer = 2;
    g.n_tokens = n;
    g.expert_count = 128;
    for (int l = 0; l < 2; ++l)
      for (int t = 0; t < n; ++t) g.top_expert.push_back(l == 0 ? t : (t == 0 ? -1 : t + 64));
    // A 128-expert grid is drawn on a labelled sequential scale (no repeated colours); the
    // renderer's categorical lookup itself still wraps ids past the palette, checked here.
    QCOMPARE(routing_top_expert_view(g).scale.map, Colormap::kSequential);
    g.expert_count = kCategoricalSize;
    const HeatmapView v = routing_top_expert_view(g);
    QCOMPARE(v.scale.map, Colormap::kCategorical);
    r_->set_data(v.map);
    const QImage img = r_->render(v.scale, ViewTransform::fit(2, n, n * 8, 16), n * 8, 16);
    maybe_save(img, "gpu_categorical");
    const auto cat = colormap_table(Colormap::kCategorical);
    for (int t = 0; t < kCategoricalSize; ++t)
      QVERIFY2(pixel(img, t * 8 + 4, 4) == cat[static_cast<size_t>(t)],
               qPrintable(QString("expert %1: %2").arg(t).arg(describe(pixel(img, t * 8 + 4, 4)))));
    QCOMPARE(pixel(img, 64 * 8 + 4, 4), cat[0]);  // id 64 wraps to colour 0
    QCOMPARE(pixel(img, 4, 12), v.scale.masked);  // -1: not routed
    QCOMPARE(pixel(img, 8 + 4, 12), cat[1]);      // id 65
    // Categorical maps are never pooled: zoomed out 4 ids per pixel, each pixel is one id's
    // colour (the centre cell), not the max id.
    const QImage small =
        r_->render(v.scale, ViewTransform::fit(2, n, (n - 1) / 4, 2), (n - 1) / 4, 2);
    for (int x = 0; x < (n - 1) / 4; ++x) {
      const int id = v.scale.map == Colormap::kCategorical
                         ? ViewTransform::fit(2, n, (n - 1) / 4, 2).cell_at(x, 0).x
                         : -1;
      QCOMPARE(pixel(small, x, 0), cat[static_cast<size_t>(id % kCategoricalSize)]);
    }
  }

  void gpu_equals_cpu_for_each_view_kind() {
    REQUIRE_VULKAN(r_);
    struct Case {
      QString name;
      Heatmap map;
      ColorScale scale;
      ViewTransform view;
      int w, h;
    };
    std::vector<Case> cases;
    ColorScale seq;
    seq.min = 0.0f;
    seq.max = 1.0f;
    cases.push_back({"seq_fit", random_map(64, 128, 1, -0.1f, 1.1f, 0.05f), seq,
                     ViewTransform::fit(64, 128, 256, 128), 256, 128});
    ColorScale lg = seq;
    lg.scale = Scale::kLog;
    lg.min = 1e-4f;
    cases.push_back({"log_fit_odd", random_map(97, 61, 2, 0.0f, 1.0f, 0.0f), lg,
                     ViewTransform::fit(97, 61, 211, 173), 211, 173});
    ColorScale dv;
    dv.map = Colormap::kDiverging;
    dv.min = -1.0f;
    dv.max = 1.0f;
    ViewTransform zoomed;
    zoomed.zoom = {7.3f, 5.1f};
    zoomed.origin = {-3.25f, 10.6f};
    cases.push_back(
        {"div_zoomed", random_map(50, 50, 3, -1.2f, 1.2f, 0.02f), dv, zoomed, 300, 200});
    ColorScale ct;
    ct.map = Colormap::kCategorical;
    Heatmap ids = random_map(24, 300, 4, 0.0f, 64.0f, 0.1f);
    for (float& x : ids.values)
      if (!std::isnan(x)) x = std::floor(x);
    cases.push_back({"cat_fit", ids, ct, ViewTransform::fit(24, 300, 600, 96), 600, 96});
    cases.push_back({"seq_zoomed_out", random_map(1024, 1024, 5, 0.0f, 1.0f, 0.0f), seq,
                     ViewTransform::fit(1024, 1024, 128, 128), 128, 128});
    for (const Case& c : cases) {
      const ImageDiff d = gpu_vs_cpu(*r_, c.map, c.scale, c.view, c.w, c.h, c.name);
      qInfo("%s: %s", qPrintable(c.name), qPrintable(diff_text(d)));
      QVERIFY2(d.max_diff <= 1, qPrintable(c.name + ": " + diff_text(d)));
    }
  }

  void tiling_is_seamless() {
    REQUIRE_VULKAN(r_);
    auto tiled = make_renderer(64);
    QVERIFY(tiled);
    const Heatmap m = random_map(200, 300, 6, 0.0f, 1.0f, 0.03f);
    tiled->set_data(m);
    QCOMPARE(tiled->tile_size(), 64);
    QCOMPARE(tiled->tile_count(), 5 * 4);
    r_->set_data(m);
    QCOMPARE(r_->tile_count(), 1);
    ColorScale s;
    std::vector<ViewTransform> views{ViewTransform::fit(200, 300, 300, 200),
                                     ViewTransform::fit(200, 300, 97, 61)};
    ViewTransform seam;  // zoomed in on the corner where four tiles meet, non-integer zoom
    seam.zoom = {9.7f, 9.7f};
    seam.origin = {52.3f, 49.1f};
    views.push_back(seam);
    int i = 0;
    for (const ViewTransform& v : views) {
      const QImage a = tiled->render(s, v, 240, 240), b = r_->render(s, v, 240, 240);
      const QImage cpu = render_heatmap_cpu(m, s, v, 240, 240);
      maybe_save(a, QString("gpu_tiled_%1").arg(i++));
      const ImageDiff tvu = compare(a, b), tvc = compare(a, cpu);
      QVERIFY2(tvu.max_diff == 0, qPrintable("tiled vs untiled: " + diff_text(tvu)));
      QVERIFY2(tvc.max_diff <= 1, qPrintable("tiled vs cpu: " + diff_text(tvc)));
    }
  }

  void row_updates_equal_a_full_upload() {
    // Live attention: rows change in place (update_rows uploads only them and the pyramid cells
    // above them). The picture must be the one a full set_data of the same map draws, tiled
    // (halo rows shared by two tiles) and untiled, zoomed out (pooled levels) and in.
    REQUIRE_VULKAN(r_);
    auto tiled = make_renderer(64);
    QVERIFY(tiled);
    auto fresh = make_renderer(64);
    Heatmap m = random_map(150, 150, 21, 0.0f, 1.0f, 0.0f);
    for (int r = 60; r < 150; ++r)  // rows of tokens not made yet: masked
      for (int c = 0; c < 150; ++c) m.values[static_cast<size_t>(r) * 150 + c] = kNaN;
    r_->set_data(m);
    tiled->set_data(m);
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> val(0.0f, 1.0f);
    ColorScale s;
    s.scale = Scale::kLog;
    s.min = 1e-4f;
    ViewTransform in;
    in.zoom = {7.3f, 7.3f};
    in.origin = {40.2f, 55.7f};
    const std::vector<ViewTransform> views{ViewTransform::fit(150, 150, 41, 37),
                                           ViewTransform::fit(150, 150, 150, 150), in};
    for (int row : {60, 61, 63, 64, 65, 127, 128, 149}) {  // across tile and block edges
      for (int c = 0; c <= row; ++c) m.values[static_cast<size_t>(row) * 150 + c] = val(rng);
      r_->update_rows(m, row, 1);
      tiled->update_rows(m, row, 1);
      QCOMPARE(tiled->tile_count(), 9);
      fresh->set_data(m);
      for (size_t i = 0; i < views.size(); ++i) {
        const QImage want = fresh->render(s, views[i], 120, 100);
        const ImageDiff a = compare(r_->render(s, views[i], 120, 100), want);
        const ImageDiff b = compare(tiled->render(s, views[i], 120, 100), want);
        QVERIFY2(a.max_diff == 0,
                 qPrintable(QString("row %1 view %2 untiled: ").arg(row).arg(i) + diff_text(a)));
        QVERIFY2(b.max_diff == 0,
                 qPrintable(QString("row %1 view %2 tiled: ").arg(row).arg(i) + diff_text(b)));
      }
    }
    // Two rows at once, and a map of another shape falls back to a full upload.
    for (int c = 0; c < 150; ++c) m.values[10 * 150 + c] = m.values[11 * 150 + c] = 0.25f;
    tiled->update_rows(m, 10, 2);
    fresh->set_data(m);
    const ImageDiff two =
        compare(tiled->render(s, views[1], 150, 150), fresh->render(s, views[1], 150, 150));
    QVERIFY2(two.max_diff == 0, qPrintable(diff_text(two)));
    const Heatmap small = random_map(20, 30, 8, 0.0f, 1.0f, 0.0f);
    tiled->update_rows(small, 0, 1);
    QCOMPARE(tiled->tile_count(), 1);
    QVERIFY_THROWS_EXCEPTION(moelab::Error, tiled->update_rows(small, 19, 2));
    QCOMPARE(r_->validation().errors, 0);
  }

  void map_wider_than_max_texture() {
    REQUIRE_VULKAN(r_);
    const int cols = r_->max_image_dimension() + 1000;  // 17384 on lavapipe
    const Heatmap m = random_map(3, cols, 7, 0.0f, 1.0f, 0.0f);
    r_->set_data(m);
    QVERIFY2(r_->tile_count() >= 2, qPrintable(QString::number(r_->tile_count())));
    // One pixel per 8 cells, plus a zoomed-in window straddling the first tile edge.
    ColorScale s;
    const ImageDiff d =
        compare(r_->render(s, ViewTransform::fit(3, cols, cols / 8, 3), cols / 8, 3),
                render_heatmap_cpu(m, s, ViewTransform::fit(3, cols, cols / 8, 3), cols / 8, 3));
    QVERIFY2(d.max_diff <= 1, qPrintable(diff_text(d)));
    ViewTransform v;
    v.zoom = {4.0f, 4.0f};
    v.origin = {static_cast<float>(r_->tile_size()) - 20.0f, 0.0f};
    const ImageDiff e = compare(r_->render(s, v, 160, 12), render_heatmap_cpu(m, s, v, 160, 12));
    QVERIFY2(e.max_diff <= 1, qPrintable(diff_text(e)));
  }

  void pan_zoom_maps_cell_to_pixel() {
    REQUIRE_VULKAN(r_);
    Heatmap m{20, 20, std::vector<float>(400, 0.0f)};
    m.values[6 * 20 + 5] = 1.0f;  // row 6, column 5
    r_->set_data(m);
    ColorScale s;
    ViewTransform v;
    v.zoom = {10.0f, 10.0f};
    v.origin = {3.0f, 5.0f};  // cell (5, 6) spans pixels x 20..29, y 10..19
    const QImage img = r_->render(s, v, 100, 60);
    maybe_save(img, "gpu_pan_zoom");
    const Rgba8 hot = colormap_table(Colormap::kSequential).back();
    for (int y = 0; y < 60; ++y)
      for (int x = 0; x < 100; ++x) {
        const bool inside = x >= 20 && x < 30 && y >= 10 && y < 20;
        QVERIFY2((pixel(img, x, y) == hot) == inside, qPrintable(QString("%1,%2").arg(x).arg(y)));
      }
    // Zooming about a pixel keeps the cell under it.
    v.zoom_at({25.0f, 15.0f}, 3.0f);
    const QImage z = r_->render(s, v, 100, 60);
    QCOMPARE(pixel(z, 25, 15), hot);
    QCOMPARE(v.cell_at(25, 15), glm::ivec2(5, 6));
    // Now 30 px per cell with origin (4.667, 6): cell (5, 6) spans x 10..39, y 0..29.
    QVERIFY(pixel(z, 9, 15) != hot);
    QCOMPARE(pixel(z, 10, 15), hot);
    QCOMPARE(pixel(z, 39, 29), hot);
    QVERIFY(pixel(z, 40, 15) != hot);
    QVERIFY(pixel(z, 25, 30) != hot);
  }

  void co_activation_known_cells() {
    REQUIRE_VULKAN(r_);
    // 4 experts, top-2: tokens {0,1}, {0,1}, {2,3}, {0,2}. Off-diagonal max = 2 (0 with 1).
    const CoActivation c = co_activation_from_topk(3, 4, 2, {0, 1, 1, 0, 2, 3, 0, 2});
    QCOMPARE(c.count[0 * 4 + 0], 3.0f);  // expert 0 chosen by 3 tokens
    QCOMPARE(c.count[0 * 4 + 1], 2.0f);
    QCOMPARE(c.count[1 * 4 + 0], 2.0f);  // symmetric
    QCOMPARE(c.count[1 * 4 + 3], 0.0f);
    QCOMPARE(c.count[2 * 4 + 3], 1.0f);
    const HeatmapView v = co_activation_view(c);
    QCOMPARE(v.title, std::string("Expert co-activation - layer 3"));
    QCOMPARE(v.scale.max, 2.0f);
    r_->set_data(v.map);
    const QImage img = r_->render(v.scale, ViewTransform::fit(4, 4, 40, 40), 40, 40);
    maybe_save(img, "gpu_coactivation");
    const auto seq = colormap_table(Colormap::kSequential);
    QCOMPARE(pixel(img, 15, 5), seq.back());    // (0, 1) = 2 = max -> top colour
    QCOMPARE(pixel(img, 35, 15), seq.front());  // (1, 3) = 0 -> bottom colour
    QCOMPARE(pixel(img, 5, 5), seq.back());     // diagonal 3 > max: clamped to the top colour
    QCOMPARE(pixel(img, 35, 25), color_of(v.scale, 1.0f));
    QCOMPARE(render_heatmap_cpu(v.map, v.scale, ViewTransform::fit(4, 4, 40, 40), 40, 40), img);
  }

  void max_pooling_keeps_spikes() {
    REQUIRE_VULKAN(r_);
    // 1024 x 1024 zeros with one spike of 1 at (row 301, col 517) and one masked cell; drawn
    // into 128 x 128 pixels (8 x 8 cells per pixel). Pooled: the pixel holding the spike is
    // the top colour; nearest-cell sampling would miss it (the pixel centre is cell 4, 4 of 8).
    Heatmap m{1024, 1024, std::vector<float>(1024 * 1024, 0.0f)};
    m.values[301 * 1024 + 517] = 1.0f;
    m.values[10 * 1024 + 10] = kNaN;
    ColorScale s;
    const ViewTransform fit = ViewTransform::fit(1024, 1024, 128, 128);
    r_->set_data(m);
    const QImage pooled = r_->render(s, fit, 128, 128);
    maybe_save(pooled, "gpu_pooled_spike");
    const auto seq = colormap_table(Colormap::kSequential);
    QCOMPARE(pixel(pooled, 517 / 8, 301 / 8), seq.back());
    QCOMPARE(pixel(pooled, 517 / 8 + 1, 301 / 8), seq.front());
    QCOMPARE(pixel(pooled, 1, 1), seq.front());  // masked cell among zeros: the zeros win
    long top = 0;
    for (int y = 0; y < 128; ++y)
      for (int x = 0; x < 128; ++x) top += pixel(pooled, x, y) == seq.back();
    QCOMPARE(top, 1L);
    QCOMPARE(compare(pooled, render_heatmap_cpu(m, s, fit, 128, 128)).max_diff, 0);
    ColorScale nearest = s;
    nearest.max_pool = false;
    QCOMPARE(pixel(r_->render(nearest, fit, 128, 128), 517 / 8, 301 / 8), seq.front());

    // Diverging: the value of largest magnitude wins with its sign (a negative spike is blue).
    Heatmap d{512, 512, std::vector<float>(512 * 512, 0.1f)};
    d.values[100 * 512 + 200] = -1.0f;
    ColorScale ds;
    ds.map = Colormap::kDiverging;
    ds.min = -1.0f;
    ds.max = 1.0f;
    r_->set_data(d);
    const QImage dimg = r_->render(ds, ViewTransform::fit(512, 512, 64, 64), 64, 64);
    QCOMPARE(pixel(dimg, 200 / 8, 100 / 8), colormap_table(Colormap::kDiverging).front());
    QCOMPARE(pixel(dimg, 0, 0), color_of(ds, 0.1f));

    // Tiles (64-cell tiles, halo) give the same pooled picture as one texture, at a
    // non-power-of-two zoom too.
    auto tiled = make_renderer(64);
    const Heatmap rm = random_map(700, 900, 9, 0.0f, 1.0f, 0.02f);
    tiled->set_data(rm);
    r_->set_data(rm);
    for (const ViewTransform& v :
         {ViewTransform::fit(700, 900, 90, 70), ViewTransform::fit(700, 900, 131, 77)}) {
      const QImage a = tiled->render(s, v, 140, 90), b = r_->render(s, v, 140, 90);
      const ImageDiff tvu = compare(a, b), tvc = compare(a, render_heatmap_cpu(rm, s, v, 140, 90));
      QVERIFY2(tvu.max_diff == 0, qPrintable("pooled tiled vs untiled: " + diff_text(tvu)));
      QVERIFY2(tvc.max_diff <= 1, qPrintable("pooled tiled vs cpu: " + diff_text(tvc)));
      ColorScale coarse = s;
      coarse.coarse_pool = true;
      const QImage ca = tiled->render(coarse, v, 140, 90);
      const ImageDiff cvu = compare(ca, r_->render(coarse, v, 140, 90));
      const ImageDiff cvc = compare(ca, render_heatmap_cpu(rm, coarse, v, 140, 90));
      QVERIFY2(cvu.max_diff == 0, qPrintable("coarse tiled vs untiled: " + diff_text(cvu)));
      QVERIFY2(cvc.max_diff <= 1, qPrintable("coarse tiled vs cpu: " + diff_text(cvc)));
    }
  }

  void pyramid_keeps_lone_hot_cell_8192() {
    REQUIRE_VULKAN(r_);
    // 8192 x 8192 zeros (a quarter masked, as in a causal map) with one hot cell, zoomed out
    // to 512 x 384 pixels (16 x 21.3 cells per pixel: pyramid level 4) and to 100 x 100
    // (level 6): the pixel holding the cell is the top colour, no pixel further than one away
    // is, and GPU == CPU. Nearest-cell sampling misses it.
    const int n = 8192, hr = 5003, hc = 2711;
    Heatmap m{n, n, std::vector<float>(static_cast<size_t>(n) * n, 0.0f)};
    for (int r = 0; r < n / 2; ++r)
      for (int c = n / 2; c < n; ++c) m.values[static_cast<size_t>(r) * n + c] = kNaN;
    m.values[static_cast<size_t>(hr) * n + hc] = 0.9f;
    r_->set_data(m);
    const HeatmapPyramid pyr = build_pyramid(m);
    ColorScale s;
    s.min = 0.0f;
    s.max = 0.9f;
    const auto seq = colormap_table(Colormap::kSequential);
    for (const auto& [w, h] : {std::pair{512, 384}, std::pair{100, 100}}) {
      const ViewTransform v = ViewTransform::fit(n, n, w, h);
      const QImage img = r_->render(s, v, w, h);
      maybe_save(img, QString("gpu_pyramid_%1").arg(w));
      const glm::vec4 p = v.view_matrix() * glm::vec4(hc + 0.5f, hr + 0.5f, 0.0f, 1.0f);
      const int px = static_cast<int>(p.x), py = static_cast<int>(p.y);
      QCOMPARE(pixel(img, px, py), seq.back());
      // Only next to it: the level-k block of the cell may straddle one pixel edge per axis.
      int top = 0, grey = 0, far = 0;
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          const bool hot = pixel(img, x, y) == seq.back();
          top += hot;
          far += hot && (std::abs(x - px) > 1 || std::abs(y - py) > 1);
          grey += pixel(img, x, y) == s.masked;
        }
      QVERIFY2(top >= 1 && top <= 4, qPrintable(QString::number(top)));
      QCOMPARE(far, 0);
      QVERIFY2(grey > w * h / 5, qPrintable(QString::number(grey)));  // masked quarter stays
      const ImageDiff d = compare(img, render_heatmap_cpu(m, s, v, w, h, &pyr));
      QVERIFY2(d.max_diff == 0, qPrintable(diff_text(d)));
      ColorScale nearest = s;
      nearest.max_pool = false;
      QCOMPARE(pixel(r_->render(nearest, v, w, h), px, py), seq.front());
      // Coarse pooling (while the view moves): one read per pixel of a block at least a pixel
      // wide, so the cell still shows, within 2 pixels of its place; GPU == CPU.
      ColorScale coarse = s;
      coarse.coarse_pool = true;
      const QImage ci = r_->render(coarse, v, w, h);
      maybe_save(ci, QString("gpu_pyramid_coarse_%1").arg(w));
      int ctop = 0, cfar = 0;
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          const bool hot = pixel(ci, x, y) == seq.back();
          ctop += hot;
          cfar += hot && (std::abs(x - px) > 2 || std::abs(y - py) > 2);
        }
      QVERIFY2(ctop >= 1, "coarse pooling lost the hot cell");
      QCOMPARE(cfar, 0);
      const ImageDiff cd = compare(ci, render_heatmap_cpu(m, coarse, v, w, h, &pyr));
      QVERIFY2(cd.max_diff == 0, qPrintable("coarse: " + diff_text(cd)));
    }
  }

  void attention_and_load_diffs() {
    REQUIRE_VULKAN(r_);
    AttentionMap a, b;
    a.n_query = a.n_key = b.n_query = b.n_key = 3;
    a.weight = {1, kNaN, kNaN, 0.5f, 0.5f, kNaN, 0.2f, 0.3f, 0.5f};
    b.weight = {1, kNaN, kNaN, 0.9f, 0.1f, kNaN, 0.2f, 0.3f, 0.5f};
    const HeatmapView v = attention_diff_view(a, b);
    r_->set_data(v.map);
    const QImage img = r_->render(v.scale, ViewTransform::fit(3, 3, 30, 30), 30, 30);
    maybe_save(img, "gpu_attention_diff");
    const auto div = colormap_table(Colormap::kDiverging);
    QCOMPARE(pixel(img, 5, 15), div.front());               // 0.5 - 0.9 = -0.4 = -max: blue end
    QCOMPARE(pixel(img, 15, 15), div.back());               // 0.5 - 0.1 = +0.4: red end
    QCOMPARE(pixel(img, 15, 5), v.scale.masked);            // masked in both
    QCOMPARE(pixel(img, 25, 25), color_of(v.scale, 0.0f));  // equal: neutral
    QCOMPARE(render_heatmap_cpu(v.map, v.scale, ViewTransform::fit(3, 3, 30, 30), 30, 30), img);
  }

  void validation_layer_silent() {
    REQUIRE_VULKAN(r_);
    const ValidationCounts c = r_->validation();
    if (!c.layer_active)
      QSKIP(
          "skipped: VK_LAYER_KHRONOS_validation not installed (scripts/deps.sh installs "
          "vulkan-validationlayers)");
    QVERIFY(c.messenger_active);
    QVERIFY2(c.errors == 0 && c.warnings == 0,
             qPrintable(QString("%1 errors, %2 warnings; last: %3")
                            .arg(c.errors)
                            .arg(c.warnings)
                            .arg(QString::fromStdString(c.last_message))));
  }

  void validation_counter_counts() {
    // The messenger really counts: a zero-sized buffer is an error the layer reports.
    REQUIRE_VULKAN(r_);
    auto r = make_renderer();
    if (!r->validation().layer_active) QSKIP("skipped: validation layer not installed");
    VkBufferCreateInfo bi{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bi.size = 0;
    bi.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT;
    VkBuffer b = VK_NULL_HANDLE;
    auto dev = static_cast<VkDevice>(r->raw_device());
    const VkResult res = vkCreateBuffer(dev, &bi, nullptr, &b);
    if (res == VK_SUCCESS && b) vkDestroyBuffer(dev, b, nullptr);
    QVERIFY2(r->validation().errors >= 1, "the invalid call was not reported");
  }

  void cleanupTestCase() {
    if (r_) {
      const ValidationCounts c = r_->validation();
      QCOMPARE(c.errors, 0);
      QCOMPARE(c.warnings, 0);
    }
    r_.reset();
  }
};

QTEST_GUILESS_MAIN(ViewsVulkanTest)
#include "test_views_vulkan.moc"
