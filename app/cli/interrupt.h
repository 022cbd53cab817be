// Ctrl-C and SIGTERM for moelab-cli: a stored run ends as `cancelled` with what it generated,
// instead of the process dying mid-run and the run being relabelled "interrupted" later.
//
// The executable's main() creates one Watcher before any other thread exists: SIGINT and SIGTERM
// are blocked in every thread and taken by the watcher thread (sigtimedwait), so the handling
// code runs as ordinary code, not in a signal handler. While an OnInterrupt guard is alive the
// first signal calls its function (e.g. Generator::request_cancel); the command then finishes
// cleanly and main() exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as
// shells expect. A second signal, or one while no guard is alive, ends the process at once with
// the default action (commands with nothing to save behave as before).
#pragma once

#include <functional>

namespace moelab::cli::interrupt {

class Watcher {
 public:
  Watcher();   // blocks SIGINT/SIGTERM in this thread (and the threads it creates later)
  ~Watcher();  // stops the watcher thread; restores the signal mask
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;
};

/// The signal received since the Watcher started (SIGINT, SIGTERM), 0 when none.
int received();

/// "SIGINT" / "SIGTERM" for a received() value.
const char* signal_name(int sig);

/// While alive, the first SIGINT/SIGTERM calls `on_signal` on the watcher thread (it must be
/// thread-safe and quick: set a flag, request a cancel). Guards nest; the innermost is called.
class OnInterrupt {
 public:
  explicit OnInterrupt(std::function<void()> on_signal);
  ~OnInterrupt();
  OnInterrupt(const OnInterrupt&) = delete;
  OnInterrupt& operator=(const OnInterrupt&) = delete;

 private:
  std::function<void()> previous_;
};

}  // namespace moelab::cli::interrupt
