// Ordered schema migrations (internal). kMigrations[i] upgrades schema version i to i + 1.
#pragma once

namespace moelab::storage::detail {

/// Number of migrations == kSchemaVersion.
extern const char* const kMigrations[];
extern const int kMigrationCount;

/// PRAGMA application_id of moelab databases ("MOEL").
inline constexpr int kApplicationId = 0x4d4f454c;

}  // namespace moelab::storage::detail
