// olmoe: OLMoE (arXiv:2409.02060) - RMSNorm of the FULL projected Q and K rows (weights
// [n_head*head_dim], not per head) before NEOX RoPE; softmax -> top-k without renormalising.
// Like llama.cpp, moelab requires n_head_kv == n_head for it.
#include "models/arch.h"
#include "models/forward.h"

namespace moelab::models {

namespace {

// Checked by the model card besides the llama core.
constexpr CardTensor kQkNorm[] = {{"attn_q_norm.weight", CardWidth::QHeads},
                                  {"attn_k_norm.weight", CardWidth::KvHeads}};

ArchConfig configure(const gguf::File& file, const ModelCard& card) {
  if (card.n_head_kv != card.n_head)
    file.fail(
        "olmoe needs head_count_kv == head_count (its q/k norms span the full width); "
        "the file has " +
            std::to_string(card.n_head) + " and " + std::to_string(card.n_head_kv),
        "metadata key 'olmoe.attention.head_count_kv'");
  ArchConfig c;
  c.rope_type = ops::RopeType::Neox;
  c.rope = rope_from_card(file, card, c.rope_type);
  c.qk_norm = QkNorm::FullWidth;
  c.moe_renormalise = arch_bool(file, card, "expert_weights_norm", false);
  return c;
}

void bind_layer(const WeightBinder& b, const ModelCard& c, const std::string& prefix,
                LayerWeights& L) {
  bind_qk_norm(b, c, prefix, QkNorm::FullWidth, L);
}

}  // namespace

extern const ArchDef kArch_olmoe = {
    "olmoe", {"neox", kQkNorm}, &configure, &bind_layer, &standard_block};

}  // namespace moelab::models
