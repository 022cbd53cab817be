// The lab end to end (issue 16): a run made in the Run panel reaches every view (routing grid,
// expert load as share and as count, co-activation, prompt attention with token text, latency per
// token and per layer / op, power) while it streams and after it ends; the values on the pages
// equal what the store holds for that run (computed here independently from the store's
// records); a stored run opens in every view on selection, also after the app is reopened on
// the same database; the Output pane keeps the run that ran (finished or stopped) until the user
// selects another; a file that fails to load leaves the loaded model usable. Offscreen platform
// (the views draw on the CPU; the data checked is what the Vulkan path draws as well).
#include <QAction>
#include <QClipboard>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QImage>
#include <QMenu>
#include <QMimeData>
#include <QScreen>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTableWidget>
#include <QtTest>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cli.h"
#include "drop_zone.h"
#include "gui_test_support.h"
#include "main_window.h"
#include "moelab/compare/compare.h"
#include "moelab/model/model.h"
#include "moelab/report/report.h"
#include "moelab/storage/store.h"
#include "moelab/storage/writer.h"
#include "settings.h"
#include "test_support.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "moelab/views/view_kinds.h"
#include "moelab/views/views_panel.h"
#include "run_feed.h"
#include "run_views.h"
#endif

namespace st = moelab::storage;

namespace {
const char* kMoe = "fixtures/models/mixtral-moe/mixtral-moe.F32.gguf";
const char* kBad = "cases/gguf/g02_bad_magic_html.gguf";

QString fixture(const char* rel) {
  return QString::fromStdString(moelab::test::shared_path(rel));
}

void drop(QWidget* target, const QString& path) {
  moelab::test::drop_urls(target, {QUrl::fromLocalFile(path)});
}

// WCAG 2 contrast ratio of two colours (relative luminance of sRGB).
double contrast(const QColor& x, const QColor& y) {
  auto lum = [](const QColor& c) {
    auto ch = [](double v) {
      return v <= 0.03928 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * ch(c.redF()) + 0.7152 * ch(c.greenF()) + 0.0722 * ch(c.blueF());
  };
  const double a = lum(x), b = lum(y);
  return (std::max(a, b) + 0.05) / (std::min(a, b) + 0.05);
}

size_t at(int row, int col, int cols) {
  return size_t(row) * size_t(cols) + size_t(col);
}
}  // namespace

class TestGuiViews : public QObject {
  Q_OBJECT
  QString dir_;

