// Store: models and sessions.
#include "moelab/storage/store.h"
#include "store_internal.h"

namespace moelab::storage {

using detail::bytes;
using detail::now_ms;
using detail::Stmt;
using detail::tags_from_json;
using detail::tags_to_json;

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

}  // namespace moelab::storage
