// The lab's "Remote endpoint…" backend end to end (issue 21), through the widgets a user
// touches: `moelab-cli serve` on a fixture MoE on a loopback port (a QProcess), the endpoints
// dialog (bad URL refused, Fetch models from /v1/models, Add, a key not written to the settings
// file unless asked), a run from the Run panel with no local model loaded: the Output pane holds
// the served text, the stored run has engine "remote" and tokens and routed experts equal to a
// local `moelab-cli run` of the same model at the same seed, the routing views hold that run's
// routed experts and the attention, latency breakdown and power pages say "not available from
// this engine" (live and reopened from the store); Stop stores the run cancelled with what
// arrived; an endpoint that is down gives a clear error in the Run panel and the UI stays
// usable. Offscreen platform. With MOELAB_SCREENSHOT_DIR it also writes screenshots of the
// dialog and of a remote run's views at 1280x800, light and dark.
#include <QComboBox>
#include <QDir>
#include <QDockWidget>
#include <QLineEdit>
#include <QListWidget>
#include <QProcess>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTableWidget>
#include <QtTest>
#include <cmath>
#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "gui_test_support.h"
#include "main_window.h"
#include "moelab/storage/store.h"
#include "remote_endpoints.h"
#include "settings.h"
#include "test_support.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "moelab/views/views_panel.h"
#endif

namespace st = moelab::storage;
using json = nlohmann::json;

namespace {
const char* kMoe = "fixtures/models/mixtral-moe/mixtral-moe.F32.gguf";
const QString kNa = QStringLiteral("not available from this engine");
}  // namespace

class TestGuiRemote : public QObject {
  Q_OBJECT
  QString dir_;
  QProcess srv_;
  QString url_;

  MainWindow::Options opts(const QString& name) {
    return moelab::test::fresh_window(dir_, name, "remote");
  }

  // The Run panel's prompt and sampling as a user sets them (the same as the local reference).
  static void setRun(MainWindow& w, const QString& prompt, int maxTokens, bool ignoreEos = false) {
    auto* rp = w.runPanel();
    rp->promptEdit()->setPlainText(prompt);
    rp->maxTokensBox()->setValue(maxTokens);
    rp->ignoreEosBox()->setChecked(ignoreEos);
    rp->temperatureBox()->setValue(0.8);
    rp->fixedSeedBox()->setChecked(true);
    rp->seedBox()->setValue(5);
  }

  // Through the dialog: name, URL, key, Fetch models, Add, Use. Returns the dialog's message
  // when something went wrong.
  static QString addEndpoint(MainWindow& w, const QString& name, const QString& url,
                             const QString& key, bool fetch) {
    auto* rp = w.runPanel();
    rp->chooseRemoteEndpoint();
    auto* d = rp->remoteDialog();
    if (!d) return "no dialog";
    d->nameEdit()->setText(name);
    d->urlEdit()->setText(url);
    d->keyEdit()->setText(key);
    if (fetch) {
      QSignalSpy fetched(d, &moelab::lab::RemoteEndpointsDialog::modelsFetched);
      QTest::mouseClick(d->fetchButton(), Qt::LeftButton);
      if (!fetched.wait(20000) || !fetched.first().first().toBool())
        return "fetch: " + d->message();
    } else {
      d->modelBox()->setCurrentText("moe");
    }
    QTest::mouseClick(d->addButton(), Qt::LeftButton);
    if (d->list()->currentItem() == nullptr || d->list()->currentItem()->text() != name)
      return "add: " + d->message();
    QTest::mouseClick(d->useButton(), Qt::LeftButton);
    QTest::qWait(50);
    if (!rp->remoteEndpoint() || rp->remoteEndpoint()->name != name) return "use: not chosen";
    return {};
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    dir_ = moelab::test::temp_dir("gui_remote");
    qputenv("XDG_DATA_HOME", (dir_ + "/xdg").toUtf8());
    qputenv("MOELAB_POWERCAP_ROOT", (dir_ + "/no-powercap").toUtf8());
    QCoreApplication::setOrganizationName("moelab-test");
    QCoreApplication::setApplicationName("moelab-test-remote");
    QSettings().clear();
    if (!moelab::test::have_shared(kMoe)) return;
    const QString portFile = dir_ + "/port";
    QFile::remove(portFile);
    srv_.setProgram(QStringLiteral(MOELAB_CLI_EXE));
    srv_.setArguments({"serve", "--model", QString::fromStdString(moelab::test::shared_path(kMoe)),
                       "--port", "0", "--port-file", portFile, "--threads", "1", "--api-key", "k3y",
                       "--served-name", "moe", "--ctx", "32768", "--max-tokens", "30000"});
    srv_.start();
    QVERIFY(srv_.waitForStarted(10000));
    while (!QFile::exists(portFile) && srv_.state() == QProcess::Running) srv_.waitForFinished(50);
    QVERIFY2(QFile::exists(portFile), srv_.readAllStandardError().constData());
    url_ = "http://127.0.0.1:" + QString(moelab::test::read_all(portFile).trimmed());
  }