  MainWindow::Options opts(const QString& name, bool fresh) {
    MainWindow::Options o;
    o.dbPath = dir_ + "/" + name + ".db";
    if (fresh) QFile::remove(o.dbPath);
    o.restoreLayout = false;
    o.session = "views " + name;
    return o;
  }
  bool loadMoe(MainWindow& w) {
    QSignalSpy ready(&w, &MainWindow::modelReady);
    drop(&w, fixture(kMoe));
    return ready.wait(20000) && w.modelLoaded();
  }
  void setRun(MainWindow& w, const QString& prompt, int maxTokens) {
    const bool longRun = maxTokens > 1000;
    w.runPanel()->ignoreEosBox()->setChecked(longRun);
    w.runPanel()->contextBox()->setValue(longRun ? 65536 : 0);
    w.runPanel()->promptEdit()->setPlainText(prompt);
    w.runPanel()->maxTokensBox()->setValue(maxTokens);
    w.runPanel()->temperatureBox()->setValue(0.8);
    w.runPanel()->fixedSeedBox()->setChecked(true);
    w.runPanel()->seedBox()->setValue(11);
    w.runPanel()->threadsBox()->setValue(1);
  }

#ifdef MOELAB_HAVE_VIEWS_PANEL
  // Every view of `w` holds run `id` as `store` has it. Expected values are computed here from
  // the store's records, not through RunViewData.
  void checkViewsShowStoredRun(MainWindow& w, const st::Store& store, qint64 id) {
    using moelab::views::ViewsPanel;
    ViewsPanel* vp = w.viewsPanel();
    QVERIFY(vp);
    QCOMPARE(w.viewsRun(), id);
    QVERIFY2(vp->runLabel().contains(QString("run #%1").arg(id)), qPrintable(vp->runLabel()));
    const auto run = store.run(id);
    QVERIFY(run);
    const auto cfg = nlohmann::json::parse(run->config_json);
    const int nLayer = cfg["model"]["n_layer"].get<int>();
    const int nExp = cfg["model"]["expert_count"].get<int>();
    const auto toks = store.tokens(id);
    const auto routing = store.routing(id);
    const int n = int(toks.size());
    QVERIFY(n > 0);
    QCOMPARE(routing.size(), size_t(n) * size_t(nLayer));

    // Routing grid: top expert and active count per (layer, token), token text.
    const auto g = vp->routingSnapshot();
    QVERIFY2(g, "Routing: waiting for data");
    QCOMPARE(g->n_layer, nLayer);
    QCOMPARE(g->n_tokens, n);
    QCOMPARE(g->expert_count, nExp);
    for (const auto& r : routing) {
      QCOMPARE(g->top_expert[at(r.layer, int(r.position), n)], int32_t(r.experts.front()));
      QCOMPARE(g->active_count[at(r.layer, int(r.position), n)], int32_t(r.experts.size()));
    }
    for (int t = 0; t < n; ++t) QCOMPARE(g->token_text[size_t(t)], toks[size_t(t)].piece);
    // Router confidence (probability, margin top1 - top2, entropy) from the stored router
    // probabilities, the colours of the Routing page's "colour:" box.
    bool probs = false;
    for (const auto& r : routing) probs = probs || !r.probs.empty();
    QCOMPARE(g->top_prob.size(), probs ? size_t(n) * size_t(nLayer) : size_t(0));
    for (const auto& r : routing) {
      if (r.probs.empty()) continue;
      const auto c = moelab::views::router_confidence(r.probs);
      const size_t i = at(r.layer, int(r.position), n);
      QCOMPARE(g->top_prob[i], c.top_prob);
      QCOMPARE(g->margin[i], c.margin);
      QCOMPARE(g->entropy[i], c.entropy);
      QVERIFY(c.top_prob > 0 && c.top_prob <= 1 && c.margin >= 0 && c.entropy >= 0);
    }

    // Expert load: counts and shares of each layer's selections (a row sums to 1).
    std::vector<double> count(size_t(nLayer) * size_t(nExp), 0.0), total(size_t(nLayer), 0.0);
    for (const auto& r : routing)
      for (uint16_t e : r.experts) count[at(r.layer, e, nExp)] += 1, total[size_t(r.layer)] += 1;
    const bool counts = vp->expertLoadCounts();
    const auto l = vp->expertLoadSnapshot();
    QVERIFY2(l, "Expert load: waiting for data");
    QCOMPARE(l->n_layer, nLayer);
    QCOMPARE(l->expert_count, nExp);
    QCOMPARE(l->unit, std::string(counts ? "tokens" : "share of tokens"));
    for (int layer = 0; layer < nLayer; ++layer)
      for (int e = 0; e < nExp; ++e) {
        const double want =
            counts ? count[at(layer, e, nExp)] : count[at(layer, e, nExp)] / total[size_t(layer)];
        QCOMPARE(l->load[at(layer, e, nExp)], float(want));
      }

    // Co-activation of the layer the picker shows.
    const auto c = vp->coActivationSnapshot();
    QVERIFY2(c, "Co-activation: waiting for data");
    QCOMPARE(c->layer, vp->coActivationLayer());
    QCOMPARE(c->expert_count, nExp);
    std::vector<float> co(size_t(nExp) * size_t(nExp), 0.f);
    for (const auto& r : routing) {
      if (r.layer != c->layer) continue;
      const std::set<uint16_t> u(r.experts.begin(), r.experts.end());
      for (uint16_t i : u)
        for (uint16_t j : u) co[at(i, j, nExp)] += 1;
    }
    QCOMPARE(c->count, co);

    // Attention of the picked layer and head (or the mean of heads) over the prompt's and the
    // generated tokens' positions: row q < P from the stored prompt snapshot (every head,
    // [n_head, P, P]), row P + i - 1 from the decode step of token i ([n_head, 1, P + i]);
    // masked above the diagonal; token text on both axes (generated tokens as stored).
    const auto a = vp->attentionSnapshot();
    QVERIFY2(a, "Attention: waiting for data");
    QCOMPARE(a->layer, vp->attentionLayer());
    QCOMPARE(a->head, vp->attentionHead());
    const auto snaps = store.attention(id);
    const st::AttentionSnapshot* prompt = nullptr;
    std::map<int64_t, const st::AttentionSnapshot*> stepRows;
    for (const auto& s : snaps)
      if (s.layer == a->layer && s.head == st::kAttentionAllHeads)
        (s.position == 0 ? prompt : stepRows[s.position]) = &s;
    QVERIFY2(prompt, "no per-head attention stored");
    const int nHead = int(prompt->shape[0]), P = int(prompt->shape[2]);
    QCOMPARE(vp->attentionHeadCount(), nHead);
    QCOMPARE(int(stepRows.size()), n - 1);  // every decode step, in the budget
    QCOMPARE(a->n_query, P + n - 1);
    QCOMPARE(a->n_key, a->n_query);
    QCOMPARE(a->key_text.size(), size_t(a->n_key));
    QCOMPARE(a->query_text, a->key_text);
    for (int i = 0; i + 1 < n; ++i) QCOMPARE(a->key_text[size_t(P + i)], toks[size_t(i)].piece);
    auto stored = [&](int q, int k, int h) -> float {
      if (q < P) return prompt->data[(size_t(h) * P + size_t(q)) * P + size_t(k)];
      const auto* r = stepRows.at(q - P + 1);
      return r->data[size_t(h) * size_t(r->shape[2]) + size_t(k)];
    };
    for (int q = 0; q < a->n_query; ++q)
      for (int k = 0; k < a->n_key; ++k) {
        const float got = a->weight[at(q, k, a->n_key)];
        if (k > q) {
          QVERIFY(std::isnan(got));
        } else if (a->head >= 0) {
          QCOMPARE(got, stored(q, k, a->head));
        } else {
          double m = 0;
          for (int h = 0; h < nHead; ++h) m += stored(q, k, h);
          QVERIFY(std::fabs(got - m / nHead) <= 1e-6);
        }
      }

    // Latency per token (ms) as stored; TTFT = token 0.
    const auto lat = vp->latencySnapshot();
    QVERIFY2(lat, "Latency: waiting for data");
    QCOMPARE(lat->ms.size(), size_t(n));
    for (int t = 0; t < n; ++t)
      QCOMPARE(lat->ms[size_t(t)], double(toks[size_t(t)].latency_us) / 1000.0);
    QCOMPARE(lat->ttft_ms, lat->ms.front());
    // Per layer / op breakdown (mean ms per decode step) from the run's stored
    // "decode_op_us.*" metrics: every cell equals the stored µs / 1000 / steps, absent cells 0.
    {
      std::map<std::string, double> us;
      double steps = 0;
      for (const auto& m : store.metrics(id))
        if (m.key == "decode_op_us.steps")
          steps = m.value;
        else if (m.key.starts_with("decode_op_us."))
          us[m.key.substr(13)] = m.value;
      if (steps > 0) {
        QCOMPARE(lat->rows.size(), size_t(nLayer + 1));
        QCOMPARE(lat->parts.size(), size_t(6));
        QCOMPARE(lat->part_ms.size(), lat->rows.size() * lat->parts.size());
        QVERIFY(!us.empty());
        for (int r = 0; r <= nLayer; ++r)
          for (int k = 0; k < 6; ++k) {
            const std::string row = r < nLayer ? "L" + std::to_string(r) : std::string("other");
            QCOMPARE(lat->parts[size_t(k)], std::string(moelab::op_kind_name(moelab::OpKind(k))));
            const auto it = us.find(row + "." + lat->parts[size_t(k)]);
            const double want = it == us.end() ? 0.0 : it->second / 1000.0 / steps;
            QCOMPARE(lat->part_ms[at(r, k, 6)], want);
          }
      } else {
        QVERIFY(us.empty());
      }
    }

    // Power: this machine's meter is replaced by no sensor or a still counter; the page names
    // why there is no curve, or shows the stored per-token energy.
    const auto p = vp->powerSnapshot();
    QVERIFY2(p, "Power: waiting for data");
    bool anyEnergy = false;
    for (const auto& t : toks) anyEnergy |= t.energy_uj.has_value() && t.latency_us > 0;
    QCOMPARE(!p->watts.empty(), anyEnergy);
    if (!anyEnergy) QVERIFY(!p->sensor.empty());
  }
#endif

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    dir_ = moelab::test::temp_dir("gui_views");
    qputenv("XDG_DATA_HOME", (dir_ + "/xdg").toUtf8());
    qputenv("MOELAB_POWERCAP_ROOT", (dir_ + "/no-powercap").toUtf8());
    QCoreApplication::setOrganizationName("moelab-test");
    QCoreApplication::setApplicationName("moelab-test-views");
    QSettings().clear();
  }

