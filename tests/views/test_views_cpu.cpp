// Colormaps, value scales, view transforms, view kinds and the CPU fallback renderer.
#include <QtTest>
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

#include "moelab/core/error.h"
#include "moelab/views/heatmap.h"
#include "moelab/views/view_kinds.h"
#include "view_test_util.h"

using namespace moelab::views;
using moelab::test::channel_diff;
using moelab::test::describe;
using moelab::test::pixel;

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
}

class ViewsCpuTest : public QObject {
  Q_OBJECT
 private slots:
  void tables_are_smooth_and_anchored() {
    for (Colormap m : {Colormap::kSequential, Colormap::kDiverging}) {
      const auto t = colormap_table(m);
      QCOMPARE(static_cast<int>(t.size()), kLutSize);
      int worst = 0;
      for (size_t i = 1; i < t.size(); ++i) worst = std::max(worst, channel_diff(t[i - 1], t[i]));
      // The GPU == CPU tolerance rests on this: one lookup step is at most 1 level.
      QVERIFY2(worst <= 1, qPrintable(QString("adjacent entries differ by %1").arg(worst)));
    }
    const auto seq = colormap_table(Colormap::kSequential);
    QCOMPARE(seq.front(), (Rgba8{60, 8, 84, 255}));
    QCOMPARE(seq.back(), (Rgba8{250, 230, 40, 255}));
    // Sequential lightness increases monotonically (Rec. 601 luma, 1-level slack).
    auto luma = [](Rgba8 c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; };
    for (size_t i = 1; i < seq.size(); ++i) QVERIFY(luma(seq[i]) >= luma(seq[i - 1]) - 1.0);
    const auto div = colormap_table(Colormap::kDiverging);
    QVERIFY(div.front().b > div.front().r);  // negative end is blue
    QVERIFY(div.back().r > div.back().b);    // positive end is red
    QVERIFY(channel_diff(div[kLutSize / 2], Rgba8{236, 236, 236, 255}) <= 1);  // zero neutral
  }

