// deepseek2: DeepSeek-V2 / V2-Lite (arXiv:2405.04434), DeepSeek-V3 (arXiv:2412.19437) and the
// files converted to the same GGUF architecture (Kimi-K2, Moonlight, GLM-4.7-Flash), as llama.cpp
// 0c1e570 computes them (fixtures README "Turn-2 architectures"):
//   attention: multi-head latent attention in the absorbed form (mla_attention_block): the KV
//     cache holds one row per token, [rmsnorm(c_kv) | roped k_pe] (kv_lora_rank + qk_rope),
//     which the GGUF metadata already describes as one KV head (head_count_kv 1, key_length =
//     kv_lora + qk_rope, value_length = kv_lora); the per-head sizes are key_length_mla
//     (qk_nope + qk_rope) and value_length_mla (v_head). q_lora_rank 0 (or absent, V2-Lite):
//     plain attn_q; else attn_q_a -> rmsnorm(attn_q_a_norm) -> attn_q_b (V3).
//     NORM RoPE on the qk_rope dims; K·Q scale mscale^2 / sqrt(qk_nope + qk_rope) with
//     mscale = 1 + yarn_log_multiplier * ln(rope.scaling.factor) under YaRN (1 otherwise).
//   FFN: the first leading_dense_block_count layers dense; then softmax (expert_gating_func 1,
//     V2) or sigmoid (2, V3) router, selection-only bias exp_probs_b, group-limited top-k
//     (expert_group_count / expert_group_used_count), optional renormalisation
//     (expert_weights_norm), routed scale expert_weights_scale, and expert_shared_count shared
//     experts stored as one FFN of width count x expert_feed_forward_length.
// Not supported: files without attn_k_b / attn_v_b (older conversions that store the joint
// attn_kv_b; llama.cpp converts those at load, moelab asks for a re-conversion).
#include <cmath>

#include "models/arch.h"
#include "models/forward.h"

namespace moelab::models {

namespace {

ArchConfig configure(const gguf::File& file, const ModelCard& card) {
  const std::string a = "deepseek2.";
  ArchConfig c;
  c.mla = true;
  c.rope_type = ops::RopeType::Norm;
  c.q_lora_rank = card.q_lora_rank;
  c.kv_lora_rank = card.kv_lora_rank;
  c.qk_rope = card.rope_dims;
  if (card.kv_lora_rank == 0)
    file.fail("an MLA model needs the KV compression rank",
              "metadata key '" + a + "attention.kv_lora_rank'");
  if (!file.find(a + "attention.key_length_mla") || !file.find(a + "attention.value_length_mla"))
    file.fail(
        "this file predates the absorbed-MLA layout (no key_length_mla / value_length_mla, "
        "attn_kv_b not split into attn_k_b / attn_v_b); convert it again with a current "
        "convert_hf_to_gguf.py",
        "metadata key '" + a + "attention.key_length_mla'");
  if (card.head_dim_mla <= card.rope_dims || card.head_dim_v_mla == 0)
    file.fail("key_length_mla " + std::to_string(card.head_dim_mla) +
                  " must exceed rope.dimension_count " + std::to_string(card.rope_dims),
              "metadata key '" + a + "attention.key_length_mla'");
  if (card.n_head_kv != 1 || card.head_dim != card.kv_lora_rank + card.rope_dims ||
      card.head_dim_v != card.kv_lora_rank)
    file.fail(
        "the absorbed MLA view needs head_count_kv 1, key_length = kv_lora_rank + "
        "rope.dimension_count and value_length = kv_lora_rank (found " +
            std::to_string(card.n_head_kv) + ", " + std::to_string(card.head_dim) + ", " +
            std::to_string(card.head_dim_v) + ")",
        "metadata key '" + a + "attention.key_length'");
  c.qk_nope = card.head_dim_mla - card.rope_dims;
  c.v_head = card.head_dim_v_mla;

  c.rope = rope_from_card(file, card, c.rope_type);
  c.rope.attn_factor = 1.0f;  // the YaRN magnitude is in the K·Q scale below
  // K·Q scale: 1/sqrt(qk_nope + qk_rope), times mscale^2 under YaRN (llama.cpp's deepseek2
  // graph; the YaRN magnitude goes into this scale, the rope itself keeps magnitude 1).
  float mscale = 1.0f;
  if (card.rope_scaling == "yarn" && card.rope_scaling_factor > 1.0f) {
    const float mult = arch_float(file, card, "rope.scaling.yarn_log_multiplier", 0.0f);
    mscale = 1.0f + 0.1f * (mult / 0.1f) * std::log(card.rope_scaling_factor);
  }
  c.attn_scale = mscale * mscale / std::sqrt(static_cast<float>(card.head_dim_mla));

  if (card.expert_count > 0) {
    // llama.cpp's deepseek2 default is softmax (V2); V3 files say 2 (sigmoid).
    c.moe_sigmoid = card.expert_gating_func == 2;
    c.moe_renormalise = card.expert_weights_norm;
    c.moe_weights_scale = card.expert_weights_scale;
    expert_groups_from_card(file, card, c);
  }
  return c;
}

void bind_layer(const WeightBinder& b, const ModelCard& c, const std::string& p, LayerWeights& L) {
  const int64_t E = c.n_embd, H = c.n_head, r = c.rope_dims, kvl = c.kv_lora_rank;
  const int64_t qh = c.head_dim_mla, nope = qh - r, dv = c.head_dim_v_mla;
  if (c.q_lora_rank > 0) {
    L.wq_a = b.matrix(p + "attn_q_a.weight");
    b.expect_shape(L.wq_a, E, c.q_lora_rank);
    L.q_a_norm = b.vec(p + "attn_q_a_norm.weight", c.q_lora_rank);
    L.wq_b = b.matrix(p + "attn_q_b.weight");
    b.expect_shape(L.wq_b, c.q_lora_rank, H * qh);
  } else {
    L.wq = b.matrix(p + "attn_q.weight");
    b.expect_shape(L.wq, E, H * qh);
  }
  L.wkv_a_mqa = b.matrix(p + "attn_kv_a_mqa.weight");
  b.expect_shape(L.wkv_a_mqa, E, kvl + r);
  L.kv_a_norm = b.vec(p + "attn_kv_a_norm.weight", kvl);
  L.wk_b = b.matrix(p + "attn_k_b.weight");
  b.expect_shape(L.wk_b, nope, kvl, H);
  L.wv_b = b.matrix(p + "attn_v_b.weight");
  b.expect_shape(L.wv_b, kvl, dv, H);
  b.expect_shape(L.wo, H * dv, E);
  L.exp_probs_b = b.vec(p + "exp_probs_b.bias", c.expert_count, false);
}

}  // namespace

// MLA: the attention tensors are checked by the card's MLA branch (engine/model/card.cpp).
extern const ArchDef kArch_deepseek2 = {
    "deepseek2", {"norm"}, &configure, &bind_layer, [](ForwardContext& f, int il, int64_t n) {
      f.mla_attention_block(il, n);
      f.ffn_block(il, n);
    }};

}  // namespace moelab::models
