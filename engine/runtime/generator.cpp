#include "moelab/runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "moelab/core/error.h"
#include "moelab/tokenizer/chat.h"
#include "moelab/tokenizer/tokenizer.h"

namespace moelab {

namespace {
using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Length of the longest proper prefix of any stop string that `text` ends with, limited to the
// last `limit` bytes (the part not yet streamed).
size_t partial_stop_suffix(std::string_view text, const std::vector<std::string>& stops,
                           size_t limit) {
  size_t best = 0;
  for (const auto& s : stops) {
    const size_t max_k = std::min({s.size() - 1, text.size(), limit});
    for (size_t k = max_k; k > best; --k) {
      if (text.substr(text.size() - k) == std::string_view(s).substr(0, k)) {
        best = k;
        break;
      }
    }
  }
  return best;
}
}  // namespace

std::string_view stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::Eos:
      return "eos";
    case StopReason::StopString:
      return "stop_string";
    case StopReason::MaxTokens:
      return "max_tokens";
    case StopReason::ContextFull:
      return "context_full";
    case StopReason::Cancelled:
      return "cancelled";
  }
  return "unknown";
}

Generator::Generator(std::shared_ptr<const Model> model, const ContextParams& params)
    : model_(std::move(model)), ctx_(Context::create(model_, params)) {}

std::unique_ptr<Generator> Generator::load(const std::string& path, const ContextParams& params,
                                           const LoadOptions& opts) {
  return std::make_unique<Generator>(Model::load(path, opts), params);
}

std::vector<int32_t> Generator::tokenize(const std::string& prompt, bool chat,
                                         const std::string& system) const {
  const Tokenizer* tok = model_->tokenizer();
  if (!tok)
    throw Error(ErrorKind::BadInput,
                "the model has no tokenizer (no tokenizer.ggml.* metadata): give token ids",
                {.file = model_->card().path});
  if (!chat) return tok->encode(prompt, /*add_special=*/true, /*parse_special=*/true);
  const ChatFamily family = detect_chat_family(tok->chat_template());
  if (family == ChatFamily::Unknown)
    throw Error(ErrorKind::BadInput,
                tok->chat_template().empty()
                    ? "the model has no chat template (tokenizer.chat_template): run without --chat"
                    : "the model's chat template is not one moelab recognises: run without --chat",
                {.file = model_->card().path, .subject = "tokenizer.chat_template"});
  std::vector<ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  messages.push_back({"user", prompt});
  return tok->encode(render_chat(family, messages, /*add_generation_prompt=*/true), true, true);
}

void Generator::request_cancel() {
  std::lock_guard lock(mutex_);
  if (!running_) return;
  cancel_.store(true);
  ctx_->request_cancel();
}

void Generator::eval(std::span<const int32_t> tokens) {
  const uint32_t n_past = ctx_->n_past();
  try {
    ctx_->eval(tokens);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Cancelled || cancel_.load()) throw;
    // A cancel request that reached the context just as an earlier run ended: not for this
    // run. Evaluate again.
    ctx_->truncate(n_past);
    ctx_->eval(tokens);
  }
}

