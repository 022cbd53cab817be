// The experiment store: one SQLite file (C API) holding models, sessions, runs and everything a
// run produced. See records.h for the record types and writer.h for the asynchronous writer the
// engine side uses.
//
// Durability (SQLite docs "Write-Ahead Logging", "PRAGMA synchronous", "Atomic Commit"):
//  - journal_mode=WAL, synchronous=NORMAL by default (FULL on request; never OFF). In WAL mode
//    NORMAL loses no committed transaction when the PROCESS dies (SIGKILL); only a power loss
//    can roll back the last transactions, never corrupt the file.
//  - every write is one `BEGIN IMMEDIATE` transaction; busy_timeout (default 10 s) makes a second
//    writer process wait for the lock instead of failing.
//  - opening a file marks runs left `running` by a dead process as `interrupted`. A run records
//    its owner (pid, boot id, process start time from /proc); a run whose owner is alive (same
//    boot, same pid with the same start time) is left alone, so two live processes never
//    interrupt each other's runs.
//  - SQLITE_FULL / SQLITE_READONLY / SQLITE_CORRUPT / SQLITE_NOTADB become StorageError
//    (DiskFull / ReadOnly / Corrupt); the failing transaction is rolled back, so nothing already
//    committed is damaged.
//
// Schema: versioned with PRAGMA user_version and ordered migrations (migrations.cpp). Opening an
// older file upgrades it in one transaction; opening a newer one throws StorageError(Version).
//
// Threading: a Store is one connection; use it from one thread at a time. Several Stores (in one
// or several processes) may open the same file.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "moelab/storage/error.h"
#include "moelab/storage/records.h"

struct sqlite3;

namespace moelab::storage {

namespace detail {
struct StoreTestAccess;
class Stmt;
}  // namespace detail

/// The schema version this build writes. History: 1 initial; 2 session tags, run aggregates and
/// kind, attention snapshots, evaluation results, next-token distributions.
inline constexpr int kSchemaVersion = 2;

struct OpenOptions {
  bool read_only = false;           // open without write access (queries only; no recovery pass)
  bool create = true;               // create the file (and its folder) when missing
  bool synchronous_full = false;    // synchronous=FULL instead of NORMAL
  int busy_timeout_ms = 10000;      // how long a writer waits for another process's lock
  int64_t max_page_count = 0;       // >0: cap the file at this many pages (tests: disk full)
  bool recover_interrupted = true;  // mark runs of dead processes interrupted on open
};

/// The default database: $XDG_DATA_HOME/moelab/moelab.db, else ~/.local/share/moelab/moelab.db.
std::string default_database_path();

class Store {
 public:
  /// Opens (creating when allowed) and migrates the database at `path`.
  /// Throws StorageError: Io (cannot open/create), Corrupt (not a database), Version (newer
  /// schema), ReadOnly (file not writable and options.read_only not set).
  explicit Store(const std::string& path, const OpenOptions& options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }
  int schema_version() const;
  /// Runs this open marked `interrupted` (their owner process was gone).
  const std::vector<int64_t>& interrupted_on_open() const { return interrupted_; }

  // ---- models
  /// Inserts the model or updates path/architecture/card of the row with the same sha256.
  int64_t upsert_model(const ModelRecord& m);
  std::optional<ModelRecord> model(int64_t id) const;
  std::vector<ModelRecord> models() const;

  // ---- sessions
  /// Throws BadInput when a session with this name exists or a tag is not valid UTF-8.
  int64_t create_session(const std::string& name, const std::string& notes = {},
                         const std::vector<std::string>& tags = {});
  /// Returns the id of the session `name`, creating it when missing.
  int64_t ensure_session(const std::string& name);
  std::vector<SessionRecord> sessions() const;
  std::optional<SessionRecord> session(int64_t id) const;
  std::optional<SessionRecord> session_by_name(const std::string& name) const;
  void rename_session(int64_t id, const std::string& new_name);
  void set_session_notes(int64_t id, const std::string& notes);
  /// Throws BadInput when a tag is not valid UTF-8 (tags are stored as a JSON array).
  void set_session_tags(int64_t id, const std::vector<std::string>& tags);
  /// Deletes the session with all its runs and their records.
  void delete_session(int64_t id);

  // ---- runs
  /// Creates a run in state `running`, owned by this process. Throws BadInput for an unknown
  /// session/model or a config that is not a JSON object.
  int64_t begin_run(const RunBegin& b);
  void append_tokens(int64_t run, std::span<const TokenRecord> tokens);
  void append_routing(int64_t run, std::span<const RoutingRecord> routing);
  void append_attention(int64_t run, std::span<const AttentionSnapshot> snapshots);
  /// Inserts or replaces metrics by key.
  void append_metrics(int64_t run, std::span<const MetricRecord> metrics);
  void append_next_token_dists(int64_t run, std::span<const NextTokenDist> dists);
  int64_t add_eval_result(int64_t run, const EvalResult& e);
  /// Writes all records of `batch` in one BEGIN IMMEDIATE transaction.
  void write(const Batch& batch);
  /// Replaces the config of a run that is still running (what only becomes known during the
  /// run, e.g. what a remote server reported). No schema change: the runs.config_json column.
  /// Throws BadInput for a config that is not a JSON object, an unknown run, or a run that has
  /// finished (a finished run's config is a record, never rewritten).
  void set_run_config(int64_t run, const std::string& config_json);
  /// Sets the final status (not Running), the output text and error, and the aggregates.
  void finish_run(int64_t run, RunStatus status, const std::string& output = {},
                  const std::string& error = {});

  /// Deletes run `id` with all its records (tokens, routing, attention, metrics, next-token
  /// distributions, evaluations); its session stays. Throws StorageError BadInput when there is
  /// no such run, or when the run is still running in a live process (pid named: stop it first;
  /// a run whose writer died is deleted).
  void delete_run(int64_t id);
  std::optional<RunRecord> run(int64_t id) const;
  std::vector<RunRecord> runs(int64_t session_id) const;  // oldest first
  std::vector<TokenRecord> tokens(int64_t run) const;     // by position
  int64_t token_count(int64_t run) const;
  std::vector<RoutingRecord> routing(int64_t run) const;  // by position, then layer
  std::vector<AttentionSnapshot> attention(int64_t run) const;
  std::vector<MetricRecord> metrics(int64_t run) const;  // by key
  std::vector<NextTokenDist> next_token_dists(int64_t run) const;
  std::vector<EvalResult> eval_results(int64_t run) const;

  /// "ok" or the problems PRAGMA integrity_check reports.
  std::string integrity_check() const;
  /// Moves the WAL content into the main file (PRAGMA wal_checkpoint(TRUNCATE)).
  void checkpoint();

 private:
  friend struct detail::StoreTestAccess;  // tests only: the raw connection (store_test_access.h)
  void migrate();
  void recover_interrupted();
  void write_tokens(int64_t run, std::span<const TokenRecord> tokens);
  void write_routing(int64_t run, std::span<const RoutingRecord> routing);
  void write_attention(int64_t run, std::span<const AttentionSnapshot> snapshots);
  void write_metrics(int64_t run, std::span<const MetricRecord> metrics);
  void write_dists(int64_t run, std::span<const NextTokenDist> dists);
  int64_t write_eval(int64_t run, const EvalResult& e);
  detail::Stmt& stmt(const char* sql) const;  // cached prepared statement
  struct StmtCache;
  std::unique_ptr<StmtCache> cache_;
  std::string path_;
  OpenOptions options_;
  sqlite3* db_ = nullptr;
  std::vector<int64_t> interrupted_;
};

}  // namespace moelab::storage
