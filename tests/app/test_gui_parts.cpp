// The main window's parts on their own (offscreen, no model): the PowerMonitor's J/token is the
// session's energy accounting's figure for the same samples (session::RunEnergy over a fake
// meter) and "no sensor" is said without one; StatusFields shows the one TTFT / decode tokens/s
// definition of the stored tokens; ComparePanel::selection() names run A and the baseline B;
// add_live_tokens() puts the live run's tokens into the views' RunViewData.
#include <QSignalSpy>
#include <QStatusBar>
#include <QtTest>
#include <memory>
#include <nlohmann/json.hpp>

#include "compare_panel.h"
#include "lab_run.h"
#include "moelab/session/energy.h"
#include "moelab/storage/store.h"
#include "power_monitor.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "run_feed.h"
#endif
#include "status_fields.h"
#include "test_support.h"

namespace st = moelab::storage;

namespace {
// An energy counter the test advances; several meters may read the same counter.
struct Counter {
  double joules = 100.0;
};
class FakeMeter : public moelab::PowerMeter {
 public:
  explicit FakeMeter(std::shared_ptr<Counter> c) : c_(std::move(c)) {}
  std::string name() const override { return "fake"; }
  bool available() const override { return true; }
  std::string unavailable_reason() const override { return {}; }
  std::optional<double> energy_j() override { return c_->joules; }
  std::optional<double> power_w() override { return std::nullopt; }
  std::string resolution() const override { return "exact (test counter)"; }

 private:
  std::shared_ptr<Counter> c_;
};
moelab::TokenEvent token(int32_t index) {
  moelab::TokenEvent ev;
  ev.id = 7;
  ev.index = index;
  return ev;
}
st::TokenRecord tok(int64_t pos, int64_t latency_us) {
  st::TokenRecord t;
  t.position = pos;
  t.latency_us = latency_us;
  return t;
}
}  // namespace

class TestGuiParts : public QObject {
  Q_OBJECT

 private slots:
  void powerMonitorJoulesPerTokenIsTheSessionFigure() {
    auto counter = std::make_shared<Counter>();
    PowerMonitor m(std::make_unique<FakeMeter>(counter), nullptr, 100000);
    QVERIFY(m.available());
    QCOMPARE(m.text(), QString("power: – W"));
    QVERIFY2(m.toolTip().contains("decode energy / decode tokens"), qPrintable(m.toolTip()));
    QVERIFY2(m.toolTip().contains("sensor fake: exact (test counter)"), qPrintable(m.toolTip()));
    QSignalSpy texts(&m, &PowerMonitor::textChanged);

    // The session's energy accounting of the same run, on the same counter.
    moelab::session::RunEnergy energy(std::make_unique<FakeMeter>(counter),
                                      std::chrono::milliseconds(1));
    m.start();
    auto cb = energy.wrap();
    counter->joules += 2.0;  // prefill and the first token: 2 J
    QVERIFY(cb(token(0)));
    counter->joules += 0.5;  // decode step 1
    QVERIFY(cb(token(1)));
    m.setTokens(2);
    m.sample();  // 2.5 J since start: some watts, no invented J/token while running
    QCOMPARE(m.trace().watts.size(), size_t(1));
    QVERIFY(m.trace().watts[0] > 0);
    QVERIFY(m.text().endsWith(" W"));
    QVERIFY(!m.trace().joules_per_token);
    counter->joules += 0.7;  // decode step 2
    QVERIFY(cb(token(2)));
    const moelab::EnergyReport& report = energy.finish();
    m.finish(3, &report);

    const auto stored = energy.j_per_token();  // what store_metrics stores as j_per_token
    QVERIFY(stored);
    QVERIFY(std::abs(*stored - 0.6) < 1e-12);  // decode only: (0.5 + 0.7) J / 2 tokens
    QCOMPARE(m.trace().n_tokens, 3);
    QVERIFY(m.trace().joules_per_token);
    QCOMPARE(*m.trace().joules_per_token, *stored);
    QVERIFY(m.trace().joules);
    QCOMPARE(*m.trace().joules, *energy.energy_j());
    QVERIFY(std::abs(*m.trace().joules - 3.2) < 1e-12);
    QCOMPARE(m.text(), QString("power: %1 J/token").arg(*stored, 0, 'g', 3));
    QCOMPARE(m.text(), QString("power: 0.6 J/token"));
    QVERIFY(texts.count() >= 2);
    QCOMPARE(texts.last().at(0).toString(), m.text());

    // A run with no decode token has no J/token: the run's joules, named as such.
    moelab::EnergyReport prefillOnly = report;
    prefillOnly.phases.resize(1);
    m.start();
    m.finish(1, &prefillOnly);
    QVERIFY(!m.trace().joules_per_token);
    QVERIFY(std::abs(*m.trace().joules - 2.0) < 1e-12);
    QCOMPARE(m.text(), QString("power: 2 J this run"));
  }

