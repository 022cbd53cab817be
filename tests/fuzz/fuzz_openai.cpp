// Fuzz target for the request parser of `moelab-cli serve` (moelab::remote::
// parse_completion_request): any bytes as the body of POST /v1/completions or
// /v1/chat/completions, which the server reads from untrusted clients.
//
// Input: byte 0 bit 0 picks the endpoint (1: chat), bit 1 small limits (64-byte stop strings,
// 2 stop strings, 4 messages, 64 max_tokens, 4 KiB body, depth 8); the rest is the body.
// Checked, besides "no crash, no exception, no hang": a parsed request lies within the limits
// (max_tokens in [1, limit], stop strings, messages, a non-empty prompt for completions, roles
// system/user/assistant) and sampling parameters in their documented ranges; an error has
// status 400 or 413, a message, and error_body() is a JSON object that parses again.
// Built as a libFuzzer target with clang (preset "fuzz"); with any compiler also as a replay
// driver over the committed seeds and regressions (label unit).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "fuzz_util.h"
#include "moelab/remote/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moelab::remote;
  if (size == 0) return 0;
  const bool chat = data[0] & 1;
  RequestLimits lim;
  if (data[0] & 2) {
    lim.max_body_bytes = 4096;
    lim.max_tokens = 64;
    lim.max_stop = 2;
    lim.max_stop_bytes = 64;
    lim.max_messages = 4;
    lim.max_depth = 8;
  }
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const ParsedRequest p = parse_completion_request(body, chat, lim);
  if (p.ok()) {
    const CompletionRequest& r = *p.request;
    MOELAB_FUZZ_CHECK(r.chat == chat, body);
    MOELAB_FUZZ_CHECK(body.size() <= lim.max_body_bytes, body);
    MOELAB_FUZZ_CHECK(r.max_tokens >= 1 && r.max_tokens <= lim.max_tokens, body);
    MOELAB_FUZZ_CHECK(r.stop.size() <= lim.max_stop, body);
    for (const auto& s : r.stop) MOELAB_FUZZ_CHECK(s.size() <= lim.max_stop_bytes, body);
    if (chat) {
      MOELAB_FUZZ_CHECK(!r.messages.empty() && r.messages.size() <= lim.max_messages, body);
      for (const auto& m : r.messages)
        MOELAB_FUZZ_CHECK(m.role == "system" || m.role == "user" || m.role == "assistant", body);
    } else {
      MOELAB_FUZZ_CHECK(!r.prompt.empty(), body);
    }
    const auto& s = r.sampling;
    MOELAB_FUZZ_CHECK(s.temperature >= 0 && s.temperature <= 2, body);
    MOELAB_FUZZ_CHECK(s.top_p >= 0 && s.top_p <= 1 && s.min_p >= 0 && s.min_p <= 1, body);
    MOELAB_FUZZ_CHECK(std::isfinite(s.frequency_penalty) && std::isfinite(s.presence_penalty) &&
                          s.repeat_penalty > 0,
                      body);
  } else {
    MOELAB_FUZZ_CHECK(p.error.status == 400 || p.error.status == 413, body);
    MOELAB_FUZZ_CHECK(!p.error.message.empty(), body);
    const auto j = nlohmann::json::parse(error_body(p.error), nullptr, false);
    MOELAB_FUZZ_CHECK(j.is_object() && j["error"]["message"].is_string(), body);
  }
  return 0;
}
