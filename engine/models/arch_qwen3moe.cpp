// qwen3moe: Qwen3-MoE - the qwen3 attention (per-head q/k RMSNorm, NEOX RoPE) with routed
// experts only; norm_topk_prob is true for the released models (renormalise the top-k
// probabilities), overridable by qwen3moe.expert_weights_norm.
#include "models/arch.h"

namespace moelab::models {

ArchConfig configure_qwen3moe(const gguf::File& file, const ModelCard& card) {
  ArchConfig c;
  c.rope_type = ops::RopeType::Neox;
  c.rope = rope_from_card(file, card, c.rope_type);
  c.qk_norm = QkNorm::PerHead;
  c.moe_renormalise = arch_bool(file, card, "expert_weights_norm", true);
  if (card.expert_count == 0)
    file.fail("a qwen3moe file must have experts", "metadata key 'qwen3moe.expert_count'");
  return c;
}

}  // namespace moelab::models
