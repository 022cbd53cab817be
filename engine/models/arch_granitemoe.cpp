// granitemoe: IBM Granite 3.x MoE (HF GraniteMoeForCausalLM) - the llama block with four
// multipliers from the metadata (llama.cpp 0c1e570 computes exactly this, fixtures README
// "Turn-2 architectures"):
//   x0 = embedding_scale * token_embd[tok]
//   x += residual_scale * attn(h)        attention scores q·k * attention.scale (replacing
//   x += residual_scale * moe(h')        1/sqrt(head_dim)), NORM RoPE, no biases
//   logits = (output · norm(x)) / logit_scale
// Routing: softmax over the router logits, top-k, the k probabilities renormalised to sum 1
// (= HF GraniteMoe's softmax over the top-k logits). A multiplier key that is absent is not
// applied (scale 1, attention 1/sqrt(head_dim)).
#include "models/arch.h"
#include "models/forward.h"

namespace moelab::models {

namespace {

ArchConfig configure(const gguf::File& file, const ModelCard& card) {
  if (card.expert_count == 0)
    file.fail("a granitemoe file must have experts", "metadata key 'granitemoe.expert_count'");
  ArchConfig c;
  c.rope_type = ops::RopeType::Norm;
  c.rope = rope_from_card(file, card, c.rope_type);
  // ModelCard reads and validates the multipliers (finite, > 0; 0 = absent).
  c.embd_scale = card.embedding_scale;
  c.attn_scale = card.attention_scale;
  c.residual_scale = card.residual_scale;
  c.logit_scale = card.logit_scale;
  c.moe_renormalise = true;
  return c;
}

}  // namespace

extern const ArchDef kArch_granitemoe = {
    "granitemoe", {"norm"}, &configure, nullptr, &standard_block};

}  // namespace moelab::models
