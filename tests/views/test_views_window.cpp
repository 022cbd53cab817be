// The embedded view window under Xvfb: frames render with ImGui overlays, hovering a cell shows
// its tokens and value, zooming in brings token labels onto the axis, and the pixels of the
// heatmap match the colormap. Needs a display (ctest runs it with xvfb-run) and a Vulkan ICD.
#include <vulkan/vulkan.h>  // before Qt headers

#include <QGuiApplication>
#include <QVulkanInstance>
#include <QtTest>
#include <algorithm>
#include <cmath>

#include "moelab/views/heatmap_window.h"
#include "view_test_util.h"

using namespace moelab::views;

namespace {
int g_validation_messages = 0;
QString g_last_message;

bool count_messages(VkDebugReportFlagsEXT flags, VkDebugReportObjectTypeEXT, uint64_t, size_t,
                    int32_t, const char*, const char* message) {
  if (flags & (VK_DEBUG_REPORT_ERROR_BIT_EXT | VK_DEBUG_REPORT_WARNING_BIT_EXT |
               VK_DEBUG_REPORT_PERFORMANCE_WARNING_BIT_EXT)) {
    ++g_validation_messages;
    g_last_message = QString::fromUtf8(message);
  }
  return false;
}

AttentionMap synthetic_attention(int n) {
  AttentionMap a;
  a.n_query = a.n_key = n;
  a.layer = 2;
  a.head = 1;
  for (int q = 0; q < n; ++q) {
    a.query_text.push_back("tok" + std::to_string(q));
    for (int k = 0; k < n; ++k)
      a.weight.push_back(k > q ? std::nanf("") : 1.0f / static_cast<float>(q + 1));
  }
  a.key_text = a.query_text;
  return a;
}
}  // namespace

class ViewsWindowTest : public QObject {
  Q_OBJECT
  QVulkanInstance inst_;
  bool have_vulkan_ = false;

 private slots:
  void initTestCase() {
    if (QGuiApplication::platformName() == "offscreen" ||
        QGuiApplication::platformName() == "minimal")
      QSKIP("skipped: needs a display (run under xvfb-run), not the offscreen platform");
    if (qEnvironmentVariableIsSet("MOELAB_VIEWS_VALIDATION") ||
        QVulkanInstance().supportedLayers().contains("VK_LAYER_KHRONOS_validation"))
      inst_.setLayers({"VK_LAYER_KHRONOS_validation"});
    inst_.installDebugOutputFilter(count_messages);
    have_vulkan_ = inst_.create();
    if (!have_vulkan_)
      QSKIP(qPrintable("skipped: no Vulkan instance: error " + QString::number(inst_.errorCode())));
  }

  void hover_zoom_and_pixels() {
    HeatmapWindow w;
    w.setVulkanInstance(&inst_);
    w.resize(800, 500);
    HeatmapView v = attention_view(synthetic_attention(40));
    v.scale.masked = {255, 0, 255, 255};
    w.set_view(v);
    w.show();
    QTRY_VERIFY_WITH_TIMEOUT(w.frames_drawn() >= 4, 20000);
    const QRect plot = w.plot_rect();
    // Top margin 76: title and subtitle, then the axis label and legend header (no overlap).
    QCOMPARE(plot, QRect(70, 76, 800 - 70 - 190, 500 - 76 - 46));
    QCOMPARE(w.token_labels_drawn(), 0);  // 13.5 px per key column: indices, not token text

    // Pixels: cell (query 10, key 5) = 1/11; (query 5, key 10) is masked.
    auto centre = [&](int q, int k) {
      const glm::vec4 p =
          w.transform().view_matrix() *
          glm::vec4(static_cast<float>(k) + 0.5f, static_cast<float>(q) + 0.5f, 0, 1);
      return QPoint(plot.x() + static_cast<int>(p.x), plot.y() + static_cast<int>(p.y));
    };
    QImage shot = w.grab();
    const bool bgra = w.colorFormat() == VK_FORMAT_B8G8R8A8_UNORM;  // Qt 6.4 grab() quirk
    moelab::test::maybe_save(bgra ? shot.rgbSwapped() : shot, "window_attention");
    auto at = [&](QPoint p) {
      Rgba8 c = moelab::test::pixel(shot.convertToFormat(QImage::Format_RGBA8888), p.x(), p.y());
      if (bgra) std::swap(c.r, c.b);
      return c;
    };
    QVERIFY2(
        w.colorFormat() == VK_FORMAT_B8G8R8A8_UNORM || w.colorFormat() == VK_FORMAT_R8G8B8A8_UNORM,
        "swapchain is not UNORM (an SRGB format would wash the colormap out)");
    QCOMPARE(at(centre(10, 5)), color_of(v.scale, 1.0f / 11.0f));
    QCOMPARE(at(centre(5, 10)), v.scale.masked);
    QCOMPARE(at(centre(0, 0)), color_of(v.scale, 1.0f));

    // Hover -> tooltip names both tokens and the value.
    QTest::mouseMove(&w, centre(10, 5));
    QTRY_VERIFY_WITH_TIMEOUT(w.hover_text().contains("'tok5'"), 5000);
    QVERIFY2(w.hover_text().contains("'tok10'"), qPrintable(w.hover_text()));
    QVERIFY2(w.hover_text().contains("0.09091"), qPrintable(w.hover_text()));

    // Zoom in about that cell (5 wheel notches = 1.25^5 = 3.05x -> 41 px per column).
    const QPoint c = centre(10, 5);
    for (int i = 0; i < 5; ++i) {
      QWheelEvent e(c, w.mapToGlobal(c), QPoint(), QPoint(0, 120), Qt::NoButton, Qt::NoModifier,
                    Qt::NoScrollPhase, false);
      QCoreApplication::sendEvent(&w, &e);
    }
    QVERIFY(std::abs(w.transform().zoom.x - 13.5f * std::pow(1.25f, 5.0f)) < 1e-3f);
    const int before = w.frames_drawn();
    QTRY_VERIFY_WITH_TIMEOUT(w.frames_drawn() > before, 5000);
    QVERIFY2(w.token_labels_drawn() > 0, "no token labels after zooming in");
    // The cell under the cursor stayed under the cursor.
    QCOMPARE(w.transform().cell_at(c.x() - plot.x(), c.y() - plot.y()), glm::ivec2(5, 10));
    moelab::test::maybe_save(bgra ? w.grab().rgbSwapped() : w.grab(), "window_attention_zoomed");

    // Frames are drawn on demand only: the wheel marked the view as moving (coarse pooling);
    // once it settles one exact frame follows, then nothing while nothing changes.
    QVERIFY(w.moving());
    QTRY_VERIFY_WITH_TIMEOUT(!w.moving(), 2000);
    QTest::qWait(200);
    const int idle0 = w.frames_drawn();
    QTest::qWait(600);
    QCOMPARE(w.frames_drawn(), idle0);
  }

