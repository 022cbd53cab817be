// Internal: what distinguishes one architecture's forward pass from another, the weights of a
// loaded model, and the registry of architectures (keyed by general.architecture).
//
// Each arch_<name>.cpp owns one architecture (README "Adding an architecture"): its
// configuration (GGUF metadata -> ArchConfig), the weights it adds to the common layer
// (bind_layer), and its block (which pieces of forward.h, in which order). Today's
// architectures are all the pre-norm transformer block (Vaswani et al. 2017 with RMSNorm, RoPE
// and gated FFNs, as LLaMA, arXiv:2302.13971) with variations; the forward pass (forward.h)
// runs a block on any backend.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"
#include "moelab/ops/ops.h"

namespace moelab::models {

enum class QkNorm {
  None,
  FullWidth,  // RMSNorm over the whole projected Q / K row (OLMoE): weight [n_head*head_dim]
  PerHead,    // RMSNorm of each head vector (Qwen3): weight [head_dim]
};

// act(gate(x)) * up(x), then down; SwigluOai: gpt-oss's clamped SwiGLU (el::swiglu_oai,
// alpha 1.702, limit 7).
enum class FfnAct { SiluGated, GeluGated, SwigluOai };

class ForwardContext;
/// One transformer block of layer il over a batch of n tokens (forward.h).
using BlockFn = void (*)(ForwardContext& f, int il, int64_t n);

struct ArchConfig {
  BlockFn block = nullptr;  // the architecture's block (ArchDef::block, set by Model::load)
  ops::RopeType rope_type = ops::RopeType::Norm;
  ops::RopeParams rope;  // filled from the card (n_rot, freq_base, freq_scale)
  QkNorm qk_norm = QkNorm::None;
  float embd_scale = 0;         // token embeddings multiplied by this (0 = not scaled)
  float attn_scale = 0;         // K·Q scale (0 = 1/sqrt(head_dim))
  float residual_scale = 0;     // attention and FFN outputs x this before the residual add (0 = 1)
  float logit_scale = 0;        // logits divided by this (0 = not scaled)
  float attn_softcap = 0;       // 0 = none
  bool scale_q = false;         // multiply Q by the scale before K·Q (gemma2, as llama.cpp does)
  float final_softcap = 0;      // 0 = none
  uint32_t sliding_window = 0;  // tokens, 0 = none
  /// Layer il uses the sliding window when swa_period > 0 and il % swa_period == 0 (gemma2,
  /// gpt-oss: 2 = even layers windowed, odd layers full; llama.cpp's swa pattern 2).
  uint32_t swa_period = 0;
  FfnAct ffn_act = FfnAct::SiluGated;
  bool moe_renormalise = false;  // divide the top-k probabilities by their sum
  bool moe_sigmoid = false;      // sigmoid gating (scores), else softmax (ops/element RouteSpec)
  /// gpt-oss: top-k on the (router-biased) logits, softmax over the k selected
  /// (RouteSpec::softmax_selected); the "probs" are the biased logits (scores).
  bool moe_softmax_selected = false;
  float moe_weights_scale = 0;  // applied weights x this after renormalising (0 = none)
  /// Apply each selected expert with weight 1 (metadata moelab.expert_gating = "unit", written
  /// by moefy: CMoE's training-free gating, arXiv:2502.04416). Set by Model::load for any arch.
  bool moe_unit_weights = false;
  bool shared_expert = false;  // ffn_{gate,up,down}_shexp (+ optional sigmoid gate)
  /// Group-limited routing (DeepSeek-V3, arXiv:2412.19437): experts in expert_groups equal
  /// groups, the choice limited to the expert_groups_used best groups (ops/element RouteSpec).
  /// 0 or 1 = no group limit.
  int expert_groups = 0;
  int expert_groups_used = 0;
  /// Multi-head latent attention (DeepSeek-V2, arXiv:2405.04434) in the absorbed form
  /// (mla_attention_block, forward.h); widths in elements: q_lora_rank 0 = plain attn_q.
  bool mla = false;
  int64_t q_lora_rank = 0, kv_lora_rank = 0, qk_nope = 0, qk_rope = 0, v_head = 0;
};

/// A weight tensor in the mapped file (type and shape as stored).
struct Weight {
  const uint8_t* data = nullptr;
  gguf::TensorType type = gguf::TensorType::F32;
  int64_t ne[4] = {1, 1, 1, 1};
  uint64_t row_bytes = 0;  // bytes of one row of ne[0] elements
  std::string name;
  /// data is in kernels::repack_rows's layout (per ne[1]-row slice), in memory the CPU model
  /// owns (CpuModel::repack_weights), not the file's plain rows.
  bool repacked = false;
  explicit operator bool() const { return data != nullptr; }
  int64_t n_in() const { return ne[0]; }
  int64_t n_out() const { return ne[1]; }
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm, post_attn_norm, post_ffw_norm;  // F32 [n_embd]
  std::vector<float> q_norm, k_norm;                                      // see QkNorm
  std::vector<float> bq, bk, bv;                                          // biases
  Weight wq, wk, wv, wo;
  Weight ffn_gate, ffn_up, ffn_down;               // dense FFN
  Weight gate_inp, gate_exps, up_exps, down_exps;  // MoE: router [n_embd, n_expert], 3-D experts
  Weight gate_shexp, up_shexp, down_shexp;         // shared expert
  std::vector<float> gate_inp_shexp;               // F32 [n_embd] (empty: ungated)
  std::vector<float> exp_probs_b;  // F32 [expert_count] selection-only router bias (or empty)
  // gpt-oss (each empty when absent):
  std::vector<float> bo;          // attn_output.bias F32 [n_embd]
  std::vector<float> attn_sinks;  // attn_sinks.weight F32 [n_head]: one sink logit per head
  std::vector<float> gate_inp_b;  // ffn_gate_inp.bias F32 [expert_count], added to the logits
  /// Expert biases, F32 [expert_count, n_ff] (gate, up) and [expert_count, n_embd] (down): row e
  /// is added to expert e's product.
  std::vector<float> gate_exps_b, up_exps_b, down_exps_b;
  // MLA (ArchConfig::mla; shapes as ggml ne[]): attn_q_a [n_embd, q_lora], attn_q_b
  // [q_lora, n_head*(qk_nope+qk_rope)] (or wq when q_lora_rank is 0), attn_kv_a_mqa
  // [n_embd, kv_lora+qk_rope], attn_k_b [qk_nope, kv_lora, n_head], attn_v_b
  // [kv_lora, v_head, n_head]; norms F32 [q_lora] / [kv_lora].
  Weight wq_a, wq_b, wkv_a_mqa, wk_b, wv_b;
  std::vector<float> q_a_norm, kv_a_norm;
};

struct Weights {
  Weight token_embd;
  Weight output;  // token_embd when the embeddings are tied
  std::vector<float> output_norm;
  std::vector<LayerWeights> layers;
};

/// Calls on_mat(const Weight&) for every matrix and on_vec(const std::vector<float>&) for every
/// F32 vector of `w`, absent (empty) ones included: token_embd, output, output_norm, then per
/// layer its vectors and its matrices.
template <class OnMat, class OnVec>
void for_each_weight(const Weights& w, OnMat&& on_mat, OnVec&& on_vec) {
  on_mat(w.token_embd);
  on_mat(w.output);
  on_vec(w.output_norm);
  for (const auto& L : w.layers) {
    for (const auto* v :
         {&L.attn_norm, &L.ffn_norm, &L.post_attn_norm, &L.post_ffw_norm, &L.q_norm, &L.k_norm,
          &L.bq, &L.bk, &L.bv, &L.gate_inp_shexp, &L.exp_probs_b, &L.bo, &L.attn_sinks,
          &L.gate_inp_b, &L.gate_exps_b, &L.up_exps_b, &L.down_exps_b, &L.q_a_norm, &L.kv_a_norm})
      on_vec(*v);
    for (const auto* m :
         {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down, &L.gate_inp,
          &L.gate_exps, &L.up_exps, &L.down_exps, &L.gate_shexp, &L.up_shexp, &L.down_shexp,
          &L.wq_a, &L.wq_b, &L.wkv_a_mqa, &L.wk_b, &L.wv_b})
      on_mat(*m);
  }
}

/// Binds the tensors of a GGUF file as weights, checking presence, type and shape (errors:
/// moelab::Error BadInput naming the tensor). Zero-copy views into the mapping; 1-D tensors
/// (norms, biases) as F32 copies.
class WeightBinder {
 public:
  explicit WeightBinder(const gguf::File& f) : f_(f) {}
  /// A matrix (2-D or 3-D); an empty Weight when absent and not required.
  Weight matrix(const std::string& name, bool required = true) const;
  /// A 1-D tensor of n elements as F32 (empty when absent and not required).
  std::vector<float> vec(const std::string& name, int64_t n, bool required = true) const;
  /// Fails unless w has shape [n_in, n_out, n3].
  void expect_shape(const Weight& w, int64_t n_in, int64_t n_out, int64_t n3 = 1) const;

