// MainWindow: building the window and wiring its parts; the run lifecycle (start, stream,
// finish), sessions and compare. The rest lives beside it: main_window_docks.cpp (dock layout,
// saved layout, drops), main_window_actions.cpp (menus and their actions, a run's right-click
// actions), main_window_model.cpp (model loading, backend, demos), main_window_views.cpp (the run
// -> views wiring over run_feed / run_views), main_window_remote.cpp (remote runs); the status bar
// is StatusFields, the live power display PowerMonitor.
#include "main_window.h"

#include <QCloseEvent>
#include <QDateTime>
#include <QMessageBox>
#include <QStatusBar>

#include "moelab/storage/store.h"
#include "settings.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "moelab/views/views_panel.h"
#include "run_views.h"
#include "token_linker.h"
#endif

namespace st = moelab::storage;
using moelab::lab::AppSettings;

namespace {
// Where the power meter (status bar, Power page) and each stored run's energy are read.
QString powercapRoot(const MainWindow::Options& options) {
  if (!options.powercapRoot.isEmpty()) return options.powercapRoot;
  return QString::fromStdString(moelab::lab::default_powercap_root());
}
}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  build(Options{});
}

MainWindow::MainWindow(const Options& options, QWidget* parent) : QMainWindow(parent) {
  build(options);
}

MainWindow::~MainWindow() {
  sessions_->commitPendingDelete();
  runner_->stop();
  runner_->wait();
}