  void cleanupTestCase() {
    if (srv_.state() == QProcess::Running) {
      srv_.terminate();
      srv_.waitForFinished(20000);
    }
  }

  // The dialog refuses what cannot work, and keeps keys off the disk unless asked.
  void dialogValidatesAndKeepsKeysOffDisk() {
    MainWindow w(opts("dialog"));
    w.show();
    auto* rp = w.runPanel();
    rp->chooseRemoteEndpoint();
    auto* d = rp->remoteDialog();
    QVERIFY(d);
    d->nameEdit()->setText("bad");
    d->urlEdit()->setText("ftp://somewhere");
    d->modelBox()->setCurrentText("m");
    QTest::mouseClick(d->addButton(), Qt::LeftButton);
    QVERIFY2(d->message().startsWith("Not saved:"), qPrintable(d->message()));
    QCOMPARE(d->list()->count(), 0);
    // "Use" with nothing saved says what to do and keeps the dialog open.
    QTest::mouseClick(d->useButton(), Qt::LeftButton);
    QVERIFY2(d->message().contains("Add an endpoint"), qPrintable(d->message()));
    QVERIFY(d->isVisible());
    // Cancel: the local backend stays.
    d->reject();
    QTest::qWait(50);
    QVERIFY(!rp->remoteEndpoint());
    QVERIFY(rp->backend() != "remote");

    // A valid endpoint with a key: saved without the key unless "remember" is checked.
    rp->chooseRemoteEndpoint();
    d = rp->remoteDialog();
    QVERIFY(d);
    d->nameEdit()->setText("keyed");
    d->urlEdit()->setText("http://127.0.0.1:9/v1");
    d->modelBox()->setCurrentText("m");
    d->keyEdit()->setText("s3cret");
    QTest::mouseClick(d->addButton(), Qt::LeftButton);
    QCOMPARE(d->list()->count(), 1);
    {
      QSettings s;
      QCOMPARE(s.beginReadArray("remote/endpoints"), 1);
      s.setArrayIndex(0);
      QCOMPARE(s.value("url").toString(), QString("http://127.0.0.1:9/v1"));
      QVERIFY(!s.contains("api_key"));
      s.endArray();
    }
    QCOMPARE(moelab::lab::loadRemoteEndpoints().value(0).apiKey, QString("s3cret"));  // memory
    d->rememberKeyBox()->setChecked(true);
    QTest::mouseClick(d->saveButton(), Qt::LeftButton);
    {
      QSettings s;
      s.beginReadArray("remote/endpoints");
      s.setArrayIndex(0);
      QCOMPARE(s.value("api_key").toString(), QString("s3cret"));
      s.endArray();
    }
    QTest::mouseClick(d->deleteButton(), Qt::LeftButton);
    QCOMPARE(d->list()->count(), 0);
    QVERIFY(moelab::lab::loadRemoteEndpoints().isEmpty());
    d->reject();
  }