GenerateResult Generator::generate(const GenerateParams& params, const TokenCallback& on_token) {
  if (params.max_tokens <= 0)
    throw Error(ErrorKind::BadInput, "the number of tokens to generate must be > 0",
                {.subject = "max_tokens"});
  Sampler sampler(params.sampling);
  GenerateResult r;
  r.seed = sampler.seed();
  r.prompt_tokens = params.prompt_tokens ? *params.prompt_tokens
                                         : tokenize(params.prompt, params.chat, params.system);
  if (r.prompt_tokens.empty())
    throw Error(ErrorKind::BadInput, "the prompt is empty (no tokens)", {.subject = "prompt"});
  const uint32_t n_ctx = ctx_->n_ctx();
  if (r.prompt_tokens.size() > n_ctx)
    throw Error(ErrorKind::BadInput,
                "the prompt is " + std::to_string(r.prompt_tokens.size()) +
                    " tokens but the context holds " + std::to_string(n_ctx) +
                    ": use a larger context or a shorter prompt",
                {.subject = "prompt"});

  {
    std::lock_guard lock(mutex_);
    running_ = true;
    cancel_.store(false);
  }
  struct Done {
    Generator* g;
    ~Done() {
      std::lock_guard lock(g->mutex_);
      g->running_ = false;
    }
  } done{this};

  const Tokenizer* tok = model_->tokenizer();
  std::optional<StreamDecoder> decoder;
  if (tok) decoder.emplace(*tok, DecodeOptions{.strip_dummy_prefix = false});
  std::vector<std::string> stops;
  for (const auto& s : params.stop)
    if (!s.empty()) stops.push_back(s);

  for (int32_t t : r.prompt_tokens) sampler.accept(t);

  const auto t_start = Clock::now();
  auto finish_timing = [&](Clock::time_point t_first, Clock::time_point t_last) {
    r.total_ms = ms_between(t_start, Clock::now());
    if (r.tokens.size() > 1) {
      const double s = ms_between(t_first, t_last) / 1000.0;
      if (s > 0) r.tokens_per_s = static_cast<double>(r.tokens.size() - 1) / s;
    }
  };

  ctx_->truncate(0);
  try {
    eval(r.prompt_tokens);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Cancelled) throw;
    r.stop_reason = StopReason::Cancelled;
    finish_timing(t_start, t_start);
    return r;
  }
  const auto t_prefill = Clock::now();
  r.prefill_ms = ms_between(t_start, t_prefill);
  if (r.prefill_ms > 0)
    r.prefill_tokens_per_s = static_cast<double>(r.prompt_tokens.size()) / (r.prefill_ms / 1000);

  std::string text;     // decoded so far (complete UTF-8)
  size_t streamed = 0;  // bytes of `text` already delivered
  auto prev = t_start;
  Clock::time_point t_first{}, t_last{};
  std::optional<StopReason> stop;

  // Ends a run that was cut short after its last event went out: one closing event (id -1)
  // carries the held-back text.
  auto close_stream = [&](StopReason why) {
    r.stop_reason = why;
    std::string rest = text.substr(streamed);
    if (decoder) rest += decoder->finish();
    r.text = text.substr(0, streamed) + rest;
    if (on_token) {
      TokenEvent ev;
      ev.index = static_cast<int32_t>(r.tokens.size());
      ev.id = -1;
      ev.piece = std::move(rest);
      ev.last = true;
      on_token(ev);
    }
  };

  while (true) {
    const auto logits = ctx_->logits();
    const int32_t id = sampler.sample(logits);
    sampler.accept(id);
    const float lp = sampling::log_prob(logits, id);
    const auto now = Clock::now();
    if (r.tokens.empty()) {
      t_first = now;
      r.ttft_ms = ms_between(t_start, now);
    }
    t_last = now;
    r.tokens.push_back(id);
    r.logprobs.push_back(lp);

    TokenEvent ev;
    ev.index = static_cast<int32_t>(r.tokens.size() - 1);
    ev.id = id;
    ev.logprob = lp;
    ev.latency_us = std::chrono::duration_cast<std::chrono::microseconds>(now - prev).count();

    const bool eog = !params.ignore_eos && tok && tok->is_eog(id);
    if (eog) {
      stop = StopReason::Eos;
    } else if (decoder) {
      text += decoder->push(id);
      size_t match = std::string::npos;
      const std::string* which = nullptr;
      for (const auto& s : stops) {
        const size_t p = text.find(s, streamed);
        if (p != std::string::npos && p < match) {
          match = p;
          which = &s;
        }
      }
      if (which) {
        stop = StopReason::StopString;
        r.stop_string = *which;
        text.resize(match);
      }
    }
    if (!stop) {
      if (r.tokens.size() >= static_cast<size_t>(params.max_tokens))
        stop = StopReason::MaxTokens;
      else if (ctx_->n_past() >= n_ctx)
        stop = StopReason::ContextFull;
      else if (cancel_.load())
        stop = StopReason::Cancelled;
    }

    if (stop) {
      // Release everything (except what a stop string cut off).
      ev.piece = text.substr(streamed);
      if (decoder && *stop != StopReason::StopString) ev.piece += decoder->finish();
      r.text = text.substr(0, streamed) + ev.piece;
      ev.last = true;
      r.stop_reason = *stop;
      if (on_token) on_token(ev);
      break;
    }
    const size_t hold = partial_stop_suffix(text, stops, text.size() - streamed);
    ev.piece = text.substr(streamed, text.size() - hold - streamed);
    streamed = text.size() - hold;
    if (on_token && !on_token(ev)) {
      close_stream(StopReason::Cancelled);
      break;
    }
    prev = Clock::now();
    try {
      const int32_t one[1] = {id};
      eval(one);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::Cancelled) throw;
      close_stream(StopReason::Cancelled);
      break;
    }
  }
  finish_timing(t_first, t_last);
  return r;
}

}  // namespace moelab
