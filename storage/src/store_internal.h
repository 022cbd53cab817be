// Internal: what the Store's source files share (store.cpp: open, migrate, recover;
// store_catalog.cpp: models and sessions; store_runs.cpp: writing runs; store_reads.cpp: reading
// them back).
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "bytes.h"
#include "moelab/storage/codec.h"
#include "moelab/storage/store.h"
#include "sqlite_util.h"

namespace moelab::storage {

struct Store::StmtCache {
  std::map<const char*, std::unique_ptr<detail::Stmt>> stmts;
};

namespace detail {

inline int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Tags are stored as a JSON array, which holds UTF-8 text only: a tag that is not valid UTF-8
/// is a BadInput (nlohmann's type_error would otherwise escape as an unknown exception).
inline std::string tags_to_json(const std::vector<std::string>& tags, const std::string& path) {
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

inline std::vector<std::string> tags_from_json(const std::string& s) {
  try {
    auto j = nlohmann::json::parse(s);
    if (j.is_array()) return j.get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception&) {
  }
  return {};
}

inline std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

/// SQL assignments that recompute a run's aggregates from its tokens (UPDATE runs SET ...).
inline constexpr const char* kAggregates =
    "n_tokens = (SELECT count(*) FROM tokens t WHERE t.run_id = runs.id), "
    "latency_us_total = (SELECT coalesce(sum(latency_us), 0) FROM tokens t "
    "WHERE t.run_id = runs.id), "
    "energy_uj_total = (SELECT coalesce(sum(energy_uj), 0) FROM tokens t "
    "WHERE t.run_id = runs.id)";

// The run's generated text as stored token by token: the output of a run that ended before it
// could write its final text (interrupted, failed, cancelled by a signal).
inline constexpr const char* kTokensText =
    "(SELECT coalesce(group_concat(piece, ''), '') FROM (SELECT CAST(piece AS TEXT) AS piece "
    "FROM tokens t WHERE t.run_id = runs.id ORDER BY position))";

}  // namespace detail
}  // namespace moelab::storage
