// gpt-oss: OpenAI gpt-oss-20b / gpt-oss-120b (OpenAI, "gpt-oss-120b & gpt-oss-20b Model Card",
// 2025) as llama.cpp 0c1e570 computes it (fixtures README "Turn-2 architectures"):
//   x += Wo · attention(q, k, v) + bo      h = attn_norm(x); q/k/v with biases; NEOX RoPE with
//                                          YaRN (m = 1 + 0.1 ln(factor) on cos/sin); a learned
//                                          sink logit per head in the softmax
//                                          (attn_sinks.weight); even layers a sliding window of
//                                          <arch>.attention.sliding_window tokens, odd layers
//                                          full causal (llama.cpp's fixed swa pattern 2; the
//                                          file has no pattern key)
//   x += moe(h')                           h' = post_attention_norm(x) (the pre-FFN norm)
// Router: r = ffn_gate_inp · h' + ffn_gate_inp.bias; the top-k of r (descending); weights =
// softmax over the k selected r ("softmax over top-k", llama.cpp's SOFTMAX_WEIGHT gating). Each
// expert: g = W_gate[e] h' + b_gate[e], u = W_up[e] h' + b_up[e], y = W_down[e] swiglu_oai(g,
// u) + b_down[e] (el::swiglu_oai: alpha 1.702, limit 7). Routing probes: ffn_moe_logits are r
// before the bias, ffn_moe_probs the biased r (scores, not probabilities), ffn_moe_weights the
// selected r, ffn_moe_weights_softmax the weights applied.
#include "models/arch.h"
#include "models/forward.h"

namespace moelab::models {

namespace {

ArchConfig configure(const gguf::File& file, const ModelCard& card) {
  if (card.expert_count == 0)
    file.fail("a gpt-oss file must have experts", "metadata key 'gpt-oss.expert_count'");
  ArchConfig c;
  c.rope_type = ops::RopeType::Neox;
  c.rope = rope_from_card(file, card, c.rope_type);
  c.sliding_window = card.sliding_window;
  c.swa_period = card.swa_period;  // 2: even layers windowed, odd layers full
  c.ffn_act = FfnAct::SwigluOai;
  c.moe_softmax_selected = card.gating_softmax_selected;
  return c;
}

void bind_layer(const WeightBinder& b, const ModelCard& c, const std::string& prefix,
                LayerWeights& L) {
  bind_qkv_bias(b, c, prefix, L);
  L.bo = b.vec(prefix + "attn_output.bias", c.n_embd);
  L.attn_sinks = b.vec(prefix + "attn_sinks.weight", c.n_head);
  // The pre-FFN norm (llama.cpp's name for it in gpt-oss).
  L.ffn_norm = b.vec(prefix + "post_attention_norm.weight", c.n_embd);
  const int64_t nx = c.expert_count;
  L.gate_inp_b = b.vec(prefix + "ffn_gate_inp.bias", nx);
  const int64_t ff = c.n_ff_exp ? c.n_ff_exp : c.n_ff;
  L.gate_exps_b = b.vec(prefix + "ffn_gate_exps.bias", nx * ff);
  L.up_exps_b = b.vec(prefix + "ffn_up_exps.bias", nx * ff);
  L.down_exps_b = b.vec(prefix + "ffn_down_exps.bias", nx * c.n_embd);
}

}  // namespace

constexpr CardTensor kLayerTensors[] = {
    {"attn_q.bias", CardWidth::QHeads},      {"attn_k.bias", CardWidth::KvHeads},
    {"attn_v.bias", CardWidth::KvHeads},     {"attn_output.bias", CardWidth::Embd},
    {"attn_sinks.weight", CardWidth::Heads},
};

extern const ArchDef kArch_gptoss = {"gpt-oss",
                                     {"neox", kLayerTensors, "post_attention_norm.weight"},
                                     &configure,
                                     &bind_layer,
                                     &standard_block};

}  // namespace moelab::models
