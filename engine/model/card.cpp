#include "moelab/model/card.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

#include "models/arch.h"

namespace moelab {

namespace {

// What the card knows of an architecture: the registered ones (models::architectures(), one
// arch_<name>.cpp each) are runnable; the ones below are recognised but have no forward pass.
struct ArchInfo {
  const char* name = nullptr;
  const models::ArchCard* card = nullptr;  // null: known to the card, not runnable
  const char* rope_type = "";
};

struct KnownArch {
  const char* name;
  const char* rope_type;
};
constexpr KnownArch kKnownNotRunnable[] = {
    {"phi3", "neox"},     {"gemma", "neox"},  {"gemma3", "neox"},
    {"mistral3", "norm"}, {"falcon", "neox"}, {"gpt2", "none"},
};

std::optional<ArchInfo> find_arch(const std::string& a) {
  if (const models::ArchDef* d = models::find_architecture(a))
    return ArchInfo{d->name, &d->card, d->card.rope_type};
  for (const auto& k : kKnownNotRunnable)
    if (a == k.name) return ArchInfo{k.name, nullptr, k.rope_type};
  return std::nullopt;
}

uint32_t get_u32(const gguf::File& f, const std::string& key, uint32_t def) {
  const gguf::Value* v = f.find(key);
  if (!v) return def;
  if (v->type() == gguf::ValueType::ARRAY) {
    // Some converters store per-layer arrays (e.g. head_count_kv); use the first entry here.
    if (v->size() == 0 ||
        !(v->elem_type() != gguf::ValueType::STRING && v->elem_type() != gguf::ValueType::ARRAY))
      f.fail("expected an integer or an array of integers", "metadata key '" + key + "'");
    return static_cast<uint32_t>(v->int_at(0));
  }
  if (!v->is_integer())
    f.fail(
        "expected an integer but the file stores " + std::string(gguf::value_type_name(v->type())),
        "metadata key '" + key + "'");
  const uint64_t x = v->as_u64();
  if (x > 0xffffffffull)
    f.fail("value " + std::to_string(x) + " is too large", "metadata key '" + key + "'");
  return static_cast<uint32_t>(x);
}

float get_f32(const gguf::File& f, const std::string& key, float def) {
  const gguf::Value* v = f.find(key);
  if (!v) return def;
  if (!v->is_number())
    f.fail("expected a number but the file stores " + std::string(gguf::value_type_name(v->type())),
           "metadata key '" + key + "'");
  return static_cast<float>(v->as_f64());
}

// Checks tokenizer.ggml.* arrays for consistency (types and lengths) and returns n_vocab.
uint32_t check_tokenizer(const gguf::File& f, ModelCard& c) {
  using gguf::ValueType;
  auto subject = [](const char* k) { return std::string("metadata key '") + k + "'"; };
  const gguf::Value* tokens = f.find("tokenizer.ggml.tokens");
  auto expect_array = [&](const char* key, ValueType et,
                          const char* et_desc) -> const gguf::Value* {
    const gguf::Value* v = f.find(key);
    if (!v) return nullptr;
    if (v->type() != ValueType::ARRAY)
      f.fail(std::string("must be an array of ") + et_desc + ", found a single " +
                 std::string(gguf::value_type_name(v->type())),
             subject(key));
    if (v->elem_type() != et)
      f.fail(std::string("must be an array of ") + et_desc + " (" +
                 std::string(gguf::value_type_name(et)) + "), found an array of " +
                 std::string(gguf::value_type_name(v->elem_type())),
             subject(key));
    return v;
  };
  expect_array("tokenizer.ggml.tokens", ValueType::STRING, "strings");
  const gguf::Value* scores =
      expect_array("tokenizer.ggml.scores", ValueType::FLOAT32, "32-bit floats");
  const gguf::Value* types =
      expect_array("tokenizer.ggml.token_type", ValueType::INT32, "32-bit integers");
  expect_array("tokenizer.ggml.merges", ValueType::STRING, "strings");
  if (!tokens) {
    if (scores || types)
      f.fail("tokenizer.ggml.scores/token_type are present but tokenizer.ggml.tokens is missing",
             subject("tokenizer.ggml.tokens"));
    return 0;
  }
  const uint64_t n = tokens->size();
  if (n == 0) f.fail("the vocabulary is empty", subject("tokenizer.ggml.tokens"));
  if (n > 0x7fffffffull) f.fail("the vocabulary is too large", subject("tokenizer.ggml.tokens"));
  if (scores && scores->size() != n)
    f.fail("has " + std::to_string(scores->size()) + " entries but the vocabulary has " +
               std::to_string(n) + " tokens",
           subject("tokenizer.ggml.scores"));
  if (types && types->size() != n)
    f.fail("has " + std::to_string(types->size()) + " entries but the vocabulary has " +
               std::to_string(n) + " tokens",
           subject("tokenizer.ggml.token_type"));
  auto special = [&](const char* key, int64_t* out) {
    const gguf::Value* v = f.find(key);
    if (!v) return;
    if (!v->is_integer())
      f.fail("expected an integer token id, found " + std::string(gguf::value_type_name(v->type())),
             subject(key));
    // 0xFFFFFFFF (-1 as u32) means "none", as llama.cpp writes it.
    if (v->type() == ValueType::UINT32 && v->as_u64() == 0xffffffffull) return;
    if (v->type() == ValueType::INT32 && v->as_i64() == -1) return;
    const int64_t id = v->as_i64();
    if (id < 0 || static_cast<uint64_t>(id) >= n)
      f.fail("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                 std::to_string(n - 1) + ")",
             subject(key));
    if (out) *out = id;
  };
  special("tokenizer.ggml.bos_token_id", &c.bos_id);
  special("tokenizer.ggml.eos_token_id", &c.eos_id);
  special("tokenizer.ggml.unknown_token_id", nullptr);
  special("tokenizer.ggml.padding_token_id", nullptr);
  special("tokenizer.ggml.seperator_token_id", nullptr);
  return static_cast<uint32_t>(n);
}

void check_shape(const gguf::File& f, ModelCard& c, const std::string& name,
                 std::vector<int64_t> want, bool required = true) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  if (!t) {
    if (required) c.problems.push_back("missing tensor '" + name + "'");
    return;
  }
  bool ok = t->n_dims == static_cast<int>(want.size());
  for (size_t d = 0; ok && d < want.size(); ++d)
    if (want[d] > 0 && t->ne[d] != want[d]) ok = false;
  if (!ok) {
    std::string w = "[";
    for (size_t d = 0; d < want.size(); ++d)
      w += (d ? ", " : "") + (want[d] > 0 ? std::to_string(want[d]) : std::string("*"));
    c.problems.push_back("tensor '" + name + "' has shape " + t->shape_string() + ", expected " +
                         w + "]");
  }
}

