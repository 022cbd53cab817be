// Store: opening (create, migrate, WAL), recovering the runs of dead writers, status names,
// maintenance. Models and sessions: store_catalog.cpp; writing runs: store_runs.cpp; reading
// them: store_reads.cpp; process identity: process_owner.cpp.
#include "moelab/storage/store.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "migrations.h"
#include "process_owner.h"
#include "store_internal.h"

namespace moelab::storage {

using detail::kAggregates;
using detail::now_ms;
using detail::Stmt;

const char* status_name(RunStatus s) noexcept {
  switch (s) {
    case RunStatus::Running:
      return "running";
    case RunStatus::Complete:
      return "complete";
    case RunStatus::Failed:
      return "failed";
    case RunStatus::Cancelled:
      return "cancelled";
    case RunStatus::Interrupted:
      return "interrupted";
  }
  return "failed";
}

std::optional<RunStatus> parse_status(const std::string& n) noexcept {
  for (RunStatus s : {RunStatus::Running, RunStatus::Complete, RunStatus::Failed,
                      RunStatus::Cancelled, RunStatus::Interrupted})
    if (n == status_name(s)) return s;
  return std::nullopt;
}

std::string default_database_path() {
  const char* xdg = std::getenv("XDG_DATA_HOME");
  std::filesystem::path base;
  if (xdg && *xdg && std::filesystem::path(xdg).is_absolute()) {
    base = xdg;
  } else {
    const char* home = std::getenv("HOME");
    base = std::filesystem::path(home && *home ? home : ".") / ".local" / "share";
  }
  return (base / "moelab" / "moelab.db").string();
}

// ---------------------------------------------------------------- open / migrate

Store::Store(const std::string& path, const OpenOptions& options)
    : cache_(std::make_unique<StmtCache>()), path_(path), options_(options) {
  namespace fs = std::filesystem;
  if (path.empty()) throw StorageError(StorageErrorKind::BadInput, "empty database path");
  if (!options.read_only && options.create && path != ":memory:") {
    const fs::path parent = fs::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty()) fs::create_directories(parent, ec);
    if (ec)
      throw StorageError(StorageErrorKind::Io, "cannot create the folder: " + ec.message(),
                         {parent.string(), "open database"});
  }
  if (!options.create && path != ":memory:" && !fs::exists(path))
    throw StorageError(StorageErrorKind::Io, "no such database file", {path, "open database"});
  int flags = options.read_only
                  ? SQLITE_OPEN_READONLY
                  : (SQLITE_OPEN_READWRITE | (options.create ? SQLITE_OPEN_CREATE : 0));
  flags |= SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  const auto unreadable_wal = [&] {
    const int probe =
        sqlite3_exec(db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) & 0xff;
    return probe == SQLITE_CANTOPEN || probe == SQLITE_READONLY;
  };
  if (rc == SQLITE_OK && options.read_only && path != ":memory:" && unreadable_wal()) {
    // A WAL database in a folder this user cannot write: SQLite cannot create the -shm file a
    // reader needs. Nobody can be writing it then either (no -shm), so read it as immutable.
    sqlite3_close_v2(db_);
    db_ = nullptr;
    std::string uri = "file:";
    for (const unsigned char c : path) {  // percent-encode all but unreserved characters and '/'
      if (std::isalnum(c) || c == '/' || c == '-' || c == '.' || c == '_' || c == '~') {
        uri += static_cast<char>(c);
      } else {
        static const char* hex = "0123456789ABCDEF";
        uri += '%';
        uri += hex[c >> 4];
        uri += hex[c & 15];
      }
    }
    uri += "?immutable=1";
    rc = sqlite3_open_v2(uri.c_str(), &db_,
                         SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, nullptr);
  }
  try {
    if (rc != SQLITE_OK) detail::throw_sqlite(db_, rc, path, "open database");
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, options.busy_timeout_ms);
    if (!options.read_only && sqlite3_db_readonly(db_, "main") == 1)
      throw StorageError(StorageErrorKind::ReadOnly,
                         "the file is read-only for this user; fix its permissions or open it "
                         "read-only (nothing was written)",
                         {path, "open database"}, SQLITE_READONLY);
    // Reading the header fails here with SQLITE_NOTADB for a file that is not a database.
    detail::exec(db_, "PRAGMA foreign_keys = ON", path, "open database");
    {
      Stmt s(db_, "SELECT count(*) FROM sqlite_master", path);
      s.step("read the schema");
    }
    if (!options.read_only) {
      std::string jm;
      {
        Stmt s(db_, "PRAGMA journal_mode = WAL", path);
        if (s.step("enable WAL")) jm = s.text(0);
      }
      if (jm != "wal" && path != ":memory:")
        throw StorageError(StorageErrorKind::Io,
                           "cannot enable write-ahead logging (journal_mode is '" + jm +
                               "'); the file system may not support shared memory",
                           {path, "open database"});
      detail::exec(
          db_,
          options.synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
          path, "open database");
      if (options.max_page_count > 0) {
        const std::string sql = "PRAGMA max_page_count = " + std::to_string(options.max_page_count);
        detail::exec(db_, sql.c_str(), path, "open database");
      }
    }
    migrate();
    if (!options.read_only && options.recover_interrupted) recover_interrupted();
  } catch (...) {
    cache_.reset();
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw;
  }
}