  void runFeedsEveryViewLiveAndStored() {
#ifndef MOELAB_HAVE_VIEWS_PANEL
    QSKIP("this build has no views panel");
#else
    MOELAB_REQUIRE_SHARED(kMoe);
    qint64 stopped = 0, complete = 0;
    {
      MainWindow w(opts("e2e", true));
      w.show();
      QVERIFY(loadMoe(w));
      auto* vp = w.viewsPanel();
      // A routing policy that does not fit the model is flagged when chosen, not at run.
      w.runPanel()->routingBox()->setCurrentText("k:99");
      QVERIFY2(w.runPanel()->policyProblem().contains("k:99"),
               qPrintable(w.runPanel()->policyProblem()));
      w.runPanel()->routingBox()->setCurrentText("default");
      QVERIFY(w.runPanel()->policyProblem().isEmpty());

      // 1. A long run: while it streams, every routing view and the latency page have the live
      // run's data and the label says which run that is; then Stop.
      setRun(w, "Once upon a time there was", 100000);
      QSignalSpy finished(&w, &MainWindow::runFinished);
      QTest::mouseClick(w.runPanel()->runButton(), Qt::LeftButton);
      QTRY_VERIFY_WITH_TIMEOUT(
          !w.runController()->running() ||
              (w.viewsRun() > 0 && vp->routingSnapshot() && vp->routingSnapshot()->n_tokens >= 8),
          60000);
      QVERIFY2(w.runController()->running(), "the run ended before the live check");
      const qint64 live = w.viewsRun();
      QVERIFY2(
          vp->runLabel().contains(QString("run #%1").arg(live)) && vp->runLabel().contains("live"),
          qPrintable(vp->runLabel()));
      QVERIFY(vp->expertLoadSnapshot() && vp->expertLoadSnapshot()->n_layer > 0);
      QVERIFY(vp->coActivationSnapshot() && vp->coActivationSnapshot()->expert_count > 0);
      QVERIFY2(vp->attentionSnapshot(), "the prompt attention is not shown while running");
      // Live rows: the generated tokens' attention rows are written into the map on screen as
      // they stream (the map has room to grow; rows not made yet are NaN). The prompt has
      // fewer than 16 tokens, so 16 filled rows include decode rows.
      QTRY_VERIFY_WITH_TIMEOUT(
          [&] {
            const auto a = vp->attentionSnapshot();
            if (!a) return false;
            int filled = 0;
            for (int q = 0; q < a->n_query; ++q)
              filled += std::isnan(a->weight[at(q, 0, a->n_key)]) ? 0 : 1;
            return filled >= 16 && a->n_query > filled;
          }(),
          30000);
      QVERIFY(vp->latencySnapshot() && vp->latencySnapshot()->ms.size() >= 8);
      // The live latency has the per layer / op breakdown the header promises.
      QTRY_VERIFY_WITH_TIMEOUT(!vp->latencySnapshot()->rows.empty(), 20000);
      QTest::mouseClick(w.runPanel()->stopButton(), Qt::LeftButton);
      QVERIFY(finished.wait(30000));
      stopped = finished.at(0).at(0).toLongLong();
      QCOMPARE(stopped, live);
      st::Store* s = w.store();
      QCOMPARE(s->run(stopped)->status, st::RunStatus::Cancelled);
      checkViewsShowStoredRun(w, *s, stopped);
      const auto lat = vp->latencySnapshot();
      const int nLayer = vp->routingSnapshot()->n_layer;
      QCOMPARE(lat->rows.size(), size_t(nLayer + 1));
      QCOMPARE(lat->parts.size(), size_t(6));
      QCOMPARE(lat->part_ms.size(), lat->rows.size() * lat->parts.size());
      double layerMs = 0;
      for (double v : lat->part_ms) {
        QVERIFY(v >= 0);
        layerMs += v;
      }
      QVERIFY(layerMs > 0);
      // Output after Stop: the stopped run's text, as stored.
      QCOMPARE(w.outputView()->text(), QString::fromStdString(s->run(stopped)->output));

      // 2. A run that completes; the raw-count switch and the layer pickers answer from it.
      setRun(w, "The expert of the day", 24);
      QTest::mouseClick(w.runPanel()->runButton(), Qt::LeftButton);
      QVERIFY(finished.wait(60000));
      complete = finished.at(1).at(0).toLongLong();
      QVERIFY(complete > stopped);
      QCOMPARE(s->run(complete)->status, st::RunStatus::Complete);
      QCOMPARE(w.outputView()->text(), QString::fromStdString(s->run(complete)->output));
      // The lab records router probabilities (expert_count per layer and token): the Routing
      // page colours by the router's confidence; a run without them says so and shows experts.
      {
        const auto rr = s->routing(complete);
        QVERIFY(!rr.empty());
        for (const auto& r : rr)
          QCOMPARE(r.probs.size(), size_t(vp->routingSnapshot()->expert_count));
        auto* colour = vp->findChild<QComboBox*>("views_routing_colour");
        QVERIFY(colour);
        QCOMPARE(colour->count(), moelab::views::kRoutingColourCount);  // + kept groups
        colour->setCurrentIndex(int(moelab::views::RoutingColour::kMargin));
        QCOMPARE(vp->routingColour(), moelab::views::RoutingColour::kMargin);
        vp->setRoutingColour(moelab::views::RoutingColour::kTopExpert);
      }
      // The status bar's TTFT and tok/s: the one definition (latency_figures of the stored
      // tokens) the Latency view, Compare and the reports use.
      {
        const auto f = moelab::compare::latency_figures(s->tokens(complete));
        QVERIFY(f.ttft_ms && f.decode_tokens_per_s);
        QCOMPARE(w.statusField("ttft")->text(), QString("TTFT %1 ms").arg(*f.ttft_ms, 0, 'f', 1));
        QCOMPARE(w.statusField("tps")->text(),
                 QString("%1 tok/s").arg(*f.decode_tokens_per_s, 0, 'f', 1));
      }
      checkViewsShowStoredRun(w, *s, complete);
      vp->findChild<QCheckBox*>("views_load_counts")->click();
      QVERIFY(vp->expertLoadCounts());
      checkViewsShowStoredRun(w, *s, complete);
      vp->findChild<QSpinBox*>("views_coact_layer")->setValue(nLayer - 1);
      QCOMPARE(vp->coActivationSnapshot()->layer, nLayer - 1);
      vp->findChild<QSpinBox*>("views_attention_layer")->setValue(0);
      QCOMPARE(vp->attentionSnapshot()->layer, 0);
      checkViewsShowStoredRun(w, *s, complete);
      // The head picker: "mean of heads" then each head; choosing one shows that head's rows.
      {
        auto* head = vp->findChild<QComboBox*>("views_attention_head");
        QVERIFY(head);
        QCOMPARE(head->count(), vp->attentionHeadCount() + 1);
        QVERIFY(vp->attentionHeadCount() > 1);
        const auto mean = *vp->attentionSnapshot();
        head->setCurrentIndex(2);  // head 1
        QCOMPARE(vp->attentionHead(), 1);
        QCOMPARE(vp->attentionSnapshot()->head, 1);
        QVERIFY(vp->attentionSnapshot()->weight != mean.weight);
        checkViewsShowStoredRun(w, *s, complete);
        vp->findChild<QSpinBox*>("views_attention_layer")->setValue(nLayer - 1);
        QCOMPARE(vp->attentionSnapshot()->layer, nLayer - 1);
        QCOMPARE(vp->attentionSnapshot()->head, 1);
        checkViewsShowStoredRun(w, *s, complete);
        vp->findChild<QSpinBox*>("views_attention_layer")->setValue(0);
      }
      // The attention axes carry the prompt's token text (not positions).
      QVERIFY(!vp->attentionSnapshot()->key_text.empty());
      QVERIFY2(vp->attentionSnapshot()->key_text.back() !=
                   std::to_string(vp->attentionSnapshot()->n_key - 1),
               "attention axes show positions instead of token text");

      // Which tokens went to an expert: a click on the expert-load cell lists them.
      {
        const auto routing = s->routing(complete);
        const int e = int(routing[1].experts.front());  // position 0, layer 1
        int want = 0;
        for (const auto& r : routing)
          if (r.layer == 1 && std::find(r.experts.begin(), r.experts.end(), e) != r.experts.end())
            ++want;
        vp->setPage(moelab::views::ViewsPanel::Page::kExpertLoad);
        vp->activateCell(1, e);
        const QString text = vp->expertTokensText();
        QVERIFY2(text.contains(QString("layer 1, expert %1: %2 token").arg(e).arg(want)),
                 qPrintable(text));
        QVERIFY2(text.contains("#0 '"), qPrintable(text));
        // The same load as a sortable layer x expert table.
        vp->findChild<QCheckBox*>("views_load_table")->setChecked(true);
        auto* table = vp->findChild<QTableWidget*>("views_load_table_widget");
        QVERIFY(table && table->isVisible());
        const auto load = vp->expertLoadSnapshot();
        QCOMPARE(table->rowCount(), load->n_layer * load->expert_count);
        table->sortItems(2, Qt::DescendingOrder);
        QCOMPARE(table->item(0, 2)->data(Qt::DisplayRole).toDouble(),
                 double(*std::max_element(load->load.begin(), load->load.end())));
        vp->findChild<QCheckBox*>("views_load_table")->setChecked(false);
      }

      // 3. Selecting the stopped run shows it in the Output pane and in every view.
      QVERIFY(w.sessionsPanel()->selectRun(stopped));
      QCOMPARE(w.outputView()->text(), QString::fromStdString(s->run(stopped)->output));
      checkViewsShowStoredRun(w, *s, stopped);

      // 4. A file that fails to load leaves the loaded model usable, named and runnable.
      QSignalSpy idle(&w, &MainWindow::idle);
      drop(&w, fixture(kBad));
      QVERIFY(idle.wait(10000));
      QVERIFY(w.modelLoaded());
      QVERIFY(w.windowTitle().contains("mixtral-moe.F32.gguf"));
      QVERIFY(w.runPanel()->runButton()->isEnabled());
      QVERIFY2(w.lastMessage().contains("still loaded"), qPrintable(w.lastMessage()));
      setRun(w, "Still here", 4);
      QTest::mouseClick(w.runPanel()->runButton(), Qt::LeftButton);
      QVERIFY(finished.wait(60000));
      QCOMPARE(s->run(finished.at(2).at(0).toLongLong())->status, st::RunStatus::Complete);
    }

    // 5. After a restart on the same database: selecting a stored run shows it in every view.
    {
      MainWindow w(opts("e2e", false));
      w.show();
      QCOMPARE(w.viewsRun(), qint64(0));
      // The lab stored each local run's per layer / op decode times with the run, so the
      // Latency breakdown survives the restart (checkViewsShowStoredRun compares every cell).
      for (qint64 id : {stopped, complete}) {
        bool steps = false;
        for (const auto& m : w.store()->metrics(id))
          steps = steps || (m.key == "decode_op_us.steps" && m.value > 0 && m.unit == "steps");
        QVERIFY2(steps, qPrintable(QString("run #%1 has no stored op breakdown").arg(id)));
      }
      QVERIFY(w.sessionsPanel()->selectRun(complete));
      QVERIFY(!w.viewsPanel()->latencySnapshot()->rows.empty());
      QCOMPARE(w.outputView()->text(), QString::fromStdString(w.store()->run(complete)->output));
      checkViewsShowStoredRun(w, *w.store(), complete);
      QVERIFY(w.sessionsPanel()->selectRun(stopped));
      checkViewsShowStoredRun(w, *w.store(), stopped);
      // Without the model loaded the attention axes name positions.
      QCOMPARE(w.viewsPanel()->attentionSnapshot()->key_text.front(), std::string("0"));
    }
#endif
  }