void check_tensors(const gguf::File& f, ModelCard& c, const models::ArchCard& a) {
  const int64_t E = c.n_embd, V = c.n_vocab, hd = c.head_dim, hdv = c.head_dim_v;
  check_shape(f, c, "token_embd.weight", {E, V});
  check_shape(f, c, "output_norm.weight", {E});
  check_shape(f, c, "output.weight", {E, V}, /*required=*/false);  // absent = tied embeddings
  auto width = [&](models::CardWidth w) -> int64_t {
    switch (w) {
      case models::CardWidth::Embd:
        return E;
      case models::CardWidth::QHeads:
        return int64_t{c.n_head} * hd;
      case models::CardWidth::KvHeads:
        return int64_t{c.n_head_kv} * hd;
      case models::CardWidth::HeadDim:
        return hd;
      case models::CardWidth::Heads:
        return int64_t{c.n_head};
    }
    return 0;
  };
  for (uint32_t il = 0; il < c.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    check_shape(f, c, p + "attn_norm.weight", {E});
    if (c.is_mla()) {  // MLA, absorbed layout (deepseek2)
      const int64_t H = c.n_head, r = c.rope_dims, kvl = c.kv_lora_rank, qh = c.head_dim_mla;
      if (c.q_lora_rank > 0) {
        check_shape(f, c, p + "attn_q_a.weight", {E, c.q_lora_rank});
        check_shape(f, c, p + "attn_q_a_norm.weight", {c.q_lora_rank});
        check_shape(f, c, p + "attn_q_b.weight", {c.q_lora_rank, H * qh});
      } else {
        check_shape(f, c, p + "attn_q.weight", {E, H * qh});
      }
      check_shape(f, c, p + "attn_kv_a_mqa.weight", {E, kvl + r});
      check_shape(f, c, p + "attn_kv_a_norm.weight", {kvl});
      check_shape(f, c, p + "attn_k_b.weight", {qh - r, kvl, H});
      check_shape(f, c, p + "attn_v_b.weight", {kvl, c.head_dim_v_mla, H});
      check_shape(f, c, p + "attn_output.weight", {H * c.head_dim_v_mla, E});
    } else {
      check_shape(f, c, p + "attn_q.weight", {E, c.n_head * hd});
      check_shape(f, c, p + "attn_k.weight", {E, c.n_head_kv * hd});
      check_shape(f, c, p + "attn_v.weight", {E, c.n_head_kv * hdv});
      check_shape(f, c, p + "attn_output.weight", {c.n_head * hdv, E});
    }
    check_shape(f, c, p + a.ffn_norm, {E});
    for (const auto& t : a.layer_tensors) check_shape(f, c, p + t.name, {width(t.width)});
    if (c.expert_count > 0 && il >= c.n_layer_dense_lead) {
      const int64_t nx = c.expert_count, ff = c.n_ff_exp ? c.n_ff_exp : c.n_ff;
      check_shape(f, c, p + "ffn_gate_inp.weight", {E, nx});
      check_shape(f, c, p + "exp_probs_b.bias", {nx}, false);
      check_shape(f, c, p + "ffn_gate_exps.weight", {E, ff, nx});
      check_shape(f, c, p + "ffn_up_exps.weight", {E, ff, nx});
      check_shape(f, c, p + "ffn_down_exps.weight", {ff, E, nx});
      if (c.expert_shared_count > 0) {
        // Several shared experts are stored as one FFN of count x the expert width.
        const int64_t sff = c.n_ff_shexp ? c.n_ff_shexp : ff * c.expert_shared_count;
        check_shape(f, c, p + "ffn_gate_shexp.weight", {E, sff});
        check_shape(f, c, p + "ffn_up_shexp.weight", {E, sff});
        check_shape(f, c, p + "ffn_down_shexp.weight", {sff, E});
        check_shape(f, c, p + "ffn_gate_inp_shexp.weight", {E}, false);
      }
    } else {
      check_shape(f, c, p + "ffn_gate.weight", {E, c.n_ff});
      check_shape(f, c, p + "ffn_up.weight", {E, c.n_ff});
      check_shape(f, c, p + "ffn_down.weight", {c.n_ff, E});
    }
    if (c.problems.size() > 40) {
      c.problems.push_back("... (further problems not listed)");
      return;
    }
  }
  // Tensors of layers past block_count: the layer count is wrong, and a run would silently drop
  // those layers.
  for (const auto& t : f.tensors()) {
    if (t.name.rfind("blk.", 0) != 0) continue;
    const uint64_t il = std::strtoull(t.name.c_str() + 4, nullptr, 10);
    if (il >= uint64_t{c.n_layer} + c.n_layer_mtp) {
      c.problems.push_back("tensor '" + t.name + "' belongs to layer " + std::to_string(il) +
                           " but " + c.architecture + ".block_count is " +
                           std::to_string(c.n_layer + c.n_layer_mtp) +
                           ": the layer count is wrong");
      return;
    }
  }
}

