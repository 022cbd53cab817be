#include "moelab/storage/store.h"
#include "bytes.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "migrations.h"
#include "moelab/storage/codec.h"
#include "sqlite_util.h"

namespace moelab::storage {

using detail::Stmt;

struct Store::StmtCache {
  std::map<const char*, std::unique_ptr<Stmt>> stmts;
};

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- process identity (owner of a running run) ----

struct Owner {
  int64_t pid = 0;
  std::string boot;   // /proc/sys/kernel/random/boot_id, "" when unknown
  int64_t start = 0;  // starttime (field 22 of /proc/PID/stat), 0 when unknown
};

std::string read_boot_id() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string s;
  std::getline(f, s);
  return s;
}

// Field 3 (state) and 22 (starttime) of /proc/PID/stat; false when the process does not exist.
bool read_proc_stat(int64_t pid, char& state, int64_t& start) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!std::getline(f, s)) return false;
  const auto close = s.rfind(')');  // comm may contain spaces and parentheses
  if (close == std::string::npos) return false;
  std::istringstream in(s.substr(close + 1));
  std::string field;
  in >> state;  // field 3
  for (int i = 4; i < 22; ++i) in >> field;
  in >> start;
  return static_cast<bool>(in);
}

const Owner& self_owner() {
  static const Owner o = [] {
    Owner s;
    s.pid = getpid();
    s.boot = read_boot_id();
    char state;
    if (!read_proc_stat(s.pid, state, s.start)) s.start = 0;
    return s;
  }();
  return o;
}

bool owner_alive(const Owner& o) {
  const Owner& me = self_owner();
  if (o.pid <= 0) return false;
  if (!o.boot.empty() && !me.boot.empty() && o.boot != me.boot) return false;  // rebooted since
  if (o.pid == me.pid) return o.start == 0 || o.start == me.start;
  char state = 0;
  int64_t start = 0;
  if (read_proc_stat(o.pid, state, start)) {
    if (state == 'Z' || state == 'X') return false;  // exited, not yet reaped
    return o.start == 0 || start == o.start;         // a different start: the pid was reused
  }
  if (!me.boot.empty()) return false;  // /proc works and the pid is gone
  return kill(static_cast<pid_t>(o.pid), 0) == 0 || errno == EPERM;
}

/// Tags are stored as a JSON array, which holds UTF-8 text only: a tag that is not valid UTF-8
/// is a BadInput (nlohmann's type_error would otherwise escape as an unknown exception).
std::string tags_to_json(const std::vector<std::string>& tags, const std::string& path) {
  for (size_t i = 0; i < tags.size(); ++i) {
    try {
      (void)nlohmann::json(tags[i]).dump();
    } catch (const nlohmann::json::type_error&) {
      throw StorageError(StorageErrorKind::BadInput,
                         "session tag " + std::to_string(i + 1) + " of " +
                             std::to_string(tags.size()) + " is not valid UTF-8",
                         {path, "session tags"});
    }
  }
  return nlohmann::json(tags).dump();
}

std::vector<std::string> tags_from_json(const std::string& s) {
  try {
    auto j = nlohmann::json::parse(s);
    if (j.is_array()) return j.get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception&) {
  }
  return {};
}

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

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
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
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

static const char* kAggregates =
    "n_tokens = (SELECT count(*) FROM tokens t WHERE t.run_id = runs.id), "
    "latency_us_total = (SELECT coalesce(sum(latency_us), 0) FROM tokens t "
    "WHERE t.run_id = runs.id), "
    "energy_uj_total = (SELECT coalesce(sum(energy_uj), 0) FROM tokens t "
    "WHERE t.run_id = runs.id)";

