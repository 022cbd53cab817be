#include "run_controller.h"

#include <sys/resource.h>
#include <unistd.h>
#include <QMetaObject>

#include "moelab/core/error.h"
#include "moelab/storage/writer.h"

using moelab::lab::RecordedRun;
using moelab::lab::RunSettings;

RunController::RunController(QObject* parent) : QObject(parent) {
  qRegisterMetaType<std::shared_ptr<const moelab::lab::RecordedRun>>();
}

RunController::~RunController() {
  stop();
  join();
  gen_.reset();
  writer_.reset();  // flushes what is queued
}

void RunController::join() {
  if (worker_.joinable()) worker_.join();
}

void RunController::wait() {
  join();
}

void RunController::setDatabase(const QString& path) {
  db_ = path;
}

void RunController::setModel(std::shared_ptr<const moelab::Model> model,
                             const moelab::lab::ModelIdentity& id) {
  if (running_) return;
  join();
  gen_.reset();
  gen_key_.clear();
  model_ = std::move(model);
  std::lock_guard<std::mutex> lock(id_mu_);
  id_ = id;
}

void RunController::setModelHash(const QString& path, const QString& sha256) {
  std::lock_guard<std::mutex> lock(id_mu_);
  if (id_.path != path.toStdString()) return;
  id_.sha256 = sha256.toStdString();
}

void RunController::stop() {
  stop_ = true;
  std::lock_guard<std::mutex> lock(gen_mu_);
  if (gen_) gen_->request_cancel();
}

bool RunController::start(const RunSettings& settings, const QString& session) {
  if (running_ || !model_) return false;
  join();
  running_ = true;
  stop_ = false;
  feed_.clear();
  const std::string db = db_.toStdString();
  const std::string sess = session.toStdString();
  worker_ = std::thread([this, settings, db, sess] {
    // Generation yields to the GUI thread: a lower priority for this thread (and the engine's
    // pool threads it creates, which inherit it), so the window stays responsive when the
    // cores are busy.
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 5);
    try {
      if (!writer_ || writer_path_ != db) {
        writer_.reset();
        writer_ = std::make_unique<moelab::storage::AsyncWriter>(db);
        writer_path_ = db;
      }
      const std::string key = std::to_string(settings.threads) + "|" +
                              std::to_string(settings.context_for(model_->card().context_length)) +
                              "|" + (settings.kv_f16 ? "f16" : "f32") + "|" + settings.backend +
                              "|" + settings.routing_policy + "|" + settings.attention_policy;
      if (!gen_ || gen_key_ != key) {
        auto g = std::make_unique<moelab::Generator>(
            model_, settings.context_params(model_->card().context_length));
        std::lock_guard<std::mutex> lock(gen_mu_);
        gen_ = std::move(g);
        gen_key_ = key;
      }
      moelab::lab::ModelIdentity id;
      {
        std::lock_guard<std::mutex> lock(id_mu_);
        id = id_;
      }
      bool announced = false;
      auto result = std::make_shared<RecordedRun>(moelab::lab::record_generation(
          *gen_, settings, *writer_, sess, id,
          [&](const moelab::lab::LiveToken& t) {
            if (!announced) {
              announced = true;
              const qint64 rid = t.run_id;
              QMetaObject::invokeMethod(
                  this, [this, rid] { emit started(rid); }, Qt::QueuedConnection);
            }
            feed_.push(t);
            return !stop_.load();
          },
          powercap_));
      running_ = false;
      std::shared_ptr<const RecordedRun> r = result;
      QMetaObject::invokeMethod(
          this, [this, r] { emit finished(r); }, Qt::QueuedConnection);
    } catch (const std::exception& e) {
      running_ = false;
      const QString msg = QString::fromStdString(e.what());
      QMetaObject::invokeMethod(
          this, [this, msg] { emit failed(msg); }, Qt::QueuedConnection);
    }
  });
  return true;
}
