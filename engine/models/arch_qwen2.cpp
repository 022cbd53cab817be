// qwen2: Qwen2 (arXiv:2407.10671) - the llama block with biases on the Q, K and V projections
// and RoPE over halves (ggml NEOX).
#include "models/arch.h"
#include "models/forward.h"

namespace moelab::models {

namespace {

// Checked by the model card besides the llama core.
constexpr CardTensor kQkvBias[] = {{"attn_q.bias", CardWidth::QHeads},
                                   {"attn_k.bias", CardWidth::KvHeads},
                                   {"attn_v.bias", CardWidth::KvHeads}};

ArchConfig configure(const gguf::File& file, const ModelCard& card) {
  ArchConfig c;
  c.rope_type = ops::RopeType::Neox;
  c.rope = rope_from_card(file, card, c.rope_type);
  return c;
}

void bind_layer(const WeightBinder& b, const ModelCard& c, const std::string& prefix,
                LayerWeights& L) {
  bind_qkv_bias(b, c, prefix, L);
}

}  // namespace

extern const ArchDef kArch_qwen2 = {
    "qwen2", {"neox", kQkvBias}, &configure, &bind_layer, &standard_block};

}  // namespace moelab::models