  // One definition of every figure and one sign (A - B, B = baseline): the Compare panel,
  // `moelab-cli compare --json`, the HTML report and the views' "A - B" map give the same
  // numbers for the same pair.
  void compareCliReportAndViewsAgree() {
#ifndef MOELAB_HAVE_VIEWS_PANEL
    QSKIP("this build has no views panel");
#else
    MOELAB_REQUIRE_SHARED(kMoe);
    const auto o = opts("agree", true);
    MainWindow w(o);
    w.show();
    QVERIFY(loadMoe(w));
    QSignalSpy finished(&w, &MainWindow::runFinished);
    setRun(w, "Once upon a time", 16);
    w.startRun();
    QVERIFY(finished.wait(60000));
    w.runPanel()->routingBox()->setCurrentText("k:1");
    w.startRun();
    QVERIFY(finished.wait(60000));
    const qint64 a = finished.at(0).at(0).toLongLong(), b = finished.at(1).at(0).toLongLong();
    QSignalSpy compared(w.comparePanel(), &ComparePanel::compared);
    // The run that just finished.
    QCOMPARE(w.outputView()->text(), QString::fromStdString(w.store()->run(b)->output));
    QVERIFY(w.store()->run(a)->output != w.store()->run(b)->output);
    w.comparePanel()->compare(a, b);
    QVERIFY(compared.wait(30000));
    // The views name A (B the baseline): the Output pane shows A's text, not the run it showed.
    QVERIFY2(w.viewsPanel()->runLabel().contains(QString("run #%1 (A)").arg(a)),
             qPrintable(w.viewsPanel()->runLabel()));
    QCOMPARE(w.outputView()->runId(), a);
    QCOMPARE(w.outputView()->text(), QString::fromStdString(w.store()->run(a)->output));

    // CLI.
    std::ostringstream out, err;
    const int rc = moelab::cli::run({"moelab-cli", "compare", std::to_string(a), std::to_string(b),
                                     "--db", o.dbPath.toStdString(), "--json"},
                                    {out, err});
    QVERIFY2(rc == 0, err.str().c_str());
    const auto j = nlohmann::json::parse(out.str());
    QCOMPARE(j["sign"].get<std::string>(), std::string("A - B (B = baseline)"));
    auto metric = [&](const std::string& key) {
      for (const auto& m : j["metrics"])
        if (m["key"] == key) return m;
      return nlohmann::json();
    };
    // The library's one definition, from the store's tokens.
    const auto fa = moelab::compare::latency_figures(w.store()->tokens(a));
    const auto fb = moelab::compare::latency_figures(w.store()->tokens(b));

    // HTML report of the same pair.
    const std::string html_path = (dir_ + "/agree.html").toStdString();
    moelab::report::write_report(*w.store(), moelab::report::Selection::compare(a, b), html_path);
    std::stringstream hs;
    hs << std::ifstream(html_path).rdbuf();
    const std::string html = hs.str();
    QVERIFY(html.find("Every delta is A - B") != std::string::npos);
    using moelab::report::format_number;
    auto signedText = [](double v) {
      std::string t = v > 0 ? "+" : "";
      t += format_number(v);
      return t;
    };

    auto* mt = w.comparePanel()->metricsTable();
    auto panelRow = [&](const QString& key) {
      for (int r = 0; r < mt->rowCount(); ++r)
        if (mt->item(r, 0) && mt->item(r, 0)->text() == key) return r;
      return -1;
    };
    // Both runs stored their per layer / op decode times; that detail of one run stays out of
    // the metric tables of the panel, the CLI and the report.
    for (qint64 id : {a, b}) {
      bool stored = false;
      for (const auto& m : w.store()->metrics(id)) stored = stored || m.key == "decode_op_us.steps";
      QVERIFY(stored);
    }
    for (const auto& m : j["metrics"])
      QVERIFY2(!m["key"].get<std::string>().starts_with("decode_op_us."), m.dump().c_str());
    for (int r = 0; r < mt->rowCount(); ++r)
      QVERIFY(!mt->item(r, 0) || !mt->item(r, 0)->text().startsWith("decode_op_us."));
    QVERIFY(html.find("decode_op_us.") == std::string::npos);
    const struct {
      const char* key;
      double a, b;
    } figures[] = {{"ttft_ms", *fa.ttft_ms, *fb.ttft_ms},
                   {"tpot_ms_mean", *fa.tpot_ms_mean, *fb.tpot_ms_mean},
                   {"decode_tokens_per_s", *fa.decode_tokens_per_s, *fb.decode_tokens_per_s}};
    for (const auto& f : figures) {
      const auto m = metric(f.key);
      QVERIFY2(!m.is_null(), f.key);
      QCOMPARE(m["a"].get<double>(), f.a);
      QCOMPARE(m["b"].get<double>(), f.b);
      QCOMPARE(m["abs_delta"].get<double>(), f.a - f.b);  // A - B
      const int r = panelRow(f.key);
      QVERIFY2(r >= 0, f.key);
      QCOMPARE(mt->item(r, 2)->text(), QString::number(f.a, 'g', 5));
      QCOMPARE(mt->item(r, 3)->text(), QString::number(f.b, 'g', 5));
      QCOMPARE(mt->item(r, 4)->text(), QString::number(f.a - f.b, 'g', 5));
      // The report's metrics table row: key, unit, A, B, A - B.
      const std::string row = std::string(f.key) + "</td><td>" + m["unit"].get<std::string>() +
                              "</td><td>" + format_number(f.a) + "</td><td>" + format_number(f.b) +
                              "</td><td>" + signedText(f.a - f.b) + "</td>";
      QVERIFY2(html.find(row) != std::string::npos, row.c_str());
    }
    // TPOT excludes the first token: the per-token CI in every surface has n - 1 samples.
    QCOMPARE(j["tpot_ms_ci"]["n_a"].get<size_t>(), fa.tpot_ms.size());
    QCOMPARE(j["tpot_ms_ci"]["diff"].get<double>(), *fa.tpot_ms_mean - *fb.tpot_ms_mean);

    // KL D(A||B): CLI, panel and report.
    const double kl = j["kl_next_token"]["mean_nats"].get<double>();
    QVERIFY(kl >= 0);
    const int kr = panelRow("next_token_kl_mean");
    QVERIFY(kr >= 0);
    QCOMPARE(mt->item(kr, 4)->text(), QString::number(kl, 'g', 5));
    QVERIFY(html.find("KL(A || B) of the next-token distributions: mean " + format_number(kl)) !=
            std::string::npos);

    // Expert share delta per (layer, expert): CLI load_diff = views' A - B map = report shares.
    const auto v = w.comparedViews();
    QVERIFY(v);
    const auto diff = moelab::views::expert_load_diff_view(v->load_a, v->load_b).map;
    const auto& routing = j["routing"];
    QCOMPARE(int(routing.size()), diff.rows);
    bool anyNonZero = false;
    for (const auto& l : routing) {
      const int layer = l["layer"].get<int>();
      const auto la = l["load_a"].get<std::vector<double> >();
      const auto lb = l["load_b"].get<std::vector<double> >();
      const auto d = l["load_diff"].get<std::vector<double> >();
      QCOMPARE(int(d.size()), diff.cols);
      for (int e = 0; e < diff.cols; ++e) {
        QCOMPARE(d[size_t(e)], la[size_t(e)] - lb[size_t(e)]);
        QCOMPARE(v->load_a.load[at(layer, e, diff.cols)], float(la[size_t(e)]));
        QCOMPARE(v->load_b.load[at(layer, e, diff.cols)], float(lb[size_t(e)]));
        QCOMPARE(diff.at(layer, e), float(la[size_t(e)]) - float(lb[size_t(e)]));
        anyNonZero |= d[size_t(e)] != 0;
      }
      // The report's routing row names the expert that moved most, A's share -> B's.
      size_t worst = 0;
      for (size_t e = 1; e < d.size(); ++e)
        if (std::fabs(d[e]) > std::fabs(d[worst])) worst = e;
      const std::string cell = "expert " + std::to_string(worst) + ": " +
                               format_number(100 * la[worst], 3) + "% -&gt; " +
                               format_number(100 * lb[worst], 3) + "%";
      const std::string raw = "expert " + std::to_string(worst) + ": " +
                              format_number(100 * la[worst], 3) + "% -> " +
                              format_number(100 * lb[worst], 3) + "%";
      QVERIFY2(html.find(cell) != std::string::npos || html.find(raw) != std::string::npos,
               cell.c_str());
    }
    QVERIFY(anyNonZero);  // top-2 vs k:1 routes differently

    // The right-click menu of a stored run.
    QMenu* menu = w.sessionsPanel()->runMenu(a);
    QStringList names;
    for (QAction* x : menu->actions()) names << x->objectName();
    QCOMPARE(names,
             QStringList({"run_open", "run_compare", "run_report", "run_rerun", "run_delete"}));
    menu->findChild<QAction*>("run_open")->trigger();
    QCOMPARE(w.viewsRun(), a);
    checkViewsShowStoredRun(w, *w.store(), a);
    menu->findChild<QAction*>("run_compare")->trigger();
    QCOMPARE(w.comparePanel()->runA()->currentData().toLongLong(), a);
    // Re-run with A's configuration (the Run panel still holds B's k:1): same policy, seed and
    // length, so the same tokens on the same model and threads.
    menu->findChild<QAction*>("run_rerun")->trigger();
    QVERIFY(finished.wait(60000));
    const qint64 re = finished.at(2).at(0).toLongLong();
    const auto ca = nlohmann::json::parse(w.store()->run(a)->config_json);
    const auto cr = nlohmann::json::parse(w.store()->run(re)->config_json);
    QCOMPARE(cr["routing_policy"], ca["routing_policy"]);
    QCOMPARE(cr["seed"], ca["seed"]);
    QCOMPARE(cr["max_tokens"], ca["max_tokens"]);
    QCOMPARE(cr["sampling"], ca["sampling"]);
    std::vector<int32_t> ida, idr;
    for (const auto& t : w.store()->tokens(a)) ida.push_back(t.id);
    for (const auto& t : w.store()->tokens(re)) idr.push_back(t.id);
    QCOMPARE(idr, ida);
    delete menu;
    // Save the visible view as an image.
    const QString png = dir_ + "/view.png";
    QVERIFY2(w.saveViewImage(png), qPrintable(w.lastMessage()));
    const QImage img(png);
    QVERIFY(!img.isNull());
    QVERIFY(img.width() >= 320 && img.height() >= 200);
    // Copy: the clipboard holds the page's picture.
    QVERIFY2(w.copyViewImage(), qPrintable(w.lastMessage()));
    QCOMPARE(QGuiApplication::clipboard()->image().size(), w.viewsPanel()->grabPage().size());
    // SVG: the Latency chart as vectors (its text is SVG text), a heatmap page as the picture.
    auto svgText = [&](const QString& path) {
      QFile f(path);
      return f.open(QIODevice::ReadOnly) ? QString::fromUtf8(f.readAll()) : QString();
    };
    w.viewsPanel()->setPage(moelab::views::ViewsPanel::Page::kLatency);
    QVERIFY2(w.saveViewImage(dir_ + "/latency.svg"), qPrintable(w.lastMessage()));
    const QString lsvg = svgText(dir_ + "/latency.svg");
    QVERIFY(lsvg.contains("<svg"));
    QVERIFY2(lsvg.contains("Per-token latency"), "the chart's title is not SVG text");
    w.viewsPanel()->setPage(moelab::views::ViewsPanel::Page::kRouting);
    QTest::qWait(150);
    QVERIFY2(w.saveViewImage(dir_ + "/routing.svg"), qPrintable(w.lastMessage()));
    const QString rsvg = svgText(dir_ + "/routing.svg");
    QVERIFY(rsvg.contains("<svg") && rsvg.contains("<image"));
    QVERIFY(!w.saveViewImage(dir_ + "/no-such-dir/x.svg"));
    QVERIFY2(w.lastMessage().contains("cannot write"), qPrintable(w.lastMessage()));

    // The Compare panel never shows one pair's numbers under another pair's selectors.
    {
      auto* cp = w.comparePanel();
      cp->refreshRuns();
      cp->compare(a, b);
      QTRY_VERIFY_WITH_TIMEOUT(cp->metricsTable()->rowCount() > 0, 20000);
      const int idx = cp->runB()->findData(QVariant::fromValue<qint64>(re));
      QVERIFY(idx >= 0);
      cp->runB()->setCurrentIndex(idx);
      QCOMPARE(cp->metricsTable()->rowCount(), 0);
      QCOMPARE(cp->routingTable()->rowCount(), 0);
    }

    // Identical runs (the re-run of A, token for token the same) compare to exactly 0. (One run
    // with itself is refused: a run id given twice is no comparison.)
    std::ostringstream out2, err2;
    QCOMPARE(moelab::cli::run({"moelab-cli", "compare", std::to_string(a), std::to_string(re),
                               "--db", o.dbPath.toStdString(), "--json"},
                              {out2, err2}),
             0);
    const auto same = nlohmann::json::parse(out2.str());
    QCOMPARE(same["kl_next_token"]["mean_nats"].get<double>(), 0.0);
    QCOMPARE(same["kl_next_token"]["max_nats"].get<double>(), 0.0);
    for (const auto& l : same["routing"]) {
      QCOMPARE(l["js_divergence"].get<double>(), 0.0);
      for (double x : l["load_diff"].get<std::vector<double> >()) QCOMPARE(x, 0.0);
    }
    const auto self = moelab::views::expert_load_diff_view(v->load_a, v->load_a);
    QCOMPARE(self.scale.max, 1.0f);  // not a +-1e-30 colour bar

    // Re-run never runs another model than the run's own: with stories260K loaded, re-running
    // A (a mixtral-moe run) starts nothing and says which model it needs.
    {
      QSignalSpy ready(&w, &MainWindow::modelReady);
      drop(&w, fixture("fixtures/models/stories260K/stories260K.F32.gguf"));
      QVERIFY(ready.wait(20000));
      QSignalSpy started(&w, &MainWindow::runStarted);
      QMenu* again = w.sessionsPanel()->runMenu(a);
      again->findChild<QAction*>("run_rerun")->trigger();
      QTest::qWait(200);
      QCOMPARE(started.count(), 0);
      QVERIFY2(w.lastMessage().contains("mixtral-moe.F32.gguf") &&
                   w.lastMessage().contains("stories260K.F32.gguf is loaded"),
               qPrintable(w.lastMessage()));
      delete again;
    }

    // "Delete run…" asks first; cancelled nothing changes, confirmed the run and its records
    // leave the store, the Sessions list, the views, the Output pane and the Compare pickers.
    {
      QMenu* m = w.sessionsPanel()->runMenu(re);
      m->findChild<QAction*>("run_open")->trigger();
      QCOMPARE(w.viewsRun(), re);
      QCOMPARE(w.outputView()->runId(), re);
      QStringList asked;
      w.confirm = [&](const QString&, const QString& text) {
        asked << text;
        return false;
      };
      m->findChild<QAction*>("run_delete")->trigger();
      QCOMPARE(asked.size(), 1);
      QVERIFY2(asked[0].contains(QString("run #%1").arg(re)), qPrintable(asked[0]));
      QVERIFY(w.store()->run(re));
      w.confirm = [&](const QString&, const QString&) { return true; };
      m->findChild<QAction*>("run_delete")->trigger();
      QVERIFY(!w.store()->run(re));
      QVERIFY(w.store()->tokens(re).empty());
      QVERIFY(w.store()->routing(re).empty());
      QVERIFY(w.store()->run(a) && w.store()->run(b));  // the others stay
      QVERIFY(w.sessionsPanel()->runStatusText(re).isEmpty());
      QCOMPARE(w.viewsRun(), 0);
      QVERIFY(!w.viewsPanel()->routingSnapshot());
      QVERIFY2(!w.viewsPanel()->runLabel().contains(QString("#%1").arg(re)),
               qPrintable(w.viewsPanel()->runLabel()));
      QVERIFY(w.outputView()->runId() != re);
      QCOMPARE(w.comparePanel()->runB()->findData(QVariant::fromValue<qint64>(re)), -1);
      QCOMPARE(w.lastMessage(), QString("Run #%1 deleted").arg(re));
      delete m;
    }
#endif
  }

