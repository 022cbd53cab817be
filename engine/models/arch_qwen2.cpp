// qwen2: Qwen2 (arXiv:2407.10671) - the llama block with biases on the Q, K and V projections
// and RoPE over halves (ggml NEOX).
#include "models/arch.h"

namespace moelab::models {

ArchConfig configure_qwen2(const gguf::File& file, const ModelCard& card) {
  ArchConfig c;
  c.rope_type = ops::RopeType::Neox;
  c.rope = rope_from_card(file, card, c.rope_type);
  c.qkv_bias = true;
  return c;
}

}  // namespace moelab::models