  void live_rows_redraw_a_band() {
    // Live attention: rows arrive one per frame into a map larger than the plot (pooled: 3.7
    // and 5.3 cells per pixel, pyramid level 1). Each frame redraws only a band of the cached
    // picture; afterwards the window shows exactly what a whole upload of the same map shows.
    const int n = 2000, made = 1000;
    AttentionMap full = synthetic_attention(n);
    for (int q = 0; q < n; ++q)  // some structure that pooling must keep: a hot key per row
      full.weight[static_cast<size_t>(q) * n + static_cast<size_t>(q * 7 % (q + 1))] = 1.0f;
    HeatmapView whole = attention_view(full, /*log_scale=*/true);
    HeatmapView live = whole;
    std::fill(live.map.values.begin() + made * n, live.map.values.end(), std::nanf(""));
    HeatmapWindow w;
    w.setVulkanInstance(&inst_);
    w.resize(800, 500);
    w.set_view(live);
    w.show();
    QTRY_VERIFY_WITH_TIMEOUT(w.frames_drawn() >= 4, 20000);
    QTest::qWait(300);  // still: the picture is cached
    const int bands0 = w.band_redraws();
    int updates = 0;
    HeatmapView expect = live;  // the live map with the rows sent so far
    for (int q = made; q < n; q += q < made + 40 ? 1 : 37) {  // one by one, then lone rows
      const int before = w.frames_drawn();
      const float* row = whole.map.values.data() + static_cast<size_t>(q) * n;
      QVERIFY(w.update_rows(q, 1, row));
      std::copy(row, row + n, expect.map.values.begin() + static_cast<ptrdiff_t>(q) * n);
      QTRY_VERIFY_WITH_TIMEOUT(w.frames_drawn() > before, 5000);
      ++updates;
    }
    QVERIFY2(
        w.band_redraws() - bands0 >= updates,
        qPrintable(
            QString("%1 band redraws for %2 updates").arg(w.band_redraws() - bands0).arg(updates)));
    QVERIFY(!w.update_rows(n - 1, 2, whole.map.values.data()));  // past the last row
    QTest::qWait(200);
    const QImage rows_shot = w.grab();
    w.set_view(expect, /*keep_transform=*/true);
    const int f1 = w.frames_drawn();
    QTRY_VERIFY_WITH_TIMEOUT(w.frames_drawn() > f1, 5000);
    QTest::qWait(200);
    const QImage whole_shot = w.grab();
    moelab::test::maybe_save(rows_shot, "window_live_rows");
    const moelab::test::ImageDiff d = moelab::test::compare(rows_shot, whole_shot);
    QVERIFY2(d.max_diff == 0, qPrintable(QString("%1 pixels differ").arg(d.differing)));
  }

  void cleanupTestCase() {
    if (have_vulkan_ && !inst_.layers().isEmpty())
      QVERIFY2(g_validation_messages == 0, qPrintable(QString("%1 validation messages; last: %2")
                                                          .arg(g_validation_messages)
                                                          .arg(g_last_message)));
  }
};

QTEST_MAIN(ViewsWindowTest)
#include "test_views_window.moc"
