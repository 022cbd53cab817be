// Presentation of a ModelCard shared by the CLI and the GUI: JSON with stable keys, and rows of
// (label, value) text for people.
#pragma once

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"

namespace moelab {

/// Stable JSON keys: architecture, name, n_layer, n_layer_mtp (GLM-4.5 MTP blocks, not run),
/// n_embd, n_head, n_head_kv, head_dim, n_ff,
/// n_ff_exp, n_ff_shexp (the widths the engine uses: n_ff for experts without their own key,
/// count x expert width for several shared experts), expert_count, expert_used_count,
/// expert_shared_count, n_vocab, context_length,
/// rope {type, freq_base, scaling, dims}, sliding_window, multipliers {embedding_scale,
/// residual_scale, attention_scale, logit_scale} (Granite; 0 = absent), router {gating
/// ("softmax", "sigmoid", "softmax_over_topk", "unit": as the engine runs it; for a file it cannot
/// run, as the file says, "" when it does not), weights_norm, weights_scale (1 = no routed scale),
/// leading_dense_layers}, kv_bytes_per_token {f16, f32, gqa_equivalent_f16 (a GQA model's own
/// cache), sliding_window_layers (with a window: the cache is not sized to it)}, vocab_type,
/// bos_id, eos_id,
/// chat_template, params_total, params_active, tensor_types {type: count},
/// tensor_bytes {type: bytes}, file_size, weight_bytes, memory {n_ctx, f16_bytes, f32_bytes},
/// runnable, problems [..], sha256 (null when not computed), metadata {key: value}
/// (large arrays summarised), and with `tensors` a list of {name, type, shape, offset, bytes}.
nlohmann::json card_to_json(const ModelCard& card, const gguf::File& file,
                            const std::string& sha256, bool tensors);

/// A metadata value as JSON: scalars as themselves, arrays of up to `max_array` elements in
/// full, longer arrays as {"type": "array", "elem_type": .., "count": .., "head": [..]}.
nlohmann::json value_to_json(const gguf::Value& v, size_t max_array = 64);

/// "1.23 B", "345.2 M", "12.3 K", "812".
std::string format_count(uint64_t n);

/// The context a run gets when none is asked for: the trained length, at most 2048 tokens (2048
/// when the file gives none). The one rule for every run and estimate: `run`, `serve`, `sweep`,
/// `inspect` (text and JSON memory estimates, card_json), the lab's Run panel (its "auto"
/// label shows the value), model card and model panel.
inline uint32_t default_n_ctx(uint64_t trained_context_length) {
  return static_cast<uint32_t>(
      trained_context_length ? std::min<uint64_t>(trained_context_length, 2048) : 2048);
}

/// The worker threads a run gets when none are asked for: the machine's hardware threads, 1 to
/// 8 (beyond 8 the matrix products of small models gain little). The one rule for `run`,
/// `trace`, `perplexity`, `eval`, `sweep`, `serve` (divided among --parallel generators) and
/// the lab (Settings' "auto", the Run panel's starting value, the demo).
inline int default_threads() {
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
}

/// The gating function the engine applies to this MoE card's router (engine/models/arch_*.cpp):
/// "softmax_over_topk" (gpt-oss: top-k on router logits + bias, weights = softmax of the k
/// selected), "sigmoid" (expert_gating_func 2; glm4moe unless it says 1), else "softmax"; ""
/// for a dense card. Sigmoid and softmax_over_topk router outputs are scores, not
/// probabilities.
std::string router_gating(const ModelCard& card);

/// Card as (label, value) rows in reading order, for the CLI and the GUI's card panel.
std::vector<std::pair<std::string, std::string>> card_rows(const ModelCard& card,
                                                           const std::string& sha256,
                                                           uint64_t n_ctx_estimate);

}  // namespace moelab