  // Runs another process stores while the lab is open appear in Sessions when the window is
  // activated again (the user comes back from a terminal).
  void sessionsListRunsOfOtherProcesses() {
    const auto o = opts("external", true);
    MainWindow w(o);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    auto names = [&] {
      QStringList n;
      auto* t = w.sessionsPanel()->tree();
      for (int i = 0; i < t->topLevelItemCount(); ++i)
        n << t->topLevelItem(i)->data(0, Qt::UserRole + 2).toString();
      return n;
    };
    QVERIFY(!names().contains("from-the-cli"));
    moelab::storage::StoredGeneration g;  // as `moelab-cli run --session` stores one
    g.session_name = "from-the-cli";
    g.prompt = "Once";
    g.output = " upon";
    const int64_t cliRun = moelab::storage::store_generation(o.dbPath.toStdString(), g);
    w.activateWindow();
    QVERIFY(QTest::qWaitForWindowActive(&w));
    QEvent activation(QEvent::ActivationChange);
    QCoreApplication::sendEvent(&w, &activation);
    QVERIFY2(names().contains("from-the-cli"), qPrintable(names().join(", ")));
#ifdef MOELAB_HAVE_VIEWS_PANEL
    // Opened in the views, the CLI's run has no per layer / op times: the Latency page says so.
    QVERIFY(w.openRunInViews(cliRun));
    QCOMPARE(w.viewsPanel()->unavailableText(moelab::views::ViewsPanel::Page::kLatency),
             QString("not recorded (runs from moelab-cli have none)"));
#endif
  }

