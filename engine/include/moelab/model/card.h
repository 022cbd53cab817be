// Model card: what a researcher wants to know about a GGUF model before running it, read from
// the metadata and the tensor directory only (no tensor data is touched, except by sha256).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "moelab/gguf/gguf.h"

namespace moelab {

/// Hyper-parameters and summary of one model file. Integer fields are 0 when the file does not
/// say (e.g. a file without an architecture's keys).
struct ModelCard {
  std::string path;
  std::string architecture;  // general.architecture, e.g. "llama", "qwen2moe"
  std::string name;          // general.name
  uint32_t gguf_version = 0;
  uint64_t file_size = 0;  // bytes

  uint32_t n_layer = 0;              // <arch>.block_count (less n_layer_mtp): blocks a pass runs
  uint32_t n_embd = 0;               // <arch>.embedding_length
  uint32_t n_head = 0;               // <arch>.attention.head_count
  uint32_t n_head_kv = 0;            // <arch>.attention.head_count_kv (defaults to n_head)
  uint32_t head_dim = 0;             // <arch>.attention.key_length or n_embd / n_head
  uint32_t head_dim_v = 0;           // <arch>.attention.value_length or head_dim
  uint32_t n_ff = 0;                 // <arch>.feed_forward_length (dense FFN width)
  uint32_t n_ff_exp = 0;             // <arch>.expert_feed_forward_length
  uint32_t n_ff_shexp = 0;           // <arch>.expert_shared_feed_forward_length
  uint32_t expert_count = 0;         // <arch>.expert_count (0 = dense)
  uint32_t expert_used_count = 0;    // <arch>.expert_used_count (top-k)
  uint32_t expert_shared_count = 0;  // shared experts (count of ffn_*_shexp sets per layer)
  uint64_t context_length = 0;       // <arch>.context_length, tokens
  float rms_eps = 0;                 // <arch>.attention.layer_norm_rms_epsilon

  std::string rope_type;          // "norm" (adjacent pairs) or "neox" (halves), per arch
  float rope_freq_base = 0;       // <arch>.rope.freq_base (10000 when absent)
  std::string rope_scaling;       // <arch>.rope.scaling.type, "none" when absent
  float rope_scaling_factor = 0;  // <arch>.rope.scaling.factor
  uint32_t rope_dims = 0;         // <arch>.rope.dimension_count or head_dim
  uint32_t sliding_window = 0;    // <arch>.attention.sliding_window, tokens (0 = none)
  /// Which layers use sliding_window: il % swa_period == 0 (gemma2, gpt-oss: 2, even layers;
  /// the others attend to the full causal context, as llama.cpp's swa pattern). 0 = every
  /// layer (or no window).
  uint32_t swa_period = 0;
  uint32_t rope_orig_ctx = 0;  // <arch>.rope.scaling.original_context_length (YaRN), tokens
  /// attn_sinks.weight in the layers (gpt-oss): one learned sink logit per head that joins each
  /// softmax's denominator (ops::AttentionParams::sinks).
  bool attn_sinks = false;

  // Granite's multipliers (0 = the key is absent, nothing applied):
  float embedding_scale = 0;  // <arch>.embedding_scale: token embeddings x this
  float residual_scale = 0;   // <arch>.residual_scale: attention / FFN outputs x this
  float attention_scale = 0;  // <arch>.attention.scale: K·Q scale instead of 1/sqrt(head_dim)
  float logit_scale = 0;      // <arch>.logit_scale: logits divided by this

  /// glm4moe.nextn_predict_layers: GLM-4.5's multi-token-prediction blocks, stored after the
  /// n_layer decoding blocks (block_count = n_layer + n_layer_mtp). Their tensors are checked
  /// for nothing and never run: decoding uses the n_layer blocks only, as llama.cpp does.
  uint32_t n_layer_mtp = 0;

  // Router variants (DeepSeek-V3 / GLM-4.5 style; 0 = the key is absent):
  uint32_t n_layer_dense_lead = 0;   // <arch>.leading_dense_block_count: first layers dense
  uint32_t expert_gating_func = 0;   // <arch>.expert_gating_func: 1 softmax, 2 sigmoid
  float expert_weights_scale = 0;    // <arch>.expert_weights_scale: routed scaling factor
  bool expert_weights_norm = false;  // <arch>.expert_weights_norm: top-k weights / their sum
  /// The router's gating is a softmax over the top-k (gpt-oss, llama.cpp's SOFTMAX_WEIGHT):
  /// top-k on the router logits plus the router bias, weights = softmax of the k selected.
  bool gating_softmax_selected = false;
  uint32_t expert_group_count = 0;       // <arch>.expert_group_count: expert groups (DeepSeek-V3)
  uint32_t expert_group_used_count = 0;  // <arch>.expert_group_used_count: groups kept per token
  /// The router as the engine runs it: the keys above, with the architecture's own rule where
  /// the file leaves one out (granitemoe and Mixtral renormalise without saying so). Set for
  /// MoE files the engine can run; empty / false / 0 otherwise.
  /// "softmax", "sigmoid", "softmax_over_topk" or "unit" (a moefied model: softmax ranking,
  /// weight 1 for each chosen expert, moelab/runtime/moefy.h)
  std::string router_gating;
  bool router_renormalise = false;  // the chosen experts' weights divided by their sum
  float router_scale = 0;           // routed scale applied after that (0 = none)

