// llama: LLaMA (arXiv:2302.13971) - RMSNorm pre-norm blocks, RoPE with adjacent pairs (ggml
// NORM), SwiGLU FFN. With llama.expert_count > 0 the Mixtral layout (arXiv:2401.04088): router
// ffn_gate_inp, merged 3-D ffn_{gate,up,down}_exps, softmax over all experts -> top-k ->
// renormalise the selected probabilities to sum 1.
#include "models/arch.h"
#include "models/forward.h"

namespace moelab::models {

namespace {

ArchConfig configure(const gguf::File& file, const ModelCard& card) {
  ArchConfig c;
  c.rope_type = ops::RopeType::Norm;
  c.rope = rope_from_card(file, card, c.rope_type);
  c.moe_renormalise = arch_bool(file, card, "expert_weights_norm", true);
  return c;
}

}  // namespace

extern const ArchDef kArch_llama = {"llama", {"norm"}, &configure, nullptr, &standard_block};

}  // namespace moelab::models
