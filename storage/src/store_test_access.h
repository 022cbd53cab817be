// Tests only: the raw SQLite connection of a Store (to damage a table, read a pragma of that
// connection, hold a lock). Not part of the public header; tests add storage/src to their
// include path.
#pragma once

#include <sqlite3.h>

#include "moelab/storage/store.h"

namespace moelab::storage::detail {

struct StoreTestAccess {
  static sqlite3* handle(const Store& s) { return s.db_; }
};

}  // namespace moelab::storage::detail