  // Multi-head latent attention (DeepSeek-V2, arXiv:2405.04434; 0 = not MLA). The metadata
  // describes the absorbed view: one KV head of key_length = kv_lora_rank + rope_dims and
  // value_length = kv_lora_rank; the per-head sizes are head_dim_mla / head_dim_v_mla.
  uint32_t q_lora_rank = 0;     // <arch>.attention.q_lora_rank (0: plain attn_q)
  uint32_t kv_lora_rank = 0;    // <arch>.attention.kv_lora_rank
  uint32_t head_dim_mla = 0;    // <arch>.attention.key_length_mla = qk_nope + qk_rope
  uint32_t head_dim_v_mla = 0;  // <arch>.attention.value_length_mla = v_head
  bool is_mla() const { return kv_lora_rank > 0; }

  std::string vocab_type;            // tokenizer.ggml.model: "llama" (SPM), "gpt2" (BPE), ...
  std::string vocab_pre;             // tokenizer.ggml.pre
  uint32_t n_vocab = 0;              // length of tokenizer.ggml.tokens (or token_embd rows)
  int64_t bos_id = -1, eos_id = -1;  // -1 when absent
  bool has_chat_template = false;

  struct TypeUse {
    uint64_t tensors = 0;
    uint64_t bytes = 0;
    uint64_t params = 0;
  };
  std::map<std::string, TypeUse> tensor_types;  // by type name ("Q4_K")
  uint64_t n_tensors = 0;
  uint64_t weight_bytes = 0;  // bytes of tensor data
  uint64_t params_total = 0;  // all tensor elements
  /// Parameters touched per token: everything except the experts not chosen, i.e. attention,
  /// norms, router, expert_used_count of expert_count experts, shared experts, embeddings, head.
  uint64_t params_active = 0;

  /// Problems that keep this file from being run (missing tensors, wrong shapes, unsupported
  /// architecture); empty when runnable. The file itself is still a valid GGUF.
  std::vector<std::string> problems;

  bool is_moe() const { return expert_count > 0; }
  /// KV-cache size in bytes for `n_ctx` tokens with `bytes_per_value` (2 = F16, 4 = F32).
  /// MLA: the absorbed cache moelab keeps, n_layer x one row of kv_lora + rope per token (V is
  /// read from the first kv_lora values of that row).
  uint64_t kv_cache_bytes(uint64_t n_ctx, uint32_t bytes_per_value) const;
  /// Bytes of KV cache per token (all layers) as kv_cache_bytes stores them.
  uint64_t kv_bytes_per_token(uint32_t bytes_per_value) const {
    return kv_cache_bytes(1, bytes_per_value);
  }
  /// MLA only: what a GQA/MHA cache of the same heads would hold per token (all layers):
  /// n_layer x n_head x (head_dim_mla + head_dim_v_mla) values; 0 for other models.
  uint64_t kv_bytes_per_token_gqa_equivalent(uint32_t bytes_per_value) const;
  /// Weights plus KV cache at n_ctx, bytes (both saturate at UINT64_MAX, never wrap).
  uint64_t memory_estimate(uint64_t n_ctx, uint32_t bytes_per_value) const {
    const uint64_t kv = kv_cache_bytes(n_ctx, bytes_per_value);
    return kv > UINT64_MAX - weight_bytes ? UINT64_MAX : weight_bytes + kv;
  }
};

/// Architectures the engine can run (general.architecture values), in the order of the
/// architecture registry (engine/models/registry.cpp; a registered test architecture included).
std::vector<std::string> supported_architectures();

/// Builds the card. Throws moelab::Error (BadInput) when metadata the card depends on is
/// inconsistent: tokenizer arrays of the wrong element type or different lengths, special
/// token ids outside the vocabulary, hyper-parameters of the wrong type or impossible values
/// (expert_used_count > expert_count, head_count not dividing ...). Missing or misshapen
/// tensors do not throw: they are listed in `problems`.
ModelCard make_model_card(const gguf::File& file);

/// Streams the file through SHA-256 (lower-case hex). `progress(done, total)` is called every
/// few MiB and may return false to cancel, which throws moelab::Error (Cancelled).
/// Throws moelab::Error (Io) if the file cannot be read.
std::string sha256_file(const std::string& path,
                        const std::function<bool(uint64_t done, uint64_t total)>& progress = {});

}  // namespace moelab
