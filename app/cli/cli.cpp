#include "cli.h"

#include <CLI/CLI.hpp>
#include <ostream>

#include "checks.h"
#include "moelab/core/error.h"
#include "moelab/core/log.h"
#include "version.h"

namespace moelab::cli {

namespace {
// The subcommands, in --help order. Add new commands here.
using Adder = void (*)(CLI::App&, Io, Action&);
const Adder kCommands[] = {add_inspect,
                           add_devices,
                           add_tokenize,
                           add_detokenize,
                           add_make_model,
                           add_moefy,
                           add_sessions,
                           add_compare,
                           add_run,
                           add_perplexity,
                           add_logits,
                           add_trace,
                           add_eval,
                           add_sweep,
                           add_report,
                           add_serve,
                           add_bench_serve,
#ifdef MOELAB_CLI_EXTRA_COMMANDS
                           MOELAB_CLI_EXTRA_COMMANDS
#endif
};
}  // namespace

int run(const std::vector<std::string>& args, Io io) {
  CLI::App app{"moelab-cli - run, inspect and measure language models (GGUF) headless",
               "moelab-cli"};
  app.set_version_flag("--version",
                       std::string("moelab-cli ") + kVersion + "\n" + build_description());
  app.require_subcommand(1);
  app.footer(
      "Exit status: 0 success, 1 internal failure, 2 bad input (invalid file or "
      "argument).\nReport bugs with the output of 'moelab-cli --version'.");
  Action action;
  for (Adder add : kCommands) add(app, io, action);

  // Route engine log lines to the command's error stream.
  set_log_sink([&io](LogLevel l, const std::string& m) {
    io.err << (l == LogLevel::Warning ? "warning: "
               : l == LogLevel::Error ? "error: "
                                      : "")
           << printable(m) << '\n';
  });
  struct ResetSink {
    ~ResetSink() { set_log_sink(nullptr); }
  } reset;

  std::vector<std::string> rev(args.rbegin(), args.rend() - (args.empty() ? 0 : 1));
  try {
    app.parse(rev);
  } catch (const CLI::CallForHelp&) {
    io.out << app.help();
    return kOk;
  } catch (const CLI::CallForAllHelp&) {
    io.out << app.help("", CLI::AppFormatMode::All);
    return kOk;
  } catch (const CLI::CallForVersion&) {
    io.out << app.version() << '\n';
    return kOk;
  } catch (const CLI::ParseError& e) {
    io.err << "error: " << printable(e.what())
           << "\nTry 'moelab-cli --help' for more information.\n";
    return kBadInput;
  }
  if (!action) {
    io.err << "error: no command given\nTry 'moelab-cli --help' for more information.\n";
    return kBadInput;
  }
  try {
    return action();
  } catch (const moelab::Error& e) {
    // Messages quote file metadata and arguments: control bytes never reach the terminal.
    io.err << "error: " << printable(e.what()) << '\n';
    return e.kind() == ErrorKind::Internal ? kInternal : kBadInput;
  } catch (const std::bad_alloc&) {
    io.err << "error: out of memory\n";
    return kInternal;
  } catch (const std::exception& e) {
    io.err << "error: internal failure: " << printable(e.what()) << '\n';
    return kInternal;
  }
}

}  // namespace moelab::cli
