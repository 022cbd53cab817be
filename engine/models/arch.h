// Internal: what distinguishes one architecture's forward pass from another, the weights of a
// loaded model, and the registry of architectures (keyed by general.architecture).
//
// Every architecture is the same pre-norm transformer block (Vaswani et al. 2017 with RMSNorm,
// RoPE and gated FFNs, as LLaMA, arXiv:2302.13971) with variations; each arch_<name>.cpp turns
// the GGUF metadata into an ArchConfig, and the shared forward pass (forward.h) runs it on
// any backend.
#pragma once

#include <cstdint>
#include <memory>
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

enum class FfnAct { SiluGated, GeluGated };  // act(gate(x)) * up(x), then down

struct ArchConfig {
  ops::RopeType rope_type = ops::RopeType::Norm;
  ops::RopeParams rope;   // filled from the card (n_rot, freq_base, freq_scale)
  bool qkv_bias = false;  // attn_{q,k,v}.bias present
  QkNorm qk_norm = QkNorm::None;
  bool post_norms = false;      // post_attention_norm / post_ffw_norm (Gemma 2)
  float embd_scale = 0;         // token embeddings multiplied by this (0 = not scaled)
  float attn_scale = 0;         // K·Q scale (0 = 1/sqrt(head_dim))
  float attn_softcap = 0;       // 0 = none
  bool scale_q = false;         // multiply Q by the scale before K·Q (gemma2, as llama.cpp does)
  float final_softcap = 0;      // 0 = none
  uint32_t sliding_window = 0;  // tokens, 0 = none
  /// Layer il uses the sliding window when swa_period > 0 and il % swa_period == 0.
  uint32_t swa_period = 0;
  FfnAct ffn_act = FfnAct::SiluGated;
  bool moe_renormalise = false;  // divide the top-k probabilities by their sum
  /// Apply each selected expert with weight 1 (metadata moelab.expert_gating = "unit", written
  /// by moefy: CMoE's training-free gating, arXiv:2502.04416). Set by Model::load for any arch.
  bool moe_unit_weights = false;
  bool shared_expert = false;  // ffn_{gate,up,down}_shexp (+ optional sigmoid gate)
};

/// A weight tensor in the mapped file (type and shape as stored).
struct Weight {
  const uint8_t* data = nullptr;
  gguf::TensorType type = gguf::TensorType::F32;
  int64_t ne[4] = {1, 1, 1, 1};
  uint64_t row_bytes = 0;  // bytes of one row of ne[0] elements
  std::string name;
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
    for (const auto* v : {&L.attn_norm, &L.ffn_norm, &L.post_attn_norm, &L.post_ffw_norm, &L.q_norm,
                          &L.k_norm, &L.bq, &L.bk, &L.bv, &L.gate_inp_shexp})
      on_vec(*v);
    for (const auto* m :
         {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down, &L.gate_inp,
          &L.gate_exps, &L.up_exps, &L.down_exps, &L.gate_shexp, &L.up_shexp, &L.down_shexp})
      on_mat(*m);
  }
}

/// One registered architecture.
struct ArchDef {
  const char* name;
  /// Reads the architecture's own metadata; throws moelab::Error (BadInput) when the file
  /// cannot be run (e.g. olmoe with n_head_kv != n_head).
  ArchConfig (*configure)(const gguf::File& file, const ModelCard& card);
};

/// All architectures with a forward pass, in the order of supported_architectures().
const std::vector<ArchDef>& architectures();
const ArchDef* find_architecture(const std::string& name);

// One per arch_<name>.cpp.
ArchConfig configure_llama(const gguf::File&, const ModelCard&);
ArchConfig configure_qwen2(const gguf::File&, const ModelCard&);
ArchConfig configure_qwen2moe(const gguf::File&, const ModelCard&);
ArchConfig configure_qwen3(const gguf::File&, const ModelCard&);
ArchConfig configure_qwen3moe(const gguf::File&, const ModelCard&);
ArchConfig configure_olmoe(const gguf::File&, const ModelCard&);
ArchConfig configure_gemma2(const gguf::File&, const ModelCard&);

/// Common RoPE settings from the card (n_rot = rope_dims, freq_base, linear scaling). Throws
/// moelab::Error (BadInput) for a rope scaling type moelab does not implement.
ops::RopeParams rope_from_card(const gguf::File& file, const ModelCard& card, ops::RopeType type);

/// Optional float metadata `<arch>.<key>`, `def` when absent.
float arch_float(const gguf::File& file, const ModelCard& card, const std::string& key, float def);
bool arch_bool(const gguf::File& file, const ModelCard& card, const std::string& key, bool def);

}  // namespace moelab::models