void MainWindow::build(const Options& options) {
  setObjectName("moelabMainWindow");
  setAcceptDrops(true);
  setDockNestingEnabled(true);
  resize(1280, 820);
  restoreLayout_ = options.restoreLayout;
  confirm = [this](const QString& title, const QString& text) {
    return QMessageBox::question(this, title, text, QMessageBox::Yes | QMessageBox::Cancel,
                                 QMessageBox::Cancel) == QMessageBox::Yes;
  };
  const AppSettings settings = AppSettings::load();
  dbPath_ = options.dbPath.isEmpty() ? settings.effectiveDbPath() : options.dbPath;
  session_ = options.session.isEmpty()
                 ? tr("session %1").arg(QDateTime::currentDateTime().toString("yyyy-MM-dd"))
                 : options.session;

  // Central area: the live views.
#ifdef MOELAB_HAVE_VIEWS_PANEL
  views_ = new moelab::views::ViewsPanel(this);
  viewsArea_ = views_;
#else
  auto* slot = new QLabel(tr("<div style='color:gray'><b>Live views</b><br>The views panel "
                             "(routing, expert load, attention, latency, power) goes here; this "
                             "build was made without it.</div>"),
                          this);
  slot->setAlignment(Qt::AlignCenter);
  viewsArea_ = slot;
#endif
  viewsArea_->setObjectName("viewsSlot");
  setCentralWidget(viewsArea_);

  model_ = new ModelPanel(this);
  run_ = new RunPanel(this);
  output_ = new OutputView(this);
  tokens_ = new TokenLinker(output_, this);  // one selected token, token search
  sessions_ = new SessionsPanel(this);
  compare_ = new ComparePanel(this);
  loader_ = new ModelLoader(this);
  runner_ = new RunController(this);
  runner_->setPowercapRoot(powercapRoot(options));
  runner_->setDatabase(dbPath_);
  run_->setDefaultThreads(settings.effectiveThreads());
  sessions_->confirm = [this](const QString& t, const QString& x) { return confirm(t, x); };

  buildDocks();
  buildMenus();

  // Status bar: the fields, the power field following the power monitor.
  status_ = new StatusFields(statusBar());
  connect(run_, &RunPanel::backendChanged, this, &MainWindow::onBackendChanged);
  connect(run_->threadsBox(), &QSpinBox::valueChanged, status_,
          [this](int n) { status_->setThreads(n); });
  updateBackendState();
  power_ = new PowerMonitor(powercapRoot(options).toStdString(), this);
  status_->followPower(power_);
  if (!power_->available()) publishPower();  // the Power page says why from the start
  connect(power_, &PowerMonitor::traceChanged, this, &MainWindow::publishPower);

  connectLoader();

  // Runs.
  connect(run_, &RunPanel::runRequested, this, &MainWindow::startRun);
  connect(run_, &RunPanel::stopRequested, this, &MainWindow::stopRun);
  connect(runner_, &RunController::started, this, [this](qint64 id) {
    liveRun_ = id;
#ifdef MOELAB_HAVE_VIEWS_PANEL
    if (feed_) feed_->set_run_id(id);
    viewsRun_ = id;
    views_->setRunLabel(tr("Views: run #%1 · %2 · running (live)")
                            .arg(id)
                            .arg(remoteRun_ && run_->remoteEndpoint()
                                     ? tr("remote %1").arg(run_->remoteEndpoint()->describe())
                                     : modelName_));
#endif
    emit runStarted(id);
  });
  connect(
      runner_, &RunController::finished, this,
      [this](std::shared_ptr<const moelab::lab::RecordedRun> r) {
        drainFeed();
        drain_.stop();
        if (r->run_id > 0) lastRun_ = r->run_id;
        // J/token from the session's energy accounting of the run: the stored j_per_token.
        if (!remoteRun_)
          power_->finish(int(r->result.tokens.size()), r->energy ? &*r->energy : nullptr);
        run_->setRunning(false);
        const quint64 dropped = runner_->feed().dropped();
        if (dropped > 0 && store_)
          output_->showStoredRun(*store_, r->run_id, card_ ? int(card_->expert_count) : 0);
        output_->setDropped(dropped);
        // A remote run's routed experts came with its end: tint its tokens from the store.
        if (remoteRun_ && r->run_id > 0 && store_) showStoredOutput(r->run_id);
        // TTFT and decode tokens/s: one definition (compare::latency_figures of the stored
        // tokens), the figures of the Latency view, Compare and the reports.
        double tps = r->result.tokens_per_s;
        status_->setRunFigures(r->result.ttft_ms, tps);
        if (r->run_id > 0 && store_) {
          try {
            tps =
                status_->setRunFigures(store_->tokens(r->run_id)).decode_tokens_per_s.value_or(0.0);
          } catch (const std::exception&) {
          }
        }
        const QString how = QString::fromLatin1(st::status_name(r->status));
        run_->setRunError(
            r->status == st::RunStatus::Failed
                ? tr("Run #%1 failed: %2").arg(r->run_id).arg(QString::fromStdString(r->error))
                : QString());
        if (r->status == st::RunStatus::Failed)
          say(tr("Run #%1 failed: %2").arg(r->run_id).arg(QString::fromStdString(r->error)));
        else
          say(tr("Run #%1 %2: %3 tokens, %4 tok/s, stored in \"%5\"")
                  .arg(r->run_id)
                  .arg(how)
                  .arg(r->result.tokens.size())
                  .arg(tps, 0, 'f', 1)
                  .arg(session_));
        // The Sessions list re-selects its run while refreshing: that is not the user
        // choosing another run, so the Output pane keeps the run that just ended.
        refreshingSessions_ = true;
        sessions_->refresh();
        refreshingSessions_ = false;
        compare_->refreshRuns();
        if (r->run_id > 0 && store_) {
#ifdef MOELAB_HAVE_VIEWS_PANEL
          storeOpBreakdown(r->run_id);
          openRunInViews(r->run_id);
          // The run just made keeps the power the meter sampled while it ran.
          if (!remoteRun_ && power_->available() && !power_->trace().watts.empty()) publishPower();
#endif
        }
        emit runFinished(r->run_id);
      });
  connect(runner_, &RunController::failed, this, [this](const QString& msg) {
    drain_.stop();
    power_->stop();
    run_->setRunning(false);
    run_->setRunError(tr("The run could not start: %1").arg(msg));
    say(tr("The run could not start: %1").arg(msg));
    emit runFinished(0);
  });
  drain_.setInterval(30);
  connect(&drain_, &QTimer::timeout, this, &MainWindow::drainFeed);

  connectViews();

  // Sessions and compare.
  connect(sessions_, &SessionsPanel::runSelected, this, [this](qint64 id) {
    if (runner_->running() || !store_ || refreshingSessions_) return;
    showStoredOutput(id);
    docks_["output"]->raise();
#ifdef MOELAB_HAVE_VIEWS_PANEL
    openRunInViews(id);
#endif
  });
  connect(sessions_, &SessionsPanel::sessionChosen, this, &MainWindow::setCurrentSession);
  connect(sessions_, &SessionsPanel::runActionRequested, this, &MainWindow::runAction);
  // A deleted run leaves no trace on screen: views, Output pane and Compare pickers.
  connect(sessions_, &SessionsPanel::runDeleted, this, [this](qint64 id) {
    if (output_->runId() == id) output_->startRun(0, {}, 0, 0);  // empties the pane
    if (lastRun_ == id) lastRun_ = 0;
#ifdef MOELAB_HAVE_VIEWS_PANEL
    if (viewsRun_ == id) {
      viewsRun_ = 0;
      feed_.reset();
      views_->clear();
      views_->setRunLabel({});
    }
    if (comparedViews_ && (comparedViews_->a == id || comparedViews_->b == id)) {
      comparedViews_.reset();
      views_->clear();
      views_->setRunLabel({});
    }
#endif
    compare_->refreshRuns();
  });
  connect(sessions_, &SessionsPanel::sessionRenamed, this,
          [this](const QString& o, const QString& n) {
            if (o == session_) setCurrentSession(n);
          });
  connect(sessions_, &SessionsPanel::errorMessage, this, [this](const QString& m) { say(m); });
  connect(compare_, &ComparePanel::failed, this, [this](const QString& m) { say(m); });
  connect(compare_, &ComparePanel::compared, this, &MainWindow::publishCompareViews);

  say(tr("Drop a .gguf model anywhere on the window, or open a demo model"));
  openStore();
  compare_->setDatabase(dbPath_);
  updateRecentMenu();
  model_->setRecent(moelab::lab::recentFiles());
  updateTitle();
  restoreWindowLayout();
}

