// The Model panel: drop zone (empty state) or model card, load progress with Cancel, memory
// estimate against the RAM available, recent models, and the built-in demo models.
#pragma once

#include <QLabel>
#include <QListWidget>
#include <QProgressBar>
#include <QPushButton>
#include <QStackedWidget>
#include <QWidget>
#include <memory>

#include "drop_zone.h"
#include "model_card_view.h"

class ModelPanel : public QWidget {
  Q_OBJECT
 public:
  explicit ModelPanel(QWidget* parent = nullptr);
  DropZone* dropZone() const { return drop_; }
  ModelCardView* cardView() const { return card_; }
  QString page() const;
  void showDrop();
  void showCard(const QString& path, std::shared_ptr<const moelab::ModelCard> card);
  void setLoadProgress(int permille);  // < 0 hides the bar
  void setLoadState(const QString& text);
  QString loadState() const { return loadState_->text(); }
  void setRecent(const QStringList& files);
  /// Bytes available for new allocations (MemAvailable of /proc/meminfo; 0 unknown).
  static quint64 availableRam();
  QString memoryText() const { return memory_->text(); }
  QPushButton* cancelLoadButton() const { return cancelLoad_; }

 signals:
  void cancelLoadRequested();
  void openRecent(const QString& path);
  void demoRequested(const QString& which);  // "synthetic" or "smollm2"

 private:
  QStackedWidget* stack_;
  DropZone* drop_;
  ModelCardView* card_;
  QProgressBar* loadBar_;
  QPushButton* cancelLoad_;
  QLabel* loadState_;
  QLabel* memory_;
  QListWidget* recent_;
};
