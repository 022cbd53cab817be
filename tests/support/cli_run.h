// Tests of moelab-cli through its library (link moelab_cli_lib): one command with its exit code
// and both streams, as a person at a terminal sees them.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "cli.h"

namespace moelab::test {

struct CliResult {
  int code;
  std::string out, err;
};

/// Runs `moelab-cli args...` in this process (args without the program name). `tty`: stdout
/// is taken for a terminal (Io::out_is_tty), as when a person runs the command without a pipe.
inline CliResult cli_run(std::vector<std::string> args, bool tty = false) {
  args.insert(args.begin(), "moelab-cli");
  std::ostringstream out, err;
  const int code = cli::run(args, {out, err, tty});
  return {code, out.str(), err.str()};
}

}  // namespace moelab::test
