#include "main_window.h"

#include <QAction>
#include <QApplication>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QStatusBar>

#include "moelab/core/backends.h"

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setWindowTitle(tr("moelab"));
  setAcceptDrops(true);
  resize(980, 700);

  stack_ = new QStackedWidget(this);
  drop_ = new DropZone(stack_);
  card_ = new ModelCardView(stack_);
  stack_->addWidget(drop_);
  stack_->addWidget(card_);
  setCentralWidget(stack_);
  loader_ = new ModelLoader(this);

  auto* file = menuBar()->addMenu(tr("&File"));
  auto* open = file->addAction(tr("&Open Model…"), this, &MainWindow::chooseFile);
  open->setShortcut(QKeySequence::Open);
  file->addSeparator();
  auto* quit = file->addAction(tr("&Quit"), qApp, &QApplication::quit);
  quit->setShortcut(QKeySequence::Quit);

  auto* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&About moelab"), this, [this] {
    QString backends;
    for (const auto& b : moelab::probe_backends())
      backends += QString("<li>%1: %2</li>").arg(QString::fromStdString(b.name),
                                                 QString::fromStdString(b.detail).toHtmlEscaped());
    QMessageBox::about(this, tr("About moelab"),
                       tr("<h3>moelab %1</h3><p>A desktop lab for looking inside language models: "
                          "expert routing, attention, latency and energy, on moelab's own "
                          "inference engine.</p><p>Compute backends:</p><ul>%2</ul>")
                           .arg(QApplication::applicationVersion(), backends));
  });

  status_ = new QLabel(this);
  statusBar()->addPermanentWidget(status_);
  QString backends;
  for (const auto& b : moelab::probe_backends())
    backends += QString("%1%2: %3").arg(backends.isEmpty() ? "" : "  ·  ",
                                        QString::fromStdString(b.name),
                                        b.available ? QString::fromStdString(b.detail)
                                                    : tr("unavailable"));
  status_->setText(backends);
  statusBar()->showMessage(tr("Drop a .gguf model file onto the window"));

  connect(drop_, &DropZone::fileDropped, this, [this](const QString& path, int n) {
    openModel(path);
    if (n > 1)
      statusBar()->showMessage(tr("%1 files dropped: opened the first, %2").arg(n).arg(QFileInfo(path).fileName()));
  });
  connect(drop_, &DropZone::openRequested, this, &MainWindow::chooseFile);
  connect(card_, &ModelCardView::cancelHashRequested, loader_, &ModelLoader::cancel);
  connect(loader_, &ModelLoader::cardReady, this,
          [this](const QString& path, std::shared_ptr<const moelab::ModelCard> card) {
            if (path != current_) return;
            drop_->setError({});
            card_->setCard(path, std::move(card));
            stack_->setCurrentWidget(card_);
            statusBar()->showMessage(tr("Loaded %1; hashing…").arg(QFileInfo(path).fileName()));
          });
  connect(loader_, &ModelLoader::hashProgress, card_, &ModelCardView::setHashProgress);
  connect(loader_, &ModelLoader::hashReady, this, [this](const QString& path, const QString& sha) {
    if (path != current_) return;
    card_->setHash(sha);
    statusBar()->showMessage(tr("%1 is ready").arg(QFileInfo(path).fileName()));
    emit idle();
  });
  connect(loader_, &ModelLoader::hashCancelled, this, [this](const QString& path) {
    if (path != current_) return;
    card_->setHashCancelled();
    statusBar()->showMessage(tr("Hashing cancelled"));
    emit idle();
  });
  connect(loader_, &ModelLoader::failed, this, [this](const QString& path, const QString& msg) {
    if (path != current_) return;
    drop_->setError(tr("Could not open %1:\n%2").arg(QFileInfo(path).fileName(), msg));
    stack_->setCurrentWidget(drop_);
    statusBar()->showMessage(tr("Not a usable model file"));
    emit idle();
  });
}

QString MainWindow::page() const { return stack_->currentWidget() == card_ ? "card" : "drop"; }

void MainWindow::openModel(const QString& path) {
  current_ = path;
  statusBar()->showMessage(tr("Opening %1…").arg(QFileInfo(path).fileName()));
  loader_->load(path);
}

void MainWindow::chooseFile() {
  const QString path = QFileDialog::getOpenFileName(this, tr("Open GGUF model"), QString(),
                                                    tr("GGUF models (*.gguf);;All files (*)"));
  if (!path.isEmpty()) openModel(path);
}

void MainWindow::dragEnterEvent(QDragEnterEvent* e) {
  if (e->mimeData()->hasUrls() && !DropZone::localFileFromUrls(e->mimeData()->urls()).isEmpty())
    e->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* e) {
  int n = 0;
  const QString path = DropZone::localFileFromUrls(e->mimeData()->urls(), &n);
  if (path.isEmpty()) return;
  e->acceptProposedAction();
  emit drop_->fileDropped(path, n);
}
