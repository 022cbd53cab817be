#include "process_owner.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

namespace moelab::storage::detail {

namespace {
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
}  // namespace

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

}  // namespace moelab::storage::detail