  // The window keeps the size it was given through runs, a comparison, theme switches and dock
  // toggles (long run labels, backend lines and Compare pickers used to widen it).
  void windowNeverGrowsByItself() {
    MOELAB_REQUIRE_SHARED(kMoe);
    MainWindow w(opts("size", true));
    w.resize(1280, 800);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QCoreApplication::processEvents();
    const QSize before = w.size();
    QCOMPARE(before, QSize(1280, 800));
    QVERIFY(loadMoe(w));
    QSignalSpy finished(&w, &MainWindow::runFinished);
    setRun(w, "A long prompt about experts, routers and the tokens they see in a mixture", 12);
    w.startRun();
    QVERIFY(finished.wait(60000));
    w.runPanel()->routingBox()->setCurrentText("k:1");
    w.startRun();
    QVERIFY(finished.wait(60000));
    QSignalSpy compared(w.comparePanel(), &ComparePanel::compared);
    w.compareLatest();
    QVERIFY(compared.wait(30000));
    moelab::lab::applyTheme("dark");
    for (const char* d : {"compare", "output", "sessions", "model", "run"}) {
      w.dock(d)->hide();
      QCoreApplication::processEvents();
      w.dock(d)->show();
      w.dock(d)->raise();
      QCoreApplication::processEvents();
    }
    moelab::lab::applyTheme("light");
    QCoreApplication::processEvents();
    QCOMPARE(w.size(), before);
    QVERIFY2(w.minimumSizeHint().width() <= 1280,
             qPrintable(QString::number(w.minimumSizeHint().width())));
    moelab::lab::applyTheme("system");
  }

  // On first start (no saved geometry) the window fits the screen's available area unless its
  // layout cannot be that small: the default 1280 x 820 hid the status bar on a 1280 x 800 screen.
  void firstStartFitsTheScreen() {
    QSettings().remove("window/geometry");
    QSettings().remove("window/state");
    MainWindow::Options o = opts("fit", true);
    o.restoreLayout = true;
    {
      MainWindow w(o);
      const QSize avail = w.screen()->availableGeometry().size();
      QVERIFY2(avail.width() < 1280 || avail.height() < 820,
               qPrintable(QString("screen %1x%2 is not smaller than the default size")
                              .arg(avail.width())
                              .arg(avail.height())));
      const QSize min = w.minimumSizeHint();
      QVERIFY2(w.width() <= std::max(avail.width(), min.width()) &&
                   w.height() <= std::max(avail.height(), min.height()),
               qPrintable(QString("window %1x%2 on a %3x%4 screen (minimum %5x%6)")
                              .arg(w.width())
                              .arg(w.height())
                              .arg(avail.width())
                              .arg(avail.height())
                              .arg(min.width())
                              .arg(min.height())));
      QVERIFY(w.width() < 1280 || w.height() < 820);
    }
    QSettings().remove("window/geometry");
    QSettings().remove("window/state");
  }

  // Error text stays readable (WCAG AA, 4.5:1) on the window colour of both themes, also on a
  // drop zone that existed before the switch.
  void errorTextReadableInBothThemes() {
    DropZone z;
    z.setError("Could not open x.gguf: not a GGUF file");
    for (const char* theme : {"dark", "light"}) {
      moelab::lab::applyTheme(theme);
      QCoreApplication::processEvents();
      const QPalette p = QApplication::palette();
      const QColor err = DropZone::errorColor(p);
      const double c = contrast(err, p.color(QPalette::Window));
      QVERIFY2(c >= 4.5, qPrintable(QString("%1: contrast %2").arg(theme).arg(c)));
      QVERIFY2(z.findChild<QLabel*>("dropError")->styleSheet().contains(err.name()),
               qPrintable(z.findChild<QLabel*>("dropError")->styleSheet()));
    }
    moelab::lab::applyTheme("system");
  }

