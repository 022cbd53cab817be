// qwen3: Qwen3 (arXiv:2505.09388) - the llama block with RMSNorm of each query and key head
// (attn_q_norm / attn_k_norm, weight [head_dim]) before RoPE, NEOX RoPE, no biases.
#include "models/arch.h"
#include "models/forward.h"

namespace moelab::models {

namespace {

// Checked by the model card besides the llama core.
constexpr CardTensor kQkNorm[] = {{"attn_q_norm.weight", CardWidth::HeadDim},
                                  {"attn_k_norm.weight", CardWidth::HeadDim}};

ArchConfig configure(const gguf::File& file, const ModelCard& card) {
  ArchConfig c;
  c.rope_type = ops::RopeType::Neox;
  c.rope = rope_from_card(file, card, c.rope_type);
  c.qk_norm = QkNorm::PerHead;
  return c;
}

void bind_layer(const WeightBinder& b, const ModelCard& c, const std::string& prefix,
                LayerWeights& L) {
  bind_qk_norm(b, c, prefix, QkNorm::PerHead, L);
}

}  // namespace

extern const ArchDef kArch_qwen3 = {
    "qwen3", {"neox", kQkNorm}, &configure, &bind_layer, &standard_block};

}  // namespace moelab::models
