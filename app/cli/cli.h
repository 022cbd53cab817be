// moelab-cli: the headless front end. The executable is a thin main over this library so that
// tests run the same code with their own streams.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace moelab::cli {

/// Exit codes: 0 success, 1 internal failure, 2 bad input (invalid file, bad argument).
enum ExitCode { kOk = 0, kInternal = 1, kBadInput = 2 };

/// Streams a command writes to; the executable passes std::cout / std::cerr, and out_is_tty =
/// isatty(stdout): commands that print a model's text escape its control bytes for a terminal
/// (run), and keep the bytes as they are when the output goes to a pipe or file.
struct Io {
  std::ostream& out;
  std::ostream& err;
  bool out_is_tty = false;
};

/// Runs the CLI with argv-style arguments (args[0] is the program name). Never throws: engine
/// errors become "error: ..." on io.err and exit code 2 (bad input) or 1 (internal).
int run(const std::vector<std::string>& args, Io io);

/// The action a chosen subcommand runs after parsing; it returns the exit code and may throw
/// moelab::Error.
using Action = std::function<int()>;

/// Each subcommand lives in its own file and registers itself through one of these; `action` is
/// set when the subcommand is selected on the command line.
void add_inspect(CLI::App& app, Io io, Action& action);
void add_devices(CLI::App& app, Io io, Action& action);
void add_tokenize(CLI::App& app, Io io, Action& action);
void add_detokenize(CLI::App& app, Io io, Action& action);
void add_make_model(CLI::App& app, Io io, Action& action);
void add_moefy(CLI::App& app, Io io, Action& action);
void add_sessions(CLI::App& app, Io io, Action& action);
void add_compare(CLI::App& app, Io io, Action& action);
void add_run(CLI::App& app, Io io, Action& action);
void add_perplexity(CLI::App& app, Io io, Action& action);
void add_logits(CLI::App& app, Io io, Action& action);
void add_trace(CLI::App& app, Io io, Action& action);
void add_eval(CLI::App& app, Io io, Action& action);
void add_sweep(CLI::App& app, Io io, Action& action);
void add_report(CLI::App& app, Io io, Action& action);
void add_serve(CLI::App& app, Io io, Action& action);        // serve.cpp
void add_bench_serve(CLI::App& app, Io io, Action& action);  // bench_serve.cpp
// Later commands (tokenize, run, logits, ...) follow the same pattern; see cli.cpp.

}  // namespace moelab::cli