  // The drop highlight (a file dragged over the drop zone) is visible, and the hint and error
  // text stay readable on it (4.5:1), in both themes.
  void dropHighlightReadableInBothThemes() {
    for (const char* theme : {"dark", "light"}) {
      moelab::lab::applyTheme(theme);
      QCoreApplication::processEvents();
      DropZone z;
      z.setError("Could not open x.gguf: not a GGUF file");
      z.resize(480, 320);
      z.show();
      QVERIFY(QTest::qWaitForWindowExposed(&z));
      const QPoint corner(z.width() - 30, z.height() - 30);  // inside the frame, off the text
      const QColor plain = z.grab().toImage().pixelColor(corner);
      QMimeData mime;
      mime.setUrls({QUrl::fromLocalFile(dir_ + "/model.gguf")});
      QDragEnterEvent enter(QPoint(240, 160), Qt::CopyAction, &mime, Qt::LeftButton,
                            Qt::NoModifier);
      QCoreApplication::sendEvent(&z, &enter);
      QVERIFY(enter.isAccepted());
      const QColor lit = z.grab().toImage().pixelColor(corner);
      QVERIFY2(lit != plain, qPrintable(QString("%1: no highlight (%2)").arg(theme, lit.name())));
      const QPalette p = QApplication::palette();
      const double text = contrast(p.color(QPalette::WindowText), lit);
      QVERIFY2(text >= 4.5, qPrintable(QString("%1: hint text contrast %2").arg(theme).arg(text)));
      const double err = contrast(DropZone::errorColor(p), lit);
      QVERIFY2(err >= 4.5, qPrintable(QString("%1: error contrast %2").arg(theme).arg(err)));
    }
    moelab::lab::applyTheme("system");
  }

  // Screenshots of every view after a real run, at 1280x800 and 1920x1080, light and dark
  // (resources/screenshots/lab-<w>x<h>-<theme>-<page>.png). Only with MOELAB_SCREENSHOT_DIR.
  void screenshots() {
#ifdef MOELAB_HAVE_VIEWS_PANEL
    const QByteArray out = qgetenv("MOELAB_SCREENSHOT_DIR");
    if (out.isEmpty()) {
      qInfo("set MOELAB_SCREENSHOT_DIR to write the views' screenshots");
      return;
    }
    MOELAB_REQUIRE_SHARED(kMoe);
    const QString dir = QString::fromLocal8Bit(out);
    QDir().mkpath(dir);
    qputenv("MOELAB_VIEWS_CPU", "1");  // QWidget::grab() does not capture a Vulkan surface
    MainWindow w(opts("screens", true));
    w.resize(1280, 800);
    w.show();
    QVERIFY(loadMoe(w));
    QSignalSpy finished(&w, &MainWindow::runFinished);
    setRun(w, "Once upon a time, the router sent each token to", 40);
    w.startRun();
    QVERIFY(finished.wait(60000));
    using Page = moelab::views::ViewsPanel::Page;
    const char* names[] = {"routing", "load", "coactivation", "attention", "latency", "power"};
    for (const QSize size : {QSize(1280, 800), QSize(1920, 1080)})
      for (const char* theme : {"light", "dark"}) {
        moelab::lab::applyTheme(theme);
        w.resize(size);
        QTest::qWait(200);
        for (int p = 0; p < moelab::views::ViewsPanel::kPageCount; ++p) {
          w.viewsPanel()->setPage(Page(p));
          QTest::qWait(150);
          QVERIFY(w.grab().save(QString("%1/lab-%2x%3-%4-%5.png")
                                    .arg(dir)
                                    .arg(size.width())
                                    .arg(size.height())
                                    .arg(theme, names[p])));
        }
        // The routing grid coloured by the router's margin top1 - top2.
        w.viewsPanel()->setRoutingColour(moelab::views::RoutingColour::kMargin);
        w.viewsPanel()->setPage(Page::kRouting);
        QTest::qWait(150);
        QVERIFY(w.grab().save(QString("%1/lab-%2x%3-%4-routing-margin.png")
                                  .arg(dir)
                                  .arg(size.width())
                                  .arg(size.height())
                                  .arg(theme)));
        w.viewsPanel()->setRoutingColour(moelab::views::RoutingColour::kTopExpert);
      }
    moelab::lab::applyTheme("system");
#endif
  }

