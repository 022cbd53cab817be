// RAII helpers over the SQLite C API (internal to moelab_storage).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "moelab/storage/error.h"

namespace moelab::storage::detail {

/// Maps a SQLite result code to a StorageError that names the file and what was being done.
[[noreturn]] void throw_sqlite(sqlite3* db, int rc, const std::string& file,
                               const std::string& subject);

inline void check(sqlite3* db, int rc, const std::string& file, const std::string& subject) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) throw_sqlite(db, rc, file, subject);
}

/// Executes one or more statements without results.
void exec(sqlite3* db, const char* sql, const std::string& file, const std::string& subject);

/// A prepared statement; bind with 1-based indices, step(), read columns 0-based.
class Stmt {
 public:
  Stmt(sqlite3* db, std::string_view sql, const std::string& file);
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, int64_t v) { return ok(sqlite3_bind_int64(st_, i, v)); }
  Stmt& bind(int i, int v) { return ok(sqlite3_bind_int64(st_, i, v)); }
  Stmt& bind(int i, double v);  // NaN -> NULL
  Stmt& bind(int i, std::string_view text) {
    return ok(
        sqlite3_bind_text(st_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT));
  }
  Stmt& bind(int i, const char* text) { return bind(i, std::string_view(text)); }
  Stmt& bind(int i, const std::string& text) { return bind(i, std::string_view(text)); }
  Stmt& bind_blob(int i, std::span<const uint8_t> b) {
    // An empty span may have a null data pointer, which SQLite would store as NULL.
    if (b.empty()) return ok(sqlite3_bind_zeroblob(st_, i, 0));
    return ok(sqlite3_bind_blob(st_, i, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT));
  }
  Stmt& bind_blob(int i, const std::string& b) {
    return bind_blob(i, {reinterpret_cast<const uint8_t*>(b.data()), b.size()});
  }
  Stmt& bind_null(int i) { return ok(sqlite3_bind_null(st_, i)); }

  /// True when a row is available; false when done. Throws on error.
  bool step(const std::string& subject);
  /// Runs to completion (for INSERT/UPDATE/DELETE), then resets for reuse.
  void run(const std::string& subject);
  void reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }

  int64_t i64(int c) const { return sqlite3_column_int64(st_, c); }
  double f64(int c) const { return sqlite3_column_double(st_, c); }
  bool is_null(int c) const { return sqlite3_column_type(st_, c) == SQLITE_NULL; }
  std::string text(int c) const;
  std::span<const uint8_t> blob(int c) const;

 private:
  Stmt& ok(int rc);
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
  std::string file_;
};

/// BEGIN IMMEDIATE ... COMMIT; rolls back in the destructor unless commit() succeeded.
class Transaction {
 public:
  Transaction(sqlite3* db, const std::string& file, const std::string& subject);
  ~Transaction();
  void commit();

 private:
  sqlite3* db_;
  std::string file_, subject_;
  bool done_ = false;
};

}  // namespace moelab::storage::detail
