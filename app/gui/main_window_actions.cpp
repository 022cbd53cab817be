// MainWindow, menus and actions: the File / Run / View / Help menus and what their actions do
// (open, recent files, export report, moefy, save / copy the view), and the Sessions panel's
// right-click actions on a run.
#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QDateTime>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QImage>
#include <QInputDialog>
#include <QLineEdit>
#include <QMenuBar>
#include <QMessageBox>
#include <QSettings>

#include "main_window.h"
#include "moefy_dialog.h"
#include "moelab/core/backends.h"
#include "moelab/storage/store.h"
#include "report_export.h"
#include "settings.h"
#include "token_linker.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "moelab/views/views_panel.h"
#endif

void MainWindow::buildMenus() {
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
  // Esc stops a run; with none running it clears the selected token.
  auto* stopAct = runMenu->addAction(tr("&Stop"), this, [this] {
    if (runner_->running())
      stopRun();
    else
      tokens_->clearSelection();
  });
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

void MainWindow::chooseFile() {
  const QString path = QFileDialog::getOpenFileName(this, tr("Open GGUF model"), QString(),
                                                    tr("GGUF models (*.gguf);;All files (*)"));
  if (!path.isEmpty()) openModel(path);
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
