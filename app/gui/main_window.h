// moelab's main window (the shell: model loading and the model card; runs, views and sessions
// join it in later steps).
#pragma once

#include <QLabel>
#include <QMainWindow>
#include <QStackedWidget>
#include <memory>

#include "drop_zone.h"
#include "model_card_view.h"
#include "model_loader.h"

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  explicit MainWindow(QWidget* parent = nullptr);

  /// Loads a model file (from a drop, File → Open or the command line).
  void openModel(const QString& path);

  DropZone* dropZone() const { return drop_; }
  ModelCardView* cardView() const { return card_; }
  ModelLoader* loader() const { return loader_; }
  /// The current page: "drop" or "card".
  QString page() const;

 signals:
  /// Emitted when the model card is shown and hashing finished (or was cancelled) or loading
  /// failed: the window is idle again.
  void idle();

 protected:
  void dragEnterEvent(QDragEnterEvent* e) override;
  void dropEvent(QDropEvent* e) override;

 private:
  void chooseFile();
  QStackedWidget* stack_;
  DropZone* drop_;
  ModelCardView* card_;
  ModelLoader* loader_;
  QLabel* status_;
  QString current_;
};
