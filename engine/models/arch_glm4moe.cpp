// glm4moe: GLM-4.5 / GLM-4.5-Air (arXiv:2508.06471) as llama.cpp 0c1e570 computes it (fixtures
// README "Turn-2 architectures"):
//   attention: q/k/v biases, RMSNorm of each q and k head (attn_{q,k}_norm [head_dim]) before
//     NEOX RoPE on the first rope.dimension_count dims of each head (the rest unrotated);
//   FFN: the first leading_dense_block_count layers dense; then sigmoid router scores, top-k on
//     scores + exp_probs_b (the selection-only bias), weights = the unbiased scores of the
//     chosen experts / their sum (expert_weights_norm) x expert_weights_scale, plus one ungated
//     shared expert.
//   expert groups (expert_group_count > 1) limit the choice as DeepSeek-V3's (ops/element).
// The MTP blocks of full GLM-4.5 conversions (nextn_predict_layers > 0, after the decoding
// blocks) load and are skipped, as in llama.cpp: they predict further tokens for speculative
// decoding, which moelab does not do.
#include "models/arch.h"
#include "models/forward.h"

namespace moelab::models {

namespace {

// Checked by the model card besides the llama core.
constexpr CardTensor kLayerTensors[] = {{"attn_q.bias", CardWidth::QHeads},
                                        {"attn_k.bias", CardWidth::KvHeads},
                                        {"attn_v.bias", CardWidth::KvHeads},
                                        {"attn_q_norm.weight", CardWidth::HeadDim},
                                        {"attn_k_norm.weight", CardWidth::HeadDim}};

ArchConfig configure(const gguf::File& file, const ModelCard& card) {
  const std::string a = "glm4moe.";
  if (card.expert_count == 0)
    file.fail("a glm4moe file must have experts", "metadata key 'glm4moe.expert_count'");
  // MTP blocks (nextn_predict_layers > 0): the card's n_layer already leaves them out, so they
  // are neither bound nor run (ModelCard::n_layer_mtp).
  ArchConfig c;
  c.rope_type = ops::RopeType::Neox;
  c.rope = rope_from_card(file, card, c.rope_type);
  c.qk_norm = QkNorm::PerHead;
  // llama.cpp's glm4moe default is sigmoid (LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID).
  c.moe_sigmoid = card.expert_gating_func != 1;
  c.moe_renormalise = card.expert_weights_norm;
  c.moe_weights_scale = card.expert_weights_scale;
  expert_groups_from_card(file, card, c);  // group-limited top-k (GLM-4.5 files use 1 group)
  return c;
}

void bind_layer(const WeightBinder& b, const ModelCard& c, const std::string& prefix,
                LayerWeights& L) {
  bind_qkv_bias(b, c, prefix, L);
  bind_qk_norm(b, c, prefix, QkNorm::PerHead, L);
  // The pre-FFN norm (llama.cpp's name for GLM's post-attention layernorm).
  L.ffn_norm = b.vec(prefix + "post_attention_norm.weight", c.n_embd);
  L.exp_probs_b = b.vec(prefix + "exp_probs_b.bias", c.expert_count, false);
}

}  // namespace

extern const ArchDef kArch_glm4moe = {"glm4moe",
                                      {"neox", kLayerTensors, "post_attention_norm.weight"},
                                      &configure,
                                      &bind_layer,
                                      &standard_block};

}  // namespace moelab::models
