// `moelab-cli run --remote URL --remote-model NAME`: the run command against an
// OpenAI-compatible server (moelab serve, vLLM, SGLang, llama-server) instead of a local model.
// Kept out of run.cpp (which only dispatches here) so the local path stays small.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "moelab/runtime/sampler.h"
#include "run_store.h"

namespace moelab::cli {

struct RemoteRunOptions {
  std::string url;    // --remote
  std::string model;  // --remote-model
  std::string api_key;
  std::string routed_format = "auto";  // auto | sglang | vllm | none
  int top_k = 0;                       // --remote-top-k: experts per token (SGLang decoding)
  double timeout_s = 120;
  bool enabled() const { return !url.empty(); }
  /// An option that only means something with --remote was given (checked without --remote).
  bool any_given() const {
    return !model.empty() || !api_key.empty() || routed_format != "auto" || top_k != 0 ||
           timeout_s != 120;
  }
};

/// Adds --remote, --remote-model, --api-key, --routed-experts-format, --remote-top-k,
/// --remote-timeout to `sub`.
void add_remote_options(CLI::App* sub, RemoteRunOptions& o);

/// What the run command hands over besides the remote options.
struct RemoteRunArgs {
  std::string prompt, system;
  bool chat = false;
  int32_t max_tokens = 128;
  SamplerParams sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool json = false;
  RunStoreOptions store;
  bool escape = false;  // control bytes of the text as control pictures (a terminal, --escape)
};

/// Streams the completion, prints it as `run` does (text, or --json), and stores it with
/// --db/--session as a run with engine "remote" (config: URL, served model id, what the server
/// reported and what it does not). Faults (connection, timeout, HTTP status, malformed or cut
/// stream, oversized response, wrong routed-experts shape) throw moelab::Error (exit 2) after
/// the partial run is stored as failed.
int remote_run_cmd(const RemoteRunOptions& r, const RemoteRunArgs& a, Io io);

}  // namespace moelab::cli
