// With no Vulkan ICD at all (ctest points VK_ICD_FILENAMES at a missing file), the renderer
// reports "no Vulkan device: views drawn on the CPU" and draws the same picture on the CPU.
#include <QtTest>

#include "moelab/views/renderer.h"
#include "view_test_util.h"

using namespace moelab::views;

class ViewsNoDeviceTest : public QObject {
  Q_OBJECT
 private slots:
  void falls_back_to_cpu() {
    HeatmapRenderer r({.validation = false});
    QCOMPARE(r.backend(), Backend::kCpu);
    QVERIFY2(r.status_text().rfind("no Vulkan device: views drawn on the CPU", 0) == 0,
             r.status_text().c_str());
    Heatmap m{1, 2, {0.0f, 1.0f}};
    r.set_data(m);
    const QImage img = r.render(ColorScale{}, ViewTransform::fit(1, 2, 20, 10), 20, 10);
    const auto seq = colormap_table(Colormap::kSequential);
    QCOMPARE(moelab::test::pixel(img, 2, 5), seq.front());
    QCOMPARE(moelab::test::pixel(img, 17, 5), seq.back());
  }
};

QTEST_GUILESS_MAIN(ViewsNoDeviceTest)
#include "test_views_no_device.moc"
