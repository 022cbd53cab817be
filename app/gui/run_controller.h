// RunController: runs generations on a worker thread (never the GUI thread), stores every run
// through an AsyncWriter (every record, never dropped) and hands tokens to the GUI through a
// bounded LiveFeed (lossy for display only). Signals are delivered on the GUI thread.
#pragma once

#include <QObject>
#include <QString>
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "lab_run.h"
#include "live_feed.h"

namespace moelab::storage {
class AsyncWriter;
}
namespace moelab::remote {
struct RemoteRunSpec;
}

class RunController : public QObject {
  Q_OBJECT
 public:
  explicit RunController(QObject* parent = nullptr);
  ~RunController() override;

  /// The store every run goes to (opened on the worker thread at the next run).
  void setDatabase(const QString& path);
  QString database() const { return db_; }
  /// The model runs use (null: none). Not while running.
  void setModel(std::shared_ptr<const moelab::Model> model, const moelab::lab::ModelIdentity& id);
  void setModelHash(const QString& path, const QString& sha256);
  /// The RAPL powercap sysfs root runs measure their energy under (stored as run metrics).
  void setPowercapRoot(const QString& root) { powercap_ = root.toStdString(); }
  bool hasModel() const { return model_ != nullptr; }
  /// The model runs use (null: none).
  std::shared_ptr<const moelab::Model> model() const { return model_; }

  /// Starts a run in `session`; false (and nothing happens) when one is running or no model.
  bool start(const moelab::lab::RunSettings& settings, const QString& session);
  /// Starts a run on a remote endpoint (run_controller_remote.cpp): no local model needed. The
  /// tokens stream into feed() as they arrive (no routing or attention live: routed experts
  /// come with the last chunk and are in the store when finished() is emitted); stop() cancels
  /// (stored as cancelled with what arrived); a server fault ends the run as Failed with the
  /// client's message in RecordedRun::error. False when a run is running.
  bool startRemote(const moelab::remote::RemoteRunSpec& spec, const QString& session);
  /// Asks the running generation to stop (it ends as Cancelled, and is stored as such).
  void stop();
  bool running() const { return running_; }
  /// Waits for the worker (tests, shutdown).
  void wait();

  moelab::lab::LiveFeed<moelab::lab::LiveToken>& feed() { return feed_; }

 signals:
  void started(qint64 runId);
  /// The run ended (complete, cancelled or failed); the store has all its records.
  void finished(std::shared_ptr<const moelab::lab::RecordedRun> run);
  /// The run could not start (bad policy spec, store failure ...).
  void failed(const QString& message);

 private:
  void join();
  QString db_;
  std::string powercap_ = moelab::lab::default_powercap_root();
  std::shared_ptr<const moelab::Model> model_;
  moelab::lab::ModelIdentity id_;
  std::mutex id_mu_;
  // Worker-owned (touched only by the worker thread while running_).
  std::unique_ptr<moelab::storage::AsyncWriter> writer_;
  std::string writer_path_;
  std::unique_ptr<moelab::Generator> gen_;
  std::string gen_key_;
  std::thread worker_;
  std::atomic<bool> running_{false};
  std::atomic<bool> stop_{false};
  std::mutex gen_mu_;
  moelab::lab::LiveFeed<moelab::lab::LiveToken> feed_{4096};
};