void MainWindow::openStore() {
  try {
    store_ = std::make_unique<st::Store>(dbPath_.toStdString());
    const auto& interrupted = store_->interrupted_on_open();
    if (!interrupted.empty())
      say(tr("%n run(s) of an earlier session were interrupted (the app ended during the run)", "",
             int(interrupted.size())));
  } catch (const std::exception& e) {
    store_.reset();
    say(tr("The run database %1 cannot be opened: %2")
            .arg(dbPath_, QString::fromStdString(e.what())));
  }
  sessions_->setStore(store_.get());
  sessions_->setCurrentSession(session_);
}

QLabel* MainWindow::statusField(const QString& name) const {
  return status_->field(name);
}

void MainWindow::say(const QString& text, int ms) {
  lastMessage_ = text;
  statusBar()->showMessage(text, ms);
  emit message(text);
}

void MainWindow::updateTitle() {
  setWindowTitle(modelName_.isEmpty() ? tr("moelab — %1").arg(session_)
                                      : tr("moelab — %1 — %2").arg(session_, modelName_));
}

void MainWindow::setCurrentSession(const QString& name) {
  session_ = name;
  sessions_->setCurrentSession(name);
  updateTitle();
}

void MainWindow::startRun() {
  if (runner_->running()) return;
  if (run_->remoteEndpoint()) {
    startRemoteRun();
    return;
  }
  remoteRun_ = false;
  run_->setRunError({});
  if (!runner_->hasModel()) {
    say(tr("Load a model first (drop a .gguf file on the window)"));
    return;
  }
  if (const QString p = run_->policyProblem(); !p.isEmpty()) {
    say(p);
    return;
  }
  const auto s = run_->settings();
  if (s.prompt.empty()) {
    say(tr("Write a prompt first"));
    return;
  }
  const int nLayer = card_ ? int(card_->n_layer) : 0;
  liveTokens_ = 0;
#ifdef MOELAB_HAVE_VIEWS_PANEL
  feed_.emplace(0, nLayer, card_ ? int(card_->expert_count) : 0);
  if (card_) feed_->set_router(moelab::lab::RunViewData::router_of_card(*card_));
  viewsRun_ = 0;
  views_->clear();
  views_->setDiffMode(false);
  views_->setLayerRange(nLayer);
  views_->setRunLabel(tr("Views: the new run (starting) · %1").arg(modelName_));
  // A dense model has no routing to show: open on the latency page.
  if (!card_ || card_->expert_count == 0)
    views_->setPage(moelab::views::ViewsPanel::Page::kLatency);
  else if (views_->page() == moelab::views::ViewsPanel::Page::kLatency)
    views_->setPage(moelab::views::ViewsPanel::Page::kRouting);
#endif
  output_->startRun(0, run_->promptEdit()->toPlainText(), card_ ? int(card_->expert_count) : 0,
                    nLayer);
  docks_["output"]->raise();
  if (!runner_->start(s, session_)) return;
  power_->start();
  run_->setRunning(true);
  status_->clearRunFigures();
  say(tr("Running…"));
  drain_.start();
}

void MainWindow::stopRun() {
  if (runner_->running()) {
    runner_->stop();
    say(tr("Stopping…"));
  }
}

void MainWindow::drainFeed() {
  // At most 512 tokens per tick keeps each GUI update short; the feed drops the oldest items
  // if the display falls further behind (the store has them all).
  auto items = runner_->feed().drain(512);
  if (items.empty()) return;
  output_->appendTokens(items);
  publishViews(items);

  if (runner_->running() && items.size() > 1) {
    double us = 0;
    int n = 0;
    for (const auto& t : items)
      if (t.index > 0) us += double(t.latency_us), ++n;
    if (n > 0 && us > 0) status_->setLiveRate(1e6 * n / us);
  }
}

void MainWindow::changeEvent(QEvent* e) {
  QMainWindow::changeEvent(e);
  if (e->type() != QEvent::ActivationChange || !isActiveWindow() || !store_) return;
  if (runner_->running()) return;  // the run's own end refreshes them
  refreshingSessions_ = true;      // not the user choosing a run: Output keeps what it shows
  sessions_->refresh();
  refreshingSessions_ = false;
  compare_->refreshRuns();
}

void MainWindow::closeEvent(QCloseEvent* e) {
  if (runner_->running()) {
    runner_->stop();
    runner_->wait();
  }
  sessions_->commitPendingDelete();
  saveLayout();
  QMainWindow::closeEvent(e);
}
