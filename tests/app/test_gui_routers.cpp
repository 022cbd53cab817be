// The routers of issue 18 in the lab: each F32 file of fixtures/models-0c1e570 (gpt-oss with
// sinks and a window pattern, DeepSeek-V2-Lite and V3 with MLA, Granite MoE, GLM-4.5 MoE)
// loads; its model card shows the new rows (attention kind, sinks, window pattern, gating,
// groups, shared experts, dense leading layers, KV bytes/token GQA vs MLA) and no row is cut at
// 1280x800; a short run from the Run panel reaches the routing views with the run's gating, the
// shared experts as an always-on column, and (deepseek3-moe) the kept groups per token equal to
// the stored ones. Expected values come from the store and the fixture README, not from the
// views' code. Offscreen (the views draw on the CPU). With MOELAB_SCREENSHOT_DIR it also writes
// screenshots of the deepseek3-moe and gpt-oss runs (1280x800 and 1920x1080, light and dark).
#include <QComboBox>
#include <QDockWidget>
#include <QHeaderView>
#include <QRegularExpression>
#include <QScrollBar>
#include <QTableWidget>
#include <QtTest>
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "gui_test_support.h"
#include "main_window.h"
#include "model_card_view.h"
#include "moelab/storage/store.h"
#include "moelab/views/view_kinds.h"
#include "moelab/views/views_panel.h"
#include "run_panel.h"
#include "settings.h"
#include "test_support.h"

namespace st = moelab::storage;
using moelab::views::RoutingColour;
using moelab::views::ViewsPanel;

namespace {

struct Case {
  const char* rel;     // under fixtures/models-0c1e570
  const char* gating;  // run config "model"."gating"
  int shared;          // shared experts
  int groups, used;    // expert groups (0: no group limit)
  int dense_lead;      // leading dense layers
  // (card row label, text its value contains)
  std::vector<std::pair<QString, QString>> rows;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {"gptoss-moe/gptoss-moe.F32.gguf",
       "softmax_over_topk",
       0,
       0,
       0,
       0,
       {{"attention", "GQA"},
        {"attention sinks", "learned, one logit per head"},
        {"sliding window", "on even layers (0, 2, ...); odd layers full"},
        {"gating", "softmax over the top-k"},
        {"gating", "scores, not probabilities"},
        {"KV bytes/token", "F16"}}},
      {"deepseek2-lite/deepseek2-lite.F32.gguf",
       "softmax",
       2,
       0,
       0,
       1,
       {{"attention kind", "MLA: "},
        {"attention kind", "q_lora 0 (plain Q)"},
        {"experts", "2 shared experts, always on"},
        {"gating", "softmax probabilities"},
        {"dense layers", "the first 1"},
        {"KV bytes/token", "as MLA stores it; the same heads as MHA would cache"}}},
      {"deepseek3-moe/deepseek3-moe.F32.gguf",
       "sigmoid",
       1,
       4,
       2,
       1,
       {{"attention kind", "MLA: 4 heads, q_lora 256, kv_lora 256, qk_nope 32 + qk_rope 16, v 64"},
        {"experts", "16 experts, top-4"},
        {"experts", "1 shared expert"},
        {"gating", "sigmoid scores (not probabilities)"},
        {"expert groups", "4 groups of 4, the best 2 kept per token"},
        {"dense layers", "the first 1"},
        {"KV bytes/token", "as MLA stores it; the same heads as MHA would cache"}}},
      {"granite-moe/granite-moe.F32.gguf",
       "softmax",
       0,
       0,
       0,
       0,
       {{"attention", "GQA"},
        {"multipliers", "embeddings x12"},
        {"attention scale", "0.0625"},
        {"KV bytes/token", "F16"}}},
      {"glm4-moe/glm4-moe.F32.gguf",
       "sigmoid",
       1,
       0,
       0,
       1,
       {{"experts", "1 shared expert"},
        {"gating", "sigmoid scores (not probabilities)"},
        {"dense layers", "the first 1"},
        {"KV bytes/token", "F16"}}},
  };
  return c;
}