void Store::recover_interrupted() {
  std::vector<std::pair<int64_t, Owner>> running;
  {
    Stmt s(db_, "SELECT id, owner_pid, owner_boot, owner_start FROM runs WHERE status = 'running'",
           path_);
    while (s.step("find running runs"))
      running.push_back({s.i64(0), Owner{s.i64(1), s.text(2), s.i64(3)}});
  }
  std::vector<std::pair<int64_t, int64_t>> dead;
  for (const auto& [id, owner] : running)
    if (!owner_alive(owner)) dead.push_back({id, owner.pid});
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

// ---------------------------------------------------------------- models

int64_t Store::upsert_model(const ModelRecord& m) {
  if (m.sha256.empty()) throw StorageError(StorageErrorKind::BadInput, "model without sha256");
  detail::Transaction tx(db_, path_, "store model");
  auto& s = stmt(
      "INSERT INTO models(sha256, path, architecture, card_json, added_at) "
      "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(sha256) DO UPDATE SET path = excluded.path, "
      "architecture = excluded.architecture, card_json = excluded.card_json");
  s.bind(1, m.sha256)
      .bind(2, m.path)
      .bind(3, m.architecture)
      .bind(4, m.card_json.empty() ? std::string("{}") : m.card_json)
      .bind(5, now_ms());
  s.run("store model " + m.sha256);
  auto& q = stmt("SELECT id FROM models WHERE sha256 = ?1");
  q.bind(1, m.sha256);
  q.step("find model");
  const int64_t id = q.i64(0);
  q.reset();
  tx.commit();
  return id;
}

static ModelRecord read_model(const Stmt& s) {
  return ModelRecord{s.i64(0), s.text(1), s.text(2), s.text(3), s.text(4), s.i64(5)};
}

std::optional<ModelRecord> Store::model(int64_t id) const {
  Stmt s(db_,
         "SELECT id, sha256, path, architecture, card_json, added_at FROM models WHERE id = ?1",
         path_);
  s.bind(1, id);
  if (!s.step("read model")) return std::nullopt;
  return read_model(s);
}

std::vector<ModelRecord> Store::models() const {
  Stmt s(db_, "SELECT id, sha256, path, architecture, card_json, added_at FROM models ORDER BY id",
         path_);
  std::vector<ModelRecord> out;
  while (s.step("list models")) out.push_back(read_model(s));
  return out;
}

// ---------------------------------------------------------------- sessions

int64_t Store::create_session(const std::string& name, const std::string& notes,
                              const std::vector<std::string>& tags) {
  if (name.empty()) throw StorageError(StorageErrorKind::BadInput, "empty session name");
  detail::Transaction tx(db_, path_, "create session '" + name + "'");
  if (session_by_name(name))
    throw StorageError(StorageErrorKind::BadInput, "a session named '" + name + "' exists",
                       {path_, "create session"});
  Stmt s(db_, "INSERT INTO sessions(name, notes, tags, created_at) VALUES(?1, ?2, ?3, ?4)", path_);
  s.bind(1, name).bind(2, notes).bind(3, tags_to_json(tags, path_)).bind(4, now_ms());
  s.run("create session '" + name + "'");
  const int64_t id = sqlite3_last_insert_rowid(db_);
  tx.commit();
  return id;
}

int64_t Store::ensure_session(const std::string& name) {
  if (auto s = session_by_name(name)) return s->id;
  try {
    return create_session(name);
  } catch (const StorageError& e) {  // created by another process in between
    if (auto s = session_by_name(name)) return s->id;
    throw;
  }
}

static const char* kSessionCols =
    "SELECT s.id, s.name, s.notes, s.tags, s.created_at, "
    "(SELECT count(*) FROM runs r WHERE r.session_id = s.id) FROM sessions s ";

static SessionRecord read_session(const Stmt& s) {
  return SessionRecord{s.i64(0), s.text(1), s.text(2), tags_from_json(s.text(3)),
                       s.i64(4), s.i64(5)};
}

std::vector<SessionRecord> Store::sessions() const {
  Stmt s(db_, std::string(kSessionCols) + "ORDER BY s.id", path_);
  std::vector<SessionRecord> out;
  while (s.step("list sessions")) out.push_back(read_session(s));
  return out;
}

std::optional<SessionRecord> Store::session(int64_t id) const {
  Stmt s(db_, std::string(kSessionCols) + "WHERE s.id = ?1", path_);
  s.bind(1, id);
  if (!s.step("read session")) return std::nullopt;
  return read_session(s);
}

std::optional<SessionRecord> Store::session_by_name(const std::string& name) const {
  Stmt s(db_, std::string(kSessionCols) + "WHERE s.name = ?1", path_);
  s.bind(1, name);
  if (!s.step("read session")) return std::nullopt;
  return read_session(s);
}

namespace {
void update_one(sqlite3* db, const std::string& path, const std::string& sql, int64_t id,
                const std::string& value, const std::string& subject) {
  detail::Transaction tx(db, path, subject);
  Stmt s(db, sql, path);
  s.bind(1, value).bind(2, id);
  s.run(subject);
  if (sqlite3_changes(db) == 0)
    throw StorageError(StorageErrorKind::BadInput, "no session with id " + std::to_string(id),
                       {path, subject});
  tx.commit();
}
}  // namespace

void Store::rename_session(int64_t id, const std::string& new_name) {
  if (new_name.empty()) throw StorageError(StorageErrorKind::BadInput, "empty session name");
  if (auto other = session_by_name(new_name); other && other->id != id)
    throw StorageError(StorageErrorKind::BadInput, "a session named '" + new_name + "' exists",
                       {path_, "rename session"});
  update_one(db_, path_, "UPDATE sessions SET name = ?1 WHERE id = ?2", id, new_name,
             "rename session");
}

void Store::set_session_notes(int64_t id, const std::string& notes) {
  update_one(db_, path_, "UPDATE sessions SET notes = ?1 WHERE id = ?2", id, notes,
             "set session notes");
}

void Store::set_session_tags(int64_t id, const std::vector<std::string>& tags) {
  update_one(db_, path_, "UPDATE sessions SET tags = ?1 WHERE id = ?2", id,
             tags_to_json(tags, path_), "set session tags");
}

void Store::delete_session(int64_t id) {
  detail::Transaction tx(db_, path_, "delete session " + std::to_string(id));
  Stmt s(db_, "DELETE FROM sessions WHERE id = ?1", path_);
  s.bind(1, id);
  s.run("delete session");
  if (sqlite3_changes(db_) == 0)
    throw StorageError(StorageErrorKind::BadInput, "no session with id " + std::to_string(id),
                       {path_, "delete session"});
  tx.commit();
}

// ---------------------------------------------------------------- runs

int64_t Store::begin_run(const RunBegin& b) {
  try {
    const auto j = nlohmann::json::parse(b.config_json);
    if (!j.is_object()) throw nlohmann::json::type_error::create(302, "not an object", nullptr);
  } catch (const nlohmann::json::exception& e) {
    throw StorageError(StorageErrorKind::BadInput,
                       std::string("the run config must be a JSON object: ") + e.what(),
                       {path_, "begin run"});
  }
  detail::Transaction tx(db_, path_, "begin run");
  if (!session(b.session_id))
    throw StorageError(StorageErrorKind::BadInput,
                       "no session with id " + std::to_string(b.session_id), {path_, "begin run"});
  if (b.model_id != 0 && !model(b.model_id))
    throw StorageError(StorageErrorKind::BadInput, "no model with id " + std::to_string(b.model_id),
                       {path_, "begin run"});
  const Owner& me = self_owner();
  Stmt s(
      db_,
      "INSERT INTO runs(session_id, model_id, kind, config_json, prompt, status, started_at, "
      "owner_pid, owner_boot, owner_start) VALUES(?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9)",
      path_);
  s.bind(1, b.session_id);
  if (b.model_id)
    s.bind(2, b.model_id);
  else
    s.bind_null(2);
  s.bind(3, b.kind).bind(4, b.config_json).bind(5, b.prompt).bind(6, now_ms());
  s.bind(7, me.pid).bind(8, me.boot).bind(9, me.start);
  s.run("begin run");
  const int64_t id = sqlite3_last_insert_rowid(db_);
  tx.commit();
  return id;
}

void Store::write_tokens(int64_t run, std::span<const TokenRecord> tokens) {
  auto& s = stmt(
      "INSERT INTO tokens(run_id, position, token_id, piece, logprob, entropy, latency_us, "
      "energy_uj) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  for (const auto& t : tokens) {
    s.bind(1, run).bind(2, t.position).bind(3, static_cast<int64_t>(t.id));
    s.bind_blob(4, t.piece);
    s.bind(5, static_cast<double>(t.logprob)).bind(6, static_cast<double>(t.entropy));
    s.bind(7, t.latency_us);
    if (t.energy_uj)
      s.bind(8, *t.energy_uj);
    else
      s.bind_null(8);
    s.run("store token " + std::to_string(t.position) + " of run " + std::to_string(run));
  }
}

void Store::write_routing(int64_t run, std::span<const RoutingRecord> routing) {
  auto& s = stmt(
      "INSERT INTO routing(run_id, position, layer_begin, n_layers, data) "
      "VALUES(?1, ?2, ?3, ?4, ?5)");
  std::string blob;
  size_t i = 0;
  while (i < routing.size()) {
    // One row per token and run of consecutive layers.
    size_t j = i + 1;
    while (j < routing.size() && routing[j].position == routing[i].position &&
           routing[j].layer == routing[j - 1].layer + 1)
      ++j;
    blob.clear();
    for (size_t x = i; x < j; ++x) codec::encode_routing(routing[x], blob);
    s.bind(1, run).bind(2, routing[i].position).bind(3, static_cast<int64_t>(routing[i].layer));
    s.bind(4, static_cast<int64_t>(j - i)).bind_blob(5, blob);
    s.run("store routing of token " + std::to_string(routing[i].position) + " of run " +
          std::to_string(run));
    i = j;
  }
}

void Store::write_attention(int64_t run, std::span<const AttentionSnapshot> snapshots) {
  auto& s = stmt(
      "INSERT INTO attention(run_id, position, layer, head, shape, data) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  for (const auto& a : snapshots) {
    int64_t n = a.shape.empty() ? 0 : 1;
    std::string shape;
    for (int64_t d : a.shape) {
      n *= d;
      if (!shape.empty()) shape += ',';
      shape += std::to_string(d);
    }
    if (n != static_cast<int64_t>(a.data.size()) || n < 0)
      throw StorageError(StorageErrorKind::BadInput,
                         "attention snapshot of shape [" + shape + "] holds " +
                             std::to_string(a.data.size()) + " values",
                         {path_, "store attention of run " + std::to_string(run)});
    const auto blob = codec::compress(
        {reinterpret_cast<const uint8_t*>(a.data.data()), a.data.size() * sizeof(float)});
    s.bind(1, run).bind(2, a.position).bind(3, static_cast<int64_t>(a.layer));
    s.bind(4, static_cast<int64_t>(a.head)).bind(5, shape).bind_blob(6, blob);
    s.run("store attention of run " + std::to_string(run));
  }
}

void Store::write_metrics(int64_t run, std::span<const MetricRecord> metrics) {
  auto& s = stmt("INSERT OR REPLACE INTO metrics(run_id, key, value, unit) VALUES(?1, ?2, ?3, ?4)");
  for (const auto& m : metrics) {
    s.bind(1, run).bind(2, m.key).bind(3, m.value).bind(4, m.unit);
    s.run("store metric '" + m.key + "' of run " + std::to_string(run));
  }
}

void Store::write_dists(int64_t run, std::span<const NextTokenDist> dists) {
  auto& s = stmt(
      "INSERT INTO next_token_dists(run_id, position, n_vocab, n_ids, data) "
      "VALUES(?1, ?2, ?3, ?4, ?5)");
  std::string raw;
  for (const auto& d : dists) {
    if (!d.ids.empty() && d.ids.size() != d.probs.size())
      throw StorageError(StorageErrorKind::BadInput, "sparse distribution: ids and probs differ",
                         {path_, "store next-token distribution"});
    raw.assign(reinterpret_cast<const char*>(d.ids.data()), d.ids.size() * 4);
    raw.append(reinterpret_cast<const char*>(d.probs.data()), d.probs.size() * 4);
    const auto blob = codec::compress(bytes(raw));
    s.bind(1, run).bind(2, d.position).bind(3, static_cast<int64_t>(d.n_vocab));
    s.bind(4, static_cast<int64_t>(d.ids.size())).bind_blob(5, blob);
    s.run("store next-token distribution of run " + std::to_string(run));
  }
}

int64_t Store::write_eval(int64_t run, const EvalResult& e) {
  auto& s = stmt(
      "INSERT INTO eval_results(run_id, metric, method, text_sha256, value, n_tokens, "
      "chunk_values) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  s.bind(1, run).bind(2, e.metric).bind(3, e.method).bind(4, e.text_sha256).bind(5, e.value);
  s.bind(6, e.n_tokens);
  s.bind_blob(7, {reinterpret_cast<const uint8_t*>(e.chunk_values.data()),
                  e.chunk_values.size() * sizeof(double)});
  s.run("store evaluation result of run " + std::to_string(run));
  return sqlite3_last_insert_rowid(db_);
}

void Store::write(const Batch& b) {
  if (b.empty()) return;
  detail::Transaction tx(db_, path_, "write records");
  for (const auto& x : b.tokens) write_tokens(x.run_id, x.items);
  for (const auto& x : b.routing) write_routing(x.run_id, x.items);
  for (const auto& x : b.attention) write_attention(x.run_id, x.items);
  for (const auto& x : b.metrics) write_metrics(x.run_id, x.items);
  for (const auto& x : b.dists) write_dists(x.run_id, x.items);
  for (const auto& x : b.evals)
    for (const auto& e : x.items) write_eval(x.run_id, e);
  tx.commit();
}

#define MOELAB_SINGLE(name, field, type)                                     \
  void Store::name(int64_t run, std::span<const type> items) {               \
    Batch b;                                                                 \
    b.field.push_back({run, std::vector<type>(items.begin(), items.end())}); \
    write(b);                                                                \
  }
MOELAB_SINGLE(append_tokens, tokens, TokenRecord)
MOELAB_SINGLE(append_routing, routing, RoutingRecord)
MOELAB_SINGLE(append_attention, attention, AttentionSnapshot)
MOELAB_SINGLE(append_metrics, metrics, MetricRecord)
MOELAB_SINGLE(append_next_token_dists, dists, NextTokenDist)
#undef MOELAB_SINGLE

int64_t Store::add_eval_result(int64_t run, const EvalResult& e) {
  detail::Transaction tx(db_, path_, "store evaluation result");
  const int64_t id = write_eval(run, e);
  tx.commit();
  return id;
}

void Store::finish_run(int64_t run, RunStatus status, const std::string& output,
                       const std::string& error) {
  if (status == RunStatus::Running)
    throw StorageError(StorageErrorKind::BadInput, "finish_run needs a final status",
                       {path_, "finish run " + std::to_string(run)});
  detail::Transaction tx(db_, path_, "finish run " + std::to_string(run));
  const std::string sql =
      std::string("UPDATE runs SET status = ?1, output = ?2, error = ?3, finished_at = ?4, ") +
      kAggregates + " WHERE id = ?5";
  Stmt s(db_, sql, path_);
  s.bind(1, status_name(status)).bind(2, output).bind(3, error).bind(4, now_ms()).bind(5, run);
  s.run("finish run " + std::to_string(run));
  if (sqlite3_changes(db_) == 0)
    throw StorageError(StorageErrorKind::BadInput, "no run with id " + std::to_string(run),
                       {path_, "finish run"});
  tx.commit();
}

static const char* kRunCols =
    "SELECT id, session_id, coalesce(model_id, 0), kind, config_json, prompt, output, status, "
    "error, started_at, coalesce(finished_at, 0), n_tokens, latency_us_total, energy_uj_total "
    "FROM runs ";

static RunRecord read_run(const Stmt& s) {
  RunRecord r;
  r.id = s.i64(0);
  r.session_id = s.i64(1);
  r.model_id = s.i64(2);
  r.kind = s.text(3);
  r.config_json = s.text(4);
  r.prompt = s.text(5);
  r.output = s.text(6);
  r.status = parse_status(s.text(7)).value_or(RunStatus::Failed);
  r.error = s.text(8);
  r.started_at = s.i64(9);
  r.finished_at = s.i64(10);
  r.n_tokens = s.i64(11);
  r.latency_us_total = s.i64(12);
  r.energy_uj_total = s.f64(13);
  return r;
}

std::optional<RunRecord> Store::run(int64_t id) const {
  Stmt s(db_, std::string(kRunCols) + "WHERE id = ?1", path_);
  s.bind(1, id);
  if (!s.step("read run")) return std::nullopt;
  RunRecord r = read_run(s);
  if (r.status == RunStatus::Running) {  // aggregates are final only once it finished
    Stmt a(db_,
           "SELECT count(*), coalesce(sum(latency_us), 0), coalesce(sum(energy_uj), 0) "
           "FROM tokens WHERE run_id = ?1",
           path_);
    a.bind(1, id);
    a.step("read run aggregates");
    r.n_tokens = a.i64(0);
    r.latency_us_total = a.i64(1);
    r.energy_uj_total = a.f64(2);
  }
  return r;
}

std::vector<RunRecord> Store::runs(int64_t session_id) const {
  Stmt s(db_, std::string(kRunCols) + "WHERE session_id = ?1 ORDER BY id", path_);
  s.bind(1, session_id);
  std::vector<RunRecord> out;
  while (s.step("list runs")) out.push_back(read_run(s));
  return out;
}

std::vector<TokenRecord> Store::tokens(int64_t run) const {
  Stmt s(db_,
         "SELECT position, token_id, piece, logprob, entropy, latency_us, energy_uj FROM tokens "
         "WHERE run_id = ?1 ORDER BY position",
         path_);
  s.bind(1, run);
  std::vector<TokenRecord> out;
  while (s.step("read tokens")) {
    TokenRecord t;
    t.position = s.i64(0);
    t.id = static_cast<int32_t>(s.i64(1));
    t.piece = s.text(2);
    t.logprob = s.is_null(3) ? NAN : static_cast<float>(s.f64(3));
    t.entropy = s.is_null(4) ? NAN : static_cast<float>(s.f64(4));
    t.latency_us = s.i64(5);
    if (!s.is_null(6)) t.energy_uj = s.f64(6);
    out.push_back(std::move(t));
  }
  return out;
}

int64_t Store::token_count(int64_t run) const {
  Stmt s(db_, "SELECT count(*) FROM tokens WHERE run_id = ?1", path_);
  s.bind(1, run);
  s.step("count tokens");
  return s.i64(0);
}

std::vector<RoutingRecord> Store::routing(int64_t run) const {
  Stmt s(db_,
         "SELECT position, layer_begin, n_layers, data FROM routing WHERE run_id = ?1 "
         "ORDER BY position, layer_begin",
         path_);
  s.bind(1, run);
  std::vector<RoutingRecord> out;
  while (s.step("read routing")) {
    auto part = codec::decode_routing(s.i64(0), static_cast<int32_t>(s.i64(1)),
                                      static_cast<int32_t>(s.i64(2)), s.blob(3));
    for (auto& r : part) out.push_back(std::move(r));
  }
  return out;
}

std::vector<AttentionSnapshot> Store::attention(int64_t run) const {
  Stmt s(db_,
         "SELECT position, layer, head, shape, data FROM attention WHERE run_id = ?1 "
         "ORDER BY position, layer, head, id",
         path_);
  s.bind(1, run);
  std::vector<AttentionSnapshot> out;
  while (s.step("read attention")) {
    AttentionSnapshot a;
    a.position = s.i64(0);
    a.layer = static_cast<int32_t>(s.i64(1));
    a.head = static_cast<int32_t>(s.i64(2));
    std::istringstream shape(s.text(3));
    std::string d;
    while (std::getline(shape, d, ',')) a.shape.push_back(std::stoll(d));
    const std::string raw = codec::decompress(s.blob(4));
    a.data.resize(raw.size() / sizeof(float));
    detail::copy_bytes(a.data.data(), raw.data(), a.data.size() * sizeof(float));
    out.push_back(std::move(a));
  }
  return out;
}

std::vector<MetricRecord> Store::metrics(int64_t run) const {
  Stmt s(db_, "SELECT key, value, unit FROM metrics WHERE run_id = ?1 ORDER BY key", path_);
  s.bind(1, run);
  std::vector<MetricRecord> out;
  while (s.step("read metrics"))
    out.push_back({s.text(0), s.is_null(1) ? NAN : s.f64(1), s.text(2)});
  return out;
}

std::vector<NextTokenDist> Store::next_token_dists(int64_t run) const {
  Stmt s(db_,
         "SELECT position, n_vocab, n_ids, data FROM next_token_dists WHERE run_id = ?1 "
         "ORDER BY position",
         path_);
  s.bind(1, run);
  std::vector<NextTokenDist> out;
  while (s.step("read next-token distributions")) {
    NextTokenDist d;
    d.position = s.i64(0);
    d.n_vocab = static_cast<int32_t>(s.i64(1));
    const size_t n_ids = static_cast<size_t>(s.i64(2));
    const std::string raw = codec::decompress(s.blob(3));
    if (raw.size() < n_ids * 4 || (raw.size() - n_ids * 4) % 4 != 0)
      throw StorageError(StorageErrorKind::Corrupt, "damaged next-token distribution",
                         {path_, "run " + std::to_string(run)});
    d.ids.resize(n_ids);
    detail::copy_bytes(d.ids.data(), raw.data(), n_ids * 4);
    d.probs.resize((raw.size() - n_ids * 4) / 4);
    detail::copy_bytes(d.probs.data(), raw.data() + n_ids * 4, d.probs.size() * 4);
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<EvalResult> Store::eval_results(int64_t run) const {
  Stmt s(db_,
         "SELECT id, metric, method, text_sha256, value, n_tokens, chunk_values FROM eval_results "
         "WHERE run_id = ?1 ORDER BY id",
         path_);
  s.bind(1, run);
  std::vector<EvalResult> out;
  while (s.step("read evaluation results")) {
    EvalResult e;
    e.id = s.i64(0);
    e.metric = s.text(1);
    e.method = s.text(2);
    e.text_sha256 = s.text(3);
    e.value = s.is_null(4) ? NAN : s.f64(4);
    e.n_tokens = s.i64(5);
    const auto b = s.blob(6);
    e.chunk_values.resize(b.size() / sizeof(double));
    detail::copy_bytes(e.chunk_values.data(), b.data(), e.chunk_values.size() * sizeof(double));
    out.push_back(std::move(e));
  }
  return out;
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
