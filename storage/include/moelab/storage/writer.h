// Asynchronous writing for the engine side: a writer thread with a bounded queue batches records
// into transactions, so the thread producing tokens never waits on the disk.
//
// Back-pressure rule: store records are NEVER dropped silently. When the queue holds
// `queue_capacity` records the producer blocks until the writer has taken a batch out; every such
// wait is counted (Stats::blocked_pushes, blocked_ns) so a benchmark or the UI can show that the
// disk is the bottleneck. Records that cannot be written because the database failed (disk full,
// read-only, corrupt) are counted in Stats::lost_records and the failure is reported: error()
// returns it and every later call throws it, so the producer stops cleanly. The transaction that
// failed is rolled back; what was committed before stays intact, and every run begun through this
// writer and not yet finished is marked failed at once with the cause in its error text (best
// effort: when even that update fails, a later open relabels the run interrupted).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "moelab/storage/store.h"

namespace moelab::storage {

struct WriterOptions {
  OpenOptions open;
  size_t queue_capacity = 1 << 16;  // records waiting for the writer thread
  size_t max_batch = 1 << 15;       // records per transaction at most
  /// After the first record of a batch arrives, how long the writer waits for more before it
  /// commits (a call - begin_run, flush, ... - or the writer's destruction ends the wait): one
  /// transaction per burst of records (a generated token's routing, token and distribution
  /// rows) instead of one per record, which costs the producing process CPU time. A process
  /// killed meanwhile loses at most this much of its last records. 0: commit at once.
  std::chrono::microseconds linger{2000};
};

/// What one commit made durable; passed to the on_commit callback on the writer thread.
struct CommitInfo {
  uint64_t seq_end = 0;  // every record pushed with a sequence number < seq_end is committed
  std::map<int64_t, int64_t> last_token_position;  // run -> highest token position in the commit
};

class AsyncWriter {
 public:
  struct Stats {
    uint64_t pushed = 0;     // records accepted
    uint64_t committed = 0;  // records committed
    uint64_t transactions = 0;
    uint64_t blocked_pushes = 0;  // pushes that found the queue full and waited
    uint64_t blocked_ns = 0;      // total time producers waited
    uint64_t lost_records = 0;    // records dropped because the database failed (see error())
  };

  /// Opens the store on the writer thread (migrations and interrupted-run recovery happen there);
  /// throws the StorageError of a failed open.
  explicit AsyncWriter(const std::string& path, const WriterOptions& options = {});
  /// Writes everything still queued, then stops the thread. Never throws.
  ~AsyncWriter();
  AsyncWriter(const AsyncWriter&) = delete;
  AsyncWriter& operator=(const AsyncWriter&) = delete;

  /// Synchronous calls executed in order on the writer thread (they wait for it).
  int64_t begin_run(const RunBegin& b);
  int64_t upsert_model(const ModelRecord& m);
  int64_t ensure_session(const std::string& name);
  /// Store::set_run_config on the writer thread, in order after the records queued before it.
  void set_run_config(int64_t run, const std::string& config_json);
  /// Queues the final status; finish is committed with (and after) the records before it.
  uint64_t finish_run(int64_t run, RunStatus status, std::string output = {},
                      std::string error = {});

  /// Queue records; each returns its sequence number. They block only when the queue is full.
  uint64_t token(int64_t run, TokenRecord t);
  uint64_t routing(int64_t run, RoutingRecord r);
  uint64_t attention(int64_t run, AttentionSnapshot a);
  uint64_t metric(int64_t run, MetricRecord m);
  uint64_t next_token_dist(int64_t run, NextTokenDist d);
  uint64_t eval_result(int64_t run, EvalResult e);

  /// Waits until everything pushed so far is committed; throws the writer's error if any.
  void flush();
  /// Called on the writer thread after each commit (keep it short).
  void on_commit(std::function<void(const CommitInfo&)> callback);
  Stats stats() const;
  /// The first failure of the writer thread, if any.
  std::optional<StorageError> error() const;