QString fixture(const Case& c) {
  return QString::fromStdString(
      moelab::test::shared_path(QStringLiteral("fixtures/models-0c1e570/") + c.rel));
}

bool have(const Case& c) {
  return moelab::test::have_shared(QStringLiteral("fixtures/models-0c1e570/") + c.rel);
}

size_t at(int row, int col, int cols) {
  return size_t(row) * size_t(cols) + size_t(col);
}

}  // namespace

class TestGuiRouters : public QObject {
  Q_OBJECT
  QString dir_;

  MainWindow::Options opts(const QString& name) {
    return moelab::test::fresh_window(dir_, name, "routers");
  }
  bool load(MainWindow& w, const Case& c) {
    QSignalSpy ready(&w, &MainWindow::modelReady);
    w.openModel(fixture(c));
    return ready.wait(30000) && w.modelLoaded();
  }
  // A short greedy run from the Run panel; returns its id (0 on failure).
  qint64 run(MainWindow& w, int tokens) {
    w.runPanel()->promptEdit()->setPlainText("Once upon a time, there was a little girl");
    w.runPanel()->maxTokensBox()->setValue(tokens);
    w.runPanel()->temperatureBox()->setValue(0.0);
    w.runPanel()->ignoreEosBox()->setChecked(true);
    w.runPanel()->threadsBox()->setValue(1);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    w.startRun();
    if (!finished.wait(120000)) return 0;
    for (int i = 0; i < 100 && !w.viewsPanel()->routingSnapshot(); ++i) QTest::qWait(100);
    if (!w.viewsPanel()->routingSnapshot()) return 0;
    return finished.takeFirst().at(0).toLongLong();
  }

  // The card's rows as shown: label -> values (a label may repeat).
  static QMultiMap<QString, QString> cardRows(MainWindow& w) {
    QMultiMap<QString, QString> m;
    auto* t = w.cardView()->findChild<QTableWidget*>("cardTable");
    for (int i = 0; t && i < t->rowCount(); ++i)
      m.insert(t->item(i, 0)->text(), t->item(i, 1)->text());
    return m;
  }

  // Every card row shows its whole text: rows are at least as tall as the wrapped text needs,
  // both columns fit the table's width (nothing is cut at the right or hidden by a scroll).
  static void checkCardReadable(MainWindow& w) {
    auto* t = w.cardView()->findChild<QTableWidget*>("cardTable");
    QVERIFY(t);
    QVERIFY2(t->isVisible(), "the model card is not on screen");
    QCoreApplication::processEvents();
    const int vw = t->viewport()->width();
    QVERIFY2(t->columnWidth(0) + t->columnWidth(1) <= vw + 1,
             qPrintable(QString("columns %1 + %2 > viewport %3")
                            .arg(t->columnWidth(0))
                            .arg(t->columnWidth(1))
                            .arg(vw)));
    QCOMPARE(t->horizontalScrollBar()->maximum(), 0);
    // (QTableView hides sizeHintForRow: the wrapped height at the current column widths.)
    const QAbstractItemView* view = t;
    for (int i = 0; i < t->rowCount(); ++i) {
      // Wrapped at the value column's width (less the item margins), the text is no wider.
      const int wrap = t->columnWidth(1) - 8;
      const QRect need =
          QFontMetrics(t->item(i, 1)->font())
              .boundingRect(QRect(0, 0, wrap, 100000), Qt::TextWordWrap, t->item(i, 1)->text());
      QVERIFY2(need.width() <= wrap, qPrintable(QString("row '%1' is %2 px wide, the column %3")
                                                    .arg(t->item(i, 0)->text())
                                                    .arg(need.width())
                                                    .arg(wrap)));
      QVERIFY2(view->sizeHintForRow(i) <= t->rowHeight(i),
               qPrintable(QString("row '%1' needs %2 px, has %3")
                              .arg(t->item(i, 0)->text())
                              .arg(view->sizeHintForRow(i))
                              .arg(t->rowHeight(i))));
    }
  }

 private slots:
  void initTestCase() { dir_ = moelab::test::temp_dir("test_gui_routers"); }