  void powerMonitorWithoutSensorSaysSo() {
    const QString root = moelab::test::temp_dir("gui_parts_nosensor") + "/absent";
    PowerMonitor m(root.toStdString(), nullptr);
    QVERIFY(!m.available());
    QCOMPARE(m.text(), QString("power: no sensor"));
    QVERIFY2(m.toolTip().startsWith("No power or energy is shown: power unavailable, because"),
             qPrintable(m.toolTip()));
    // The session's report of a run without a sensor: still no number anywhere.
    moelab::EnergyReport none;
    none.available = false;
    none.reason = "no sensor";
    m.start();
    m.setTokens(4);
    m.sample();
    m.finish(4, &none);
    QVERIFY(m.trace().watts.empty());
    QVERIFY(!m.trace().joules && !m.trace().joules_per_token);
    QCOMPARE(m.text(), QString("power: no sensor"));

    QStatusBar bar;
    StatusFields f(&bar);
    f.followPower(&m);
    QCOMPARE(f.field("power")->text(), QString("power: no sensor"));
    QCOMPARE(f.field("power")->toolTip(), m.toolTip());
  }

  void statusFields() {
    QStatusBar bar;
    StatusFields f(&bar);
    for (const char* name : {"backend", "threads", "memory", "tps", "ttft", "power"}) {
      QVERIFY2(f.field(name), name);
      QCOMPARE(f.field(name)->objectName(), QString("status_%1").arg(name));
      QCOMPARE(bar.findChild<QLabel*>(QString("status_%1").arg(name)), f.field(name));
    }
    QVERIFY(!f.field("nonsense"));
    f.setBackend("CPU: test", "Compute backend: test");
    QCOMPARE(f.field("backend")->text(), QString("CPU: test"));
    QCOMPARE(f.field("backend")->toolTip(), QString("Compute backend: test"));
    f.setThreads(3);
    QCOMPARE(f.field("threads")->text(), QString("3 threads"));
    f.setThreadsRemote();
    QCOMPARE(f.field("threads")->text(), QString("threads: the server's"));
    QCOMPARE(f.field("memory")->text(), QString("model: –"));
    f.setModelMemory(1536.04);
    QCOMPARE(f.field("memory")->text(), QString("model 1536.0 MiB"));
    f.setLiveRate(12.345);
    QCOMPARE(f.field("tps")->text(), QString("12.3 tok/s"));
    f.clearRunFigures();
    QCOMPARE(f.field("tps")->text(), QString("– tok/s"));
    QCOMPARE(f.field("ttft")->text(), QString("TTFT –"));
    // TTFT = the first token's latency; decode tokens/s over the tokens after the first:
    // 2 tokens in 20 + 30 ms = 40 tokens/s (compare::latency_figures).
    const std::vector<st::TokenRecord> toks = {tok(0, 120000), tok(1, 20000), tok(2, 30000)};
    const auto figures = f.setRunFigures(toks);
    QCOMPARE(*figures.ttft_ms, 120.0);
    QCOMPARE(*figures.decode_tokens_per_s, 40.0);
    QCOMPARE(f.field("ttft")->text(), QString("TTFT 120.0 ms"));
    QCOMPARE(f.field("tps")->text(), QString("40.0 tok/s"));
    // A one-token run has no decode rate: 0, as before.
    const std::vector<st::TokenRecord> one = {tok(0, 5000)};
    f.setRunFigures(one);
    QCOMPARE(f.field("ttft")->text(), QString("TTFT 5.0 ms"));
    QCOMPARE(f.field("tps")->text(), QString("0.0 tok/s"));
    f.setPowerRemote();
    QCOMPARE(f.field("power")->text(), QString("power: not available from this engine"));
  }

#ifdef MOELAB_HAVE_VIEWS_PANEL
  void liveTokensIntoTheFeed() {
    // Two layers, 4 experts; token 0 routes to {1, 3} at layer 1 and brings the prompt's
    // attention; token 1 routes to {3}; a closing text-only event adds nothing.
    moelab::lab::RunViewData feed(5, 2, 4);
    std::vector<moelab::lab::LiveToken> items(3);
    items[0].index = 0;
    items[0].piece = "The";
    items[0].latency_us = 900;
    items[0].experts = {{}, {1, 3}};
    items[0].weights = {{}, {0.75f, 0.25f}};
    st::AttentionSnapshot a;
    a.layer = 1;
    a.head = -1;  // the head mean, as the recorder stores it
    a.shape = {2, 2};
    a.data = {1.0f, 0.0f, 0.5f, 0.5f};
    items[0].attention = {a};
    items[0].prompt_text = {"Hi", "!"};
    items[1].index = 1;
    items[1].piece = " end";
    items[1].latency_us = 100;
    items[1].experts = {{}, {3}};
    items[1].op_us.assign(size_t(3) * moelab::lab::RunViewData::OpBreakdown::kOps, 2.0);
    items[1].decode_steps = 1;
    items[2].index = -1;
    items[2].piece = "";
    const auto added = moelab::lab::add_live_tokens(feed, items);
    QVERIFY(added.tokens && added.attention);
    QCOMPARE(feed.n_tokens(), 2);
    QCOMPARE(feed.token_text(), (std::vector<std::string>{"The", " end"}));
    QCOMPARE(feed.tokens_of_expert(1, 3), (std::vector<int64_t>{0, 1}));
    QCOMPARE(feed.tokens_of_expert(1, 1), (std::vector<int64_t>{0}));
    QVERIFY(feed.tokens_of_expert(0, 3).empty());
    QCOMPARE(feed.attention_layers(), (std::vector<int>{1}));
    QCOMPARE(feed.op_breakdown().decode_steps, int64_t(1));
    QCOMPARE(feed.op_breakdown().n_layer, 2);
    // Only the closing event: nothing added.
    const auto none = moelab::lab::add_live_tokens(feed, {items[2]});
    QVERIFY(!none.tokens && !none.attention);
    QCOMPARE(feed.n_tokens(), 2);
  }
#endif

