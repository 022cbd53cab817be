// gemma2: Gemma 2 (arXiv:2408.00118) - embeddings scaled by sqrt(n_embd); sliding-window
// attention on even layers (il % 2 == 0), global on odd ones; attention scores soft-capped
// (cap * tanh(s / cap), gemma2.attn_logit_softcapping, 50) and final logits too
// (gemma2.final_logit_softcapping, 30); RMSNorm after attention and after the FFN as well as
// before; GELU (tanh approximation) gated FFN; NEOX RoPE; tied embeddings.
#include <cmath>

#include "models/arch.h"
#include "models/forward.h"

namespace moelab::models {

namespace {

// Checked by the model card besides the llama core.
constexpr CardTensor kPostNorms[] = {{"post_attention_norm.weight", CardWidth::Embd},
                                     {"post_ffw_norm.weight", CardWidth::Embd}};

ArchConfig configure(const gguf::File& file, const ModelCard& card) {
  ArchConfig c;
  c.rope_type = ops::RopeType::Neox;
  c.rope = rope_from_card(file, card, c.rope_type);
  c.embd_scale = std::sqrt(static_cast<float>(card.n_embd));
  c.attn_softcap = arch_float(file, card, "attn_logit_softcapping", 50.0f);
  c.final_softcap = arch_float(file, card, "final_logit_softcapping", 30.0f);
  c.sliding_window = card.sliding_window ? card.sliding_window : 4096;
  c.swa_period = 2;
  c.scale_q = true;
  c.ffn_act = FfnAct::GeluGated;
  // The 27B model (46 layers) scales queries by 1/sqrt(n_embd / n_head) instead of
  // 1/sqrt(head_dim), as in the reference implementation and llama.cpp.
  if (card.n_layer == 46)
    c.attn_scale = 1.0f / std::sqrt(static_cast<float>(card.n_embd) / card.n_head);
  return c;
}

void bind_layer(const WeightBinder& b, const ModelCard& c, const std::string& prefix,
                LayerWeights& L) {
  bind_post_norms(b, c, prefix, L);
}

}  // namespace

extern const ArchDef kArch_gemma2 = {
    "gemma2", {"neox", kPostNorms}, &configure, &bind_layer, &standard_block};

}  // namespace moelab::models
