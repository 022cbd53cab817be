// From engine results to storage records: runs one generation on a Generator and streams every
// token, its routing (per MoE layer) and its next-token distribution into the experiment store,
// and one display record per token to a callback. No Qt: the GUI's worker thread and the
// headless demo both use it.
//
// What a stored run holds (units as storage/records.h):
//  - config_json: the complete configuration (sampling, the seed actually used - drawn here when
//    none was given so that it is known before the run starts -, max_tokens, chat/system,
//    threads, backend, n_ctx, kv_type, routing/attention policy specs, model path/sha256/arch,
//    build version);
//  - one TokenRecord per generated token: id, piece, logprob (nats, raw logits), entropy of the
//    raw next-token distribution (nats), latency_us (time since the previous token);
//  - one RoutingRecord per (generated token, MoE layer): the experts and applied weights of the
//    forward step that PRODUCED the token (token 0: the prompt's last position; token i > 0: the
//    decode of token i - 1), so every generated token has routing, position = token index;
//  - one sparse NextTokenDist per token (top 16 probabilities of the raw logits), for KL;
//  - metrics: ttft_ms, tokens_per_s, prefill_ms, prefill_tokens_per_s, total_ms, prompt_tokens,
//    generated_tokens, model_memory_mib.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moelab/runtime/generator.h"
#include "moelab/storage/writer.h"

namespace moelab::lab {

/// Everything the Run panel sets.
struct RunSettings {
  std::string prompt;
  std::string system;
  bool chat = false;
  int32_t max_tokens = 64;
  SamplerParams sampling;
  int threads = 1;
  uint32_t n_ctx = 0;  // 0: min(trained context, 2048)
  bool kv_f16 = false;
  bool ignore_eos = false;  // keep generating after an end-of-generation token
  std::string backend = "cpu";
  std::string routing_policy = "default";  // moelab/policies spec
  std::string attention_policy = "full";

  /// n_ctx actually used for a model with `trained` context length.
  uint32_t context_for(uint64_t trained) const;
  ContextParams context_params(uint64_t trained) const;
};

/// One generated token as the display sees it.
struct LiveToken {
  int64_t run_id = 0;
  int32_t index = 0;  // token index in the run; -1 for a closing text-only event
  int32_t id = -1;
  std::string piece;
  float logprob = 0;
  float entropy = 0;
  int64_t latency_us = 0;
  /// [n_layer] experts of the producing step, descending weight (empty: dense layer / no MoE).
  std::vector<std::vector<uint16_t>> experts;
  std::vector<std::vector<float>> weights;  // [n_layer][k] applied weights
};

struct RecordedRun {
  int64_t run_id = 0;
  storage::RunStatus status = storage::RunStatus::Complete;
  std::string error;
  GenerateResult result;
  nlohmann::json config;
  uint64_t routing_records = 0;
};

/// The identity of the model for the store (nullopt when the hash is not known yet: the run is
/// then stored without a model row and the config names the path).
struct ModelIdentity {
  std::string path;
  std::string sha256;  // empty: not hashed (yet)
  std::string card_json = "{}";
};

/// Runs one generation and stores it (session `session` created when missing). on_token is
/// called on the calling thread for every event; returning false cancels the run. Never throws
/// for engine errors: a failed run is stored as Failed and returned with the error (storage
/// errors still throw StorageError).
RecordedRun record_generation(Generator& gen, const RunSettings& settings,
                              storage::AsyncWriter& writer, const std::string& session,
                              const ModelIdentity& model,
                              const std::function<bool(const LiveToken&)>& on_token = {});

/// The configuration JSON stored with a run (seed must be set).
nlohmann::json run_config(const RunSettings& s, const Model& model, const ModelIdentity& id);

/// Entropy (nats) of softmax(logits) and its `top_n` most likely ids with probabilities.
float entropy_and_top(std::span<const float> logits, size_t top_n, std::vector<int32_t>* ids,
                      std::vector<float>* probs);

}  // namespace moelab::lab

namespace moelab::lab {
/// `model` under the settings' routing/attention policies (the model itself for the defaults or
/// when this build has no policies). Throws moelab::Error (BadInput) for a bad spec.
std::shared_ptr<const Model> with_run_policies(std::shared_ptr<const Model> model,
                                               const RunSettings& settings);
/// True when this build can apply routing/attention policies.
bool policies_available();
}  // namespace moelab::lab