  void remoteRunThroughRunPanel() {
    MOELAB_REQUIRE_SHARED(kMoe);
    QSettings().clear();
    const QString prompt = "Once upon a time";
    // The local reference: the same model, seed and sampling, run by moelab-cli into the
    // database the lab opens (so Compare can put the two side by side).
    const MainWindow::Options o = opts("e2e");
    const std::string localDb = o.dbPath.toStdString();
    const auto local = moelab::test::cli_run({"run",
                                              "--model",
                                              moelab::test::shared_path(kMoe),
                                              "--threads",
                                              "1",
                                              "-p",
                                              prompt.toStdString(),
                                              "-n",
                                              "12",
                                              "--seed",
                                              "5",
                                              "--temp",
                                              "0.8",
                                              "--top-k",
                                              "40",
                                              "--top-p",
                                              "0.95",
                                              "--min-p",
                                              "0.05",
                                              "--repeat-penalty",
                                              "1",
                                              "--json",
                                              "--db",
                                              localDb,
                                              "--session",
                                              "local"});
    QVERIFY2(local.code == 0, local.err.c_str());
    const json lj = json::parse(local.out);
    const qint64 localId = lj["run_id"].get<int64_t>();
    std::vector<st::RoutingRecord> localRouting;
    {
      st::Store localStore(localDb);
      localRouting = localStore.routing(localId);
    }
    QVERIFY(!localRouting.empty());

    MainWindow w(o);
    w.resize(1280, 800);
    w.show();
    QVERIFY(!w.modelLoaded());
    auto* rp = w.runPanel();
    QVERIFY(!rp->runButton()->isEnabled());  // no model, no endpoint yet
    const QString err = addEndpoint(w, "loopback", url_, "k3y", /*fetch=*/true);
    QVERIFY2(err.isEmpty(), qPrintable(err));
    QCOMPARE(rp->backend(), QString("remote"));
    QCOMPARE(rp->remoteEndpoint()->model, QString("moe"));  // from /v1/models
    // No local model needed; what the server decides is disabled with the reason.
    QVERIFY(rp->runButton()->isEnabled());
    for (QWidget* c :
         {static_cast<QWidget*>(rp->threadsBox()), static_cast<QWidget*>(rp->contextBox()),
          static_cast<QWidget*>(rp->routingBox()), static_cast<QWidget*>(rp->attentionBox())}) {
      QVERIFY(!c->isEnabled());
      QVERIFY2(c->toolTip().contains("remote endpoint"), qPrintable(c->toolTip()));
    }
    QVERIFY2(rp->backendStateLabel()->text().contains(url_),
             qPrintable(rp->backendStateLabel()->text()));
    QCOMPARE(w.statusField("backend")->text(), QString("remote: loopback"));
    QCOMPARE(w.statusField("threads")->text(), QString("threads: the server's"));

    setRun(w, prompt, 12);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    QTest::mouseClick(rp->runButton(), Qt::LeftButton);
#ifdef MOELAB_HAVE_VIEWS_PANEL
    using Page = moelab::views::ViewsPanel::Page;
    auto* vp = w.viewsPanel();
    // Live: the server reports no attention, per-layer timing or power.
    QCOMPARE(vp->unavailableText(Page::kAttention), kNa);
    QCOMPARE(vp->unavailableText(Page::kPower), kNa);
#endif
    QVERIFY(finished.wait(60000));
    const qint64 id = finished.first().first().toLongLong();
    QVERIFY(id > 0);
    QVERIFY2(rp->runError().isEmpty(), qPrintable(rp->runError()));

    // The Output pane holds the served text, which is the local run's.
    QCOMPARE(w.outputView()->text(), QString::fromStdString(lj["text"].get<std::string>()));
    const auto run = w.store()->run(id);
    QVERIFY(run);
    QCOMPARE(QString(st::status_name(run->status)), QString("complete"));
    QCOMPARE(QString::fromStdString(run->output), w.outputView()->text());
    const json cfg = json::parse(run->config_json);
    QCOMPARE(cfg["engine"], json("remote"));
    QCOMPARE(cfg["remote"]["url"], json(url_.toStdString()));
    QCOMPARE(cfg["remote"]["requested_model"], json("moe"));
    QCOMPARE(cfg["seed"], json(5));
    // Tokens and routed experts equal the local run's.
    const auto rt = w.store()->tokens(id);
    QCOMPARE(rt.size(), lj["tokens"].size());
    for (size_t i = 0; i < rt.size(); ++i) {
      QCOMPARE(rt[i].id, lj["tokens"][i].get<int32_t>());
      QVERIFY(std::isnan(rt[i].logprob));  // not reported: never invented
    }
    const auto rr = w.store()->routing(id);
    QCOMPARE(rr.size(), localRouting.size());
    for (size_t i = 0; i < rr.size(); ++i) {
      QCOMPARE(rr[i].position, localRouting[i].position);
      QCOMPARE(rr[i].layer, localRouting[i].layer);
      QCOMPARE(rr[i].experts, localRouting[i].experts);
    }
    // The Output tokens are tinted by the routed experts (layer 0's top expert); what the
    // server does not report is said in the hover text, not shown as a number.
    const auto* ov = w.outputView();
    QCOMPARE(ov->layer(), 0);
    QCOMPARE(ov->topExpert(0), int(rr[0].experts[0]));  // position 0, layer 0 (sorted records)
    QVERIFY(ov->tokenColor(0).isValid());
    QVERIFY2(ov->tokenTooltip(0).contains("logprob not available from this engine"),
             qPrintable(ov->tokenTooltip(0)));
    QVERIFY(!ov->tokenTooltip(0).contains("nan"));
    // The run is in Sessions.
    QVERIFY(w.sessionsPanel()->selectRun(id));
    // Re-run from Sessions: the same endpoint, the same seed, the same tokens.
    finished.clear();
    w.runAction(id, "rerun");
    QVERIFY(finished.wait(60000));
    const qint64 again = finished.first().first().toLongLong();
    QVERIFY(again != id);
    const auto at = w.store()->tokens(again);
    QCOMPARE(at.size(), rt.size());
    for (size_t i = 0; i < at.size(); ++i) QCOMPARE(at[i].id, rt[i].id);
    QVERIFY(w.openRunInViews(id));

    // Compare: the remote run (A) against the local one (B): the same routing in every layer.
    {
      QSignalSpy compared(w.comparePanel(), &ComparePanel::compared);
      w.comparePanel()->refreshRuns();
      w.comparePanel()->compare(id, localId);
      QVERIFY(compared.wait(30000));
      const QTableWidget* rt2 = w.comparePanel()->routingTable();
      QVERIFY(rt2->rowCount() > 0);
      for (int r = 0; r < rt2->rowCount(); ++r)
        QCOMPARE(rt2->item(r, 1)->text(), QString("0.0000"));  // Jensen-Shannon divergence
    }

#ifdef MOELAB_HAVE_VIEWS_PANEL
    auto checkViews = [&] {
      QCOMPARE(w.viewsRun(), id);
      QVERIFY2(vp->runLabel().contains("remote moe @ " + url_), qPrintable(vp->runLabel()));
      // The routing grid: the top expert of each (layer, generated token) as stored.
      const auto g = vp->routingSnapshot();
      QVERIFY(g.has_value());
      int checked = 0;
      for (const auto& r : rr) {
        const size_t cell = size_t(r.layer) * size_t(g->n_tokens) + size_t(r.position);
        QVERIFY(cell < g->top_expert.size());
        QCOMPARE(g->top_expert[cell], int(r.experts[0]));
        ++checked;
      }
      QVERIFY(checked > 0);
      QVERIFY(vp->expertLoadSnapshot().has_value());
      QVERIFY(vp->coActivationSnapshot().has_value());
      QVERIFY(vp->unavailableText(Page::kRouting).isEmpty());
      // Attention: none published; the page says why.
      QVERIFY(!vp->attentionSnapshot().has_value());
      QCOMPARE(vp->unavailableText(Page::kAttention), kNa);
      vp->setPage(Page::kAttention);
      QTest::qWait(100);
      QCOMPARE(vp->heatmapTitle(), "Attention: " + kNa);
      QCOMPARE(vp->unavailableText(Page::kLatency), kNa);  // per layer / op
      QCOMPARE(vp->unavailableText(Page::kPower), kNa);
      QVERIFY(vp->latencySnapshot().has_value());  // client-side per-token latency
      QVERIFY(vp->latencySnapshot()->rows.empty());
      vp->setPage(Page::kRouting);
    };
    checkViews();
    // Reopened from the store (another run on screen in between).
    vp->clear();
    QVERIFY(vp->unavailableText(Page::kAttention).isEmpty());
    QVERIFY(w.openRunInViews(id));
    checkViews();
#endif
  }