// The hyper-parameters every runnable architecture needs (all are RMSNorm + RoPE transformers):
// values a forward pass cannot use become problems, so the card, `inspect --check` and
// Model::load give the same verdict (the card still shows the stored value).
void check_hparams(const gguf::File& f, ModelCard& c) {
  const std::string a = c.architecture + ".";
  auto key = [&](const std::string& k) { return "metadata key '" + a + k + "'"; };
  auto num = [](float x) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", static_cast<double>(x));
    return std::string(b);
  };
  if (c.n_head_kv == 0)
    c.problems.push_back(key("attention.head_count_kv") +
                         " is 0: attention needs at least one key/value head");
  if (c.head_dim == 0 || c.head_dim_v == 0)
    c.problems.push_back(key("attention.key_length") + " / " + key("attention.value_length") +
                         ": the head size is 0");
  if (!f.find(a + "attention.layer_norm_rms_epsilon"))
    c.problems.push_back(key("attention.layer_norm_rms_epsilon") +
                         " is missing: RMSNorm needs its epsilon");
  else if (!std::isfinite(c.rms_eps) || c.rms_eps <= 0)
    c.problems.push_back(key("attention.layer_norm_rms_epsilon") + " is " + num(c.rms_eps) +
                         ": the RMSNorm epsilon must be a positive finite number");
  if (!std::isfinite(c.rope_freq_base) || c.rope_freq_base <= 0)
    c.problems.push_back(key("rope.freq_base") + " is " + num(c.rope_freq_base) +
                         ": the RoPE base frequency must be a positive finite number");
  if (c.rope_dims == 0 || c.rope_dims % 2 != 0 || c.rope_dims > c.head_dim)
    c.problems.push_back(key("rope.dimension_count") + " is " + std::to_string(c.rope_dims) +
                         ": it must be even, non-zero and at most the head size " +
                         std::to_string(c.head_dim));
  if (f.find(a + "rope.scaling.factor") &&
      (!std::isfinite(c.rope_scaling_factor) || c.rope_scaling_factor < 0))
    c.problems.push_back(key("rope.scaling.factor") + " is " + num(c.rope_scaling_factor) +
                         ": a RoPE scaling factor must be a finite number >= 0");
  if (c.expert_count == 0 && c.n_ff == 0)
    c.problems.push_back(key("feed_forward_length") + " is missing or 0");
  for (const auto& [k, v] : {std::pair<const char*, float>{"embedding_scale", c.embedding_scale},
                             {"residual_scale", c.residual_scale},
                             {"attention.scale", c.attention_scale},
                             {"logit_scale", c.logit_scale}})
    if (f.find(a + k) && (!std::isfinite(v) || v <= 0))
      c.problems.push_back(key(k) + " is " + num(v) +
                           ": a multiplier must be a positive finite number");
  if (c.n_layer_dense_lead > c.n_layer)
    c.problems.push_back(key("leading_dense_block_count") + " is " +
                         std::to_string(c.n_layer_dense_lead) + ", more than the " +
                         std::to_string(c.n_layer) + " layers");
  if (c.expert_gating_func > 2)
    c.problems.push_back(key("expert_gating_func") + " is " + std::to_string(c.expert_gating_func) +
                         ": known are 1 (softmax) and 2 (sigmoid)");
  if (f.find(a + "expert_weights_scale") &&
      (!std::isfinite(c.expert_weights_scale) || c.expert_weights_scale <= 0))
    c.problems.push_back(key("expert_weights_scale") + " is " + num(c.expert_weights_scale) +
                         ": the routed scale must be a positive finite number");
}

}  // namespace

