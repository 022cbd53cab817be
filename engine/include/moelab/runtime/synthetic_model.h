// Synthetic random-weight GGUF models of any shape (for `moelab-cli make-model`, benchmarks,
// demos and tests). The files follow the tensor layout llama.cpp uses for each architecture
// (the GGUF is the ground truth the model loader checks), so Model::load accepts them.
//
// Weight scheme (after the fixtures' generator, ../shared/fixtures/README.md): linear weights
// N(0, (gain / sqrt(fan_in))^2) with gain 1 (output.weight and the routers gain 2), norm weights
// 1 + N(0, 0.1^2), biases N(0, 0.1^2), token_embd N(0, 1). Values come from std::mt19937_64
// seeded with `seed`, drawn tensor by tensor in file order, each normal by Box-Muller from our
// own 53-bit uniforms: the same spec gives the same file, byte for byte, on every platform.
//
// Types: every 2-D/3-D weight matrix is stored as `type`; norm vectors, biases and the routers
// (ffn_gate_inp, ffn_gate_inp_shexp) stay F32, as llama-quantize keeps them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "moelab/gguf/types.h"

namespace moelab {

struct SyntheticModelSpec {
  /// "llama" (dense), "mixtral" (general.architecture llama with experts), "qwen2moe", "olmoe",
  /// "granitemoe" (with granite-3.x MoE's multipliers), "glm4moe" (GLM-4.5's router: sigmoid +
  /// selection bias, one shared expert, the first layer dense when n_layer > 1), "gpt-oss"
  /// (biases everywhere, attention sinks, window 128 on even layers, YaRN x32, router bias and
  /// softmax over the top-k, expert biases), "deepseek2" (DeepSeek-V2-Lite style: MLA without
  /// q compression, softmax router x1.5, 2 shared experts, the first layer dense) and
  /// "deepseek3" (general.architecture deepseek2 in DeepSeek-V3 / Kimi-K2 style: q LoRA,
  /// sigmoid + selection bias, expert groups, renormalised x2.5, 1 shared expert). The deepseek
  /// sizes follow from n_embd and n_head (hd = n_embd / n_head): qk_nope hd, qk_rope hd / 2,
  /// v_head hd, kv_lora (and V3's q_lora) n_embd / 2; n_head_kv must equal n_head.
  std::string arch = "llama";
  uint32_t n_embd = 64;
  uint32_t n_layer = 2;
  uint32_t n_head = 4;
  uint32_t n_head_kv = 2;
  uint32_t n_ff = 128;             // dense FFN width, or each expert's width for MoE
  uint32_t n_ff_shexp = 0;         // qwen2moe shared expert width (0: 2 * n_ff)
  uint32_t expert_count = 0;       // required > 0 for every arch but llama
  uint32_t expert_used_count = 0;  // top-k (0: 2, capped at expert_count)
  uint32_t n_vocab = 512;          // ignored when vocab_from is set (its vocabulary size wins)
  uint32_t context_length = 2048;
  gguf::TensorType type = gguf::TensorType::F32;  // F32, F16, Q8_0, Q4_0 or MXFP4
  uint64_t seed = 1;
  /// glm4moe only: multi-token-prediction blocks written after the n_layer decoding blocks
  /// (block_count n_layer + nextn_layers, glm4moe.nextn_predict_layers; GLM-4.5's MTP layer).
  uint32_t nextn_layers = 0;
  /// Optional GGUF whose tokenizer.* metadata is copied (vocab-only files work).
  std::string vocab_from;
};

/// Summary of a written file.
struct SyntheticModelInfo {
  uint64_t file_bytes = 0;
  uint64_t n_params = 0;
  uint32_t n_vocab = 0;
  std::string architecture;  // general.architecture written
};

/// Writes the model to `path` (via `path + ".part.<pid>"`, renamed when complete), streaming one
/// tensor row at a time: memory use is O(largest row), not O(file). `progress(fraction)` may
/// return false to cancel. Throws moelab::Error: BadInput for an impossible spec (a row length
/// that is not a multiple of the type's block, n_head not divisible by n_head_kv, olmoe with
/// n_head_kv != n_head, an unknown arch or type), Io, Cancelled.
SyntheticModelInfo write_synthetic_model(const SyntheticModelSpec& spec, const std::string& path,
                                         const std::function<bool(float)>& progress = {});

}  // namespace moelab
