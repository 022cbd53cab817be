// qwen2moe: Qwen1.5-MoE / Qwen2-MoE - Q/K/V biases, NEOX RoPE; softmax over all experts ->
// top-k WITHOUT renormalising (norm_topk_prob false); plus a shared expert
// (ffn_{gate,up,down}_shexp) whose output is scaled by sigmoid(ffn_gate_inp_shexp · x).
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
  c.moe_renormalise = arch_bool(file, card, "expert_weights_norm", false);
  c.shared_expert = true;
  if (card.expert_count == 0)
    file.fail("a qwen2moe file must have experts", "metadata key 'qwen2moe.expert_count'");
  return c;
}

void bind_layer(const WeightBinder& b, const ModelCard& c, const std::string& prefix,
                LayerWeights& L) {
  bind_qkv_bias(b, c, prefix, L);
}

}  // namespace

extern const ArchDef kArch_qwen2moe = {
    "qwen2moe", {"neox", kQkvBias}, &configure, &bind_layer, &standard_block};

}  // namespace moelab::models