  void eachRouterLoadsShowsItsCardAndRunsIntoTheViews_data() {
    QTest::addColumn<int>("index");
    for (size_t i = 0; i < cases().size(); ++i) QTest::newRow(cases()[i].rel) << int(i);
  }
  void eachRouterLoadsShowsItsCardAndRunsIntoTheViews() {
    QFETCH(int, index);
    const Case& c = cases()[size_t(index)];
    if (!have(c)) QSKIP(qPrintable("skipped: fixtures not found at " + fixture(c)));
    MainWindow w(opts(QString("case%1").arg(index)));
    w.resize(1280, 800);
    w.show();
    QVERIFY(load(w, c));
    w.dock("model")->show();
    w.dock("model")->raise();

    // Card rows.
    const auto rows = cardRows(w);
    for (const auto& [label, want] : c.rows) {
      bool found = false;
      for (const auto& v : rows.values(label)) found = found || v.contains(want);
      QVERIFY2(found, qPrintable(QString("card row '%1' should contain '%2'; card:\n%3")
                                     .arg(label, want, w.cardView()->text())));
    }
    // Once hashed, the SHA-256 row holds 64 characters without a space.
    QTRY_VERIFY_WITH_TIMEOUT(!w.cardView()->text().contains("sha256: (not computed)"), 20000);
    QVERIFY(w.cardView()->text().contains(QRegularExpression("sha256: [0-9a-f]{64}\n")));
    checkCardReadable(w);

    // A run: the stored run config says what the routing records mean.
    const qint64 id = run(w, 5);
    QVERIFY(id > 0);
    st::Store& store = *w.store();
    const auto cfg = nlohmann::json::parse(store.run(id)->config_json)["model"];
    QCOMPARE(cfg["gating"].get<std::string>(), std::string(c.gating));
    QCOMPARE(cfg["shared_experts"].get<int>(), c.shared);
    QCOMPARE(cfg["expert_groups"].get<int>(), c.groups);
    QCOMPARE(cfg["expert_groups_used"].get<int>(), c.used);
    QCOMPARE(cfg["leading_dense_layers"].get<int>(), c.dense_lead);
    const int nLayer = cfg["n_layer"].get<int>();
    const int nExp = cfg["expert_count"].get<int>();
    const auto routing = store.routing(id);
    const auto toks = store.tokens(id);
    const int n = int(toks.size());
    QCOMPARE(n, 5);
    QVERIFY(!routing.empty());
    for (const auto& r : routing) QVERIFY2(r.layer >= c.dense_lead, "a dense layer was routed");

    // Routing grid: the run's router, experts, groups as stored.
    ViewsPanel* vp = w.viewsPanel();
    QCOMPARE(w.viewsRun(), id);
    const auto g = vp->routingSnapshot();
    QVERIFY(g);
    QCOMPARE(g->gating, std::string(c.gating));
    QCOMPARE(g->shared_experts, c.shared);
    QCOMPARE(g->n_layer, nLayer);
    QCOMPARE(g->n_tokens, n);
    for (const auto& r : routing)
      QCOMPARE(g->top_expert[at(r.layer, int(r.position), n)], int32_t(r.experts.front()));
    if (c.groups > 0) {
      QCOMPARE(g->expert_groups, c.groups);
      QCOMPARE(g->expert_groups_used, c.used);
      QCOMPARE(g->groups.size(), size_t(nLayer) * size_t(n) * size_t(c.used));
      for (const auto& r : routing) {
        QCOMPARE(r.groups.size(), size_t(c.used));
        for (int j = 0; j < c.used; ++j) {
          QCOMPARE(g->groups[at(r.layer, int(r.position), n) * size_t(c.used) + size_t(j)],
                   int32_t(r.groups[size_t(j)]));
          // The chosen experts lie in the kept groups.
        }
        for (uint16_t e : r.experts) {
          const int grp = e / (nExp / c.groups);
          QVERIFY(std::find(r.groups.begin(), r.groups.end(), grp) != r.groups.end());
        }
      }
      // The groups view: rows (layer, group) of the MoE layers, rank 1..used where kept.
      const auto v = moelab::views::routing_groups_view(*g);
      QCOMPARE(v.map.rows, (nLayer - c.dense_lead) * c.groups);
      QCOMPARE(v.y_ticks.front(), "L" + std::to_string(c.dense_lead) + " g0");
      for (const auto& r : routing)
        for (int grp = 0; grp < c.groups; ++grp) {
          const int row = (r.layer - c.dense_lead) * c.groups + grp;
          const auto it = std::find(r.groups.begin(), r.groups.end(), grp);
          const float want = it == r.groups.end() ? 0.f : float(it - r.groups.begin() + 1);
          QCOMPARE(v.map.at(row, int(r.position)), want);
        }
      vp->setPage(ViewsPanel::Page::kRouting);
      vp->setRoutingColour(RoutingColour::kGroups);
      QTRY_VERIFY(vp->heatmapTitle().contains("Expert groups kept per token"));
    } else {
      QVERIFY(g->groups.empty());
      for (const auto& r : routing) QVERIFY(r.groups.empty());
    }

    // Shared experts: column 0 of the top-expert grid, always on in every MoE layer.
    const auto top = moelab::views::routing_top_expert_view(*g);
    if (c.shared > 0) {
      QCOMPARE(top.map.cols, n + 1);
      QCOMPARE(top.x_ticks.front(), "shared x" + std::to_string(c.shared));
      for (int l = 0; l < nLayer; ++l) {
        if (l < c.dense_lead)
          QVERIFY(std::isnan(top.map.at(l, 0)));
        else
          QCOMPARE(top.map.at(l, 0), float(nExp));
      }
      QCOMPARE(top.category_labels.back(), "shared x" + std::to_string(c.shared) + " (always on)");
      const auto load = vp->expertLoadSnapshot();
      QVERIFY(load);
      QCOMPARE(load->shared_experts, c.shared);
      QCOMPARE(load->shared.size(), size_t(nLayer));
      for (int l = 0; l < nLayer; ++l)
        QCOMPARE(load->shared[size_t(l)],
                 l < c.dense_lead ? 0.f : (load->unit == "tokens" ? float(n) : 1.f));
      const auto lv = moelab::views::expert_load_view(*load);
      QCOMPARE(lv.map.cols, nExp + 1);
      QCOMPARE(lv.x_ticks.back(), "shared x" + std::to_string(c.shared) + " (every token)");
    } else {
      QCOMPARE(top.map.cols, n);
    }

    // The colour box names what the router's outputs are.
    vp->setPage(ViewsPanel::Page::kRouting);
    vp->setRoutingColour(RoutingColour::kTopProb);
    QTRY_VERIFY(vp->shownSequence(ViewsPanel::Page::kRouting) > 0);
    auto* box = vp->findChild<QComboBox*>("views_routing_colour");
    QVERIFY(box);
    if (c.gating == std::string("sigmoid")) {
      QTRY_VERIFY2(box->itemText(int(RoutingColour::kTopProb)).contains("not probabilities"),
                   qPrintable(box->itemText(int(RoutingColour::kTopProb))));
      QTRY_VERIFY(vp->heatmapTitle().contains("sigmoid scores, not probabilities"));
    } else if (c.gating == std::string("softmax_over_topk")) {
      QTRY_VERIFY(box->itemText(int(RoutingColour::kTopProb)).contains("softmax over all experts"));
      QTRY_VERIFY(vp->heatmapTitle().contains("router logits, softmax over all experts"));
    } else {
      QTRY_VERIFY(box->itemText(int(RoutingColour::kTopProb)).contains("router probability"));
    }
    vp->setRoutingColour(RoutingColour::kTopExpert);

    // Reopened from the store, the views hold the same router data.
    QVERIFY(w.openRunInViews(id));
    const auto g2 = vp->routingSnapshot();
    QVERIFY(g2);
    QCOMPARE(g2->gating, g->gating);
    QCOMPARE(g2->shared_experts, g->shared_experts);
    QCOMPARE(g2->groups, g->groups);
    QCOMPARE(g2->top_expert, g->top_expert);

    // Router confidence on the distribution the gating defines, computed here from the stored
    // records (F16 router scores, as the reopened run reads them).
    QVERIFY(!g2->top_prob.empty());
    for (const auto& r : routing) {
      const size_t i = at(r.layer, int(r.position), n);
      std::vector<double> p;
      if (c.gating == std::string("softmax_over_topk")) {
        double mx = -1e300, z = 0;
        for (float x : r.probs) mx = std::max(mx, double(x));
        for (float x : r.probs) z += std::exp(x - mx);
        for (float x : r.probs) p.push_back(std::exp(x - mx) / z);
      } else if (c.gating == std::string("sigmoid")) {
        double s = 0;
        for (float x : r.probs) s += x;
        for (float x : r.probs) p.push_back(x / s);
      } else {
        p.assign(r.probs.begin(), r.probs.end());
      }
      std::sort(p.rbegin(), p.rend());
      double h = 0;
      for (double x : p)
        if (x > 0) h -= x * std::log(x);
      QVERIFY2(std::fabs(g2->top_prob[i] - p[0]) < 1e-5,
               qPrintable(QString::number(g2->top_prob[i])));
      QVERIFY(std::fabs(g2->margin[i] - (p[0] - p[1])) < 1e-5);
      QVERIFY2(std::fabs(g2->entropy[i] - h) < 1e-4,
               qPrintable(QString("%1 vs %2").arg(g2->entropy[i]).arg(h)));
      QVERIFY(g2->entropy[i] >= 0 && g2->margin[i] >= 0 && g2->margin[i] <= 1);
    }
  }

