// moelab storage error type. The store cannot include engine headers (it stores plain records),
// so it has its own exception with the same shape as moelab::Error: what went wrong and where.
// Front ends (app/) translate it into moelab::Error.
#pragma once

#include <stdexcept>
#include <string>

namespace moelab::storage {

/// Broad category of a storage failure.
enum class StorageErrorKind {
  BadInput,  // a bad argument: unknown run id, duplicate session name, malformed JSON
  Io,        // the operating system refused (cannot open, cannot create the folder)
  DiskFull,  // SQLITE_FULL: the disk (or the page limit) is full; nothing committed was lost
  ReadOnly,  // the file or the connection is read-only
  Busy,      // another process held the write lock longer than the busy timeout
  Corrupt,   // not a database, or a damaged one
  Version,   // the file was written by a newer moelab (schema version too high)
  Internal,  // a bug in moelab
};

/// Where a storage failure happened. Every field is optional; what() prints those set.
struct StorageWhere {
  std::string file;     // database path
  std::string subject;  // table, run id, statement purpose ("append tokens of run 12")
};

/// The store's exception. what() is a complete sentence, e.g.
/// "/home/a/moelab.db: append tokens of run 12: the disk is full (database or disk is full);
/// everything committed before is kept".
class StorageError : public std::runtime_error {
 public:
  StorageError(StorageErrorKind kind, std::string detail, StorageWhere where = {},
               int sqlite_code = 0);

  StorageErrorKind kind() const noexcept { return kind_; }
  const std::string& detail() const noexcept { return detail_; }
  const StorageWhere& where() const noexcept { return where_; }
  /// The extended SQLite result code behind the failure, 0 when none.
  int sqlite_code() const noexcept { return sqlite_code_; }

 private:
  StorageErrorKind kind_;
  std::string detail_;
  StorageWhere where_;
  int sqlite_code_;
};

/// Short name of a kind ("disk-full", "read-only", ...), for logs and JSON.
const char* kind_name(StorageErrorKind kind) noexcept;

}  // namespace moelab::storage
