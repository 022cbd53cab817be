// qwen3: Qwen3 (arXiv:2505.09388) - the llama block with RMSNorm of each query and key head
// (attn_q_norm / attn_k_norm, weight [head_dim]) before RoPE, NEOX RoPE, no biases.
#include "models/arch.h"

namespace moelab::models {

ArchConfig configure_qwen3(const gguf::File& file, const ModelCard& card) {
  ArchConfig c;
  c.rope_type = ops::RopeType::Neox;
  c.rope = rope_from_card(file, card, c.rope_type);
  c.qk_norm = QkNorm::PerHead;
  return c;
}

}  // namespace moelab::models
