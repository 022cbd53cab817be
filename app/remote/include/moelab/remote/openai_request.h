// The OpenAI-compatible request bodies `moelab-cli serve` accepts, parsed by one pure function
// (no I/O, no engine state, never throws) so that it can be fuzzed (tests/fuzz/fuzz_openai.cpp).
//
// Sources: OpenAI API reference, "Completions" (POST /v1/completions) and "Chat Completions"
// (POST /v1/chat/completions), fields model, prompt, messages, max_tokens /
// max_completion_tokens, temperature, top_p, n, stream, stream_options.include_usage, stop, seed,
// frequency_penalty, presence_penalty; the extensions vLLM and SGLang accept on the same
// endpoints: top_k, min_p, repetition_penalty, ignore_eos, return_token_ids (vLLM), and
// return_routed_experts / routed_experts_start_len (SGLang `extra_body`, docs "OpenAI APIs -
// Completions", returning routed experts of MoE models). moelab adds routed_experts_format
// ("sglang" | "vllm") to pick the response shape (see routed_experts.h).
//
// Unknown fields are ignored (as OpenAI's and vLLM's servers do); known fields of the wrong type
// or out of range are a 400 naming the field (`param`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moelab/runtime/sampler.h"
#include "moelab/tokenizer/chat.h"

namespace moelab::remote {

/// Which shape routed experts are returned in (and the client expects).
enum class RoutedFormat { None, SGLang, VLLM };
/// "none", "sglang", "vllm".
const char* routed_format_name(RoutedFormat f);
std::optional<RoutedFormat> routed_format_from_name(std::string_view name);

struct CompletionRequest {
  bool chat = false;                  // /v1/chat/completions
  std::string model;                  // empty when the request names none
  std::string prompt;                 // /v1/completions
  std::vector<ChatMessage> messages;  // /v1/chat/completions (roles system/user/assistant)
  int32_t max_tokens = 16;            // OpenAI's default for completions; chat: limits.max_tokens
  /// OpenAI defaults (temperature 1, top_p 1) and the extensions off (top_k 0, min_p 0,
  /// repetition penalty 1); seed empty = random (the server reports the seed it used).
  SamplerParams sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage
  bool return_token_ids = false;  // vLLM: token_ids on each choice / chunk
  RoutedFormat routed = RoutedFormat::None;
  int64_t routed_experts_start_len = 0;  // SGLang: first sequence position returned
  bool ignore_eos = false;
};

struct RequestLimits {
  size_t max_body_bytes = size_t(1) << 20;  // 1 MiB
  int32_t max_tokens = 4096;                // largest max_tokens accepted
  size_t max_stop = 8;                      // stop strings
  size_t max_stop_bytes = 256;              // bytes per stop string
  size_t max_messages = 256;                // chat messages
  int max_depth = 32;                       // JSON nesting
};

struct RequestError {
  int status = 400;     // HTTP status: 400 bad request, 413 body too large
  std::string message;  // one line naming the field and what is wrong
  std::string param;    // the offending field ("" when none)
};

struct ParsedRequest {
  std::optional<CompletionRequest> request;  // set on success
  RequestError error;                        // meaningful when !request
  bool ok() const { return request.has_value(); }
};

/// Parses a request body of /v1/completions (`chat` false) or /v1/chat/completions (`chat`
/// true). Never throws (std::bad_alloc aside); any input yields either a request within
/// `limits` or an error.
ParsedRequest parse_completion_request(std::string_view body, bool chat,
                                       const RequestLimits& limits);

/// The OpenAI error object: {"error": {"message", "type", "param", "code"}} as compact JSON.
std::string error_body(const RequestError& e);

}  // namespace moelab::remote
