// Generation session: load a model, tokenize a prompt (optionally through the model's chat
// template), prefill it as one batch, then decode one token at a time with a Sampler until a
// stop condition, streaming each token to a callback.
//
// Stop conditions (GenerateResult::stop_reason):
//   eos          the model produced an end-of-generation token (Tokenizer::is_eog: EOS, EOT,
//                end-of-turn tokens), unless ignore_eos;
//   stop_string  the generated text contains one of GenerateParams::stop (the text is cut
//                before it; text that might still become a stop string is held back from the
//                stream until it is decided);
//   max_tokens   max_tokens tokens were generated;
//   context_full the KV cache is full (n_past == n_ctx): the last sampled token is kept but
//                cannot be evaluated. The session stays usable: the next generate() starts over;
//   cancelled    request_cancel() from another thread, or the token callback returned false.
//
// Reproducibility: the CPU path is deterministic for a given model file, thread count, prompt,
// parameters and seed, so a run repeated with GenerateResult::seed gives the same tokens. Every
// generate() evaluates its prompt from an empty KV cache (no prefix reuse), which keeps runs
// independent of what the session did before.
//
// Timing (std::chrono::steady_clock): ttft_ms from the start of the prefill to the first sampled
// token; tokens_per_s = (n_generated - 1) / (time from the first to the last token), i.e. the
// decode rate; prefill_tokens_per_s = prompt tokens / prefill time. TokenEvent::latency_us is
// the time since the previous token (for the first token: the prefill plus sampling).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moelab/model/model.h"
#include "moelab/runtime/sampler.h"

namespace moelab {

enum class StopReason { Eos, StopString, MaxTokens, ContextFull, Cancelled };
/// "eos", "stop_string", "max_tokens", "context_full", "cancelled".
std::string_view stop_reason_name(StopReason r);

struct GenerateParams {
  std::string prompt;
  /// Token ids to use instead of tokenizing `prompt` (e.g. for a model without a tokenizer).
  std::optional<std::vector<int32_t>> prompt_tokens;
  /// Render `prompt` as a user turn (after `system`, if set) in the model's chat template and
  /// open an assistant turn. Throws BadInput when the template is missing or unrecognised.
  bool chat = false;
  std::string system;
  /// Tokens to generate at most (> 0); the KV cache may stop the run earlier.
  int32_t max_tokens = 128;
  SamplerParams sampling;
  std::vector<std::string> stop;  // stop strings (empty strings are ignored)
  bool ignore_eos = false;        // keep going after an end-of-generation token
};

/// One generated token, as streamed.
struct TokenEvent {
  int32_t index = 0;  // 0-based position among the generated tokens
  int32_t id = 0;
  /// Text this token releases: always complete UTF-8. May be empty (a byte token waiting for
  /// the rest of its character, text held back because it could begin a stop string, control
  /// tokens), and may contain text held back by earlier tokens. Concatenating every event's
  /// piece gives GenerateResult::text exactly.
  std::string piece;
  float logprob = 0.f;  // log p(id) under the model's raw logits (before penalties/temperature)
  int64_t latency_us = 0;
  bool last = false;  // the final event of the run
};

/// Return false to stop the run (stop_reason cancelled).
using TokenCallback = std::function<bool(const TokenEvent&)>;

struct GenerateResult {
  std::vector<int32_t> prompt_tokens;
  /// Generated ids, including a final end-of-generation token when the run stopped on one.
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // per generated token, as TokenEvent::logprob
  std::string text;             // generated text (without the prompt, cut before a stop string)
  uint64_t seed = 0;            // the seed actually used
  StopReason stop_reason = StopReason::MaxTokens;
  std::string stop_string;  // the stop string that matched
  double ttft_ms = 0;
  double tokens_per_s = 0;
  double prefill_ms = 0;
  double prefill_tokens_per_s = 0;
  double total_ms = 0;
};

class Generator {
 public:
  /// A session over an already loaded model. Throws what Context::create throws.
  Generator(std::shared_ptr<const Model> model, const ContextParams& params);
  /// Loads the model (memory-mapped; `opts.progress` reports and may cancel) and creates the
  /// session. Throws moelab::Error (BadInput, Io, Cancelled).
  static std::unique_ptr<Generator> load(const std::string& path, const ContextParams& params,
                                         const LoadOptions& opts = {});

  /// The prompt's token ids: with chat, rendered through the chat template; special-token
  /// text in the prompt is parsed (as llama-cli does) and BOS added when the vocabulary wants
  /// one. Throws moelab::Error (BadInput) when the model has no tokenizer or (chat) no known
  /// chat template.
  std::vector<int32_t> tokenize(const std::string& prompt, bool chat = false,
                                const std::string& system = {}) const;

  /// Runs one generation. Throws moelab::Error (BadInput) for an empty prompt, a prompt that
  /// does not fit in the KV cache, max_tokens <= 0 or bad sampler parameters; cancellation and
  /// the other stop conditions are not errors (see stop_reason). The session stays usable
  /// after any of them.
  GenerateResult generate(const GenerateParams& params, const TokenCallback& on_token = {});

  /// Asks a running generate() to stop soon (between tokens, or inside the current
  /// evaluation). Thread-safe; does nothing when no generation runs.
  void request_cancel();

  const Model& model() const { return *model_; }
  std::shared_ptr<const Model> model_ptr() const { return model_; }
  Context& context() { return *ctx_; }

 private:
  void eval(std::span<const int32_t> tokens);
  std::shared_ptr<const Model> model_;
  std::unique_ptr<Context> ctx_;
  std::mutex mutex_;
  bool running_ = false;
  std::atomic<bool> cancel_{false};
};

}  // namespace moelab