Store::~Store() {
  cache_.reset();
  if (db_) sqlite3_close_v2(db_);
}

Stmt& Store::stmt(const char* sql) const {
  auto& slot = cache_->stmts[sql];
  if (!slot) slot = std::make_unique<Stmt>(db_, sql, path_);
  return *slot;
}

int Store::schema_version() const {
  Stmt s(db_, "PRAGMA user_version", path_);
  s.step("read the schema version");
  return static_cast<int>(s.i64(0));
}

void Store::migrate() {
  int version = schema_version();
  auto check_version = [&](int v) {
    if (v > kSchemaVersion)
      throw StorageError(StorageErrorKind::Version,
                         "the database has schema version " + std::to_string(v) +
                             " but this moelab reads schema versions up to " +
                             std::to_string(kSchemaVersion) +
                             ": it was written by a newer moelab; upgrade moelab (the file was "
                             "not changed)",
                         {path_, "open database"});
  };
  check_version(version);
  if (version == kSchemaVersion) return;
  if (options_.read_only)
    throw StorageError(StorageErrorKind::Version,
                       "the database has schema version " + std::to_string(version) +
                           ", older than this moelab's " + std::to_string(kSchemaVersion) +
                           "; open it once writable to upgrade it",
                       {path_, "open database"});
  detail::Transaction tx(db_, path_, "upgrade the schema");
  version = schema_version();  // another process may have upgraded it meanwhile
  check_version(version);
  if (version == 0) {
    Stmt app(db_, "PRAGMA application_id", path_);
    app.step("read the application id");
    Stmt n(db_, "SELECT count(*) FROM sqlite_master", path_);
    n.step("read the schema");
    if (n.i64(0) != 0 && app.i64(0) != detail::kApplicationId)
      throw StorageError(StorageErrorKind::BadInput,
                         "the file is an SQLite database of another program (it has tables but "
                         "no moelab schema version); refusing to change it",
                         {path_, "open database"});
  }
  for (int v = version; v < kSchemaVersion; ++v)
    detail::exec(db_, detail::kMigrations[v], path_,
                 "migrate schema " + std::to_string(v) + " to " + std::to_string(v + 1));
  const std::string set = "PRAGMA user_version = " + std::to_string(kSchemaVersion) +
                          "; PRAGMA application_id = " + std::to_string(detail::kApplicationId);
  detail::exec(db_, set.c_str(), path_, "upgrade the schema");
  tx.commit();
}

void Store::recover_interrupted() {
  std::vector<std::pair<int64_t, detail::Owner>> running;
  {
    Stmt s(db_, "SELECT id, owner_pid, owner_boot, owner_start FROM runs WHERE status = 'running'",
           path_);
    while (s.step("find running runs"))
      running.push_back({s.i64(0), detail::Owner{s.i64(1), s.text(2), s.i64(3)}});
  }
  std::vector<std::pair<int64_t, int64_t>> dead;
  for (const auto& [id, owner] : running)
    if (!detail::owner_alive(owner)) dead.push_back({id, owner.pid});
  if (dead.empty()) return;
  detail::Transaction tx(db_, path_, "mark interrupted runs");
  const std::string sql = std::string(
                              "UPDATE runs SET status = 'interrupted', error = ?1, "
                              "finished_at = ?2, ") +
                          kAggregates + " WHERE id = ?3 AND status = 'running'";
  Stmt up(db_, sql, path_);
  for (const auto& [id, pid] : dead) {
    up.bind(1, "the process writing this run (pid " + std::to_string(pid) +
                   ") ended before finishing it")
        .bind(2, now_ms())
        .bind(3, id);
    up.run("mark run " + std::to_string(id) + " interrupted");
    if (sqlite3_changes(db_) > 0) interrupted_.push_back(id);
  }
  tx.commit();
}

void Store::delete_run(int64_t id) {
  detail::Transaction tx(db_, path_, "delete run " + std::to_string(id));
  {
    Stmt s(db_, "SELECT status, owner_pid, owner_boot, owner_start FROM runs WHERE id = ?1", path_);
    s.bind(1, id);
    if (!s.step("find run " + std::to_string(id)))
      throw StorageError(StorageErrorKind::BadInput, "no run with id " + std::to_string(id),
                         {path_, "delete run"});
    const detail::Owner owner{s.i64(1), s.text(2), s.i64(3)};
    if (s.text(0) == "running" && detail::owner_alive(owner))
      throw StorageError(StorageErrorKind::BadInput,
                         "run " + std::to_string(id) + " is still running (process " +
                             std::to_string(owner.pid) + "): stop it before deleting it",
                         {path_, "delete run"});
  }
  Stmt d(db_, "DELETE FROM runs WHERE id = ?1", path_);
  d.bind(1, id);
  d.run("delete run " + std::to_string(id));
  tx.commit();
}

std::string Store::integrity_check() const {
  Stmt s(db_, "PRAGMA integrity_check", path_);
  std::string out;
  while (s.step("integrity check")) {
    if (!out.empty()) out += '\n';
    out += s.text(0);
  }
  return out;
}

void Store::checkpoint() {
  detail::exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", path_, "checkpoint");
}

}  // namespace moelab::storage