  // CIE L*a*b* (D65) of an sRGB colour, for perceptual colour distances (CIE76 Delta-E).
  static std::array<double, 3> lab(Rgba8 c) {
    auto lin = [](double v) {
      v /= 255.0;
      return v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4);
    };
    const double r = lin(c.r), g = lin(c.g), b = lin(c.b);
    const double x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
    const double y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    const double z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
    auto f = [](double t) { return t > 0.008856 ? std::cbrt(t) : 7.787 * t + 16.0 / 116.0; };
    return {116.0 * f(y) - 16.0, 500.0 * (f(x) - f(y)), 200.0 * (f(y) - f(z))};
  }

  void categorical_colours_are_distinct() {
    const auto cat = colormap_table(Colormap::kCategorical);
    QCOMPARE(static_cast<int>(cat.size()), kCategoricalSize);
    QCOMPARE(kCategoricalSize, 64);  // no repeat before 64 experts (Mixtral 8, OLMoE 64)
    const Rgba8 masked = ColorScale{}.masked;
    double closest_rgb20 = 1e9, closest_lab = 1e9;
    for (size_t i = 0; i < cat.size(); ++i) {
      for (size_t j = i + 1; j < cat.size(); ++j) {
        const double dr = cat[i].r - cat[j].r, dg = cat[i].g - cat[j].g, db = cat[i].b - cat[j].b;
        if (j < 20) closest_rgb20 = std::min(closest_rgb20, std::sqrt(dr * dr + dg * dg + db * db));
        const auto a = lab(cat[i]), b = lab(cat[j]);
        closest_lab = std::min(closest_lab, std::hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]));
      }
      QVERIFY2(channel_diff(cat[i], masked) > 40, "a category looks like the masked grey");
    }
    // The first 20 (hand-picked) stay far apart; all 64 are >= 18 Delta-E apart (a just
    // noticeable difference is ~2.3, distinct swatches side by side need ~10+).
    QVERIFY2(closest_rgb20 >= 60.0,
             qPrintable(QString("closest pair %1 apart").arg(closest_rgb20)));
    QVERIFY2(closest_lab >= 18.0, qPrintable(QString("closest pair %1 Delta-E").arg(closest_lab)));
  }

  void lut_index_linear_log_categorical() {
    ColorScale s;
    s.min = 0.0f;
    s.max = 1.0f;
    ScaleParams p = scale_params(s);
    QCOMPARE(lut_index(p, 0.0f), 0);
    QCOMPARE(lut_index(p, -5.0f), 0);            // below range clamps
    QCOMPARE(lut_index(p, 1.0f), kLutSize - 1);  // top end
    QCOMPARE(lut_index(p, 7.0f), kLutSize - 1);  // above range clamps
    QCOMPARE(lut_index(p, 0.5f), kLutSize / 2);
    QCOMPARE(lut_index(p, kNaN), -1);
    s.scale = Scale::kLog;
    s.min = 1e-4f;
    p = scale_params(s);
    QCOMPARE(lut_index(p, 1e-4f), 0);
    QCOMPARE(lut_index(p, 1.0f), kLutSize - 1);
    QVERIFY(std::abs(lut_index(p, 1e-2f) - kLutSize / 2) <= 1);  // half-way in decades
    QCOMPARE(lut_index(p, 0.0f), 0);                             // non-positive: below range
    QCOMPARE(lut_index(p, -1.0f), 0);
    s = ColorScale{};
    s.map = Colormap::kCategorical;
    p = scale_params(s);
    QCOMPARE(lut_index(p, 3.0f), 3);
    QCOMPARE(lut_index(p, 67.0f), 3);  // wraps at 64
    QCOMPARE(lut_index(p, -1.0f), -1);
    QCOMPARE(color_of(s, 5.0f), colormap_table(Colormap::kCategorical)[5]);
  }

  void transform_maps_cells_to_pixels() {
    ViewTransform v;
    v.zoom = {10.0f, 10.0f};
    v.origin = {3.0f, 5.0f};
    QCOMPARE(v.cell_at(0, 0), glm::ivec2(3, 5));
    QCOMPARE(v.cell_at(9, 9), glm::ivec2(3, 5));
    QCOMPARE(v.cell_at(10, 0), glm::ivec2(4, 5));
    QCOMPARE(v.cell_at(25, 12), glm::ivec2(5, 6));
    // view_matrix and pixel_to_data are inverses.
    const glm::vec4 px = v.view_matrix() * glm::vec4(5.0f, 6.0f, 0.0f, 1.0f);
    QCOMPARE(px.x, 20.0f);
    QCOMPARE(px.y, 10.0f);
    // zoom_at keeps the data point under the cursor fixed.
    const glm::vec2 at{37.0f, 21.0f};
    const glm::vec2 before = at / v.zoom + v.origin;
    v.zoom_at(at, 2.5f);
    const glm::vec2 after = at / v.zoom + v.origin;
    QVERIFY(std::abs(before.x - after.x) < 1e-4f && std::abs(before.y - after.y) < 1e-4f);
    QCOMPARE(v.zoom.x, 25.0f);
    v.pan_by({25.0f, -50.0f});  // drag right by one cell, up by two
    QVERIFY(std::abs(after.x - 1.0f - (at.x / v.zoom.x + v.origin.x)) < 1e-4f);
    // Zoomed out 16 cells per pixel: pixel centres land exactly on cell edges; the bias picks
    // the cell to the right/below, the same on every path.
    const ViewTransform f = ViewTransform::fit(8192, 8192, 512, 512);
    QCOMPARE(f.cell_at(0, 0), glm::ivec2(8, 8));
    QCOMPARE(f.cell_at(511, 511), glm::ivec2(8184, 8184));
  }

  void cpu_render_known_cells() {
    Heatmap m{2, 2, {0.0f, 1.0f, 0.5f, kNaN}};
    ColorScale s;
    s.masked = {255, 0, 255, 255};
    const QImage img = render_heatmap_cpu(m, s, ViewTransform::fit(2, 2, 64, 64), 64, 64);
    moelab::test::maybe_save(img, "cpu_known_cells");
    const auto seq = colormap_table(Colormap::kSequential);
    QCOMPARE(pixel(img, 16, 16), seq[0]);
    QCOMPARE(pixel(img, 48, 16), seq[kLutSize - 1]);
    QCOMPARE(pixel(img, 16, 48), seq[kLutSize / 2]);
    QCOMPARE(pixel(img, 48, 48), s.masked);
    // Outside the map: background.
    ViewTransform v = ViewTransform::fit(2, 2, 64, 64);
    v.origin = {-1.0f, 0.0f};  // map shifted right by one cell (32 px)
    const QImage shifted = render_heatmap_cpu(m, s, v, 64, 64);
    QCOMPARE(pixel(shifted, 5, 5), s.background);
    QCOMPARE(pixel(shifted, 40, 5), seq[0]);
  }

  void router_confidence_and_its_view() {
    const auto c = router_confidence({0.2f, 0.5f, kNaN, 0.3f});
    QCOMPARE(c.top_prob, 0.5f);
    QCOMPARE(c.margin, 0.5f - 0.3f);
    const double h = -(0.2 * std::log(0.2f) + 0.5 * std::log(0.5f) + 0.3 * std::log(0.3f));
    QVERIFY(std::fabs(c.entropy - h) < 1e-6);
    const auto one = router_confidence({1.0f, 0.0f});
    QCOMPARE(one.top_prob, 1.0f);
    QCOMPARE(one.margin, 1.0f);
    QCOMPARE(one.entropy, 0.0f);  // 0 ln 0 = 0
    QVERIFY(std::isnan(router_confidence({}).top_prob));

    RoutingGrid g;
    g.n_layer = 2;
    g.n_tokens = 2;
    g.expert_count = 4;
    g.top_expert = {0, 1, 2, 3};
    QVERIFY_THROWS_EXCEPTION(moelab::Error, routing_confidence_view(g, RoutingColour::kMargin));
    g.top_prob = {0.9f, 0.5f, kNaN, 0.3f};
    g.margin = {0.8f, 0.1f, kNaN, 0.0f};
    g.entropy = {0.2f, 1.0f, kNaN, 1.386f};
    const HeatmapView m = routing_confidence_view(g, RoutingColour::kMargin);
    QCOMPARE(m.map.values[1], 0.1f);
    QCOMPARE(m.scale.min, 0.0f);
    QCOMPARE(m.scale.max, 1.0f);
    QCOMPARE(m.value_unit, std::string("top1 - top2 probability"));
    const HeatmapView e = routing_confidence_view(g, RoutingColour::kEntropy);
    QCOMPARE(e.scale.max, std::log(4.0f));  // uniform over 4 experts
    QCOMPARE(e.value_unit, std::string("entropy (nats)"));
    QVERIFY(std::isnan(e.map.values[2]));  // not routed: masked
    QCOMPARE(routing_confidence_view(g, RoutingColour::kTopProb).map.values[0], 0.9f);
    QVERIFY_THROWS_EXCEPTION(moelab::Error,
                             routing_confidence_view(g, RoutingColour::kActiveCount));
  }

  void router_confidence_by_gating() {
    // Sigmoid scores do not sum to 1: normalised over all experts, s_e / sum s.
    const auto sig = router_confidence({0.9f, 0.6f, 0.3f, 0.2f}, {}, "sigmoid");
    QVERIFY(std::fabs(sig.top_prob - 0.45f) < 1e-6f);
    QVERIFY(std::fabs(sig.margin - 0.15f) < 1e-6f);
    double h = 0;
    for (double p : {0.45, 0.3, 0.15, 0.1}) h -= p * std::log(p);
    QVERIFY(std::fabs(sig.entropy - h) < 1e-6);
    QVERIFY(sig.entropy <= std::log(4.0f));  // was -sum s ln s = 0.95 on the raw scores
    // Softmax over the selected (gpt-oss): the scores are logits of any sign; the distribution
    // is their softmax over every expert (policies.h), not the k applied weights.
    const auto sel =
        router_confidence({3.5f, -2.0f, 1.0f, 0.25f}, {0.75f, 0.25f}, "softmax_over_topk");
    {
      const double z = std::exp(3.5) + std::exp(-2.0) + std::exp(1.0) + std::exp(0.25);
      const double q[] = {std::exp(3.5) / z, std::exp(-2.0) / z, std::exp(1.0) / z,
                          std::exp(0.25) / z};
      double hq = 0;
      for (double x : q) hq -= x * std::log(x);
      QVERIFY(std::fabs(sel.top_prob - q[0]) < 1e-6);
      QVERIFY(std::fabs(sel.margin - (q[0] - q[2])) < 1e-6);
      QVERIFY(std::fabs(sel.entropy - hq) < 1e-6);
    }
    // Softmax (or unknown): the probabilities as given.
    const auto soft = router_confidence({0.2f, 0.5f, 0.3f}, {0.5f}, "softmax");
    QCOMPARE(soft.top_prob, 0.5f);
    QVERIFY(std::isnan(router_confidence({0.f, 0.f}, {}, "sigmoid").top_prob));

    RoutingGrid g;
    g.n_layer = 1;
    g.n_tokens = 1;
    g.expert_count = 4;
    g.top_expert = {0};
    g.top_prob = {0.45f};
    g.margin = {0.15f};
    g.entropy = {1.2f};
    g.gating = "sigmoid";
    const HeatmapView p = routing_confidence_view(g, RoutingColour::kTopProb);
    QVERIFY(p.title.find("not probabilities") != std::string::npos);
    QVERIFY(p.subtitle.find("normalised over all experts") != std::string::npos);
    QCOMPARE(p.value_unit, std::string("score share (s / sum s)"));
    g.gating = "softmax_over_topk";
    g.active_count = {4};
    const HeatmapView e = routing_confidence_view(g, RoutingColour::kEntropy);
    QCOMPARE(e.scale.max, std::log(4.0f));  // ln expert_count
    QVERIFY(e.subtitle.find("softmax of the router logits over all experts") != std::string::npos);
    const auto names = routing_colour_names("sigmoid");
    QCOMPARE(int(names.size()), kRoutingColourCount);
    QVERIFY(names[size_t(RoutingColour::kTopProb)].find("not probabilities") != std::string::npos);
    QCOMPARE(names[size_t(RoutingColour::kGroups)], std::string("colour: kept expert groups"));
    QCOMPARE(routing_colour_names("softmax")[size_t(RoutingColour::kTopProb)],
             std::string("colour: router probability (top expert)"));
  }

  void shared_experts_and_kept_groups() {
    // Layer 0 dense, layer 1 MoE with 8 experts in 4 groups of 2, 2 kept; 1 shared expert.
    RoutingGrid g;
    g.n_layer = 2;
    g.n_tokens = 3;
    g.expert_count = 8;
    g.top_expert = {-1, -1, -1, 5, 0, 7};
    g.active_count = {0, 0, 0, 2, 2, 2};
    g.token_text = {"a", "b", "c"};
    g.shared_experts = 1;
    g.expert_groups = 4;
    g.expert_groups_used = 2;
    g.groups = {-1, -1, -1, -1, -1, -1, 2, 1, 0, 3, 3, -1};  // token 2: one group recorded
    const HeatmapView top = routing_top_expert_view(g);
    QCOMPARE(top.map.cols, 4);
    QCOMPARE(top.x_ticks, (std::vector<std::string>{"shared x1", "a", "b", "c"}));
    QVERIFY(std::isnan(top.map.at(0, 0)));  // dense layer: no shared expert
    QCOMPARE(top.map.at(1, 0), 8.0f);       // its own category, past the expert ids
    QCOMPARE(top.map.at(1, 1), 5.0f);
    QCOMPARE(top.categories, 9);
    QCOMPARE(top.category_labels.back(), std::string("shared x1 (always on)"));
    // The hover text names the shared column's category, and routed ids stay numbers.
    QCOMPARE(format_cell_value(top, top.map.at(1, 0)), std::string("shared x1 (always on)"));
    QCOMPARE(format_cell_value(top, top.map.at(1, 1)), std::string("5"));
    QCOMPARE(format_cell_value(top, top.map.at(0, 0)), std::string("masked"));
    const HeatmapView act = routing_active_count_view(g);
    QCOMPARE(act.map.at(1, 0), 1.0f);
    QCOMPARE(act.map.at(1, 1), 2.0f);

    const HeatmapView grp = routing_groups_view(g);
    QCOMPARE(grp.map.rows, 4);  // only layer 1 has groups
    QCOMPARE(grp.map.cols, 3);
    QCOMPARE(grp.y_ticks, (std::vector<std::string>{"L1 g0", "L1 g1", "L1 g2", "L1 g3"}));
    // token 0 kept {2, 1}: g2 rank 1, g1 rank 2, g0 and g3 dropped.
    QCOMPARE(grp.map.at(2, 0), 1.0f);
    QCOMPARE(grp.map.at(1, 0), 2.0f);
    QCOMPARE(grp.map.at(0, 0), 0.0f);
    QCOMPARE(grp.map.at(3, 0), 0.0f);
    QCOMPARE(grp.map.at(0, 1), 1.0f);
    QCOMPARE(grp.map.at(3, 1), 2.0f);
    QCOMPARE(grp.map.at(3, 2), 1.0f);
    QCOMPARE(grp.scale.max, 2.0f);
    QVERIFY(grp.subtitle.find("4 groups of 2") != std::string::npos);
    g.groups.clear();
    QVERIFY_THROWS_EXCEPTION(moelab::Error, routing_groups_view(g));
    g.groups.assign(5, 0);  // wrong size
    QVERIFY_THROWS_EXCEPTION(moelab::Error, routing_groups_view(g));

    ExpertLoad l;
    l.n_layer = 2;
    l.expert_count = 2;
    l.load = {0, 0, 0.25f, 0.75f};
    l.shared_experts = 2;
    l.shared = {0, 1};
    const HeatmapView lv = expert_load_view(l);
    QCOMPARE(lv.map.cols, 3);
    QCOMPARE(lv.x_ticks.back(), std::string("shared x2 (every token)"));
    QVERIFY(std::isnan(lv.map.at(0, 2)));
    QCOMPARE(lv.map.at(1, 2), 1.0f);
    QCOMPARE(lv.scale.max, 0.75f);  // the routed scale; the shared column is at the top colour
  }

  void pyramid_row_update_equals_rebuild() {
    // Odd sizes (clipped blocks at the edges), NaN cells, and row ranges at the start, the end,
    // one row, and straddling block boundaries: the updated pyramid equals a rebuilt one.
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> val(-1.0f, 1.0f), u01(0.0f, 1.0f);
    for (const auto& [rows, cols] : {std::pair{37, 53}, std::pair{64, 64}, std::pair{1, 9}}) {
      Heatmap m{rows, cols, std::vector<float>(static_cast<size_t>(rows) * cols)};
      for (float& v : m.values) v = u01(rng) < 0.2f ? kNaN : val(rng);
      HeatmapPyramid p = build_pyramid(m);
      for (const auto& [first, n] : {std::pair{0, 1}, std::pair{rows - 1, 1}, std::pair{0, rows},
                                     std::pair{rows / 3, rows / 2 + 1}}) {
        if (first < 0 || n <= 0 || first + n > rows) continue;
        for (int r = first; r < first + n; ++r)
          for (int c = 0; c < cols; ++c)
            m.values[static_cast<size_t>(r) * cols + c] = u01(rng) < 0.3f ? kNaN : val(rng);
        update_pyramid_rows(p, m, first, n);
        const HeatmapPyramid want = build_pyramid(m);
        QCOMPARE(p.levels.size(), want.levels.size());
        for (size_t k = 0; k < want.levels.size(); ++k) {
          const auto& a = p.levels[k].max_min;
          const auto& b = want.levels[k].max_min;
          QCOMPARE(a.size(), b.size());
          for (size_t i = 0; i < a.size(); ++i)
            QVERIFY2((std::isnan(a[i]) && std::isnan(b[i])) || a[i] == b[i],
                     qPrintable(QString("%1 x %2, rows %3+%4: level %5 value %6: %7 vs %8")
                                    .arg(rows)
                                    .arg(cols)
                                    .arg(first)
                                    .arg(n)
                                    .arg(k + 1)
                                    .arg(i)
                                    .arg(a[i])
                                    .arg(b[i])));
        }
      }
    }
    // Rows outside the map, or a pyramid of another map, are refused with the reason.
    Heatmap m{4, 4, std::vector<float>(16, 0.5f)};
    HeatmapPyramid p = build_pyramid(m);
    QVERIFY_THROWS_EXCEPTION(moelab::Error, update_pyramid_rows(p, m, 3, 2));
    Heatmap other{8, 4, std::vector<float>(32, 0.5f)};
    QVERIFY_THROWS_EXCEPTION(moelab::Error, update_pyramid_rows(p, other, 0, 1));
  }

  void pyramid_max_min_and_levels() {
    // 5 x 3 map: level 1 is 3 x 2, level 2 is 2 x 1, level 3 is 1 x 1 (sizes round up).
    Heatmap m{5,
              3,
              {1, 2, 3,           //
               4, kNaN, 6,        //
               kNaN, kNaN, -9,    //
               kNaN, kNaN, kNaN,  //
               0.5f, 7, 8}};
    const HeatmapPyramid p = build_pyramid(m);
    QCOMPARE(static_cast<int>(p.levels.size()), 3);
    const auto& l1 = p.level(1);
    QCOMPARE(l1.rows, 3);
    QCOMPARE(l1.cols, 2);
    auto mm = [](const HeatmapPyramid::Level& l, int r, int c) {
      const size_t i = (static_cast<size_t>(r) * l.cols + c) * 2;
      return std::array<float, 2>{l.max_min[i], l.max_min[i + 1]};
    };
    QCOMPARE(mm(l1, 0, 0), (std::array<float, 2>{4, 1}));  // NaN skipped
    QCOMPARE(mm(l1, 0, 1), (std::array<float, 2>{6, 3}));  // clipped block (one column)
    QVERIFY(std::isnan(mm(l1, 1, 0)[0]) && std::isnan(mm(l1, 1, 0)[1]));  // all masked
    QCOMPARE(mm(l1, 1, 1), (std::array<float, 2>{-9, -9}));
    QCOMPARE(mm(l1, 2, 0), (std::array<float, 2>{7, 0.5f}));
    QCOMPARE(mm(p.level(2), 0, 0), (std::array<float, 2>{6, -9}));
    QCOMPARE(mm(p.level(3), 0, 0), (std::array<float, 2>{8, -9}));
    QVERIFY(build_pyramid(Heatmap{1, 1, {3}}).levels.empty());

    // Level choice: the largest 2^k <= cells per pixel of the less zoomed-out axis.
    QCOMPARE(pool_level(ViewTransform::fit(8192, 8192, 1024, 1024), 13), 3);  // 8 cells/px
    QCOMPARE(pool_level(ViewTransform::fit(8192, 8192, 1000, 1024), 13), 3);
    QCOMPARE(pool_level(ViewTransform::fit(8192, 8192, 1025, 1024), 13), 2);  // 7.99 cells/px
    QCOMPARE(pool_level(ViewTransform::fit(8192, 64, 1024, 1024), 13), 0);    // x zoomed in
    QCOMPARE(pool_level(ViewTransform::fit(8192, 8192, 16, 16), 5), 5);       // capped

    // The CPU renderer with a prebuilt pyramid draws what it draws without one.
    Heatmap big{300, 500, std::vector<float>(300 * 500, 0.0f)};
    big.values[123 * 500 + 321] = 1.0f;
    ColorScale s;
    const ViewTransform v = ViewTransform::fit(300, 500, 37, 23);
    const HeatmapPyramid bp = build_pyramid(big);
    const QImage a = render_heatmap_cpu(big, s, v, 37, 23, &bp);
    QCOMPARE(a, render_heatmap_cpu(big, s, v, 37, 23));
    // 13.5 x 13 cells per pixel, level 3: the spike shows in the pixel over it and, where its
    // 8 x 8 block straddles a pixel edge, in that neighbour too (never further away).
    const glm::vec4 at = v.view_matrix() * glm::vec4(321.5f, 123.5f, 0.0f, 1.0f);
    QCOMPARE(pixel(a, static_cast<int>(at.x), static_cast<int>(at.y)),
             colormap_table(s.map).back());
    int hot = 0;
    for (int y = 0; y < 23; ++y)
      for (int x = 0; x < 37; ++x)
        if (pixel(a, x, y) == colormap_table(s.map).back()) {
          ++hot;
          QVERIFY(std::abs(x - static_cast<int>(at.x)) <= 1);
          QVERIFY(std::abs(y - static_cast<int>(at.y)) <= 1);
        }
    QVERIFY2(hot >= 1 && hot <= 4, qPrintable(QString::number(hot)));
  }

  void view_kinds_shape_and_scale() {
    RoutingGrid g;
    g.n_layer = 2;
    g.n_tokens = 3;
    g.expert_count = 8;
    g.top_expert = {0, 1, -1, 7, 2, 3};
    g.active_count = {2, 2, 0, 1, 4, 2};
    HeatmapView v = routing_top_expert_view(g);
    QCOMPARE(v.map.rows, 2);
    QCOMPARE(v.map.cols, 3);
    QVERIFY(std::isnan(v.map.at(0, 2)));
    QCOMPARE(v.map.at(1, 0), 7.0f);
    QCOMPARE(v.scale.map, Colormap::kCategorical);
    v = routing_active_count_view(g);
    QCOMPARE(v.scale.max, 8.0f);
    g.active_count.clear();
    QVERIFY_THROWS_EXCEPTION(moelab::Error, routing_active_count_view(g));
    g.top_expert.pop_back();
    QVERIFY_THROWS_EXCEPTION(moelab::Error, routing_top_expert_view(g));

    ExpertLoad a{1, 3, {0.5f, 0.25f, 0.25f}}, b{1, 3, {0.25f, 0.25f, 0.5f}};
    v = expert_load_diff_view(a, b);
    QCOMPARE(v.map.at(0, 0), 0.25f);
    QCOMPARE(v.map.at(0, 2), -0.25f);
    QCOMPARE(v.scale.min, -0.25f);
    QCOMPARE(v.scale.max, 0.25f);
    QCOMPARE(v.scale.map, Colormap::kDiverging);
    ExpertLoad c{3, 1, {0.5f, 0.25f, 0.25f}};
    QVERIFY_THROWS_EXCEPTION(moelab::Error, expert_load_diff_view(a, c));

    AttentionMap att{2, 2, {1.0f, kNaN, 0.5f, 0.5f}, {}, {}, 3, -1};
    v = attention_view(att, true);
    QCOMPARE(v.scale.scale, Scale::kLog);
    QVERIFY(v.title.find("layer 3") != std::string::npos);
    QVERIFY(v.title.find("mean over heads") != std::string::npos);
  }
};

QTEST_GUILESS_MAIN(ViewsCpuTest)
#include "test_views_cpu.moc"