  void runViewDataDefinitions() {
#ifndef MOELAB_HAVE_VIEWS_PANEL
    QSKIP("this build has no views panel");
#else
    // Two layers, three experts, three tokens; token 1 is routed to {2, 2} (a repeat counts
    // once in co-activation but twice in the load, as the engine never repeats an expert).
    moelab::lab::RunViewData d(5, 2, 3);
    d.add_token(0, "a", 2000, 4000.0);  // 2 ms, 4 mJ -> 2 W
    d.add_token(1, "b", 1000);
    d.add_token(2, "c", 1000, 1000.0);
    auto route = [&](int pos, int layer, std::vector<uint16_t> e) {
      st::RoutingRecord r;
      r.position = pos;
      r.layer = layer;
      r.experts = std::move(e);
      d.add_routing(r);
    };
    route(0, 0, {0, 1});
    route(1, 0, {1, 2});
    route(2, 0, {1});
    route(0, 1, {2});
    route(1, 1, {7});  // outside expert_count: ignored
    const auto g = d.routing_grid();
    QCOMPARE(g.top_expert, (std::vector<int32_t>{0, 1, 1, 2, -1, -1}));
    QCOMPARE(g.active_count, (std::vector<int32_t>{2, 2, 1, 1, 0, 0}));
    const auto share = d.expert_load(false);
    QCOMPARE(share.load, (std::vector<float>{0.2f, 0.6f, 0.2f, 0.f, 0.f, 1.f}));
    QCOMPARE(d.expert_load(true).load, (std::vector<float>{1, 3, 1, 0, 0, 1}));
    QCOMPARE(d.co_activation(0).count, (std::vector<float>{1, 1, 0, 1, 3, 1, 0, 1, 1}));
    bool threw = false;
    try {
      d.co_activation(2);
    } catch (const std::exception&) {
      threw = true;
    }
    QVERIFY(threw);
    const auto lat = d.latency();
    QCOMPARE(lat.ms, (std::vector<double>{2.0, 1.0, 1.0}));
    QCOMPARE(lat.ttft_ms, 2.0);
    QVERIFY(lat.rows.empty());
    const auto p = d.power("none");
    QCOMPARE(p.t_s, (std::vector<double>{0.002, 0.004}));
    QCOMPARE(p.watts, (std::vector<double>{2.0, 1.0}));
    QCOMPARE(d.power("none").n_tokens, 3);
    QVERIFY(!d.attention(0));
    st::AttentionSnapshot a;
    a.layer = 1;
    a.head = -1;
    a.shape = {2, 2};
    a.data = {1.f, 0.f, 0.25f, 0.75f};
    d.set_attention({a}, {"<s>", "Hi"});
    QCOMPARE(d.attention_layers(), (std::vector<int>{1}));
    const auto m = d.attention(1);
    QVERIFY(m);
    QVERIFY(std::isnan(m->weight[1]));
    QCOMPARE(m->weight[3], 0.75f);
    QCOMPARE(m->key_text, (std::vector<std::string>{"<s>", "Hi"}));
    QCOMPARE(m->query_text, (std::vector<std::string>{"<s>", "Hi"}));
    // A run stored before per-head capture: the prompt's head mean only, no head to pick.
    QCOMPARE(d.attention_heads(1), 0);
    QVERIFY(!d.attention(1, 0));

    // Per-head rows: a 2-token prompt and 2 heads, then the decode step of generated token 1
    // (query position 2 over keys 0..2). Generated token 0 ("a") labels position 2.
    {
      st::AttentionSnapshot ps;
      ps.layer = 1;
      ps.head = st::kAttentionAllHeads;
      ps.shape = {2, 2, 2};
      ps.data = {1.f, 0.f, 0.5f, 0.5f, /*head 1*/ 1.f, 0.f, 0.25f, 0.75f};
      st::AttentionSnapshot r;
      r.position = 1;
      r.layer = 1;
      r.head = st::kAttentionAllHeads;
      r.shape = {2, 1, 3};
      r.data = {0.2f, 0.3f, 0.5f, /*head 1*/ 0.6f, 0.2f, 0.2f};
      d.set_attention({r, a, ps}, {"<s>", "Hi"});  // any order (a read sorts by position)
      QCOMPARE(d.attention_heads(1), 2);
      QCOMPARE(d.attention_rows(1), 3);
      const float nan = std::numeric_limits<float>::quiet_NaN();
      const auto h1 = d.attention(1, 1);
      QVERIFY(h1);
      QCOMPARE(h1->n_query, 3);
      QCOMPARE(h1->head, 1);
      const std::vector<float> want1 = {1.f, nan, nan, 0.25f, 0.75f, nan, 0.6f, 0.2f, 0.2f};
      for (size_t i = 0; i < want1.size(); ++i)
        QVERIFY(std::isnan(want1[i]) ? std::isnan(h1->weight[i]) : h1->weight[i] == want1[i]);
      QCOMPARE(h1->key_text, (std::vector<std::string>{"<s>", "Hi", "a"}));
      const auto mean = d.attention(1, -1);
      QCOMPARE(mean->weight[at(2, 0, 3)], 0.4f);
      QCOMPARE(mean->weight[at(1, 1, 3)], 0.625f);
      QVERIFY(!d.attention(1, 2));  // no head 2
      // Live: a map with room is published once, then only the new rows.
      std::vector<moelab::views::AttentionMap> maps;
      std::vector<moelab::views::AttentionRows> rows;
      auto pm = [&](moelab::views::AttentionMap am) {
        maps.push_back(std::move(am));
        return uint64_t(1);
      };
      auto pr = [&](moelab::views::AttentionRows x) {
        rows.push_back(std::move(x));
        return uint64_t(1);
      };
      d.publish_attention(1, 0, true, pm, pr);
      QCOMPARE(maps.size(), size_t(1));
      QCOMPARE(maps[0].n_query, 3 + 64);
      QVERIFY(std::isnan(maps[0].weight[at(3, 0, maps[0].n_key)]));
      st::AttentionSnapshot r2 = r;
      r2.position = 2;
      r2.shape = {2, 1, 4};
      r2.data = {0.1f, 0.2f, 0.3f, 0.4f, 0.f, 0.f, 0.f, 1.f};
      d.add_attention({r2});
      d.publish_attention(1, 0, true, pm, pr);
      QCOMPARE(maps.size(), size_t(1));
      QCOMPARE(rows.size(), size_t(1));
      QCOMPARE(rows[0].first_query, 3);
      QCOMPARE(rows[0].n_key, 3 + 64);
      QCOMPARE(rows[0].weight[3], 0.4f);
      QVERIFY(std::isnan(rows[0].weight[4]));
      // After the run: the exact map.
      d.publish_attention(1, 0, false, pm, pr);
      QCOMPARE(maps.size(), size_t(2));
      QCOMPARE(maps[1].n_query, 4);
      d.set_attention({a}, {"<s>", "Hi"});  // back to the head-mean-only run below
    }

    // The per layer / op breakdown as stored metrics and back: 2 layers + the layer-less row,
    // 4 decode steps; zero cells are not stored, the latency shows mean ms per decode step.
    {
      using RVD = moelab::lab::RunViewData;
      RVD::OpBreakdown b;
      b.n_layer = 2;
      b.decode_steps = 4;
      b.us.assign(3 * RVD::OpBreakdown::kOps, 0.0);
      b.us[0 * 6 + 1] = 800.0;   // layer 0 attention
      b.us[1 * 6 + 3] = 1200.0;  // layer 1 experts
      b.us[2 * 6 + 5] = 400.0;   // output head
      const auto ms = RVD::op_breakdown_metrics(b);
      std::map<std::string, std::pair<double, std::string> > got;
      for (const auto& x : ms) got[x.key] = {x.value, x.unit};
      QCOMPARE(got.size(), size_t(4));
      QCOMPARE(got["decode_op_us.L0.attention"], std::make_pair(800.0, std::string("µs")));
      QCOMPARE(got["decode_op_us.L1.experts"], std::make_pair(1200.0, std::string("µs")));
      QCOMPARE(got["decode_op_us.other.head"], std::make_pair(400.0, std::string("µs")));
      QCOMPARE(got["decode_op_us.steps"], std::make_pair(4.0, std::string("steps")));
      for (const auto& x : ms) QVERIFY(moelab::compare::is_op_time_metric(x.key));
      QVERIFY(!moelab::compare::is_op_time_metric("tokens_per_s"));
      // Unknown rows / ops and rows past n_layer are ignored; other metrics pass by.
      auto stored = ms;
      stored.push_back({"decode_op_us.L9.attention", 5.0, "µs"});
      stored.push_back({"decode_op_us.Lx.attention", 5.0, "µs"});
      stored.push_back({"decode_op_us.L0.bogus", 5.0, "µs"});
      stored.push_back({"tokens_per_s", 12.0, "tokens/s"});
      const auto back = RVD::op_breakdown_of(stored, 2);
      QVERIFY(back);
      QCOMPARE(back->n_layer, 2);
      QCOMPARE(back->decode_steps, int64_t(4));
      QCOMPARE(back->us, b.us);
      QVERIFY(!RVD::op_breakdown_of({{"tokens_per_s", 12.0, "tokens/s"}}, 2));
      QVERIFY(RVD::op_breakdown_metrics(RVD::OpBreakdown{}).empty());
      RVD e(6, 2, 3);
      e.add_token(0, "a", 2000);
      e.set_op_breakdown(*back);
      const auto el = e.latency();
      QCOMPARE(el.rows, (std::vector<std::string>{"layer 0", "layer 1", "embed + head"}));
      QCOMPARE(el.part_ms[1], 0.2);      // 800 µs / 4 steps
      QCOMPARE(el.part_ms[6 + 3], 0.3);  // 1200 µs / 4 steps
      QCOMPARE(el.part_ms[12 + 5], 0.1);
      QCOMPARE(el.part_ms[0], 0.0);
    }

    // Palette: categorical up to 64 experts, a labelled sequential scale beyond (no aliasing of
    // expert 0 and 64).
    moelab::views::RoutingGrid big;
    big.n_layer = 1;
    big.n_tokens = 2;
    big.top_expert = {0, 64};
    big.expert_count = 64;
    QCOMPARE(moelab::views::routing_top_expert_view(big).scale.map,
             moelab::views::Colormap::kCategorical);
    big.top_expert = {0, 127};
    big.expert_count = 128;
    const auto seq = moelab::views::routing_top_expert_view(big);
    QCOMPARE(seq.scale.map, moelab::views::Colormap::kSequential);
    QCOMPARE(seq.scale.max, 127.0f);
    QVERIFY(moelab::views::color_of(seq.scale, 0.f) != moelab::views::color_of(seq.scale, 64.f));
#endif
  }
};

QTEST_MAIN(TestGuiViews)
#include "test_gui_views.moc"
