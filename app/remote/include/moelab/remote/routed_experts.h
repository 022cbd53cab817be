// Routed experts as serving engines return them, for "routing replay" (recording which experts
// each token used at inference so that training replays them), and the mapping onto moelab's
// routing trace.
//
// Formats (the documented shapes these decoders are tested against, tests/app/remote):
//  - SGLang (docs "OpenAI APIs - Completions", section "Returning Routed Experts (MoE Models)",
//    SGLang 0.5.x with --enable-return-routed-experts): the request sets
//    `return_routed_experts: true` (optionally `routed_experts_start_len`); each choice carries
//    `sgl_ext.routed_experts`, a base64 string of little-endian int32 expert ids, a flattened
//    array of logical shape [num_tokens, num_layers, top_k] covering the sequence positions
//    [routed_experts_start_len, seqlen - 1), seqlen = prompt + completion tokens.
//  - vLLM (PR #28284 "Support recording expert indices for rollout router replay", exposed on
//    each OpenAI choice as `routed_experts` from vLLM 0.22 with --enable-return-routed-experts):
//    a nested JSON array [num_tokens][num_layers][top_k] of expert ids over [0, seqlen - 1).
//    vLLM >= 0.21 (docs "Routed Experts Replay") splits it: `prompt_routed_experts`
//    [prompt_len, num_moe_layers, top_k] on the response, `routed_experts` [gen_len, ...] on
//    each choice; remote_run joins them (prompt rows, then generated rows, the last one
//    dropped) into the one-array shape.
//  - moelab serve answers in either shape and states the first position it returns in
//    `routed_experts_start_len` (next to `routed_experts`): it returns the forward passes of the
//    generated tokens only, [prompt - 1, seqlen - 1).
//
// Row r describes the forward pass of sequence token start + r. moelab's routing trace keeps,
// for generated token i, the forward pass whose logits produced it: sequence position
// prompt - 1 + i (session.h, "Position convention"). Layers are the MoE layers in order (layer
// index in the returned array; for models whose every block is MoE this is the block index).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moelab::remote {

struct RoutedExperts {
  int64_t start = 0;  // sequence position of row 0
  int64_t n_tokens = 0, n_layers = 0, top_k = 0;
  std::vector<int32_t> ids;  // I32 [n_tokens, n_layers, top_k], row-major
  int32_t at(int64_t t, int64_t l, int64_t k) const {
    return ids[static_cast<size_t>((t * n_layers + l) * top_k + k)];
  }
};

/// RFC 4648 base64 (standard alphabet, '=' padding).
std::string base64_encode(std::string_view bytes);
/// nullopt for characters outside the alphabet, bad padding or a length not a multiple of 4.
std::optional<std::string> base64_decode(std::string_view text);

/// SGLang's `routed_experts` value: base64 of the ids as little-endian int32.
std::string encode_sglang(const RoutedExperts& r);
/// vLLM's `routed_experts` value: [[[id, ...] per layer] per token].
nlohmann::json encode_vllm(const RoutedExperts& r);

/// Decodes SGLang's base64 value holding `n_tokens` rows of experts with `top_k` per layer
/// (layers = row width / top_k). Throws moelab::Error (BadInput) naming what is wrong: not
/// base64, a byte count not a multiple of 4, ids not divisible into n_tokens rows of whole
/// layers, negative ids.
RoutedExperts decode_sglang(std::string_view b64, int64_t n_tokens, int64_t top_k, int64_t start);
/// Decodes vLLM's nested array. Throws moelab::Error (BadInput) for a ragged or non-integer
/// array, negative ids, or a row count other than n_tokens (when n_tokens >= 0).
RoutedExperts decode_vllm(const nlohmann::json& v, int64_t n_tokens, int64_t start);

/// The rows of the generated tokens: element i = row of sequence position prompt - 1 + i, for
/// i < completion_tokens (ids [n_layers * top_k]). Throws moelab::Error (BadInput) when the
/// rows do not cover exactly [start, prompt + completion - 1) with start <= prompt - 1.
std::vector<std::vector<int32_t>> generated_rows(const RoutedExperts& r, int64_t prompt_tokens,
                                                 int64_t completion_tokens);

}  // namespace moelab::remote
