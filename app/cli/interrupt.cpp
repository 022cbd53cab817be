#include "interrupt.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <ctime>
#include <mutex>
#include <thread>

namespace moelab::cli::interrupt {

namespace {
std::mutex g_mu;
std::function<void()> g_hook;  // guarded by g_mu
std::atomic<int> g_received{0};
std::atomic<bool> g_stop{false};
std::thread g_thread;
sigset_t g_old_mask;

sigset_t watched() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  return s;
}

// Ends the process as the signal's default action would (exit status 128 + sig to the shell).
[[noreturn]] void die_by(int sig) {
  std::signal(sig, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  raise(sig);
  std::_Exit(128 + sig);  // not reached unless the signal is ignored by the environment
}

void loop() {
  const sigset_t set = watched();
  while (!g_stop.load()) {
    const timespec tick{0, 100 * 1000 * 1000};
    const int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig <= 0) continue;
    std::lock_guard lock(g_mu);
    if (g_received.load() == 0 && g_hook) {
      g_received.store(sig);
      g_hook();
    } else {
      die_by(sig);  // a second signal, or nothing to save: stop now
    }
  }
}
}  // namespace

Watcher::Watcher() {
  const sigset_t set = watched();
  pthread_sigmask(SIG_BLOCK, &set, &g_old_mask);
  g_stop.store(false);
  g_thread = std::thread(loop);
}

Watcher::~Watcher() {
  g_stop.store(true);
  if (g_thread.joinable()) g_thread.join();
  pthread_sigmask(SIG_SETMASK, &g_old_mask, nullptr);
}

int received() {
  return g_received.load();
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "a signal";
  }
}

OnInterrupt::OnInterrupt(std::function<void()> on_signal) {
  std::lock_guard lock(g_mu);
  previous_ = std::move(g_hook);
  g_hook = std::move(on_signal);
}

OnInterrupt::~OnInterrupt() {
  std::lock_guard lock(g_mu);
  g_hook = std::move(previous_);
}

}  // namespace moelab::cli::interrupt
