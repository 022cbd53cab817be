// Helpers shared by the CLI commands that use the experiment store (sessions, compare, and later
// run --db / eval / sweep): the --db option, opening the store, and turning storage errors into
// moelab::Error so the CLI reports them like every other failure.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <memory>
#include <string>

#include "moelab/core/error.h"
#include "moelab/storage/store.h"

namespace moelab::cli {

/// Adds `--db PATH` (default: storage::default_database_path()) to a subcommand.
inline CLI::Option* add_db_option(CLI::App* sub, std::string& db) {
  return sub->add_option("--db", db,
                         "Experiment database (default: $XDG_DATA_HOME/moelab/moelab.db)");
}

inline std::string db_or_default(const std::string& db) {
  return db.empty() ? storage::default_database_path() : db;
}

/// storage::StorageError -> moelab::Error (exit code 2 for bad input, 1 for internal failures).
[[noreturn]] inline void rethrow_as_moelab(const storage::StorageError& e) {
  using K = storage::StorageErrorKind;
  ErrorKind kind = ErrorKind::BadInput;
  switch (e.kind()) {
    case K::Io:
    case K::DiskFull:
    case K::ReadOnly:
    case K::Busy:
      kind = ErrorKind::Io;
      break;
    case K::Internal:
      kind = ErrorKind::Internal;
      break;
    default:
      kind = ErrorKind::BadInput;
  }
  throw Error(kind, e.detail(), ErrorWhere{e.where().file, std::nullopt, e.where().subject});
}

/// Runs fn(), translating storage errors.
template <typename F>
auto with_store_errors(F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const storage::StorageError& e) {
    rethrow_as_moelab(e);
  }
}

/// Refuses a --db path that cannot be a database before SQLite reports "disk I/O error": a
/// device, FIFO, socket or folder (BadInput, exit 2, "PATH: not a regular file (a character
/// device); --db needs a database file"), and, when `must_exist`, a path with nothing there
/// ("PATH: no database here; runs stored with run --db create one"). A missing file is fine
/// for the writers (run/eval/sweep --db create the database).
inline void check_database_path(const std::string& path, bool must_exist) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (st.type() == fs::file_type::not_found) {
    if (must_exist)
      throw Error(ErrorKind::BadInput,
                  "no database here; 'moelab-cli run --db PATH' creates one when it stores a run",
                  {.file = path});
    return;
  }
  if (ec)
    throw Error(ErrorKind::BadInput, "cannot read the database path: " + ec.message(),
                {.file = path});
  if (st.type() == fs::file_type::regular) return;
  const char* what = st.type() == fs::file_type::directory   ? "a folder"
                     : st.type() == fs::file_type::character ? "a character device"
                     : st.type() == fs::file_type::block     ? "a block device"
                     : st.type() == fs::file_type::fifo      ? "a FIFO"
                     : st.type() == fs::file_type::socket    ? "a socket"
                                                             : "not a file";
  throw Error(ErrorKind::BadInput,
              std::string("not a regular file (") + what + "); --db needs a database file",
              {.file = path});
}

/// Opens an existing database for the read commands (sessions, compare, report, sweep's
/// reads); never creates one (a typo in --db must not make an empty file): a missing path or
/// one that is not a regular file is refused (check_database_path, exit 2). A database this
/// user cannot write (read-only file, folder or medium) is opened read-only: reading needs no
/// write access, it only skips relabelling the runs of dead processes as interrupted.
inline std::unique_ptr<storage::Store> open_existing_store(const std::string& path) {
  check_database_path(path, true);
  storage::OpenOptions o;
  o.create = false;
  try {
    return std::make_unique<storage::Store>(path, o);
  } catch (const storage::StorageError& e) {
    if (e.kind() != storage::StorageErrorKind::ReadOnly) throw;
  }
  o.read_only = true;
  return std::make_unique<storage::Store>(path, o);
}

}  // namespace moelab::cli
