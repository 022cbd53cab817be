// One remote run: a completion streamed from an OpenAI-compatible server (moelab serve, vLLM,
// SGLang, llama-server) and stored as a run with engine "remote" - the one implementation behind
// `moelab-cli run --remote` and the desktop lab's "Remote endpoint…" backend. No Qt.
//
// What is measured: client-side TTFT (request sent -> first content chunk) and the arrival time
// of every token (TPOT = (last - first arrival) / (completion tokens - 1)). What is stored:
// tokens (ids when the server reports them, else -1; logprob and entropy NaN: not reported),
// routed experts per generated token and layer when the server returned them (SGLang's
// sgl_ext.routed_experts or vLLM's choice.routed_experts, see routed_experts.h; router weights
// NaN: not reported), metrics ttft_ms, tpot_ms, tokens_per_s, total_ms, generated_tokens,
// prompt_tokens, and a config naming the URL, the served model id and what the server
// reported. What a server never reports (attention, per-layer timing, power, logprobs, ...) is
// listed in kRemoteNotAvailable and shown as "not available from this engine", never invented.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moelab/remote/client.h"
#include "moelab/storage/writer.h"

namespace moelab::remote {

/// The words the store, the CLI and the lab's views use for what a remote engine does not report.
inline constexpr const char* kNotAvailableFromEngine = "not available from this engine";

/// What an OpenAI-compatible engine does not report (stored as config.remote.not_available).
const std::vector<std::string>& remote_not_available();

/// Everything one remote run needs.
struct RemoteRunSpec {
  Endpoint endpoint;                   // URL, API key, timeouts
  std::string model;                   // served model id (see /v1/models)
  std::string routed_format = "auto";  // auto (ask SGLang's shape, accept either), sglang, vllm,
                                       // none
  int64_t top_k = 0;  // experts per token for SGLang's flat array (0: the server's /v1/models
                      // meta.expert_used_count when it says)
  std::string prompt, system;
  bool chat = false;
  int32_t max_tokens = 128;
  SamplerParams sampling;  // a missing seed is drawn here (and stored) before the request
  std::vector<std::string> stop;
  bool ignore_eos = false;
  std::string build;  // the program's version line, stored as config.build
};

/// What happened. `error` is empty on success, "cancelled" when the caller cancelled, else one
/// line naming the fault (connection, timeout, HTTP status, malformed or cut stream, oversized
/// response, wrong routed-experts shape); what arrived before is in `result` and the store.
struct RemoteRunOutcome {
  int64_t run_id = 0;  // 0: not stored (no writer)
  storage::RunStatus status = storage::RunStatus::Complete;
  std::string error;
  RemoteResult result;
  uint64_t seed = 0;
  int64_t completion_tokens = 0;  // usage.completion_tokens when reported, else tokens streamed
  double tpot_ms = 0;             // 0: fewer than two tokens
  /// [generated tokens][layers * top_k] expert ids (empty: see routed_note).
  std::vector<std::vector<int32_t>> routed;
  int64_t routed_layers = 0, routed_top_k = 0;
  int64_t routed_rows = 0;             // rows the server returned (prompt and generated tokens)
  int64_t routed_start = 0;            // sequence position of the first returned row
  int64_t routed_prompt_rows = 0;      // returned rows of prompt positions before prompt - 1 (the
                                       // prefill's other tokens): counted, not stored
  std::string routed_format = "none";  // the shape they came in: "sglang", "vllm" or "none"
  std::string routed_note;  // why there are none: "not requested" / kNotAvailableFromEngine
  nlohmann::json config;    // the run's stored config
  /// What the server reported, also stored as config.remote.reported: served_model (the
  /// responses' "model"), model_entry (its /v1/models entry, or why there is none), token_ids
  /// (every chunk carried ids), usage {server: {prompt_tokens, completion_tokens} or "not
  /// reported", client: {completion_tokens streamed, chunks}}, routed_experts {format, layers,
  /// top_k, rows_returned, first_position, prompt_rows_returned, stored, weights} or {format:
  /// "none", note}.
  nlohmann::json reported;
};

/// Called for every generated token as it is stored: position (0-based), id (-1 when the server
/// reports none), piece (the chunk's text on its first token, "" on the others), latency_us
/// (the chunk's time since the previous one, spread over its tokens). Returning false cancels.
using RemoteTokenFn = std::function<bool(const storage::TokenRecord&)>;

/// Sends spec's request, streams it and, with a `writer`, stores it as a run in `session`
/// (Complete, Cancelled or Failed with the error and what the server reported). `on_started`
/// (may be empty) gets the run id before the request goes out. `cancel` (may be null) is polled
/// between reads. Throws moelab::Error (BadInput) for a bad URL or spec before anything is sent,
/// and storage::StorageError for store failures; every remote fault is in the outcome instead.
RemoteRunOutcome run_remote(const RemoteRunSpec& spec, storage::AsyncWriter* writer,
                            const std::string& session, const RemoteTokenFn& on_token = {},
                            const std::atomic<bool>* cancel = nullptr,
                            const std::function<void(int64_t)>& on_started = {});

}  // namespace moelab::remote