std::vector<std::string> supported_architectures() {
  std::vector<std::string> out;
  for (const auto& a : models::architectures()) out.emplace_back(a.name);
  return out;
}

uint64_t ModelCard::kv_cache_bytes(uint64_t n_ctx, uint32_t bytes_per_value) const {
  // Saturates at UINT64_MAX instead of wrapping (crafted metadata may claim any sizes).
  // MLA's absorbed cache holds one row per token and layer, V being the start of it.
  uint64_t r =
      static_cast<uint64_t>(n_head_kv) * (uint64_t{head_dim} + (is_mla() ? 0 : head_dim_v));
  for (const uint64_t f : {uint64_t{n_layer}, n_ctx, uint64_t{bytes_per_value}})
    if (__builtin_mul_overflow(r, f, &r)) return UINT64_MAX;
  return r;
}

uint64_t ModelCard::kv_bytes_per_token_gqa_equivalent(uint32_t bytes_per_value) const {
  if (!is_mla()) return 0;
  uint64_t r = static_cast<uint64_t>(n_head) * (uint64_t{head_dim_mla} + head_dim_v_mla);
  for (const uint64_t f : {uint64_t{n_layer}, uint64_t{bytes_per_value}})
    if (__builtin_mul_overflow(r, f, &r)) return UINT64_MAX;
  return r;
}

