// qwen3moe: Qwen3-MoE - the qwen3 attention (per-head q/k RMSNorm, NEOX RoPE) with routed
// experts only; norm_topk_prob is true for the released models (renormalise the top-k
// probabilities), overridable by qwen3moe.expert_weights_norm.
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
  c.moe_renormalise = arch_bool(file, card, "expert_weights_norm", true);
  if (card.expert_count == 0)
    file.fail("a qwen3moe file must have experts", "metadata key 'qwen3moe.expert_count'");
  return c;
}

void bind_layer(const WeightBinder& b, const ModelCard& c, const std::string& prefix,
                LayerWeights& L) {
  bind_qk_norm(b, c, prefix, QkNorm::PerHead, L);
}

}  // namespace

extern const ArchDef kArch_qwen3moe = {
    "qwen3moe", {"neox", kQkNorm}, &configure, &bind_layer, &standard_block};

}  // namespace moelab::models
