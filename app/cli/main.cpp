#include <unistd.h>

#include <iostream>

#include "cli.h"
#include "interrupt.h"

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  // Before any thread exists, so that every thread leaves SIGINT/SIGTERM to the watcher.
  moelab::cli::interrupt::Watcher watcher;
  std::vector<std::string> args(argv, argv + argc);
  const int rc = moelab::cli::run(args, {std::cout, std::cerr, ::isatty(STDOUT_FILENO) == 1});
  if (const int sig = moelab::cli::interrupt::received()) {
    std::cout.flush();
    std::cerr << "moelab-cli: stopped by " << moelab::cli::interrupt::signal_name(sig)
              << "; what was computed so far is kept (stored runs are marked cancelled)\n";
    return 128 + sig;
  }
  return rc;
}