 private:
  const gguf::File& f_;
};

/// The width of a per-layer tensor the model card checks (engine/model/card.cpp), 1-D F32.
enum class CardWidth {
  Embd,     // [n_embd]
  QHeads,   // [n_head * head_dim]
  KvHeads,  // [n_head_kv * head_dim]
  HeadDim,  // [head_dim]
  Heads,    // [n_head] (one value per query head: gpt-oss's attention sinks)
};
struct CardTensor {
  const char* name;  // per-layer suffix, e.g. "attn_q.bias" (checked as "blk.N.attn_q.bias")
  CardWidth width;
};

/// What the model card (make_model_card, `inspect`, the GUI) shows and checks for an
/// architecture beyond the llama-family core every architecture has (token_embd, output_norm,
/// output; per layer attn_norm, attn_{q,k,v,output}, the pre-FFN norm and the dense FFN or the
/// experts, router and shared expert).
struct ArchCard {
  const char* rope_type;  // "norm" (adjacent pairs) or "neox" (halves), shown on the card
  /// Per-layer tensors besides the core (a static array in the arch file; empty: none).
  std::span<const CardTensor> layer_tensors = {};
  /// The name of the pre-FFN norm within a layer (GLM-4.5: "post_attention_norm.weight").
  const char* ffn_norm = "ffn_norm.weight";
};

/// One registered architecture (registry.cpp), defined in its arch_<name>.cpp.
struct ArchDef {
  const char* name;  // general.architecture
  ArchCard card;     // what the model card shows and checks
  /// Reads the architecture's own metadata; throws moelab::Error (BadInput) when the file
  /// cannot be run (e.g. olmoe with n_head_kv != n_head).
  ArchConfig (*configure)(const gguf::File& file, const ModelCard& card);
  /// Binds the tensors this architecture adds to layer `prefix` ("blk.N.") after the
  /// attention projections (null: none). The common ones (norms, Q/K/V/O, FFN or experts and a
  /// shared expert) are bound by Model::load; a pre-FFN norm bound here (ffn_norm under another
  /// name) replaces ffn_norm.weight.
  void (*bind_layer)(const WeightBinder& b, const ModelCard& card, const std::string& prefix,
                     LayerWeights& layer);
  /// The architecture's block (forward.h: standard_block or its own composition of pieces).
  BlockFn block;
};

/// All architectures with a forward pass, in the order of supported_architectures(): the
/// registry is what Model::load, the model card (make_model_card) and `inspect` read.
const std::vector<ArchDef>& architectures();
const ArchDef* find_architecture(const std::string& name);
/// Adds an architecture defined outside registry.cpp's list (a test's own variant, say). Call
/// before loading or describing files of it, not while other threads do; throws
/// moelab::Error (BadInput) when the name is already registered or a function is missing.
void register_architecture(const ArchDef& def);

// Tensors several architectures add to a layer (for ArchDef::bind_layer).
/// attn_{q,k,v}.bias, F32 [n_head*head_dim], [n_head_kv*head_dim] x 2.
void bind_qkv_bias(const WeightBinder& b, const ModelCard& c, const std::string& prefix,
                   LayerWeights& L);
/// attn_{q,k}_norm.weight: FullWidth F32 [n_head*head_dim] / [n_head_kv*head_dim], PerHead
/// F32 [head_dim] each.
void bind_qk_norm(const WeightBinder& b, const ModelCard& c, const std::string& prefix, QkNorm kind,
                  LayerWeights& L);
/// post_attention_norm.weight and post_ffw_norm.weight, F32 [n_embd] each.
void bind_post_norms(const WeightBinder& b, const ModelCard& c, const std::string& prefix,
                     LayerWeights& L);

/// Common RoPE settings from the card (n_rot = rope_dims, freq_base, linear scaling). Throws
/// moelab::Error (BadInput) for a rope scaling type moelab does not implement.
ops::RopeParams rope_from_card(const gguf::File& file, const ModelCard& card, ops::RopeType type);

/// Group-limited routing from expert_group_count / expert_group_used_count (nothing when the
/// count is 0 or 1). Throws moelab::Error (BadInput) naming the key when the groups do not
/// divide the experts, exceed ops::element::kMaxExpertGroups, or cannot hold top-k experts.
void expert_groups_from_card(const gguf::File& file, const ModelCard& card, ArchConfig& c);

/// Optional float metadata `<arch>.<key>`, `def` when absent.
float arch_float(const gguf::File& file, const ModelCard& card, const std::string& key, float def);
bool arch_bool(const gguf::File& file, const ModelCard& card, const std::string& key, bool def);

}  // namespace moelab::models
