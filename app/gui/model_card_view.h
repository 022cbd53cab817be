// The model card panel: architecture, widths, experts, quantization mix, parameters (total and
// active per token), memory estimate, SHA-256 with progress and cancel, problems.
#pragma once

#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QTableWidget>
#include <QWidget>
#include <memory>

#include "moelab/model/card.h"

class ModelCardView : public QWidget {
  Q_OBJECT
 public:
  explicit ModelCardView(QWidget* parent = nullptr);
  void setCard(const QString& path, std::shared_ptr<const moelab::ModelCard> card);
  void setHashProgress(qint64 done, qint64 total);
  void setHash(const QString& sha256);
  void setHashCancelled();
  /// All rows as "label: value" lines (tests and copy to clipboard).
  QString text() const;

 signals:
  void cancelHashRequested();

 private:
  void refill();
  std::shared_ptr<const moelab::ModelCard> card_;
  QString sha_;
  QLabel* title_;
  QTableWidget* table_;
  QProgressBar* hashBar_;
  QPushButton* cancel_;
  QLabel* problems_;
};
