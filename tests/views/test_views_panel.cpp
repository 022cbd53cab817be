// ViewsPanel, the Qt charts and the gallery. ctest runs this binary twice: with
// QT_QPA_PLATFORM=offscreen (the panel must fall back to CPU-drawn heatmaps and say so) and under
// xvfb-run (the panel draws with Vulkan in an embedded QVulkanWindow, validation layer on and
// silent). Snapshots are published from a worker thread while the GUI renders.
#include <vulkan/vulkan.h>  // before Qt headers

#include <QApplication>
#include <QLabel>
#include <QListWidget>
#include <QSignalSpy>
#include <QToolTip>
#include <QtTest>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <thread>

#include "moelab/views/charts.h"
#include "moelab/views/synthetic.h"
#include "moelab/views/view_kinds.h"
#include "moelab/views/views_panel.h"
#include "view_test_util.h"

using namespace moelab::views;
using moelab::test::compare;
using moelab::test::ImageDiff;
using moelab::test::maybe_save;
using moelab::test::pixel;

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
std::atomic<int> g_vk_messages{0};
QString g_last_vk;
QtMessageHandler g_prev = nullptr;

void handler(QtMsgType t, const QMessageLogContext& c, const QString& m) {
  if (m.contains("vkDebug") || m.contains("Validation")) {
    ++g_vk_messages;
    g_last_vk = m;
  }
  if (g_prev) g_prev(t, c, m);
}

Rgba8 at(const QImage& img, int x, int y) {
  return pixel(img.convertToFormat(QImage::Format_RGBA8888), x, y);
}

bool offscreen() {
  return QGuiApplication::platformName() == "offscreen" ||
         QGuiApplication::platformName() == "minimal";
}

QString tag() {
  return offscreen() ? "cpu" : "vk";
}

// Distinct colours in an image (a rendered page is never a flat fill).
int colour_count(const QImage& img) {
  QSet<QRgb> s;
  for (int y = 0; y < img.height(); y += 3)
    for (int x = 0; x < img.width(); x += 3) s.insert(img.pixel(x, y));
  return static_cast<int>(s.size());
}
}  // namespace

class ViewsPanelTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() { g_prev = qInstallMessageHandler(handler); }

  void stats_have_known_values() {
    LatencySeries l;
    l.ms = {800, 20, 30, 10, 40};
    const LatencyStats ls = latency_stats(l);
    QCOMPARE(ls.ttft_ms, 800.0);
    QCOMPARE(ls.decode_mean_ms, 25.0);
    QCOMPARE(ls.decode_p50_ms, 20.0);  // nearest rank of {10, 20, 30, 40}
    QCOMPARE(ls.decode_p95_ms, 40.0);
    QCOMPARE(ls.decode_tokens_per_s, 40.0);

    PowerSeries p{{0.0, 1.0, 2.0}, {10.0, 20.0, 20.0}, "test", 7};
    const PowerStats ps = power_stats(p);
    QCOMPARE(ps.joules, 35.0);  // (10 + 20) / 2 * 1 + 20 * 1
    QCOMPARE(ps.duration_s, 2.0);
    QCOMPARE(ps.mean_watts, 17.5);
    QCOMPARE(ps.peak_watts, 20.0);

    // Head summary: 4 queries; row q puts 0.5 on key 0 and 0.5 on key q (row 0: all on key 0).
    AttentionMap a;
    a.n_query = a.n_key = 4;
    a.weight.assign(16, kNaN);
    for (int q = 0; q < 4; ++q) {
      for (int k = 0; k <= q; ++k) a.weight[static_cast<size_t>(q * 4 + k)] = 0.0f;
      a.weight[static_cast<size_t>(q * 4)] += q == 0 ? 1.0f : 0.5f;
      if (q > 0) a.weight[static_cast<size_t>(q * 4 + q)] += 0.5f;
    }
    a.head = 3;
    const HeadSummary h = summarize_head(a, 1, 2);
    QCOMPARE(h.head, 3);
    QCOMPARE(h.sink_share, 0.625f);   // (1 + 0.5 * 3) / 4
    QCOMPARE(h.local_share, 0.375f);  // key q is local
    QCOMPARE(h.distant_share, 0.0f);
    QCOMPARE(h.entropy_bits, 0.75f);  // rows 1..3 have 1 bit, row 0 has 0
  }

  void latency_chart_pixels() {
    LatencyChart c;
    c.resize(900, 560);
    const SyntheticRun run = synthetic_run(8, 40, 16, 2, 4, 3);
    c.set_series(run.latency);
    QVERIFY2(c.summary_text().startsWith("TTFT 950.0 ms | decode: mean"),
             qPrintable(c.summary_text()));
    const QImage img = c.grab().toImage();
    maybe_save(img, "latency_chart");
    // Token 0 (TTFT) bar: orange, cut at the top of the plot; token 5: blue.
    const int left = 70, width = 900 - 70 - 40;
    const double bw = static_cast<double>(width) / 40;
    const int ybottom = 40 + 6 + (560 - 40) * 11 / 20 - 46 - 3;
    QCOMPARE(at(img, left + static_cast<int>(bw / 2), ybottom), (Rgba8{240, 120, 20, 255}));
    QCOMPARE(at(img, left + static_cast<int>(5.5 * bw), ybottom), (Rgba8{31, 110, 200, 255}));
  }

  void power_chart_energy_and_no_sensor() {
    PowerChart c;
    c.resize(900, 480);
    // J/token is the run's decode figure carried in the series (the stored j_per_token), not
    // the trace's 35 J / 7 tokens = 5 J/token.
    c.set_series(PowerSeries{{0.0, 1.0, 2.0}, {10.0, 20.0, 20.0}, "test sensor", 7, 4.25});
    QVERIFY(c.has_sensor());
    QCOMPARE(c.summary_text(),
             QString("energy 35.0 J over 2.00 s | mean 17.5 W, peak 20.0 W | 4.250 J/token "
                     "(decode) | 7 tokens"));
    // While the run streams there is no decode J/token yet, and none is made up.
    c.set_series(PowerSeries{{0.0, 1.0, 2.0}, {10.0, 20.0, 20.0}, "test sensor", 7});
    QCOMPARE(c.summary_text(),
             QString("energy 35.0 J over 2.00 s | mean 17.5 W, peak 20.0 W | J/token (decode): "
                     "none (run still streaming, or no decode token) | 7 tokens"));
    // A run stored with its J/token but no trace shows that figure and no watts.
    c.set_series(PowerSeries{{}, {}, "this run has no energy measurements", 5, 0.5});
    QVERIFY(!c.has_sensor());
    QCOMPARE(c.summary_text(),
             QString("no power trace: this run has no energy measurements | 0.500 J/token "
                     "(decode)"));
    c.set_series(PowerSeries{{0.0, 1.0, 2.0}, {10.0, 20.0, 20.0}, "test sensor", 7, 4.25});
    const QImage img = c.grab().toImage();
    maybe_save(img, "power_chart");
    // Under the curve (shaded energy area) the colour is the blue fill over the background.
    const Rgba8 fill = at(img, 450, 480 - 46 - 5);
    QVERIFY2(fill.b > fill.r + 40, qPrintable(moelab::test::describe(fill)));
    c.set_series(PowerSeries{{}, {}, "no readable RAPL counter", 0});
    QVERIFY(!c.has_sensor());
    QCOMPARE(c.summary_text(), QString("no sensor on this machine: no readable RAPL counter"));
    const QImage none = c.grab().toImage();
    maybe_save(none, "power_no_sensor");
    QCOMPARE(at(none, 450, 60), (Rgba8{240, 120, 20, 255}));  // the panel's frame
  }

  // A heatmap's tooltip names the cell under the mouse and goes as soon as the mouse is off
  // the cells (onto an axis or the legend) or leaves the view.
  void heatmap_tooltip_follows_and_vanishes() {
    CpuHeatmapWidget w;
    w.resize(640, 400);
    ExpertLoad l{2, 4, {0.1f, 0.2f, 0.3f, 0.4f, 0.4f, 0.3f, 0.2f, 0.1f}};
    w.set_view(expert_load_view(l));
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    const QRect plot = w.plot_rect();
    QVERIFY(plot.width() > 8 && plot.height() > 4);
    // The centre of cell (row 1, col 2) once the map is fitted into the plot.
    const QPoint cell(plot.x() + plot.width() * 5 / 8, plot.y() + plot.height() * 3 / 4);
    QTest::mouseMove(&w, cell);
    QTRY_VERIFY_WITH_TIMEOUT(!w.hover_text().isEmpty(), 2000);
    QVERIFY2(w.hover_text().contains("0.2"), qPrintable(w.hover_text()));
    QVERIFY(QToolTip::isVisible());
    QCOMPARE(QToolTip::text(), w.hover_text());
    QTest::mouseMove(&w, QPoint(plot.x() - 4, plot.center().y()));  // onto the y axis
    QTRY_VERIFY_WITH_TIMEOUT(w.hover_text().isEmpty(), 2000);
    QTRY_VERIFY_WITH_TIMEOUT(!QToolTip::isVisible(), 2000);
    QTest::mouseMove(&w, cell);
    QTRY_VERIFY_WITH_TIMEOUT(QToolTip::isVisible(), 2000);
    QEvent leave(QEvent::Leave);
    QCoreApplication::sendEvent(&w, &leave);
    QVERIFY(w.hover_text().isEmpty());
    QTRY_VERIFY_WITH_TIMEOUT(!QToolTip::isVisible(), 2000);
  }

  // Every resize (window, dock, splitter) refits the whole map: after growing and shrinking,
  // the plot's left edge is expert 0 and its right edge the last expert (not experts 0-4 only).
  void heatmap_refits_on_every_resize() {
    CpuHeatmapWidget w;
    ExpertLoad l{2, 32, std::vector<float>(64)};
    for (size_t i = 0; i < l.load.size(); ++i) l.load[i] = static_cast<float>(i % 32) / 32.0f;
    w.resize(300, 260);
    w.set_view(expert_load_view(l));
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    for (const QSize size : {QSize(900, 400), QSize(420, 300), QSize(1200, 500)}) {
      w.resize(size);
      QTRY_COMPARE_WITH_TIMEOUT(w.size(), size, 2000);
      QCoreApplication::processEvents();
      const QRect plot = w.plot_rect();
      const int y = plot.height() / 2;
      QCOMPARE(w.transform().cell_at(1, y).x, 0);
      QCOMPARE(w.transform().cell_at(plot.width() - 2, y).x, 31);
    }
  }

  void head_strip_pixels() {
    HeadStrip s;
    s.resize(600, 120);
    AttentionHeads h;
    h.layer = 5;
    h.heads = {{0, 0.5f, 1.0f, 0.0f, 0.0f}, {1, 3.0f, 0.0f, 0.0f, 1.0f}};
    s.set_heads(h);
    const QImage img = s.grab().toImage();
    maybe_save(img, "head_strip");
    const int cw = (600 - 70 - 190) / 2;
    // Head 0: all sink (red); head 1: all distant (blue), near the bottom of each column.
    QCOMPARE(at(img, 70 + cw / 2, 120 - 18 - 5), HeadStrip::share_color(0));
    QCOMPARE(at(img, 70 + cw + cw / 2, 120 - 18 - 5), HeadStrip::share_color(2));
  }

  void panel_live_publishing() {
    ViewsPanel::Options o;
    o.validation = true;
    ViewsPanel panel(o);
    panel.resize(1100, 720);
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));
    qInfo("backend: %s", qPrintable(panel.backendText()));
    if (!offscreen() && panel.usesVulkan())
      QVERIFY2(panel.backendText().startsWith("Vulkan: "), qPrintable(panel.backendText()));
    if (offscreen()) {
      QVERIFY(!panel.usesVulkan());
      QVERIFY2(panel.backendText().startsWith("no Vulkan device: views drawn on the CPU ("),
               qPrintable(panel.backendText()));
    }
    QCOMPARE(panel.shownSequence(ViewsPanel::Page::kRouting), 0u);

    // A worker publishes 150 growing routing grids and attention maps as fast as it can while
    // the GUI thread keeps rendering; then the last one must be on screen.
    const SyntheticRun run = synthetic_run(16, 150, 64, 4, 8, 5);
    std::atomic<uint64_t> last_routing{0};
    std::atomic<bool> done{false};
    std::thread worker([&] {
      for (int n = 1; n <= 150; ++n) {
        RoutingGrid g = run.routing;
        g.n_tokens = n;
        g.top_expert.clear();
        g.active_count.clear();
        for (int l = 0; l < g.n_layer; ++l)
          for (int t = 0; t < n; ++t) {
            g.top_expert.push_back(run.routing.top_expert[static_cast<size_t>(l * 150 + t)]);
            g.active_count.push_back(run.routing.active_count[static_cast<size_t>(l * 150 + t)]);
          }
        g.token_text.resize(static_cast<size_t>(n));
        last_routing = panel.publish(std::move(g));
        panel.publish(run.attention);
        if (n % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      done = true;
    });
    int frames = 0;
    while (!done) {
      QCoreApplication::processEvents(QEventLoop::AllEvents, 5);
      ++frames;
    }
    worker.join();
    QTRY_COMPARE_WITH_TIMEOUT(panel.shownSequence(ViewsPanel::Page::kRouting),
                              static_cast<uint64_t>(last_routing), 5000);
    QTest::qWait(200);
    maybe_save(panel.grabPage(), "panel_routing_" + tag());

    // Every page shows its newest snapshot after a switch.
    panel.publish(run.load);
    panel.publishBaseline(run.load_b);
    panel.publish(run.coactivation);
    panel.publish(run.heads);
    panel.publish(run.latency);
    const uint64_t last_power = panel.publish(run.power);
    QSignalSpy pages(&panel, &ViewsPanel::pageChanged);
    const char* names[] = {"routing", "load", "coactivation", "attention", "latency", "power"};
    for (int i = 0; i < ViewsPanel::kPageCount; ++i) {
      panel.setPage(static_cast<ViewsPanel::Page>(i));
      QTRY_VERIFY_WITH_TIMEOUT(panel.shownSequence(static_cast<ViewsPanel::Page>(i)) > 0, 5000);
      QTest::qWait(150);
      const QImage shot = panel.grabPage();
      QVERIFY(!shot.isNull());
      QVERIFY2(colour_count(shot) > 8, names[i]);
      maybe_save(shot, QString("panel_%1_%2").arg(names[i], tag()));
    }
    QCOMPARE(pages.count(), ViewsPanel::kPageCount - 1);  // starts on Routing
    QCOMPARE(panel.shownSequence(ViewsPanel::Page::kPower), last_power);
    panel.setPage(ViewsPanel::Page::kExpertLoad);
    panel.setDiffMode(true);
    QTest::qWait(150);
    maybe_save(panel.grabPage(), "panel_load_diff_" + tag());

    // Query selection on the attention page: the signal carries that query's key weights.
    panel.setDiffMode(false);
    panel.setPage(ViewsPanel::Page::kAttention);
    QSignalSpy sel(&panel, &ViewsPanel::querySelected);
    panel.selectQuery(20);
    QCOMPARE(sel.count(), 1);
    QCOMPARE(sel.at(0).at(0).toInt(), 20);
    const auto w = sel.at(0).at(1).value<QList<float>>();
    QCOMPARE(w.size(), run.attention.n_key);
    QCOMPARE(w[3], run.attention.weight[20 * static_cast<size_t>(run.attention.n_key) + 3]);
    QVERIFY(std::isnan(w[21]));  // causal mask
    QCOMPARE(panel.selectedQuery(), 20);
    if (auto* cpu = panel.findChild<CpuHeatmapWidget*>()) {  // click a row (CPU path)
      QCOMPARE(cpu->selected_row(), 20);
      QTRY_COMPARE(cpu->transform().zoom.y, static_cast<float>(cpu->plot_rect().height()) / 150);
      const QRect plot = cpu->plot_rect();
      const glm::vec4 p = cpu->transform().view_matrix() * glm::vec4(2.5f, 30.5f, 0, 1);
      QTest::mouseMove(cpu,
                       QPoint(plot.x() + static_cast<int>(p.x), plot.y() + static_cast<int>(p.y)));
      QVERIFY2(cpu->hover_text().startsWith("query token 30 '"), qPrintable(cpu->hover_text()));
      QVERIFY2(cpu->hover_text().contains("key token 2 '"), qPrintable(cpu->hover_text()));
      QTest::mouseClick(cpu, Qt::LeftButton, {},
                        QPoint(plot.x() + static_cast<int>(p.x), plot.y() + static_cast<int>(p.y)));
      QCOMPARE(sel.count(), 2);
      QCOMPARE(sel.at(1).at(0).toInt(), 30);
    }
    QTest::qWait(150);
    maybe_save(panel.grabPage(), "panel_attention_selected_" + tag());
  }

  void live_attention_rows() {
    // A live map published once with room for every token (rows not made yet are NaN), then
    // one row per generated token: the page shows the rows in place (no whole-map upload), with
    // the tokens' text, and the picture equals that of the whole map published at once.
    ViewsPanel::Options o;
    o.validation = true;
    ViewsPanel panel(o);
    panel.resize(900, 640);
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));
    panel.setPage(ViewsPanel::Page::kAttention);
    const int n = 40, prompt = 10;
    const AttentionMap full = synthetic_attention(n, 3);
    AttentionMap live = full;
    live.layer = 2;
    live.head = 1;
    for (int q = prompt; q < n; ++q) {
      std::fill_n(live.weight.begin() + q * n, n, std::numeric_limits<float>::quiet_NaN());
      live.query_text[static_cast<size_t>(q)] = live.key_text[static_cast<size_t>(q)] = "";
    }
    const uint64_t first = panel.publish(live);
    QTRY_COMPARE_WITH_TIMEOUT(panel.shownSequence(ViewsPanel::Page::kAttention), first, 5000);
    uint64_t last = 0;
    for (int q = prompt; q < n; ++q) {
      AttentionRows r;
      r.layer = 2;
      r.head = 1;
      r.first_query = q;
      r.n_key = n;
      r.weight.assign(full.weight.begin() + q * n, full.weight.begin() + (q + 1) * n);
      r.token_text = {full.query_text[static_cast<size_t>(q)]};
      last = panel.publish(std::move(r));
      QVERIFY(last > 0);
      if (q % 7 == 0) QTest::qWait(40);  // some rows on screen one by one, some merged
    }
    QTRY_COMPARE_WITH_TIMEOUT(panel.shownSequence(ViewsPanel::Page::kAttention), last, 5000);
    const auto snap = panel.attentionSnapshot();
    QVERIFY(snap.has_value());
    QCOMPARE(snap->n_query, n);
    for (size_t i = 0; i < full.weight.size(); ++i)
      QVERIFY((std::isnan(snap->weight[i]) && std::isnan(full.weight[i])) ||
              snap->weight[i] == full.weight[i]);
    QCOMPARE(snap->query_text, full.query_text);
    QCOMPARE(snap->key_text, full.key_text);
    // Selecting a live row gives its weights (the shown map was updated in place too).
    QSignalSpy sel(&panel, &ViewsPanel::querySelected);
    panel.selectQuery(30);
    QCOMPARE(sel.count(), 1);
    const auto w = sel.at(0).at(1).value<QList<float>>();
    QCOMPARE(w[5], full.weight[30 * n + 5]);
    if (auto* cpu = panel.findChild<CpuHeatmapWidget*>()) {
      QCOMPARE(cpu->view().y_ticks[30], full.query_text[30]);
      QCOMPARE(cpu->view().x_ticks[30], full.key_text[30]);
    }
    QTest::qWait(150);
    const QImage rows_shot = panel.grabPage();
    // Rows that do not fit the map on screen are refused (the caller publishes a whole map).
    AttentionRows other{3, 1, 0, n, std::vector<float>(static_cast<size_t>(n), 0.5f), {}};
    QCOMPARE(panel.publish(std::move(other)), 0u);
    AttentionRows past{2, 1, n - 1, n, std::vector<float>(2 * static_cast<size_t>(n), 0.5f), {}};
    QCOMPARE(panel.publish(std::move(past)), 0u);
    // The same map published whole draws the same picture.
    AttentionMap whole = full;
    whole.layer = 2;
    whole.head = 1;
    const uint64_t w_seq = panel.publish(std::move(whole));
    QTRY_COMPARE_WITH_TIMEOUT(panel.shownSequence(ViewsPanel::Page::kAttention), w_seq, 5000);
    QTest::qWait(150);
    const QImage whole_shot = panel.grabPage();
    maybe_save(rows_shot, "panel_attention_rows_" + tag());
    QCOMPARE(rows_shot.size(), whole_shot.size());
    const ImageDiff d = compare(rows_shot, whole_shot);
    QVERIFY2(d.max_diff == 0, qPrintable(QString("%1 pixels differ").arg(d.differing)));
  }

  // The selected token on every page (setTokenMark): routing column, attention crosshair,
  // expert-load cells, co-activation diagonal of the shown layer, latency bar; drawn (the page
  // picture changes), and a latency-bar click or an expert-list link names its token.
  void token_marks_on_every_page() {
    ViewsPanel::Options o;
    o.validation = true;
    ViewsPanel panel(o);
    panel.resize(1100, 720);
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));
    const SyntheticRun run = synthetic_run(6, 40, 16, 2, 4, 9);
    panel.publish(run.routing);
    panel.publish(run.load);
    panel.publish(run.coactivation);
    panel.publish(run.attention);
    panel.publish(run.latency);
    const int cl = run.coactivation.layer;
    using Cells = std::vector<std::pair<int, int>>;
    ViewsPanel::TokenMark mark;
    mark.token = 7;
    mark.attention_row = 9;
    mark.attention_col = 9;
    mark.experts = {{0, 3}, {0, 5}, {cl, 2}, {cl, 11}};
    const std::pair<ViewsPanel::Page, ViewsPanel::SurfaceMarks> want[] = {
        {ViewsPanel::Page::kRouting, {-1, 7, {}}},
        {ViewsPanel::Page::kExpertLoad, {-1, -1, mark.experts}},
        {ViewsPanel::Page::kCoActivation, {-1, -1, Cells{{2, 2}, {11, 11}}}},
        {ViewsPanel::Page::kAttention, {9, 9, {}}},
    };
    for (const auto& [page, marks] : want) {
      panel.setTokenMark({});
      panel.setPage(page);
      QTRY_VERIFY_WITH_TIMEOUT(panel.shownSequence(page) > 0, 5000);
      QTest::qWait(100);
      const QImage before = panel.grabPage();
      panel.setTokenMark(mark);
      QTest::qWait(100);
      const ViewsPanel::SurfaceMarks got = panel.heatmapMarks();
      QCOMPARE(got.row, marks.row);
      QCOMPARE(got.col, marks.col);
      QCOMPARE(got.cells, marks.cells);
      const QImage after = panel.grabPage();
      QVERIFY2(before != after, "the mark is not drawn");
      maybe_save(after, QString("token_mark_%1_%2").arg(int(page)).arg(tag()));
    }
    QCOMPARE(panel.latencyMarkedToken(), 7);
    panel.setPage(ViewsPanel::Page::kLatency);
    QTRY_VERIFY_WITH_TIMEOUT(panel.shownSequence(ViewsPanel::Page::kLatency) > 0, 5000);
    panel.grabPage();
    QSignalSpy picked(&panel, &ViewsPanel::tokenActivated);
    QSignalSpy cleared(&panel, &ViewsPanel::backgroundClicked);
    const QRect bar = panel.latencyBarRect(12);
    QVERIFY(!bar.isEmpty());
    QWidget* chart = panel.childAt(bar.center());
    QVERIFY(chart);
    QTest::mouseClick(chart, Qt::LeftButton, {}, chart->mapFrom(&panel, bar.center()));
    QCOMPARE(picked.count(), 1);
    QCOMPARE(picked.at(0).at(0).toInt(), 12);
    // The expert-token list: plain text for tests and tooltips, a link per token.
    panel.setExpertTokenList("layer 0, expert 3: 2 tokens", {{4, "a<b"}, {9, "c"}}, true);
    QCOMPARE(panel.expertTokensText(), QString("layer 0, expert 3: 2 tokens: #4 'a<b', #9 'c', …"));
    auto* line = panel.findChild<QLabel*>("views_expert_tokens");
    QVERIFY(line && line->text().contains("href=\"token:9\"") && line->text().contains("a&lt;b"));
    QVERIFY(QMetaObject::invokeMethod(line, "linkActivated", Q_ARG(QString, "token:9")));
    QCOMPARE(picked.count(), 2);
    QCOMPARE(picked.at(1).at(0).toInt(), 9);
    // clear() drops the mark with the data.
    panel.clear();
    QCOMPARE(panel.tokenMark().token, -1);
    QCOMPARE(panel.latencyMarkedToken(), -1);
    QCOMPARE(cleared.count(), 0);
  }

  void gallery_renders_every_page() {
    QWidget* g = showGallery(nullptr);
    QVERIFY(g);
    auto* list = g->findChild<QListWidget*>("gallery_list");
    auto* panel = g->findChild<ViewsPanel*>("gallery_panel");
    auto* expl = g->findChild<QLabel*>("gallery_explanation");
    QVERIFY(list && panel && expl);
    QVERIFY(list->count() >= 11);
    QVERIFY(QTest::qWaitForWindowExposed(g));
    for (int i = 0; i < list->count(); ++i) {
      list->setCurrentRow(i);
      QTRY_VERIFY_WITH_TIMEOUT(panel->shownSequence(panel->page()) > 0, 5000);
      QTest::qWait(150);
      QVERIFY2(expl->text().contains(list->item(i)->text()), qPrintable(expl->text()));
      const QImage shot = panel->grabPage();
      QVERIFY2(colour_count(shot) > 8, qPrintable(list->item(i)->text()));
      maybe_save(shot, QString("gallery_%1_%2").arg(i, 2, 10, QChar('0')).arg(tag()));
    }
    maybe_save(g->grab().toImage(), "gallery_dialog_" + tag());
    g->close();
    QCoreApplication::processEvents();
  }

  void cleanupTestCase() {
    QCoreApplication::processEvents();
    QVERIFY2(g_vk_messages == 0, qPrintable(QString("%1 Vulkan validation messages; last: %2")
                                                .arg(g_vk_messages.load())
                                                .arg(g_last_vk)));
  }
};

QTEST_MAIN(ViewsPanelTest)
#include "test_views_panel.moc"
