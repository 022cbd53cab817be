// RunController's remote runs: moelab::remote::run_remote (the implementation `moelab-cli run
// --remote` uses) on the worker thread, its tokens into the live feed.
#include <QMetaObject>
#include <cmath>
#include <limits>

#include "moelab/remote/remote_run.h"
#include "moelab/storage/writer.h"
#include "run_controller.h"

using moelab::lab::RecordedRun;

bool RunController::startRemote(const moelab::remote::RemoteRunSpec& spec, const QString& session) {
  if (running_) return false;
  join();
  running_ = true;
  stop_ = false;
  feed_.clear();
  const std::string db = db_.toStdString();
  const std::string sess = session.toStdString();
  worker_ = std::thread([this, spec, db, sess] {
    try {
      if (!writer_ || writer_path_ != db) {
        writer_.reset();
        writer_ = std::make_unique<moelab::storage::AsyncWriter>(db);
        writer_path_ = db;
      }
      int64_t run_id = 0;
      const auto o = moelab::remote::run_remote(
          spec, writer_.get(), sess,
          [this, &run_id](const moelab::storage::TokenRecord& t) {
            moelab::lab::LiveToken lt;
            lt.run_id = run_id;
            lt.index = static_cast<int32_t>(t.position);
            lt.id = t.id;
            lt.piece = t.piece;
            lt.logprob = std::numeric_limits<float>::quiet_NaN();  // not reported
            lt.entropy = std::numeric_limits<float>::quiet_NaN();
            lt.latency_us = t.latency_us;
            feed_.push(std::move(lt));
            return !stop_.load();
          },
          &stop_,
          [this, &run_id](int64_t id) {
            run_id = id;
            QMetaObject::invokeMethod(
                this, [this, id] { emit started(id); }, Qt::QueuedConnection);
          });
      auto r = std::make_shared<RecordedRun>();
      r->run_id = o.run_id;
      r->status = o.status;
      r->error = o.error == "cancelled" ? std::string() : o.error;
      r->config = o.config;
      r->result.text = o.result.text;
      r->result.seed = o.seed;
      for (const auto& c : o.result.chunks)
        for (const int32_t id : c.token_ids) r->result.tokens.push_back(id);
      if (!o.result.token_ids_reported)
        r->result.tokens.assign(static_cast<size_t>(o.completion_tokens), -1);
      r->result.stop_reason = o.status == moelab::storage::RunStatus::Cancelled
                                  ? moelab::StopReason::Cancelled
                                  : moelab::StopReason::MaxTokens;
      r->result.ttft_ms = o.result.ttft_ms;
      r->result.tokens_per_s = o.tpot_ms > 0 ? 1000.0 / o.tpot_ms : 0.0;
      r->result.total_ms = o.result.total_ms;
      r->routing_records = o.routed.size() * static_cast<uint64_t>(o.routed_layers);
      running_ = false;
      std::shared_ptr<const RecordedRun> done = r;
      QMetaObject::invokeMethod(
          this, [this, done] { emit finished(done); }, Qt::QueuedConnection);
    } catch (const std::exception& e) {
      running_ = false;
      const QString msg = QString::fromStdString(e.what());
      QMetaObject::invokeMethod(
          this, [this, msg] { emit failed(msg); }, Qt::QueuedConnection);
    }
  });
  return true;
}