  void compareSelection() {
    const QString db = moelab::test::temp_dir("gui_parts_compare") + "/runs.db";
    QFile::remove(db);
    std::vector<int64_t> ids;
    {
      st::Store s(db.toStdString());
      st::RunBegin b;
      b.session_id = s.create_session("parts");
      // Runs 0 and 1 of a 4-expert model, run 2 of an 8-expert one.
      st::ModelRecord m4{0,       std::string(64, 'a'),     "/models/olmoe-0.gguf",
                         "olmoe", R"({"expert_count": 4})", 0};
      st::ModelRecord m8{0,       std::string(64, 'b'),     "/models/olmoe-2.gguf",
                         "olmoe", R"({"expert_count": 8})", 0};
      const int64_t id4 = s.upsert_model(m4), id8 = s.upsert_model(m8);
      for (int i = 0; i < 3; ++i) {
        b.model_id = i == 2 ? id8 : id4;
        b.config_json = nlohmann::json{
            {"model", {{"path", "/models/olmoe-" + std::to_string(i) + ".gguf"}}},
            {"routing_policy", i == 1 ? "k:1" : "default"},
            {"attention_policy",
             "full"}}.dump();
        ids.push_back(s.begin_run(b));
        s.finish_run(ids.back(), st::RunStatus::Complete, "out");
      }
    }
    ComparePanel p;
    QCOMPARE(p.selection().a, qint64(0));  // no database: nothing chosen
    QCOMPARE(p.selection().b, qint64(0));
    p.setDatabase(db);
    p.refreshRuns();
    QVERIFY(p.setRunA(ids[0]));
    QCOMPARE(p.selection().a, qint64(ids[0]));
    // The pickers name each run's model and policies (and say the same in the tooltip).
    const QString label = p.runA()->currentText();
    QVERIFY2(label.startsWith(QString("#%1 · olmoe-0.gguf · routing default, attention full · "
                                      "complete · ")
                                  .arg(ids[0])),
             qPrintable(label));
    const int k1 = p.runB()->findData(QVariant::fromValue<qint64>(ids[1]));
    QVERIFY(k1 >= 0);
    QVERIFY2(p.runB()->itemText(k1).contains("olmoe-1.gguf · routing k:1, attention full"),
             qPrintable(p.runB()->itemText(k1)));
    QCOMPARE(p.runB()->itemData(k1, Qt::ToolTipRole).toString(), p.runB()->itemText(k1));
    QVERIFY(!p.setRunA(9999));  // not listed: A stays
    QCOMPARE(p.selection().a, qint64(ids[0]));
    // compare(a, b) chooses both pickers: B is the baseline.
    QSignalSpy done(&p, &ComparePanel::compared);
    p.compare(ids[2], ids[1]);
    QCOMPARE(p.selection().a, qint64(ids[2]));
    QCOMPARE(p.selection().b, qint64(ids[1]));
    QVERIFY(done.count() == 1 || done.wait(30000));
    // The summary says what compare and the reports say (compare::check_comparable).
    QVERIFY2(p.summaryText().contains("<b>Warning:</b> A and B are runs of different models") &&
                 p.summaryText().contains(
                     "<b>Warning:</b> A and B have different expert counts (A 8, B 4): "
                     "per-expert routing loads are not compared"),
             qPrintable(p.summaryText()));
    if (const QByteArray dir = qgetenv("MOELAB_SCREENSHOT_DIR"); !dir.isEmpty()) {
      p.resize(1280, 800);  // the panel as the lab shows it, warnings under the summary
      p.grab().save(QString::fromLocal8Bit(dir) + "/compare-warnings.png");
    }
    // The same model: no warning.
    p.compare(ids[0], ids[1]);
    QVERIFY(done.count() == 2 || done.wait(30000));
    QVERIFY2(!p.summaryText().contains("Warning"), qPrintable(p.summaryText()));
  }
};

QTEST_MAIN(TestGuiParts)
#include "test_gui_parts.moc"
