#include "main_window.h"

#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QCloseEvent>
#include <QDateTime>
#include <QDir>
#include <QDragEnterEvent>
#include <QElapsedTimer>
#include <QFileDialog>
#include <QFileInfo>
#include <QImage>
#include <QInputDialog>
#include <QLineEdit>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProcess>
#include <QScrollArea>
#include <QSettings>
#include <QShortcut>
#include <QStatusBar>
#include <QVBoxLayout>

#include <nlohmann/json.hpp>
#include "demo.h"
#include "moefy_dialog.h"
#include "moelab/compare/compare.h"
#include "moelab/core/backends.h"
#include "moelab/storage/store.h"
#include "moelab/tokenizer/tokenizer.h"
#include "report_export.h"
#include "settings.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "moelab/views/views_panel.h"
#include "run_views.h"
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
  sessions_ = new SessionsPanel(this);
  compare_ = new ComparePanel(this);
  loader_ = new ModelLoader(this);
  runner_ = new RunController(this);
  runner_->setPowercapRoot(powercapRoot(options));
  runner_->setDatabase(dbPath_);
  run_->setDefaultThreads(settings.effectiveThreads());
  sessions_->confirm = [this](const QString& t, const QString& x) { return confirm(t, x); };

  auto addDock = [this](const QString& name, const QString& title, QWidget* w,
                        Qt::DockWidgetArea area) {
    auto* d = new QDockWidget(title, this);
    d->setObjectName(name + "Dock");
    // Tall panels scroll inside their dock instead of raising the window's minimum height.
    if (name == "run" || name == "model") {
      auto* scroll = new QScrollArea(d);
      scroll->setObjectName(name + "Scroll");
      scroll->setWidgetResizable(true);
      scroll->setFrameShape(QFrame::NoFrame);
      scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAsNeeded);
      scroll->setWidget(w);
      d->setWidget(scroll);
    } else {
      d->setWidget(w);
    }
    addDockWidget(area, d);
    docks_[name] = d;
    return d;
  };
  auto* dModel = addDock("model", tr("Model"), model_, Qt::LeftDockWidgetArea);
  auto* dRun = addDock("run", tr("Run"), run_, Qt::LeftDockWidgetArea);
  tabifyDockWidget(dModel, dRun);
  dModel->raise();
  addDock("output", tr("Output"), output_, Qt::BottomDockWidgetArea);
  auto* dSessions = addDock("sessions", tr("Sessions"), sessions_, Qt::RightDockWidgetArea);
  auto* dCompare = addDock("compare", tr("Compare"), compare_, Qt::RightDockWidgetArea);
  tabifyDockWidget(dSessions, dCompare);
  dSessions->raise();
  // Side docks leave the views at least half of a 1280-pixel window.
  resizeDocks({dModel, dSessions}, {380, 330}, Qt::Horizontal);
  resizeDocks({docks_["output"]}, {260}, Qt::Vertical);

  // Menus.
  auto* file = menuBar()->addMenu(tr("&File"));
  auto* open = file->addAction(tr("&Open Model…"), this, &MainWindow::chooseFile);
  open->setShortcut(QKeySequence::Open);
  recentMenu_ = file->addMenu(tr("Open &Recent"));
  file->addAction(tr("New &Session…"), this, [this] {
    bool ok = false;
    const QString name = QInputDialog::getText(
        this, tr("New session"), tr("Name:"), QLineEdit::Normal,
        tr("session %1").arg(QDateTime::currentDateTime().toString("yyyy-MM-dd hh:mm")), &ok);
    if (ok && !name.trimmed().isEmpty()) setCurrentSession(name.trimmed());
  });
  file->addSeparator();
  auto* exportAct = file->addAction(tr("&Export Report…"), this, &MainWindow::exportReportDialog);
  file->addAction(tr("Convert to &Mixture-of-Experts…"), this, &MainWindow::moefyDialog);
  exportAct->setObjectName("exportReportAction");
  exportAct->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
  file->addSeparator();
  file->addAction(tr("Se&ttings…"), this, [this] { moelab::lab::SettingsDialog(this).exec(); });
  file->addSeparator();
  auto* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
  quit->setShortcut(QKeySequence::Quit);

  auto* runMenu = menuBar()->addMenu(tr("&Run"));
  auto* runAct = runMenu->addAction(tr("&Run Prompt"), this, &MainWindow::startRun);
  runAct->setShortcuts(
      {QKeySequence(Qt::CTRL | Qt::Key_Return), QKeySequence(Qt::CTRL | Qt::Key_Enter)});
  runAct->setShortcutContext(Qt::ApplicationShortcut);
  auto* stopAct = runMenu->addAction(tr("&Stop"), this, &MainWindow::stopRun);
  stopAct->setShortcut(QKeySequence(Qt::Key_Escape));
  stopAct->setShortcutContext(Qt::ApplicationShortcut);
  auto* cmpAct =
      runMenu->addAction(tr("&Compare Latest Two Runs"), this, &MainWindow::compareLatest);
  cmpAct->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_D));
  cmpAct->setShortcutContext(Qt::ApplicationShortcut);

  auto* view = menuBar()->addMenu(tr("&View"));
  for (auto* d : docks_) view->addAction(d->toggleViewAction());
  view->addSeparator();
  auto* saveView = view->addAction(tr("Save View as &Image…"), this, [this] {
    const QString path = QFileDialog::getSaveFileName(this, tr("Save view"),
                                                      QDir::home().filePath("moelab-view.png"),
                                                      tr("PNG image (*.png);;SVG drawing (*.svg);;"
                                                         "JPEG image (*.jpg)"));
    if (!path.isEmpty()) saveViewImage(path);
  });
  saveView->setObjectName("saveViewAction");
  auto* copyView = view->addAction(tr("&Copy View"), this, [this] { copyViewImage(); });
  copyView->setObjectName("copyViewAction");
  copyView->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_C));
  view->addAction(tr("Reset &Layout"), this, [this] {
    QSettings().remove("window/state");
    for (auto* d : docks_) d->show();
  });

  auto* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("Demo: &Synthetic MoE model"), this, [this] { openDemo("synthetic"); });
  help->addAction(tr("Demo: SmolLM2-135M-&Instruct"), this, [this] { openDemo("smollm2"); });
