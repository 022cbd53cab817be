#include "sqlite_util.h"

#include <cmath>

namespace moelab::storage {

StorageError::StorageError(StorageErrorKind kind, std::string detail, StorageWhere where,
                           int sqlite_code)
    : std::runtime_error([&] {
        std::string m;
        if (!where.file.empty()) m += where.file + ": ";
        if (!where.subject.empty()) m += where.subject + ": ";
        return m + detail;
      }()),
      kind_(kind),
      detail_(std::move(detail)),
      where_(std::move(where)),
      sqlite_code_(sqlite_code) {}

const char* kind_name(StorageErrorKind kind) noexcept {
  switch (kind) {
    case StorageErrorKind::BadInput:
      return "bad-input";
    case StorageErrorKind::Io:
      return "io";
    case StorageErrorKind::DiskFull:
      return "disk-full";
    case StorageErrorKind::ReadOnly:
      return "read-only";
    case StorageErrorKind::Busy:
      return "busy";
    case StorageErrorKind::Corrupt:
      return "corrupt";
    case StorageErrorKind::Version:
      return "version";
    case StorageErrorKind::Internal:
      return "internal";
  }
  return "internal";
}

namespace detail {

void throw_sqlite(sqlite3* db, int rc, const std::string& file, const std::string& subject) {
  const int ext = db ? sqlite3_extended_errcode(db) : rc;
  const std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  StorageWhere where{file, subject};
  switch (rc & 0xff) {
    case SQLITE_FULL:
      throw StorageError(StorageErrorKind::DiskFull,
                         "the disk is full (" + msg +
                             "); the failed write was rolled back, everything committed before "
                             "is kept",
                         where, ext);
    case SQLITE_READONLY:
      throw StorageError(StorageErrorKind::ReadOnly,
                         "the database is read-only (" + msg + "); nothing was written", where,
                         ext);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      throw StorageError(StorageErrorKind::Corrupt,
                         "the file is not a moelab database or is damaged (" + msg + ")", where,
                         ext);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      throw StorageError(
          StorageErrorKind::Busy,
          "another process kept the database locked past the busy timeout (" + msg + ")", where,
          ext);
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_PERM:
      throw StorageError(StorageErrorKind::Io, "the operating system refused (" + msg + ")", where,
                         ext);
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
      throw StorageError(StorageErrorKind::BadInput, msg, where, ext);
    default:
      throw StorageError(StorageErrorKind::Internal, "SQLite failed (" + msg + ")", where, ext);
  }
}

void exec(sqlite3* db, const char* sql, const std::string& file, const std::string& subject) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  sqlite3_free(err);
  check(db, rc, file, subject);
}

Stmt::Stmt(sqlite3* db, std::string_view sql, const std::string& file) : db_(db), file_(file) {
  const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &st_, nullptr);
  check(db, rc, file, "prepare '" + std::string(sql.substr(0, 40)) + "...'");
}

Stmt& Stmt::bind(int i, double v) {
  if (std::isnan(v)) return ok(sqlite3_bind_null(st_, i));
  return ok(sqlite3_bind_double(st_, i, v));
}

Stmt& Stmt::ok(int rc) {
  check(db_, rc, file_, "bind");
  return *this;
}

bool Stmt::step(const std::string& subject) {
  const int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3_reset(st_);
  throw_sqlite(db_, rc, file_, subject);
}

void Stmt::run(const std::string& subject) {
  while (step(subject)) {
  }
  reset();
}

std::string Stmt::text(int c) const {
  const auto* p = sqlite3_column_blob(st_, c);
  const int n = sqlite3_column_bytes(st_, c);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

std::span<const uint8_t> Stmt::blob(int c) const {
  const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st_, c));
  const int n = sqlite3_column_bytes(st_, c);
  return p ? std::span<const uint8_t>(p, static_cast<size_t>(n)) : std::span<const uint8_t>();
}

Transaction::Transaction(sqlite3* db, const std::string& file, const std::string& subject)
    : db_(db), file_(file), subject_(subject) {
  exec(db, "BEGIN IMMEDIATE", file, subject);
}

Transaction::~Transaction() {
  if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  const int rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) throw_sqlite(db_, rc, file_, subject_);
  done_ = true;
}

}  // namespace detail
}  // namespace moelab::storage