 private:
  struct Call {
    std::function<int64_t(Store&)> fn;
    std::promise<int64_t> result;
  };
  struct Finish {
    int64_t run;
    RunStatus status;
    std::string output, error;
  };
  struct Item {
    int64_t run = 0;
    uint64_t seq = 0;
    std::variant<TokenRecord, RoutingRecord, AttentionSnapshot, MetricRecord, NextTokenDist,
                 EvalResult, Finish, std::shared_ptr<Call>>
        v;
  };
  uint64_t push(Item item);
  int64_t call(std::function<int64_t(Store&)> fn);
  void loop(std::promise<void> opened);
  void commit(Store& store, std::vector<Item>& items, size_t begin, size_t end);
  void throw_if_failed() const;
  void fail_open_runs(Store& store, const StorageError& cause);

  std::string path_;
  WriterOptions options_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_, not_full_, committed_cv_;
  std::vector<Item> queue_;
  uint64_t next_seq_ = 0;
  uint64_t committed_seq_ = 0;  // all seq < committed_seq_ are done (committed or failed)
  bool stop_ = false;
  std::optional<StorageError> error_;
  Stats stats_;
  std::function<void(const CommitInfo&)> on_commit_;
  std::set<int64_t> open_runs_;  // begun and not finished (writer thread only)
  std::thread thread_;
};

/// Streams one run through an AsyncWriter: begins it on construction, queues its records, and
/// finishes it. If it is destroyed unfinished, the run is finished as Failed (during stack
/// unwinding) or Cancelled. This is what `moelab-cli run --db PATH --session NAME` uses:
///
///   storage::AsyncWriter w(db_path);
///   storage::RunWriter run(w, session_name, model_record, config_json, prompt);
///   for each generated token: run.token(...); run.routing(...);
///   run.finish(RunStatus::Complete, output_text);   // id(): the stored run id
class RunWriter {
 public:
  RunWriter(AsyncWriter& writer, const std::string& session_name,
            const std::optional<ModelRecord>& model, const std::string& config_json,
            const std::string& prompt, const std::string& kind = "generate");
  ~RunWriter();
  RunWriter(const RunWriter&) = delete;
  RunWriter& operator=(const RunWriter&) = delete;

  int64_t id() const { return id_; }
  void token(TokenRecord t) { writer_.token(id_, std::move(t)); }
  void routing(RoutingRecord r) { writer_.routing(id_, std::move(r)); }
  void attention(AttentionSnapshot a) { writer_.attention(id_, std::move(a)); }
  void metric(const std::string& key, double value, const std::string& unit = {}) {
    writer_.metric(id_, {key, value, unit});
  }
  void next_token_dist(NextTokenDist d) { writer_.next_token_dist(id_, std::move(d)); }
  void eval_result(EvalResult e) { writer_.eval_result(id_, std::move(e)); }
  /// Replaces the run's config (before finish; see Store::set_run_config).
  void set_config(const std::string& config_json) { writer_.set_run_config(id_, config_json); }
  /// Queues the final status and waits until the whole run is committed.
  void finish(RunStatus status, const std::string& output, const std::string& error = {});

 private:
  AsyncWriter& writer_;
  int64_t id_ = 0;
  bool finished_ = false;
};

/// A finished generation as one value, for callers that store after the fact.
struct StoredGeneration {
  std::string session_name;
  std::optional<ModelRecord> model;
  std::string config_json = "{}";
  std::string prompt, output;
  RunStatus status = RunStatus::Complete;
  std::string error;
  std::string kind = "generate";
  std::vector<TokenRecord> tokens;
  std::vector<RoutingRecord> routing;
  std::vector<MetricRecord> metrics;
  std::vector<EvalResult> evals;
};

/// Stores a finished generation synchronously (session created when missing); returns the run id.
int64_t store_generation(const std::string& db_path, const StoredGeneration& g);

}  // namespace moelab::storage
