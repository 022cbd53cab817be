// Opens a GGUF file, builds its model card, loads the model (Model::load, with progress and
// cancel) and hashes the file - all off the GUI thread. Signals arrive on the GUI thread.
#pragma once

#include <QObject>
#include <QString>
#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"
#include "moelab/model/model.h"

class ModelLoader : public QObject {
  Q_OBJECT
 public:
  explicit ModelLoader(QObject* parent = nullptr);
  ~ModelLoader() override;

  /// Starts loading `path` (cancelling any load in progress) with its weights prepared for
  /// `backend` (LoadOptions::backend: "cpu", "cuda" or "auto"). Emits cardReady, then (for a
  /// runnable card) loadProgress/modelReady or loadCancelled/loadFailed, then
  /// hashProgress/hashReady or hashCancelled; failed when the file is not a usable GGUF.
  void load(const QString& path, const QString& backend = QStringLiteral("cpu"));
  /// Stops the step in progress: the model load (loadCancelled; the hash is skipped) or the
  /// hash (hashCancelled; the loaded model stays).
  void cancel();
  bool busy() const { return busy_; }
  /// Called on the worker thread at every load progress step with the fraction done, before
  /// the cancel check (instrumentation and tests; set it while no load runs).
  void setProgressHook(std::function<void(float)> hook) { hook_ = std::move(hook); }

 signals:
  void cardReady(const QString& path, std::shared_ptr<const moelab::ModelCard> card,
                 const QString& cardJson);
  void loadProgress(const QString& path, int permille);
  void modelReady(const QString& path, std::shared_ptr<const moelab::Model> model);
  void loadCancelled(const QString& path);
  void loadFailed(const QString& path, const QString& message);
  void hashProgress(qint64 done, qint64 total);
  void hashReady(const QString& path, const QString& sha256);
  void hashCancelled(const QString& path);
  void failed(const QString& path, const QString& message);

 private:
  void join();
  std::function<void(float)> hook_;
  std::thread worker_;
  std::atomic<bool> cancel_{false};
  std::atomic<bool> busy_{false};
};
