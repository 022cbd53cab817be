// Opens a GGUF file, builds its model card and hashes it off the GUI thread.
#pragma once

#include <QObject>
#include <QString>
#include <atomic>
#include <memory>
#include <thread>

#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"

class ModelLoader : public QObject {
  Q_OBJECT
 public:
  explicit ModelLoader(QObject* parent = nullptr);
  ~ModelLoader() override;

  /// Starts loading `path` (cancelling any load in progress). Emits cardReady, then
  /// hashProgress/hashReady, or failed.
  void load(const QString& path);
  /// Stops the hash in progress (the card stays); emits hashCancelled.
  void cancel();
  bool busy() const { return busy_; }

 signals:
  void cardReady(const QString& path, std::shared_ptr<const moelab::ModelCard> card);
  void hashProgress(qint64 done, qint64 total);
  void hashReady(const QString& path, const QString& sha256);
  void hashCancelled(const QString& path);
  void failed(const QString& path, const QString& message);

 private:
  void join();
  std::thread worker_;
  std::atomic<bool> cancel_{false};
  std::atomic<bool> busy_{false};
};
