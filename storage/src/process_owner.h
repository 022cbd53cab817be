// Internal: who owns a running run. A run records the writing process (pid, boot id, start
// time from /proc) so that a later open can tell a live writer from one that died (and relabel
// its runs interrupted) without trusting a pid that may have been reused.
#pragma once

#include <cstdint>
#include <string>

namespace moelab::storage::detail {

struct Owner {
  int64_t pid = 0;
  std::string boot;   // /proc/sys/kernel/random/boot_id, "" when unknown
  int64_t start = 0;  // starttime (field 22 of /proc/PID/stat), 0 when unknown
};

/// This process.
const Owner& self_owner();

/// False when the owner has exited (or is a zombie), the machine rebooted since, or its pid now
/// belongs to another process (different start time).
bool owner_alive(const Owner& o);

}  // namespace moelab::storage::detail
