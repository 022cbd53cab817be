// A streaming client for OpenAI-compatible completion servers (moelab serve, vLLM, SGLang,
// llama.cpp's llama-server, ...): sends one completion request with "stream": true, measures
// client-side TTFT and the arrival time of every token, and collects what the server reports
// (token ids, usage, routed experts). Transport: cpp-httplib (Debian's libcpp-httplib).
//
// Faults never throw: the result carries `error` (one line: what went wrong and where) together
// with everything that arrived before it, so a caller can store a partial run as failed.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moelab/remote/openai_request.h"
#include "moelab/runtime/sampler.h"

namespace moelab::remote {

struct Endpoint {
  std::string url;      // http://host:port, optionally ending in /v1
  std::string api_key;  // sent as "Authorization: Bearer <key>" when not empty
  double connect_timeout_s = 10;
  double read_timeout_s = 120;  // longest silence between two reads
  size_t max_response_bytes = size_t(64) << 20;
};

/// Splits an endpoint URL into "scheme://host:port" and the path prefix ("" or "/v1"-less
/// prefix). Throws moelab::Error (BadInput) "invalid URL 'URL': WHAT" for a URL that is not
/// http:// or https://, has no host, a host with characters a host name cannot have, an
/// unclosed IPv6 bracket, or a port that is not a number from 1 to 65535 (RFC 3986, 3.2).
struct ParsedUrl {
  std::string origin;  // scheme://host[:port]
  std::string prefix;  // path before /v1, without a trailing '/'
};
ParsedUrl parse_endpoint_url(const std::string& url);

struct RemoteRequest {
  std::string model;  // served model id
  bool chat = false;  // /v1/chat/completions with [system], user
  std::string prompt, system;
  int32_t max_tokens = 128;
  SamplerParams sampling;  // sent: temperature, top_p, top_k, min_p, penalties, seed
  std::vector<std::string> stop;
  bool ignore_eos = false;
  RoutedFormat routed = RoutedFormat::None;  // ask for routed experts in this shape
};

/// The JSON body stream_completion sends.
nlohmann::json request_body(const RemoteRequest& r);

/// One streamed piece as it arrived.
struct RemoteChunk {
  std::string text;
  std::vector<int32_t> token_ids;  // when the server reports them (return_token_ids)
  double t_ms = 0;                 // since the request was sent
};

struct RemoteResult {
  std::string error;  // empty on success
  int http_status = 0;
  std::string text;
  std::vector<RemoteChunk> chunks;  // content-bearing chunks, in order
  bool token_ids_reported = false;  // every content chunk carried token_ids
  int64_t tokens_streamed = 0;      // tokens of the content chunks (ids, else 1 per chunk)
  std::optional<int64_t> prompt_tokens, completion_tokens;  // usage, when reported
  std::string finish_reason;
  std::string served_model;  // "model" of the response
  bool done = false;         // "data: [DONE]" arrived
  /// routed experts as returned (raw), the format they came in and the start they declared.
  std::optional<nlohmann::json> routed_raw;
  RoutedFormat routed_format = RoutedFormat::None;
  std::optional<int64_t> routed_start;
  /// vLLM >= 0.21's response-level prompt_routed_experts (then routed_experts holds the
  /// generated tokens' rows only), as returned.
  std::optional<nlohmann::json> prompt_routed_raw;
  double ttft_ms = 0;   // request sent -> first content chunk (0 when none arrived)
  double total_ms = 0;  // request sent -> end of the response
  size_t bytes = 0;     // response bytes received
};

/// How many tokens past max_tokens a response may stream before stream_completion stops reading
/// it with an error (a server ignoring max_tokens): max(16, max_tokens / 4).
int64_t max_tokens_margin(int64_t max_tokens);

/// Streams one completion. `on_chunk` (may be empty) sees each content chunk; returning false
/// cancels (error "cancelled"). `cancel` (may be null) is polled between reads.
RemoteResult stream_completion(const Endpoint& ep, const RemoteRequest& req,
                               const std::function<bool(const RemoteChunk&)>& on_chunk = {},
                               const std::atomic<bool>* cancel = nullptr);

/// GET /v1/models: the "data" array (throws moelab::Error BadInput/Io with the reason).
nlohmann::json list_models(const Endpoint& ep);

}  // namespace moelab::remote
