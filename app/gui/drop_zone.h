// The empty state of the window: a large target that accepts a dropped .gguf file.
#pragma once

#include <QColor>
#include <QLabel>
#include <QPalette>
#include <QUrl>
#include <QWidget>

class DropZone : public QWidget {
  Q_OBJECT
 public:
  explicit DropZone(QWidget* parent = nullptr);
  /// Shows a problem (an invalid file) under the hint; empty clears it.
  void setError(const QString& message);
  QString errorText() const;

  /// The local file a drop delivers: the first URL that is a local file (file:// URLs decoded:
  /// spaces, '#', '%25', non-ASCII). Empty when none is local.
  static QString localFileFromUrls(const QList<QUrl>& urls, int* count = nullptr);

  /// The error text colour for palette `p`: dark red on light themes, light red on dark ones.
  static QColor errorColor(const QPalette& p);
  static bool darkPalette(const QPalette& p);

 signals:
  void fileDropped(const QString& path, int filesInDrop);
  void openRequested();

 protected:
  void paintEvent(QPaintEvent*) override;
  void changeEvent(QEvent* e) override;
  void dragEnterEvent(QDragEnterEvent* e) override;
  void dragLeaveEvent(QDragLeaveEvent* e) override;
  void dropEvent(QDropEvent* e) override;
  void mouseReleaseEvent(QMouseEvent* e) override;

 private:
  void applyColors();

 private:
  QLabel* hint_;
  QLabel* error_;
  bool hover_ = false;
};