  // Stop cancels: the run is stored as cancelled with the tokens that arrived.
  void stopCancelsRemoteRun() {
    MOELAB_REQUIRE_SHARED(kMoe);
    QSettings().clear();
    MainWindow w(opts("stop"));
    w.show();
    const QString err = addEndpoint(w, "loopback", url_, "k3y", /*fetch=*/false);
    QVERIFY2(err.isEmpty(), qPrintable(err));
    setRun(w, "Once upon a time", 30000, /*ignoreEos=*/true);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    QTest::mouseClick(w.runPanel()->runButton(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(w.outputView()->text().size() > 20, 60000);
    QVERIFY(w.runPanel()->stopButton()->isEnabled());
    QTest::mouseClick(w.runPanel()->stopButton(), Qt::LeftButton);
    QVERIFY(finished.wait(60000));
    const qint64 id = finished.first().first().toLongLong();
    const auto run = w.store()->run(id);
    QVERIFY(run);
    QCOMPARE(QString(st::status_name(run->status)), QString("cancelled"));
    const auto tokens = w.store()->tokens(id);
    QVERIFY(!tokens.empty());
    QVERIFY(tokens.size() < 30000);
    QVERIFY(w.runPanel()->runError().isEmpty());
    QVERIFY(w.runPanel()->runButton()->isEnabled());
  }

  // A server that is down: a clear error in the Run panel, stored as failed, the UI usable.
  void endpointDown() {
    QSettings().clear();
    MainWindow w(opts("down"));
    w.show();
    // Port 1 on loopback: nothing listens there (connection refused).
    const QString err = addEndpoint(w, "down", "http://127.0.0.1:1", {}, /*fetch=*/false);
    QVERIFY2(err.isEmpty(), qPrintable(err));
    setRun(w, "hello", 4);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    QTest::mouseClick(w.runPanel()->runButton(), Qt::LeftButton);
    QVERIFY(finished.wait(30000));
    const qint64 id = finished.first().first().toLongLong();
    const QString e = w.runPanel()->runError();
    QVERIFY2(e.contains("cannot connect to http://127.0.0.1:1"), qPrintable(e));
    QVERIFY2(e.contains(QString("Run #%1 failed").arg(id)), qPrintable(e));
    const auto run = w.store()->run(id);
    QVERIFY(run);
    QCOMPARE(QString(st::status_name(run->status)), QString("failed"));
    QVERIFY2(QString::fromStdString(run->error).contains("cannot connect"), run->error.c_str());
    // Usable after: Run again (same fault, same message), then back to a local backend.
    QVERIFY(w.runPanel()->runButton()->isEnabled());
    QVERIFY(!w.runPanel()->stopButton()->isEnabled());
    QVERIFY(w.runPanel()->backendBox()->isEnabled());
    QTest::mouseClick(w.runPanel()->runButton(), Qt::LeftButton);
    QVERIFY(finished.wait(30000));
    QVERIFY(w.runPanel()->runError().contains("cannot connect"));
    // A wrong API key (when the fixture server runs): the server's 401, in the client's words.
    if (!url_.isEmpty()) {
      const QString err401 = addEndpoint(w, "wrong-key", url_, "nope", /*fetch=*/false);
      QVERIFY2(err401.isEmpty(), qPrintable(err401));
      QTest::mouseClick(w.runPanel()->runButton(), Qt::LeftButton);
      QVERIFY(finished.wait(30000));
      QVERIFY2(w.runPanel()->runError().contains("HTTP 401"), qPrintable(w.runPanel()->runError()));
    }
    w.runPanel()->setBackend("cpu");
    QVERIFY(!w.runPanel()->remoteEndpoint());
    QVERIFY(w.runPanel()->threadsBox()->isEnabled());
    QCOMPARE(w.statusField("threads")->text(),
             QString("%1 threads").arg(w.runPanel()->threadsBox()->value()));
    QVERIFY(!w.runPanel()->runButton()->isEnabled());  // local again: no model loaded
  }

  // Screenshots (MOELAB_SCREENSHOT_DIR only): the dialog and a remote run's views, 1280x800.
  void screenshots() {
#ifdef MOELAB_HAVE_VIEWS_PANEL
    const QByteArray out = qgetenv("MOELAB_SCREENSHOT_DIR");
    if (out.isEmpty()) {
      qInfo("set MOELAB_SCREENSHOT_DIR to write the screenshots");
      return;
    }
    MOELAB_REQUIRE_SHARED(kMoe);
    const QString dir = QString::fromLocal8Bit(out);
    QDir().mkpath(dir);
    qputenv("MOELAB_VIEWS_CPU", "1");  // QWidget::grab() does not capture a Vulkan surface
    QSettings().clear();
    MainWindow w(opts("screens"));
    w.resize(1280, 800);
    w.show();
    QVERIFY(addEndpoint(w, "loopback", url_, "k3y", true).isEmpty());
    setRun(w, "Once upon a time, the router sent each token to", 40);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    w.startRun();
    QVERIFY(finished.wait(60000));
    using Page = moelab::views::ViewsPanel::Page;
    for (QWidget* p = w.runPanel(); p; p = p->parentWidget())
      if (auto* dock = qobject_cast<QDockWidget*>(p)) dock->raise();  // the Run panel, remote
    for (const char* theme : {"light", "dark"}) {
      moelab::lab::applyTheme(theme);
      QTest::qWait(200);
      for (auto [p, name] :
           {std::pair{Page::kRouting, "routing"}, std::pair{Page::kAttention, "attention"},
            std::pair{Page::kLatency, "latency"}}) {
        w.viewsPanel()->setPage(p);
        QTest::qWait(150);
        QVERIFY(w.grab().save(QString("%1/remote-1280x800-%2-%3.png").arg(dir, theme, name)));
      }
      w.runPanel()->chooseRemoteEndpoint();
      auto* d = w.runPanel()->remoteDialog();
      QVERIFY(d);
      QTest::qWait(150);
      QVERIFY(d->grab().save(QString("%1/remote-endpoints-dialog-%2.png").arg(dir, theme)));
      d->reject();
    }
#endif
  }
};

QTEST_MAIN(TestGuiRemote)
#include "test_gui_remote.moc"
