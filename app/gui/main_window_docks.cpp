// MainWindow, the dock layout: the Model / Run / Output / Sessions / Compare docks around the
// views, the saved layout, and file drops anywhere on the window.
#include <QDragEnterEvent>
#include <QGuiApplication>
#include <QMimeData>
#include <QScreen>
#include <QScrollArea>
#include <QSettings>

#include "main_window.h"
#include "token_linker.h"

void MainWindow::buildDocks() {
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
  addDock("output", tr("Output"), tokens_->dockWidget(), Qt::BottomDockWidgetArea);
  auto* dSessions = addDock("sessions", tr("Sessions"), sessions_, Qt::RightDockWidgetArea);
  auto* dCompare = addDock("compare", tr("Compare"), compare_, Qt::RightDockWidgetArea);
  tabifyDockWidget(dSessions, dCompare);
  dSessions->raise();
  // Side docks leave the views at least half of a 1280-pixel window.
  resizeDocks({dModel, dSessions}, {380, 330}, Qt::Horizontal);
  resizeDocks({docks_["output"]}, {260}, Qt::Vertical);
}

void MainWindow::restoreWindowLayout() {
  if (restoreLayout_) {
    QSettings s;
    const QByteArray geometry = s.value("window/geometry").toByteArray();
    // First start (nothing saved): the default 1280 x 820 shrinks to the screen's available
    // area, so a 1280 x 800 screen shows the whole window, status bar included.
    if (geometry.isEmpty() || !restoreGeometry(geometry)) {
      const QScreen* sc = screen() ? screen() : QGuiApplication::primaryScreen();
      if (sc) resize(size().boundedTo(sc->availableGeometry().size()));
    }
    restoreState(s.value("window/state").toByteArray());
  }
  // Drops anywhere: widgets that accept drops themselves (text editors) hand file drops to us.
  for (QWidget* w : findChildren<QWidget*>())
    if (w->acceptDrops() && w != model_->dropZone()) w->installEventFilter(this);
}

QDockWidget* MainWindow::dock(const QString& name) const {
  return docks_.value(name);
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