ModelCard make_model_card(const gguf::File& f) {
  ModelCard c;
  c.path = f.path();
  c.gguf_version = f.version();
  c.file_size = f.file_size();
  if (const gguf::Value* v = f.find("general.architecture")) {
    if (v->type() != gguf::ValueType::STRING)
      f.fail("must be a string", "metadata key 'general.architecture'");
    c.architecture = std::string(v->as_string());
  }
  if (const gguf::Value* v = f.find("general.name"); v && v->type() == gguf::ValueType::STRING)
    c.name = std::string(v->as_string());

  const std::string a = c.architecture + ".";
  c.n_layer = get_u32(f, a + "block_count", 0);
  // GLM-4.5's MTP blocks follow the decoding blocks; llama.cpp loads and skips them (its
  // glm4moe graph runs block_count - nextn_predict_layers blocks), and so does moelab.
  if (c.architecture == "glm4moe") {
    const uint32_t nextn = get_u32(f, a + "nextn_predict_layers", 0);
    if (nextn >= c.n_layer && nextn > 0)
      f.fail("nextn_predict_layers " + std::to_string(nextn) + " leaves no decoding block of the " +
                 std::to_string(c.n_layer),
             "metadata key '" + a + "nextn_predict_layers'");
    c.n_layer_mtp = nextn;
    c.n_layer -= nextn;
  }
  c.n_embd = get_u32(f, a + "embedding_length", 0);
  c.n_head = get_u32(f, a + "attention.head_count", 0);
  c.n_head_kv = get_u32(f, a + "attention.head_count_kv", c.n_head);
  if (c.n_head > 0 && c.n_embd % c.n_head != 0 && !f.find(a + "attention.key_length"))
    f.fail("embedding_length " + std::to_string(c.n_embd) + " is not divisible by head_count " +
               std::to_string(c.n_head),
           "metadata key '" + a + "attention.head_count'");
  if (c.n_head_kv > 0 && c.n_head % c.n_head_kv != 0)
    f.fail("head_count " + std::to_string(c.n_head) + " is not a multiple of head_count_kv " +
               std::to_string(c.n_head_kv) + " (grouped-query attention needs whole groups)",
           "metadata key '" + a + "attention.head_count_kv'");
  c.head_dim = get_u32(f, a + "attention.key_length", c.n_head ? c.n_embd / c.n_head : 0);
  c.head_dim_v = get_u32(f, a + "attention.value_length", c.head_dim);
  c.n_ff = get_u32(f, a + "feed_forward_length", 0);
  c.n_ff_exp = get_u32(f, a + "expert_feed_forward_length", 0);
  c.n_ff_shexp = get_u32(f, a + "expert_shared_feed_forward_length", 0);
  c.expert_count = get_u32(f, a + "expert_count", 0);
  c.expert_used_count = get_u32(f, a + "expert_used_count", 0);
  if (c.expert_used_count > c.expert_count)
    f.fail("expert_used_count " + std::to_string(c.expert_used_count) + " exceeds expert_count " +
               std::to_string(c.expert_count),
           "metadata key '" + a + "expert_used_count'");
  if (c.expert_count > 0 && c.expert_used_count == 0)
    f.fail("a Mixture-of-Experts model must route each token to at least one expert",
           "metadata key '" + a + "expert_used_count'");
  c.context_length = get_u32(f, a + "context_length", 0);
  c.rms_eps = get_f32(f, a + "attention.layer_norm_rms_epsilon", 0);
  c.rope_freq_base = get_f32(f, a + "rope.freq_base", 10000.0f);
  c.rope_scaling = f.get_string(a + "rope.scaling.type", "none");
  c.rope_scaling_factor = get_f32(f, a + "rope.scaling.factor", 0);
  c.rope_dims = get_u32(f, a + "rope.dimension_count", c.head_dim);
  c.sliding_window = get_u32(f, a + "attention.sliding_window", 0);
  c.rope_orig_ctx = get_u32(f, a + "rope.scaling.original_context_length", 0);
  c.attn_sinks = f.find_tensor("blk.0.attn_sinks.weight") != nullptr;
  // Fixed by the architecture in llama.cpp (no metadata key): gemma2 and gpt-oss window their
  // even layers; gpt-oss gates with a softmax over the top-k.
  if ((c.architecture == "gemma2" || c.architecture == "gpt-oss") && c.sliding_window > 0)
    c.swa_period = 2;
  c.gating_softmax_selected = c.architecture == "gpt-oss";
  c.embedding_scale = get_f32(f, a + "embedding_scale", 0);
  c.residual_scale = get_f32(f, a + "residual_scale", 0);
  c.attention_scale = get_f32(f, a + "attention.scale", 0);
  c.logit_scale = get_f32(f, a + "logit_scale", 0);
  c.n_layer_dense_lead = get_u32(f, a + "leading_dense_block_count", 0);
  c.expert_gating_func = get_u32(f, a + "expert_gating_func", 0);
  c.expert_weights_scale = get_f32(f, a + "expert_weights_scale", 0);
  c.expert_weights_norm = f.get_bool(a + "expert_weights_norm", false);
  c.expert_group_count = get_u32(f, a + "expert_group_count", 0);
  c.expert_group_used_count = get_u32(f, a + "expert_group_used_count", 0);
  c.q_lora_rank = get_u32(f, a + "attention.q_lora_rank", 0);
  c.kv_lora_rank = get_u32(f, a + "attention.kv_lora_rank", 0);
  c.head_dim_mla = get_u32(f, a + "attention.key_length_mla", 0);
  c.head_dim_v_mla = get_u32(f, a + "attention.value_length_mla", 0);

  const std::optional<ArchInfo> arch = find_arch(c.architecture);
  c.rope_type = arch ? arch->rope_type : "";

  c.vocab_type = f.get_string("tokenizer.ggml.model", "");
  c.vocab_pre = f.get_string("tokenizer.ggml.pre", "");
  c.n_vocab = check_tokenizer(f, c);
  if (const gguf::Value* t = f.find("tokenizer.chat_template"))
    c.has_chat_template = t->type() == gguf::ValueType::STRING && !t->as_string().empty();

  bool has_shexp = false;
  for (const auto& t : f.tensors()) {
    const std::string tn = gguf::type_name(t.type);
    auto& u = c.tensor_types[tn];
    const uint64_t n = static_cast<uint64_t>(t.n_elements());
    u.tensors += 1;
    u.bytes += t.nbytes;
    u.params += n;
    c.weight_bytes += t.nbytes;
    c.params_total += n;
    uint64_t active = n;
    // MTP blocks' tensors are loaded but never run: not active.
    if (c.n_layer_mtp && t.name.rfind("blk.", 0) == 0 &&
        std::strtoull(t.name.c_str() + 4, nullptr, 10) >= c.n_layer)
      active = 0;
    const bool is_exps = t.name.find("_exps.") != std::string::npos;
    if (active && is_exps && t.n_dims == 3 && c.expert_count > 0 &&
        static_cast<uint64_t>(t.ne[2]) == c.expert_count)
      active = n / c.expert_count * c.expert_used_count;
    if (t.name.find("_shexp.") != std::string::npos) has_shexp = true;
    c.params_active += active;
  }
  c.n_tensors = f.tensors().size();
  if (has_shexp)
    c.expert_shared_count = std::max<uint32_t>(1, get_u32(f, a + "expert_shared_count", 1));
  if (c.n_vocab == 0)
    if (const gguf::TensorInfo* e = f.find_tensor("token_embd.weight"); e && e->n_dims >= 2)
      c.n_vocab = static_cast<uint32_t>(e->ne[1]);

  if (c.architecture.empty()) {
    c.problems.push_back("the file names no architecture (general.architecture is missing)");
  } else if (!arch || !arch->card) {
    std::string list;
    for (const auto& s : supported_architectures()) list += (list.empty() ? "" : ", ") + s;
    c.problems.push_back("architecture '" + c.architecture +
                         "' is not supported by this moelab (supported: " + list + ")");
  } else if (c.n_layer == 0 || c.n_embd == 0 || c.n_head == 0) {
    c.problems.push_back("hyper-parameters missing: " + a + "block_count, " + a +
                         "embedding_length and " + a + "attention.head_count are required");
  } else {
    check_hparams(f, c);
    if (c.n_vocab == 0) c.problems.push_back("the file has no tokenizer (tokenizer.ggml.tokens)");
    check_tensors(f, c, *arch->card);
    // The router as the engine runs it (the architecture's configure reads the same keys).
    const models::ArchDef* def = models::find_architecture(c.architecture);
    if (c.problems.empty() && c.is_moe() && def) {
      try {
        const models::ArchConfig cfg = def->configure(f, c);
        c.router_gating = cfg.moe_unit_weights       ? "unit"
                          : cfg.moe_softmax_selected ? "softmax_over_topk"
                          : cfg.moe_sigmoid          ? "sigmoid"
                                                     : "softmax";
        c.router_renormalise = cfg.moe_renormalise && !cfg.moe_unit_weights;
        c.router_scale = cfg.moe_weights_scale;
      } catch (const Error& e) {
        c.problems.push_back(e.where().subject.empty() ? e.detail()
                                                       : e.where().subject + ": " + e.detail());
      }
    }
  }
  return c;
}