#ifdef MOELAB_HAVE_VIEWS_PANEL
  help->addAction(tr("&Views Gallery"), this, [this] { moelab::views::showGallery(this); });
#endif
  help->addSeparator();
  help->addAction(tr("&About moelab"), this, [this] {
    QString backends;
    for (const auto& b : moelab::probe_backends())
      backends += QString("<li>%1: %2</li>")
                      .arg(QString::fromStdString(b.name),
                           QString::fromStdString(b.detail).toHtmlEscaped());
    QMessageBox::about(this, tr("About moelab"),
                       tr("<h3>moelab %1</h3><p>A desktop lab for looking inside language models: "
                          "expert routing, attention, latency and energy, on moelab's own "
                          "inference engine.</p><p>Compute backends:</p><ul>%2</ul>")
                           .arg(QApplication::applicationVersion(), backends));
  });

  // Status bar.
  auto addField = [this](const QString& name, const QString& text, const QString& tip) {
    auto* l = new QLabel(text, this);
    l->setObjectName("status_" + name);
    l->setToolTip(tip);
    statusBar()->addPermanentWidget(l);
    status_[name] = l;
  };
  addField("backend", tr("CPU"), tr("Compute backend and device the runs use"));
  updateBackendState();
  connect(run_, &RunPanel::backendChanged, this, &MainWindow::onBackendChanged);
  addField("threads", tr("%1 threads").arg(run_->threadsBox()->value()),
           tr("CPU threads of the forward pass"));
  addField("memory", tr("model: –"), tr("Weights plus KV cache of the loaded model (MiB)"));
  addField("tps", tr("– tok/s"),
           tr("Decode rate of the last run after its first token (tokens/s)"));
  addField("ttft", tr("TTFT –"),
           tr("Time to first token of the last run: prompt prefill plus first "
              "sampling (ms)"));
  power_ = new PowerMonitor(powercapRoot(options).toStdString(), this);
  if (power_->meter().available())
    addField("power", tr("power: – W"),
             tr("Power draw during generation (W) and energy per generated token of the last "
                "run: J/token as stored (decode energy / decode tokens, the j_per_token every "
                "report and Compare show), else the run's joules; sensor %1: %2")
                 .arg(QString::fromStdString(power_->meter().name()),
                      QString::fromStdString(power_->meter().resolution())));
  else
    addField("power", tr("power: no sensor"),
             tr("No power or energy is shown: %1")
                 .arg(QString::fromStdString(power_->meter().unavailable_reason())));
  if (!power_->available()) publishPower();  // the Power page says why from the start
  connect(power_, &PowerMonitor::sampled, this,
          [this](double w) { status_["power"]->setText(tr("power: %1 W").arg(w, 0, 'f', 1)); });
  connect(power_, &PowerMonitor::traceChanged, this, &MainWindow::publishPower);
  connect(run_->threadsBox(), &QSpinBox::valueChanged, this,
          [this](int n) { status_["threads"]->setText(tr("%1 threads").arg(n)); });

  // Model loading.
  connect(model_->dropZone(), &DropZone::fileDropped, this, [this](const QString& path, int n) {
    openModel(path);
    if (n > 1)
      say(tr("%1 files dropped: opened the first model, %2")
              .arg(n)
              .arg(QFileInfo(path).fileName()));
  });
  connect(model_->dropZone(), &DropZone::openRequested, this, &MainWindow::chooseFile);
  connect(model_->cardView(), &ModelCardView::cancelHashRequested, loader_, &ModelLoader::cancel);
  connect(model_, &ModelPanel::cancelLoadRequested, loader_, &ModelLoader::cancel);
  connect(model_, &ModelPanel::openRecent, this, &MainWindow::openModel);
  connect(model_, &ModelPanel::demoRequested, this, &MainWindow::openDemo);
  connect(loader_, &ModelLoader::cardReady, this,
          [this](const QString& path, std::shared_ptr<const moelab::ModelCard> card,
                 const QString& json) {
            if (path != current_) return;
            model_->dropZone()->setError({});
            card_ = card;
            model_->showCard(path, card);
            docks_["model"]->raise();
            runner_->setModelHash(path, {});
            cardJson_ = json;
            if (card->problems.empty()) {
              model_->setLoadProgress(0);
              model_->setLoadState(tr("Loading %1…").arg(QFileInfo(path).fileName()));
            } else {
              model_->setLoadState(tr("This file cannot be run (see the card)."));
              if (runner_->hasModel())
                run_->setCanRun(true, {});  // the model loaded before stays usable
            }
            say(tr("Opened %1").arg(QFileInfo(path).fileName()));
          });
  connect(loader_, &ModelLoader::loadProgress, this, [this](const QString& path, int pm) {
    if (path == current_) model_->setLoadProgress(pm);
  });
  connect(
      loader_, &ModelLoader::modelReady, this,
      [this](const QString& path, std::shared_ptr<const moelab::Model> m) {
        if (path != current_) return;
        model_->setLoadProgress(-1);
        moelab::lab::ModelIdentity id;
        id.path = path.toStdString();
        runner_->setModel(m, id);
        modelBackend_ = QString::fromStdString(moelab::model_backend(*m));
        updateBackendState();
        modelName_ = QFileInfo(path).fileName();
        loaded_ = {path, modelName_, modelBackend_, card_};
        const auto& c = m->card();
        const uint64_t n_ctx = run_->settings().context_for(c.context_length);
        status_["memory"]->setText(
            tr("model %1 MiB").arg(double(c.memory_estimate(n_ctx, 4)) / 1048576.0, 0, 'f', 1));
        run_->setChatAvailable(m->tokenizer() && !m->tokenizer()->chat_template().empty());
        run_->setModelShape(int(c.n_layer), int(c.expert_count), int(c.expert_used_count));
        run_->setAutoContext(c.context_length);
        run_->setCanRun(m->tokenizer() != nullptr,
                        m->tokenizer()
                            ? QString()
                            : tr("This model has no tokenizer: text prompts cannot be run."));
        model_->setLoadState(
            tr("%1 is loaded: write a prompt in the Run panel (Ctrl+Enter runs).").arg(modelName_));
        moelab::lab::addRecentFile(path);
        updateRecentMenu();
        updateTitle();
        emit modelReady(path);
      });
  connect(loader_, &ModelLoader::loadCancelled, this, [this](const QString& path) {
    if (path != current_) return;
    model_->setLoadProgress(-1);
    model_->setLoadState(tr("Loading cancelled."));
    say(tr("Loading %1 cancelled").arg(QFileInfo(path).fileName()));
    restoreLoadedModel(tr("Loading %1 cancelled.").arg(QFileInfo(path).fileName()));
    emit idle();
  });
  connect(loader_, &ModelLoader::loadFailed, this, [this](const QString& path, const QString& msg) {
    if (path != current_) return;
    model_->setLoadProgress(-1);
    model_->setLoadState(tr("Could not load: %1").arg(msg));
    say(tr("Could not load %1: %2").arg(QFileInfo(path).fileName(), msg));
    restoreLoadedModel(tr("Could not load %1: %2").arg(QFileInfo(path).fileName(), msg));
    emit idle();
  });
  connect(loader_, &ModelLoader::hashProgress, model_->cardView(), &ModelCardView::setHashProgress);
  connect(loader_, &ModelLoader::hashReady, this, [this](const QString& path, const QString& sha) {
    if (path != current_) return;
    model_->cardView()->setHash(sha);
    runner_->setModelHash(path, sha);
    emit idle();
  });
  connect(loader_, &ModelLoader::hashCancelled, this, [this](const QString& path) {
    if (path != current_) return;
    model_->cardView()->setHashCancelled();
    say(tr("Hashing cancelled: runs are stored without the model's hash"));
    emit idle();
  });
  connect(loader_, &ModelLoader::failed, this, [this](const QString& path, const QString& msg) {
    if (path != current_) return;
    model_->setLoadProgress(-1);
    model_->setLoadState({});
    model_->dropZone()->setError(tr("Could not open %1:\n%2").arg(QFileInfo(path).fileName(), msg));
    model_->showDrop();
    say(tr("Not a usable model file: %1").arg(msg));
    restoreLoadedModel(tr("Could not open %1: %2").arg(QFileInfo(path).fileName(), msg));
    emit idle();
  });

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
  connect(runner_, &RunController::finished, this,
          [this](std::shared_ptr<const moelab::lab::RecordedRun> r) {
            drainFeed();
            drain_.stop();
            if (r->run_id > 0) lastRun_ = r->run_id;
            if (!remoteRun_) power_->finish(int(r->result.tokens.size()));
            // The run's total; the stored decode J/token replaces it once the run is stored.
            if (const auto& pt = power_->trace(); pt.joules && !remoteRun_)
              status_["power"]->setText(tr("power: %1 J this run").arg(*pt.joules, 0, 'g', 3));
            run_->setRunning(false);
            const quint64 dropped = runner_->feed().dropped();
            if (dropped > 0 && store_)
              output_->showStoredRun(*store_, r->run_id, card_ ? int(card_->expert_count) : 0);
            output_->setDropped(dropped);
            // A remote run's routed experts came with its end: tint its tokens from the store.
            if (remoteRun_ && r->run_id > 0 && store_) showStoredOutput(r->run_id);
            // TTFT and decode tokens/s: one definition (compare::latency_figures of the stored
            // tokens), the figures of the Latency view, Compare and the reports.
            double ttft = r->result.ttft_ms, tps = r->result.tokens_per_s;
            if (r->run_id > 0 && store_) {
              try {
                const auto f = moelab::compare::latency_figures(store_->tokens(r->run_id));
                ttft = f.ttft_ms.value_or(0.0);
                tps = f.decode_tokens_per_s.value_or(0.0);
              } catch (const std::exception&) {
              }
            }
            status_["tps"]->setText(tr("%1 tok/s").arg(tps, 0, 'f', 1));
            status_["ttft"]->setText(tr("TTFT %1 ms").arg(ttft, 0, 'f', 1));
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
              // One figure under one label: the stored j_per_token (decode energy / decode
              // tokens), as reports and Compare show it.
              for (const auto& m : store_->metrics(r->run_id))
                if (m.key == "j_per_token")
                  status_["power"]->setText(tr("power: %1 J/token").arg(m.value, 0, 'g', 3));
#ifdef MOELAB_HAVE_VIEWS_PANEL
              storeOpBreakdown(r->run_id);
              openRunInViews(r->run_id);
              // The run just made keeps the power the meter sampled while it ran.
              if (!remoteRun_ && power_->available() && !power_->trace().watts.empty())
                publishPower();
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

  // Sessions and compare.
  connect(sessions_, &SessionsPanel::runSelected, this, [this](qint64 id) {
    if (runner_->running() || !store_ || refreshingSessions_) return;
    showStoredOutput(id);
    docks_["output"]->raise();
#ifdef MOELAB_HAVE_VIEWS_PANEL
    openRunInViews(id);
#endif
  });
#ifdef MOELAB_HAVE_VIEWS_PANEL
  // The pickers ask for another slice of the run on screen.
  connect(views_, &moelab::views::ViewsPanel::coActivationLayerRequested, this,
          [this](int) { publishFeed(); });
  connect(views_, &moelab::views::ViewsPanel::attentionLayerRequested, this, [this](int layer) {
    if (!feed_) return;
    if (auto a = feed_->attention(layer))
      views_->publish(std::move(*a));
    else
      say(tr("Attention: run #%1 has no stored attention for layer %2").arg(viewsRun_).arg(layer));
  });
  // Expert load: a click lists the tokens routed to that layer's expert.
  connect(views_, &moelab::views::ViewsPanel::cellActivated, this,
          [this](int page, int layer, int expert) {
            if (page != int(moelab::views::ViewsPanel::Page::kExpertLoad) || !feed_) return;
            const auto pos = feed_->tokens_of_expert(layer, expert);
            QStringList shown;
            for (size_t i = 0; i < pos.size() && i < 40; ++i)
              shown << QString("#%1 '%2'")
                           .arg(pos[i])
                           .arg(QString::fromStdString(feed_->token_text()[size_t(pos[i])])
                                    .simplified());
            views_->setExpertTokens(
                tr("run #%1, layer %2, expert %3: %n token(s)%4", "", int(pos.size()))
                    .arg(viewsRun_)
                    .arg(layer)
                    .arg(expert)
                    .arg(shown.isEmpty() ? QString()
                                         : ": " + shown.join(", ") +
                                               (pos.size() > 40 ? QString(", …") : QString())));
          });
  connect(views_, &moelab::views::ViewsPanel::expertLoadCountsRequested, this,
          [this](bool) { publishFeed(); });
#endif
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

  if (restoreLayout_) {
    QSettings s;
    restoreGeometry(s.value("window/geometry").toByteArray());
    restoreState(s.value("window/state").toByteArray());
  }
  // Drops anywhere: widgets that accept drops themselves (text editors) hand file drops to us.
  for (QWidget* w : findChildren<QWidget*>())
    if (w->acceptDrops() && w != model_->dropZone()) w->installEventFilter(this);
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

QDockWidget* MainWindow::dock(const QString& name) const {
  return docks_.value(name);
}
QLabel* MainWindow::statusField(const QString& name) const {
  return status_.value(name);
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

void MainWindow::updateRecentMenu() {
  recentMenu_->clear();
  const QStringList files = moelab::lab::recentFiles();
  for (const QString& f : files)
    recentMenu_->addAction(QFileInfo(f).fileName(), this, [this, f] { openModel(f); })
        ->setToolTip(f);
  recentMenu_->setEnabled(!files.isEmpty());
  model_->setRecent(files);
}

void MainWindow::openModel(const QString& path) {
  if (runner_->running()) {
    if (!confirm(
            tr("Replace the model?"),
            tr("A run is in progress. Stop it and open %1?").arg(QFileInfo(path).fileName()))) {
      say(tr("Kept the current model; the run continues"));
      return;
    }
    runner_->stop();
    runner_->wait();
  }
  current_ = path;
  // The model loaded so far stays in the runner (and named in the title) until the new one is
  // ready: a file that fails to load leaves it usable (restoreLoadedModel).
  run_->setCanRun(false, runner_->hasModel() ? tr("Loading %1… (%2 stays loaded if it fails)")
                                                   .arg(QFileInfo(path).fileName(), loaded_.name)
                                             : tr("Loading the model…"));
  // The weights go where the Run panel's backend choice needs them: the GPU for CUDA (and for
  // Auto with a usable GPU), else the CPU. A model on the GPU also runs CPU contexts.
  loadBackend_ =
      QString::fromStdString(moelab::lab::load_backend_for(run_->backend().toStdString()));
  updateBackendState();
  say(tr("Opening %1…").arg(QFileInfo(path).fileName()));
  loader_->load(path, loadBackend_);
}

void MainWindow::restoreLoadedModel(const QString& why) {
  if (!runner_->hasModel() || loaded_.path.isEmpty()) return;  // nothing was loaded before
  current_ = loaded_.path;
  modelName_ = loaded_.name;
  modelBackend_ = loaded_.backend;
  loadBackend_ = loaded_.backend;
  card_ = loaded_.card;
  if (card_) {
    model_->showCard(loaded_.path, card_);
    run_->setModelShape(int(card_->n_layer), int(card_->expert_count),
                        int(card_->expert_used_count));
    run_->setAutoContext(card_->context_length);
  }
  const auto m = runner_->model();
  run_->setCanRun(
      m->tokenizer() != nullptr,
      m->tokenizer() ? QString() : tr("This model has no tokenizer: text prompts cannot be run."));
  model_->setLoadState(tr("%1 %2 is still loaded and runs.").arg(why, modelName_));
  updateBackendState();
  updateTitle();
  say(tr("%1 — %2 is still loaded").arg(why, modelName_));
}

QString MainWindow::updateBackendState() {
  if (const auto ep = run_->remoteEndpoint()) {
    const QString line = tr("remote endpoint %1").arg(ep->describe());
    run_->setBackendState(line, false);
    if (QLabel* field = status_.value("backend")) {
      field->setText(tr("remote: %1").arg(ep->name));
      field->setToolTip(tr("Runs go to %1").arg(line));
    }
    if (QLabel* t = status_.value("threads")) t->setText(tr("threads: the server's"));
    return line;
  }
  if (QLabel* t = status_.value("threads"))
    t->setText(tr("%1 threads").arg(run_->threadsBox()->value()));
  const std::string requested = run_->backend().toStdString();
  const bool loaded = runner_->hasModel() && !modelBackend_.isEmpty();
  const std::string used = loaded ? moelab::lab::run_backend(requested, modelBackend_.toStdString())
                                  : moelab::lab::load_backend_for(requested);
  const QString line = QString::fromStdString(moelab::lab::backend_line(used, requested));
  run_->setBackendState(line, loaded);
  if (QLabel* field = status_.value("backend")) {
    QString text = used == "cuda" ? tr("CUDA") : tr("CPU");
    for (const auto& b : moelab::probe_backends())
      if (b.name == used && !b.detail.empty())
        text = tr("%1: %2").arg(used == "cuda" ? tr("CUDA") : tr("CPU"),
                                QString::fromStdString(b.detail));
    field->setText(text);
    field->setToolTip(tr("Compute backend and device the runs use: %1").arg(line));
  }
  return line;
}

void MainWindow::onBackendChanged(const QString& name) {
  if (name == "remote") {  // no model to (re)load: runs go to the server
    say(tr("Runs go to %1").arg(updateBackendState()));
    return;
  }
  const QString need = QString::fromStdString(moelab::lab::load_backend_for(name.toStdString()));
  const bool runnable = card_ && card_->problems.empty();
  // CUDA needs the weights on the GPU: a model loaded for the CPU is loaded again. A model on
  // the GPU runs CPU contexts on its host weights, so the other way needs no reload - unless
  // the last load failed (e.g. the GPU lacked the memory) and there is no model at all.
  const bool reload = !current_.isEmpty() && runnable && !runner_->running() &&
                      ((need == "cuda" && loadBackend_ != "cuda") ||
                       (!runner_->hasModel() && !loader_->busy() && need != loadBackend_));
  if (reload) {
    openModel(current_);
    say(tr("Loading %1 again for %2…")
            .arg(QFileInfo(current_).fileName(), need == "cuda" ? tr("CUDA") : tr("the CPU")));
    return;
  }
  const QString line = updateBackendState();
  say(runner_->hasModel() ? tr("Runs use %1").arg(line) : tr("Runs will use %1").arg(line));
}

void MainWindow::openDemo(const QString& which) {
  QString path;
  if (which == "synthetic") {
    QString err;
    say(tr("Preparing the synthetic MoE demo model…"));
    path = moelab::lab::demo::ensureSynthetic(&err);
    if (path.isEmpty()) {
      say(tr("Could not write the demo model: %1").arg(err));
      return;
    }
  } else if (which == "moefied") {
    path = moelab::lab::demo::findMoefied();
    if (path.isEmpty()) {
      say(
          tr("The moefied SmolLM2 is not built yet (scripts/run.sh writes it with 'moelab-cli "
             "moefy'); opening the random-weight MoE instead"));
      openDemo("synthetic");
      return;
    }
  } else {
    path = moelab::lab::demo::findSmol();
    if (path.isEmpty()) {
      const QString script = moelab::lab::demo::fetchScript();
      if (script.isEmpty()) {
        say(tr("SmolLM2 is not cached and scripts/fetch-demo-model.sh was not found"));
        return;
      }
      say(tr("Fetching SmolLM2-135M-Instruct (98 MB, once)…"));
      auto* p = new QProcess(this);
      connect(p, &QProcess::finished, this, [this, p](int code) {
        p->deleteLater();
        if (code == 0 && !moelab::lab::demo::findSmol().isEmpty())
          openDemo("smollm2");
        else
          say(tr("Fetching SmolLM2 failed: %1")
                  .arg(QString::fromLocal8Bit(p->readAllStandardError()).trimmed()));
      });
      p->start("bash", {script});
      return;
    }
  }
  bool chat = false;
  const QString prompt = moelab::lab::demo::promptFor(path, &chat);
  auto conn = std::make_shared<QMetaObject::Connection>();
  *conn = connect(this, &MainWindow::modelReady, this, [this, conn, prompt, chat](const QString&) {
    disconnect(*conn);
    run_->setPrompt(prompt, chat);
    run_->maxTokensBox()->setValue(48);
    docks_["run"]->raise();
    run_->promptEdit()->setFocus();
  });
  openModel(path);
}

void MainWindow::chooseFile() {
  const QString path = QFileDialog::getOpenFileName(this, tr("Open GGUF model"), QString(),
                                                    tr("GGUF models (*.gguf);;All files (*)"));
  if (!path.isEmpty()) openModel(path);
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
  if (power_->available()) status_["power"]->setText(tr("power: – W"));
  run_->setRunning(true);
  status_["tps"]->setText(tr("– tok/s"));
  status_["ttft"]->setText(tr("TTFT –"));
  say(tr("Running…"));
  drain_.start();
}

// ---------------------------------------------------------------- power
// PowerMonitor samples the meter; the Power page shows its trace, or the meter's reason when
// there is no sensor.

void MainWindow::publishPower() {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  moelab::views::PowerSeries ps;
  if (power_->meter().available()) {
    ps.t_s = power_->trace().t_s;
    ps.watts = power_->trace().watts;
    ps.sensor = power_->meter().name();
    ps.n_tokens = power_->trace().n_tokens;
  } else {
    ps.sensor =
        power_->meter().unavailable_reason();  // the page shows "no sensor on this machine: ..."
  }
  views_->publish(std::move(ps));
#endif
}

void MainWindow::stopRun() {
  if (runner_->running()) {
    runner_->stop();
    say(tr("Stopping…"));
  }
}

QStringList MainWindow::exportReport(const QString& what, const QString& path) {
  namespace rp = moelab::report;
  if (runner_->running()) {
    say(tr("Export report: wait until the run has finished"));
    return {};
  }
  rp::Selection sel;
  QString label;
  if (what == "run") {
    const qint64 id = output_->runId() > 0 ? output_->runId() : lastRun_;
    if (id <= 0) {
      say(tr("Export report: no run to report yet"));
      return {};
    }
    sel = rp::Selection::one_run(id);
    label = tr("run #%1").arg(id);
  } else if (what == "session") {
    sel = rp::Selection::whole_session(session_.toStdString());
    label = tr("session \"%1\"").arg(session_);
  } else if (what == "compare") {
    const auto [a, b] = compare_->selection();
    if (a <= 0 || b <= 0) {
      say(tr("Export report: choose runs A and B in the Compare panel first"));
      return {};
    }
    sel = rp::Selection::compare(a, b);
    label = tr("runs #%1 (A) and #%2 (B)").arg(a).arg(b);
  } else {
    say(tr("Export report: unknown selection \"%1\"").arg(what));
    return {};
  }
  const auto r = moelab::lab::exportReport(this, dbPath_, sel, path);
  if (r.cancelled) {
    say(tr("Report cancelled"));
    return {};
  }
  if (!r.ok) {
    say(tr("The report of %1 could not be written: %2").arg(label, r.error));
    return {};
  }
  say(tr("Report of %1 written to %2").arg(label, r.files.value(0)));
  return r.files;
}

void MainWindow::moefyDialog() {
  auto* d = new moelab::lab::MoefyDialog(current_, this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  connect(d, &moelab::lab::MoefyDialog::finished, this, [this, d](bool ok, const QString& out) {
    if (!ok) return;
    say(tr("Converted to a Mixture-of-Experts model: %1").arg(out));
    d->accept();
    openModel(out);
  });
  d->open();
}

void MainWindow::exportReportDialog() {
  const QStringList kinds = {tr("This run (shown in Output, else the last run)"),
                             tr("The current session"),
                             tr("Comparison A-B (runs chosen in the Compare panel)")};
  bool ok = false;
  const QString k =
      QInputDialog::getItem(this, tr("Export report"), tr("Report of:"), kinds, 0, false, &ok);
  if (!ok) return;
  const QString what = k == kinds[0] ? "run" : k == kinds[1] ? "session" : "compare";
  QString selected;
  QString path = QFileDialog::getSaveFileName(
      this, tr("Export report"),
      QDir::home().filePath(what == "compare" ? "moelab-ab.html" : "moelab-report.html"),
      moelab::lab::reportFileFilter(), &selected);
  if (path.isEmpty()) return;
  if (!moelab::lab::reportFormatForPath(path)) {
    // No known suffix: take the one of the chosen filter.
    const int star = selected.indexOf("*.");
    if (star >= 0) path += selected.mid(star + 1, selected.indexOf(')', star) - star - 1);
  }
  exportReport(what, path);
}

void MainWindow::runAction(qint64 runId, const QString& action) {
  if (!store_ || !store_->run(runId)) {
    say(tr("Run #%1 is not in the database").arg(runId));
    return;
  }
  if (action == "open") {
    sessions_->selectRun(runId);
  } else if (action == "compare") {
    compare_->refreshRuns();
    compare_->setRunA(runId);
    docks_["compare"]->show();
    docks_["compare"]->raise();
    say(tr("Run #%1 is A: choose the baseline B and press Compare").arg(runId));
  } else if (action == "report") {
    sessions_->selectRun(runId);
    exportReportDialog();
  } else if (action == "delete") {
    if (sessions_->deleteRun(runId)) say(tr("Run #%1 deleted").arg(runId));
  } else if (action == "rerun") {
    if (runner_->running()) {
      say(tr("Re-run: wait until the current run has finished"));
      return;
    }
    const auto r = store_->run(runId);
    const QString skipped = run_->applyConfig(QString::fromStdString(r->prompt), r->config_json);
    docks_["run"]->raise();
    if (!skipped.isEmpty()) say(tr("Re-run of #%1: not taken over: %2").arg(runId).arg(skipped));
    if (rerunRemote(runId, r->config_json)) return;  // a remote run goes to its endpoint
    if (!runner_->hasModel()) {
      say(tr("Re-run of #%1: its configuration is in the Run panel; load its model first")
              .arg(runId));
      return;
    }
    // Never re-run on another model than the run's own: say which one it needs instead.
    if (const auto m = r->model_id ? store_->model(r->model_id) : std::nullopt) {
      const QFileInfo want(QString::fromStdString(m->path)), have(current_);
      const bool same = want.exists() ? want.canonicalFilePath() == have.canonicalFilePath()
                                      : want.fileName() == have.fileName();
      if (!same) {
        say(tr("Re-run of #%1: it ran on %2, but %3 is loaded; open %2 and press Run (its "
               "configuration is in the Run panel)")
                .arg(runId)
                .arg(QString::fromStdString(m->path), have.fileName()));
        return;
      }
    }
    startRun();
  }
}

bool MainWindow::copyViewImage() {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  const QImage img = views_->grabPage();
  if (img.isNull()) {
    say(tr("Copy view: nothing on screen"));
    return false;
  }
  QGuiApplication::clipboard()->setImage(img);
  say(tr("View copied to the clipboard (%1 x %2)").arg(img.width()).arg(img.height()));
  return true;
#else
  say(tr("Copy view: this build has no views"));
  return false;
#endif
}

bool MainWindow::saveViewImage(const QString& path) {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  if (path.endsWith(".svg", Qt::CaseInsensitive)) {
    QString why;
    if (!views_->savePageSvg(path, &why)) {
      say(tr("Save view: %1").arg(why));
      return false;
    }
    say(tr("View saved to %1").arg(path));
    return true;
  }
  const QImage img = views_->grabPage();
  if (img.isNull()) {
    say(tr("Save view: nothing on screen"));
    return false;
  }
  if (!img.save(path)) {
    say(tr("Save view: cannot write %1").arg(path));
    return false;
  }
  say(tr("View saved to %1").arg(path));
  return true;
#else
  Q_UNUSED(path);
  say(tr("Save view: this build has no views"));
  return false;
#endif
}

void MainWindow::compareLatest() {
  docks_["compare"]->show();
  docks_["compare"]->raise();
  compare_->compareLatestTwo();
}

void MainWindow::publishViews(const std::vector<moelab::lab::LiveToken>& items) {
  // The live run's records go into the same accumulation a stored run is read into
  // (RunViewData), so the views show the same values live and after a restart.
  for (const auto& t : items)
    if (t.index >= 0) ++liveTokens_;
  power_->setTokens(liveTokens_);
#ifdef MOELAB_HAVE_VIEWS_PANEL
  if (!feed_) return;
  bool any = false;
  for (const auto& t : items) {
    if (t.index < 0) continue;
    any = true;
    feed_->add_token(t.index, t.piece, t.latency_us);
    for (size_t l = 0; l < t.experts.size(); ++l) {
      if (t.experts[l].empty()) continue;
      moelab::storage::RoutingRecord r;
      r.position = t.index;
      r.layer = int32_t(l);
      r.experts = t.experts[l];
      r.weights = l < t.weights.size() ? t.weights[l] : std::vector<float>{};
      r.probs = l < t.probs.size() ? t.probs[l] : std::vector<float>{};
      r.groups = l < t.groups.size() ? t.groups[l] : std::vector<uint8_t>{};
      feed_->add_routing(r);
    }
    if (!t.attention.empty()) {
      feed_->set_attention(t.attention, t.prompt_text);
      // Open on the deepest layer with a snapshot (the one Compare shows too).
      const auto layers = feed_->attention_layers();
      if (!layers.empty()) views_->setAttentionLayer(layers.back());
    }
    if (!t.op_us.empty()) feed_->set_op_breakdown({feed_->n_layer(), t.decode_steps, t.op_us});
  }
  if (any) publishFeed();
#endif
}

void MainWindow::publishFeed() {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  if (!feed_) return;
  const auto& f = *feed_;
  if (f.expert_count() > 0 && f.n_layer() > 0) {
    views_->publish(f.routing_grid());
    views_->publish(f.expert_load(views_->expertLoadCounts()));
    const int cl = std::clamp(views_->coActivationLayer(), 0, f.n_layer() - 1);
    views_->publish(f.co_activation(cl));
  }
  if (auto a = f.attention(views_->attentionLayer())) views_->publish(std::move(*a));
  if (f.n_tokens() > 0) views_->publish(f.latency());
#endif
}

QString MainWindow::runLabel(qint64 runId) const {
  if (!store_) return tr("run #%1").arg(runId);
  const auto r = store_->run(runId);
  if (!r) return tr("run #%1").arg(runId);
  QString model;
  try {
    const auto j = nlohmann::json::parse(r->config_json);
    if (j.contains("model") && j["model"].is_object())
      model = QFileInfo(QString::fromStdString(j["model"].value("path", std::string()))).fileName();
    if (model.isEmpty()) model = remoteLabel(r->config_json);
    QString policy = QString::fromStdString(j.value("routing_policy", std::string()));
    if (!policy.isEmpty() && policy != "default") model += tr(" · routing %1").arg(policy);
  } catch (const std::exception&) {
  }
  QString session;
  if (const auto s = store_->session(r->session_id)) session = QString::fromStdString(s->name);
  return tr("Views: run #%1 · %2 · %3 · %n token(s) · %4", "", int(r->n_tokens))
      .arg(runId)
      .arg(model.isEmpty() ? tr("model unknown") : model)
      .arg(QString::fromLatin1(st::status_name(r->status)))
      .arg(session);
}

#ifdef MOELAB_HAVE_VIEWS_PANEL
void MainWindow::storeOpBreakdown(qint64 runId) {
  if (!store_ || !feed_ || feed_->run_id() != runId) return;
  const auto metrics = moelab::lab::RunViewData::op_breakdown_metrics(feed_->op_breakdown());
  if (metrics.empty()) return;  // a remote run, or no decode step: nothing timed
  try {
    store_->append_metrics(runId, metrics);
  } catch (const std::exception& e) {
    say(tr("Run #%1: the per layer / op times could not be stored: %2")
            .arg(runId)
            .arg(QString::fromStdString(e.what())));
  }
}

bool MainWindow::openRunInViews(qint64 runId) {
  if (runner_->running() || !store_ || runId <= 0) return false;
  const auto r = store_->run(runId);
  if (!r) return false;
  // The prompt's token texts for the attention axes, when the loaded model is the run's model.
  std::vector<std::string> promptText;
  try {
    const auto j = nlohmann::json::parse(r->config_json);
    const auto m = runner_->model();
    if (m && j.contains("model") && j["model"].is_object() &&
        j["model"].value("path", std::string()) == current_.toStdString())
      promptText = moelab::lab::prompt_token_text(*m, r->prompt, j.value("chat", false),
                                                  j.value("system", std::string()));
  } catch (const std::exception&) {
  }
  // The per layer / op breakdown comes from the store (storeOpBreakdown); the live run's one
  // stays on screen only when storing it failed.
  std::optional<moelab::lab::RunViewData::OpBreakdown> ops;
  if (feed_ && feed_->run_id() == runId && feed_->op_breakdown().decode_steps > 0)
    ops = feed_->op_breakdown();
  try {
    feed_ = moelab::lab::RunViewData::from_store(*store_, runId, std::move(promptText));
  } catch (const std::exception& e) {
    say(tr("Cannot show run #%1: %2").arg(runId).arg(QString::fromStdString(e.what())));
    return false;
  }
  if (ops && feed_->op_breakdown().decode_steps == 0) feed_->set_op_breakdown(*ops);
  viewsRun_ = runId;
  views_->clear();
  views_->setDiffMode(false);
  views_->setLayerRange(feed_->n_layer());
  const auto layers = feed_->attention_layers();
  if (!layers.empty() && !feed_->attention(views_->attentionLayer()))
    views_->setAttentionLayer(layers.back());
  publishFeed();
  // Without a sensor the page says why, as it does while a run streams.
  views_->publish(feed_->power(power_->meter().available()
                                   ? tr("this run has no energy measurements").toStdString()
                                   : power_->meter().unavailable_reason()));
  if (!markIfRemote(runId) && feed_->op_breakdown().decode_steps == 0)
    views_->setUnavailable(moelab::views::ViewsPanel::Page::kLatency,
                           tr("not recorded (runs from moelab-cli have none)"));
  views_->setRunLabel(runLabel(runId));
  if (feed_->expert_count() == 0 && views_->page() != moelab::views::ViewsPanel::Page::kPower)
    views_->setPage(moelab::views::ViewsPanel::Page::kLatency);
  return true;
}
#endif

void MainWindow::showStoredOutput(qint64 id) {
  if (!store_) return;
  int experts = 0;
  try {
    const auto r = store_->run(id);
    if (r) {
      const auto j = nlohmann::json::parse(r->config_json);
      if (j.contains("model") && j["model"].is_object())
        experts = j["model"].value("expert_count", 0);
    }
    // A run without a model row (a remote run): as many experts as its routing names.
    if (experts == 0)
      for (const auto& rr : store_->routing(id))
        for (const uint16_t e : rr.experts) experts = std::max(experts, int(e) + 1);
  } catch (const std::exception&) {
  }
  output_->showStoredRun(*store_, id, experts);
}

void MainWindow::publishCompareViews() {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  auto v = compare_->views();
  comparedViews_ = v;
  if (!v || runner_->running()) return;  // a live run owns the views until it ends
  using Page = moelab::views::ViewsPanel::Page;
  // Every page shows run A (from the store); the baseline pages add B. The Output pane shows A
  // too (it kept the run selected before, under views naming A).
  openRunInViews(v->a);
  showStoredOutput(v->a);
  const bool load = v->load_a.n_layer > 0 && v->load_a.expert_count > 0;
  const bool attention = v->attention_a && v->attention_b;
  if (load) {
    views_->publish(v->load_a);
    views_->publishBaseline(v->load_b);
  }
  if (attention) {
    views_->publish(*v->attention_a);
    views_->publishBaseline(*v->attention_b);
  }
  if (!load && !attention) return;
  if (attention) views_->setAttentionLayer(v->attention_a->layer);
  views_->setRunLabel(tr("Views: run #%1 (A) − run #%2 (B = baseline) · %3")
                          .arg(v->a)
                          .arg(v->b)
                          .arg(runLabel(v->a).section(" · ", 1)));
  views_->setDiffMode(true);
  views_->setPage(load ? Page::kExpertLoad : Page::kAttention);
  say(tr("Views: %1 of run #%2 − run #%3 (the \"A − B\" box switches back to A alone)")
          .arg(load ? tr("expert load") : tr("prompt attention"))
          .arg(v->a)
          .arg(v->b));
#endif
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
    if (n > 0 && us > 0) status_["tps"]->setText(tr("%1 tok/s").arg(1e6 * n / us, 0, 'f', 1));
  }
}

void MainWindow::handleDrop(const QList<QUrl>& urls) {
  int n = 0;
  const QString path = DropZone::localFileFromUrls(urls, &n);
  if (path.isEmpty()) {
    say(tr("Only local files can be opened"));
    return;
  }
  emit model_->dropZone()->fileDropped(path, n);
}

void MainWindow::dragEnterEvent(QDragEnterEvent* e) {
  if (e->mimeData()->hasUrls() && !DropZone::localFileFromUrls(e->mimeData()->urls()).isEmpty())
    e->acceptProposedAction();
}

void MainWindow::dragMoveEvent(QDragMoveEvent* e) {
  if (e->mimeData()->hasUrls()) e->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* e) {
  if (!e->mimeData()->hasUrls()) return;
  e->acceptProposedAction();
  handleDrop(e->mimeData()->urls());
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

bool MainWindow::eventFilter(QObject* o, QEvent* e) {
  switch (e->type()) {
    case QEvent::DragEnter:
    case QEvent::DragMove: {
      auto* d = static_cast<QDragMoveEvent*>(e);
      if (d->mimeData()->hasUrls() &&
          !DropZone::localFileFromUrls(d->mimeData()->urls()).isEmpty()) {
        d->acceptProposedAction();
        return true;
      }
      break;
    }
    case QEvent::Drop: {
      auto* d = static_cast<QDropEvent*>(e);
      if (d->mimeData()->hasUrls() &&
          !DropZone::localFileFromUrls(d->mimeData()->urls()).isEmpty()) {
        d->acceptProposedAction();
        handleDrop(d->mimeData()->urls());
        return true;
      }
      break;
    }
    default:
      break;
  }
  return QMainWindow::eventFilter(o, e);
}

void MainWindow::saveLayout() {
  QSettings s;
  s.setValue("window/geometry", saveGeometry());
  s.setValue("window/state", saveState());
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