  // Screenshots of the deepseek3-moe and gpt-oss runs (resources/screenshots/
  // routers-<model>-<w>x<h>-<theme>-<view>.png). Only with MOELAB_SCREENSHOT_DIR.
  void screenshots() {
    const QByteArray out = qgetenv("MOELAB_SCREENSHOT_DIR");
    if (out.isEmpty()) {
      qInfo("set MOELAB_SCREENSHOT_DIR to write the routers' screenshots");
      return;
    }
    const QString dir = QString::fromLocal8Bit(out);
    QDir().mkpath(dir);
    qputenv("MOELAB_VIEWS_CPU", "1");  // QWidget::grab() does not capture a Vulkan surface
    for (int index : {2, 0}) {
      const Case& c = cases()[size_t(index)];
      if (!have(c)) QSKIP(qPrintable("skipped: fixtures not found at " + fixture(c)));
      const QString name = index == 2 ? "deepseek3" : "gptoss";
      MainWindow w(opts("screens-" + name));
      w.resize(1280, 800);
      w.show();
      QVERIFY(load(w, c));
      w.dock("model")->show();
      w.dock("model")->raise();
      QVERIFY(run(w, 24) > 0);
      ViewsPanel* vp = w.viewsPanel();
      for (const QSize size : {QSize(1280, 800), QSize(1920, 1080)})
        for (const char* theme : {"light", "dark"}) {
          moelab::lab::applyTheme(theme);
          w.resize(size);
          QTest::qWait(200);
          auto shot = [&](const char* view) {
            QTest::qWait(200);
            QVERIFY(w.grab().save(QString("%1/routers-%2-%3x%4-%5-%6.png")
                                      .arg(dir, name)
                                      .arg(size.width())
                                      .arg(size.height())
                                      .arg(theme, view)));
          };
          vp->setPage(ViewsPanel::Page::kRouting);
          vp->setRoutingColour(RoutingColour::kTopExpert);
          shot("routing");
          vp->setRoutingColour(RoutingColour::kTopProb);
          shot("routing-score");
          if (c.groups) {
            vp->setRoutingColour(RoutingColour::kGroups);
            shot("routing-groups");
          }
          vp->setRoutingColour(RoutingColour::kTopExpert);
          vp->setPage(ViewsPanel::Page::kExpertLoad);
          shot("load");
        }
      moelab::lab::applyTheme("system");
    }
  }
};

QTEST_MAIN(TestGuiRouters)
#include "test_gui_routers.moc"