std::string sha256_file(const std::string& path,
                        const std::function<bool(uint64_t, uint64_t)>& progress) {
  FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp)
    throw Error(ErrorKind::Io, std::string("cannot open the file: ") + std::strerror(errno),
                {.file = path});
  std::unique_ptr<FILE, int (*)(FILE*)> guard(fp, &std::fclose);
  std::fseek(fp, 0, SEEK_END);
  const long end = std::ftell(fp);
  std::fseek(fp, 0, SEEK_SET);
  const uint64_t total = end > 0 ? static_cast<uint64_t>(end) : 0;
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    throw Error(ErrorKind::Internal, "cannot initialise SHA-256");
  std::vector<unsigned char> buf(4u << 20);
  uint64_t done = 0;
  for (;;) {
    const size_t n = std::fread(buf.data(), 1, buf.size(), fp);
    if (n > 0) {
      EVP_DigestUpdate(ctx.get(), buf.data(), n);
      done += n;
      if (progress && !progress(done, total))
        throw Error(ErrorKind::Cancelled, "hashing was cancelled", {.file = path});
    }
    if (n < buf.size()) {
      if (std::ferror(fp))
        throw Error(ErrorKind::Io, "read error while hashing", {.file = path, .offset = done});
      break;
    }
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

}  // namespace moelab
