#include "moelab/runtime/synthetic_model.h"

#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cmath>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "moelab/core/error.h"
#include "moelab/core/files.h"
#include "moelab/core/log.h"
#include "moelab/gguf/gguf.h"
#include "moelab/gguf/writer.h"
#include "moelab/kernels/kernels.h"

namespace moelab {

namespace {

using gguf::TensorType;

enum class Init { Linear, Norm, Bias, Embed };

struct TensorPlan {
  std::string name;
  TensorType type;
  std::vector<int64_t> shape;  // ggml order
  Init init;
  float gain = 1.f;  // Linear: std = gain / sqrt(shape[0])
  uint64_t bytes = 0;
};

// Normal variates from mt19937_64 by Box-Muller, with our own uniform conversion so that the
// stream is identical across standard libraries.
class NormalStream {
 public:
  explicit NormalStream(uint64_t seed) : rng_(seed) {}
  float next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (static_cast<double>(rng_() >> 11) + 0.5) * 0x1.0p-53;  // (0, 1)
    const double u2 = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double a = 2.0 * M_PI * u2;
    spare_ = static_cast<float>(r * std::sin(a));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(a));
  }

 private:
  std::mt19937_64 rng_;
  bool has_spare_ = false;
  float spare_ = 0.f;
};

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const size_t n = out.size();
  out.resize(n + sizeof(T));
  std::memcpy(out.data() + n, &v, sizeof(T));
}

uint32_t file_type_code(TensorType t) {
  // llama_ftype values (llama.h): ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7,
  // MOSTLY_MXFP4_MOE 38 (llama.cpp's only MXFP4 file type; make-model writes every matrix MXFP4).
  switch (t) {
    case TensorType::F32:
      return 0;
    case TensorType::F16:
      return 1;
    case TensorType::Q4_0:
      return 2;
    case TensorType::Q8_0:
      return 7;
    case TensorType::MXFP4:
      return 38;
    default:
      return 0;
  }
}

void copy_tokenizer(const gguf::File& vocab, gguf::Writer& w) {
  using gguf::ValueType;
  for (const auto& v : vocab.metadata()) {
    const std::string& k = v.key();
    if (k.rfind("tokenizer.", 0) != 0) continue;
    switch (v.type()) {
      case ValueType::STRING:
        w.set_string(k, v.as_string());
        break;
      case ValueType::UINT8:
        w.set_u8(k, static_cast<uint8_t>(v.as_u64()));
        break;
      case ValueType::UINT32:
        w.set_u32(k, static_cast<uint32_t>(v.as_u64()));
        break;
      case ValueType::INT32:
        w.set_i32(k, static_cast<int32_t>(v.as_i64()));
        break;
      case ValueType::UINT64:
        w.set_u64(k, v.as_u64());
        break;
      case ValueType::FLOAT32:
        w.set_f32(k, static_cast<float>(v.as_f64()));
        break;
      case ValueType::BOOL:
        w.set_bool(k, v.as_bool());
        break;
      case ValueType::ARRAY: {
        const auto et = v.elem_type();
        if (et == ValueType::STRING) {
          std::vector<std::string> s(v.strings().begin(), v.strings().end());
          w.set_array_string(k, s);
        } else if (et == ValueType::FLOAT32) {
          std::vector<float> a(v.size());
          for (uint64_t i = 0; i < v.size(); ++i) a[i] = static_cast<float>(v.number_at(i));
          w.set_array_f32(k, a);
        } else if (et == ValueType::INT32) {
          std::vector<int32_t> a(v.size());
          for (uint64_t i = 0; i < v.size(); ++i) a[i] = static_cast<int32_t>(v.int_at(i));
          w.set_array_i32(k, a);
        } else if (et == ValueType::UINT32) {
          std::vector<uint32_t> a(v.size());
          for (uint64_t i = 0; i < v.size(); ++i) a[i] = static_cast<uint32_t>(v.int_at(i));
          w.set_array_u32(k, a);
        } else {
          log_warning("make-model: not copying '" + k + "' (array of " +
                      std::string(gguf::value_type_name(et)) + ")");
        }
        break;
      }
      default:
        log_warning("make-model: not copying '" + k + "' (" +
                    std::string(gguf::value_type_name(v.type())) + ")");
    }
  }
}

struct Plan {
  std::string architecture;  // general.architecture
  std::vector<TensorPlan> tensors;
  uint32_t n_vocab = 0;
  uint32_t n_ff_shexp = 0;
  uint32_t expert_used_count = 0;
  // deepseek2 / deepseek3 (MLA, absorbed layout as llama.cpp's converter writes it):
  uint32_t q_lora = 0, kv_lora = 0, qk_nope = 0, qk_rope = 0, v_head = 0;
  uint32_t n_group = 0, n_group_used = 0;  // deepseek3: group-limited routing
  uint32_t n_shared = 0;                   // shared experts (one FFN of n_shared x n_ff)
  uint32_t dense_lead = 0;                 // leading dense layers
};

uint32_t glm_dense_lead(const SyntheticModelSpec& s) {
  return s.n_layer > 1 ? 1 : 0;
}

Plan make_plan(const SyntheticModelSpec& s, uint32_t n_vocab) {
  auto bad = [](const std::string& m, const std::string& subject = {}) {
    throw Error(ErrorKind::BadInput, m, {.subject = subject});
  };
  Plan p;
  const std::string& a = s.arch;
  const bool deepseek = a == "deepseek2" || a == "deepseek3";
  const bool moe_arch = a == "mixtral" || a == "qwen2moe" || a == "olmoe" || a == "granitemoe" ||
                        a == "glm4moe" || a == "gpt-oss" || deepseek;
  if (a != "llama" && !moe_arch)
    bad("unknown architecture '" + a +
            "' (make-model writes llama, mixtral, qwen2moe, olmoe, granitemoe, glm4moe, gpt-oss, "
            "deepseek2, deepseek3)",
        "--arch");
  p.architecture = a == "mixtral" ? "llama" : deepseek ? "deepseek2" : a;
  if (s.nextn_layers > 0 && a != "glm4moe")
    bad("multi-token-prediction layers are written for glm4moe only", "--mtp-layers");
  if (moe_arch && s.expert_count == 0)
    bad("architecture '" + a + "' needs --experts > 0", "--experts");
  if (s.type != TensorType::F32 && s.type != TensorType::F16 && s.type != TensorType::Q8_0 &&
      s.type != TensorType::Q4_0 && s.type != TensorType::MXFP4)
    bad("make-model writes F32, F16, Q8_0, Q4_0 or MXFP4 weights, not " +
            gguf::type_name(static_cast<uint32_t>(s.type)),
        "--type");
  if (s.n_embd == 0 || s.n_layer == 0 || s.n_head == 0 || s.n_head_kv == 0 || s.n_ff == 0 ||
      n_vocab == 0)
    bad("n_embd, n_layer, n_head, n_head_kv, n_ff and the vocabulary must all be > 0");
  if (s.n_embd % s.n_head) bad("n_embd must be a multiple of n_head", "--n-head");
  if (s.n_head % s.n_head_kv) bad("n_head must be a multiple of n_head_kv", "--n-head-kv");
  if (a == "olmoe" && s.n_head_kv != s.n_head)
    bad("olmoe normalises K over its full width, so n_head_kv must equal n_head", "--n-head-kv");
  const uint32_t hd = s.n_embd / s.n_head;
  if (hd % 2) bad("head_dim (n_embd / n_head) must be even for RoPE", "--n-head");
  if (a == "glm4moe" && hd % 4)
    bad("glm4moe rotates half of each head: head_dim (n_embd / n_head) must be a multiple of 4",
        "--n-head");
  const uint32_t nx = s.expert_count;
  p.expert_used_count = s.expert_used_count ? s.expert_used_count : std::min(2u, nx);
  if (nx && p.expert_used_count > nx) bad("--top-k exceeds --experts", "--top-k");
  if (a == "glm4moe") {
    p.dense_lead = glm_dense_lead(s);
    p.n_shared = 1;
  }
  if (deepseek) {
    // MLA sizes from the head width hd: qk_nope hd, qk_rope hd / 2, v_head hd, kv_lora n_embd / 2
    // (V3 also q_lora n_embd / 2); one latent KV head; the first layer dense when there are
    // several. V2-Lite style: softmax, no renormalisation, x1.5, 2 shared experts. V3 style:
    // sigmoid + selection bias, groups (8 of them from 32 experts, else 4 from 8, else none;
    // half of them kept), renormalised, x2.5, 1 shared expert.
    if (hd % 4)
      bad(a + " ropes half of each head's key: head_dim (n_embd / n_head) must be a multiple of 4",
          "--n-head");
    if (s.n_head_kv != s.n_head)
      bad(a + " uses latent attention (one compressed KV row for all heads): leave --n-head-kv "
              "equal to --n-head",
          "--n-head-kv");
    p.qk_nope = hd;
    p.qk_rope = hd / 2;
    p.v_head = hd;
    p.kv_lora = s.n_embd / 2;
    p.q_lora = a == "deepseek3" ? s.n_embd / 2 : 0;
    p.dense_lead = s.n_layer > 1 ? 1 : 0;
    p.n_shared = a == "deepseek3" ? 1 : 2;
    if (a == "deepseek3") {
      p.n_group = nx >= 32 && nx % 8 == 0 ? 8 : nx >= 8 && nx % 4 == 0 ? 4 : 0;
      p.n_group_used = p.n_group / 2;
      if (p.n_group && p.expert_used_count > p.n_group_used * (nx / p.n_group))
        bad("--top-k " + std::to_string(p.expert_used_count) + " exceeds the " +
                std::to_string(p.n_group_used * (nx / p.n_group)) + " experts of the " +
                std::to_string(p.n_group_used) + " kept groups (" + std::to_string(p.n_group) +
                " groups of " + std::to_string(nx / p.n_group) + ")",
            "--top-k");
    }
  }
  p.n_ff_shexp = s.n_ff_shexp ? s.n_ff_shexp : 2 * s.n_ff;
  p.n_vocab = n_vocab;

  const int64_t E = s.n_embd, V = n_vocab, ff = s.n_ff, qd = int64_t(s.n_head) * hd,
                kvd = int64_t(s.n_head_kv) * hd, X = nx, sff = p.n_ff_shexp;
  const TensorType W = s.type, F = TensorType::F32;
  auto add = [&](std::string name, TensorType t, std::vector<int64_t> shape, Init init,
                 float gain = 1.f) {
    p.tensors.push_back({std::move(name), t, std::move(shape), init, gain, 0});
  };
  add("token_embd.weight", W, {E, V}, Init::Embed);
  // glm4moe: nextn_layers multi-token-prediction blocks after the n_layer decoding blocks (a MoE
  // block plus the nextn.* tensors, llama.cpp's GLM-4.5 layout); decoding never runs them.
  for (uint32_t il = 0; il < s.n_layer + s.nextn_layers; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    add(b + "attn_norm.weight", F, {E}, Init::Norm);
    if (deepseek) {
      const int64_t H = s.n_head, qh = p.qk_nope + p.qk_rope, kvl = p.kv_lora, r = p.qk_rope;
      if (p.q_lora) {
        add(b + "attn_q_a.weight", W, {E, p.q_lora}, Init::Linear);
        add(b + "attn_q_a_norm.weight", F, {p.q_lora}, Init::Norm);
        add(b + "attn_q_b.weight", W, {p.q_lora, H * qh}, Init::Linear);
      } else {
        add(b + "attn_q.weight", W, {E, H * qh}, Init::Linear);
      }
      add(b + "attn_kv_a_mqa.weight", W, {E, kvl + r}, Init::Linear);
      add(b + "attn_kv_a_norm.weight", F, {kvl}, Init::Norm);
      add(b + "attn_k_b.weight", W, {p.qk_nope, kvl, H}, Init::Linear);
      add(b + "attn_v_b.weight", W, {kvl, p.v_head, H}, Init::Linear);
      add(b + "attn_output.weight", W, {H * p.v_head, E}, Init::Linear);
      add(b + "ffn_norm.weight", F, {E}, Init::Norm);
      if (nx && il >= p.dense_lead) {
        const int64_t sh = int64_t(p.n_shared) * ff;
        add(b + "ffn_gate_inp.weight", F, {E, X}, Init::Linear, 2.f);
        if (a == "deepseek3") add(b + "exp_probs_b.bias", F, {X}, Init::Bias);
        add(b + "ffn_gate_exps.weight", W, {E, ff, X}, Init::Linear);
        add(b + "ffn_up_exps.weight", W, {E, ff, X}, Init::Linear);
        add(b + "ffn_down_exps.weight", W, {ff, E, X}, Init::Linear);
        add(b + "ffn_gate_shexp.weight", W, {E, sh}, Init::Linear);
        add(b + "ffn_up_shexp.weight", W, {E, sh}, Init::Linear);
        add(b + "ffn_down_shexp.weight", W, {sh, E}, Init::Linear);
      } else {
        add(b + "ffn_gate.weight", W, {E, ff}, Init::Linear);
        add(b + "ffn_up.weight", W, {E, ff}, Init::Linear);
        add(b + "ffn_down.weight", W, {ff, E}, Init::Linear);
      }
      continue;
    }
    add(b + "attn_q.weight", W, {E, qd}, Init::Linear);
    add(b + "attn_k.weight", W, {E, kvd}, Init::Linear);
    add(b + "attn_v.weight", W, {E, kvd}, Init::Linear);
    if (a == "qwen2moe" || a == "glm4moe" || a == "gpt-oss") {
      add(b + "attn_q.bias", F, {qd}, Init::Bias);
      add(b + "attn_k.bias", F, {kvd}, Init::Bias);
      add(b + "attn_v.bias", F, {kvd}, Init::Bias);
    }
    add(b + "attn_output.weight", W, {qd, E}, Init::Linear);
    if (a == "gpt-oss") {  // output bias, one sink logit per head
      add(b + "attn_output.bias", F, {E}, Init::Bias);
      add(b + "attn_sinks.weight", F, {int64_t(s.n_head)}, Init::Bias);
    }
    if (a == "olmoe") {
      add(b + "attn_q_norm.weight", F, {qd}, Init::Norm);
      add(b + "attn_k_norm.weight", F, {kvd}, Init::Norm);
    }
    if (a == "glm4moe") {  // per-head q/k norms; the pre-FFN norm is post_attention_norm
      add(b + "attn_q_norm.weight", F, {hd}, Init::Norm);
      add(b + "attn_k_norm.weight", F, {hd}, Init::Norm);
      add(b + "post_attention_norm.weight", F, {E}, Init::Norm);
    } else if (a == "gpt-oss") {  // the pre-FFN norm is post_attention_norm
      add(b + "post_attention_norm.weight", F, {E}, Init::Norm);
    } else {
      add(b + "ffn_norm.weight", F, {E}, Init::Norm);
    }
    // glm4moe: the first layer is dense (leading_dense_block_count 1) when there are several.
    const bool dense_lead = a == "glm4moe" && il < glm_dense_lead(s);
    if (nx && !dense_lead) {
      add(b + "ffn_gate_inp.weight", F, {E, X}, Init::Linear, 2.f);
      if (a == "gpt-oss") add(b + "ffn_gate_inp.bias", F, {X}, Init::Bias);
      add(b + "ffn_gate_exps.weight", W, {E, ff, X}, Init::Linear);
      if (a == "gpt-oss") add(b + "ffn_gate_exps.bias", F, {ff, X}, Init::Bias);
      add(b + "ffn_up_exps.weight", W, {E, ff, X}, Init::Linear);
      if (a == "gpt-oss") add(b + "ffn_up_exps.bias", F, {ff, X}, Init::Bias);
      add(b + "ffn_down_exps.weight", W, {ff, E, X}, Init::Linear);
      if (a == "gpt-oss") add(b + "ffn_down_exps.bias", F, {E, X}, Init::Bias);
      if (a == "glm4moe") {  // selection-only router bias, ungated shared expert of width n_ff
        add(b + "exp_probs_b.bias", F, {X}, Init::Bias);
        add(b + "ffn_gate_shexp.weight", W, {E, ff}, Init::Linear);
        add(b + "ffn_up_shexp.weight", W, {E, ff}, Init::Linear);
        add(b + "ffn_down_shexp.weight", W, {ff, E}, Init::Linear);
      }
      if (il >= s.n_layer) {  // the MTP block's own tensors (GLM-4.5's nextn layer)
        add(b + "nextn.eh_proj.weight", W, {2 * E, E}, Init::Linear);
        add(b + "nextn.enorm.weight", F, {E}, Init::Norm);
        add(b + "nextn.hnorm.weight", F, {E}, Init::Norm);
        add(b + "nextn.shared_head_norm.weight", F, {E}, Init::Norm);
      }
      if (a == "qwen2moe") {
        add(b + "ffn_gate_inp_shexp.weight", F, {E}, Init::Linear, 2.f);
        add(b + "ffn_gate_shexp.weight", W, {E, sff}, Init::Linear);
        add(b + "ffn_up_shexp.weight", W, {E, sff}, Init::Linear);
        add(b + "ffn_down_shexp.weight", W, {sff, E}, Init::Linear);
      }
    } else {
      add(b + "ffn_gate.weight", W, {E, ff}, Init::Linear);
      add(b + "ffn_up.weight", W, {E, ff}, Init::Linear);
      add(b + "ffn_down.weight", W, {ff, E}, Init::Linear);
    }
  }
  add("output_norm.weight", F, {E}, Init::Norm);
  add("output.weight", W, {E, V}, Init::Linear, 2.f);
  // MTP blocks last in the file: the decoding model's tensors (and their random values, drawn
  // in file order) are the same with or without them.
  if (s.nextn_layers)
    std::stable_partition(p.tensors.begin(), p.tensors.end(), [&](const TensorPlan& t) {
      return t.name.rfind("blk.", 0) != 0 ||
             std::strtoul(t.name.c_str() + 4, nullptr, 10) < s.n_layer;
    });

  for (auto& t : p.tensors) {
    try {
      t.bytes = gguf::Writer::tensor_bytes(t.type, t.shape);
    } catch (const Error& e) {
      throw Error(ErrorKind::BadInput, e.detail(), {.subject = "tensor '" + t.name + "'"});
    }
  }
  return p;
}

void write_metadata(gguf::Writer& w, const SyntheticModelSpec& s, const Plan& p,
                    const gguf::File* vocab, uint32_t alignment) {
  const std::string a = p.architecture + ".";
  w.set_string("general.architecture", p.architecture);
  w.set_string("general.name", "synthetic-" + s.arch);
  char desc[256];
  std::snprintf(desc, sizeof desc,
                "moelab make-model: random weights, seed %llu, arch %s, n_embd %u, n_layer %u, "
                "experts %u top-%u",
                static_cast<unsigned long long>(s.seed), s.arch.c_str(), s.n_embd, s.n_layer,
                s.expert_count, p.expert_used_count);
  w.set_string("general.description", desc);
  w.set_u32("general.file_type", file_type_code(s.type));
  w.set_u32(a + "block_count", s.n_layer + s.nextn_layers);
  w.set_u32(a + "context_length", s.context_length);
  w.set_u32(a + "embedding_length", s.n_embd);
  w.set_u32(a + "feed_forward_length", s.n_ff);
  w.set_u32(a + "attention.head_count", s.n_head);
  w.set_u32(a + "attention.head_count_kv", p.architecture == "deepseek2" ? 1 : s.n_head_kv);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32(a + "rope.freq_base", p.architecture == "gpt-oss" ? 150000.f : 10000.f);
  if (p.architecture == "llama") w.set_u32(a + "rope.dimension_count", s.n_embd / s.n_head);
  if (s.expert_count) {
    w.set_u32(a + "expert_count", s.expert_count);
    w.set_u32(a + "expert_used_count", p.expert_used_count);
  }
  if (p.architecture == "granitemoe") {
    // Granite 3.x MoE's multipliers (granite-3.0-1b-a400m: embedding 12, residual 0.22,
    // attention 1/head_dim, logits / 6); feed_forward_length is the expert width.
    const uint32_t hd = s.n_embd / s.n_head;
    w.set_u32(a + "rope.dimension_count", hd);
    w.set_f32(a + "embedding_scale", 12.f);
    w.set_f32(a + "residual_scale", 0.22f);
    w.set_f32(a + "attention.scale", 1.f / static_cast<float>(hd));
    w.set_f32(a + "logit_scale", 6.f);
  }
  if (p.architecture == "glm4moe") {
    // GLM-4.5's router and layout: sigmoid scores + selection bias, normalised x2.5, one
    // shared expert, the first layer dense, NEOX RoPE on half of each head.
    const uint32_t hd = s.n_embd / s.n_head;
    w.set_u32(a + "rope.dimension_count", hd / 2);
    w.set_u32(a + "expert_feed_forward_length", s.n_ff);
    w.set_u32(a + "expert_shared_count", 1);
    w.set_u32(a + "leading_dense_block_count", glm_dense_lead(s));
    w.set_u32(a + "expert_gating_func", 2);
    w.set_f32(a + "expert_weights_scale", 2.5f);
    w.set_bool(a + "expert_weights_norm", true);
    if (s.nextn_layers) w.set_u32(a + "nextn_predict_layers", s.nextn_layers);
  }
  if (p.architecture == "deepseek2") {
    // The absorbed-MLA metadata of llama.cpp's converter: one KV head of key_length kv_lora +
    // rope and value_length kv_lora, the per-head sizes in the *_mla keys; YaRN x40 from 4096
    // (yarn_log_multiplier 0.1 = mscale_all_dim 1, as DeepSeek-V3).
    const bool v3 = s.arch == "deepseek3";
    w.set_u32(a + "attention.q_lora_rank", p.q_lora);
    w.set_u32(a + "attention.kv_lora_rank", p.kv_lora);
    w.set_u32(a + "attention.key_length", p.kv_lora + p.qk_rope);
    w.set_u32(a + "attention.value_length", p.kv_lora);
    w.set_u32(a + "attention.key_length_mla", p.qk_nope + p.qk_rope);
    w.set_u32(a + "attention.value_length_mla", p.v_head);
    w.set_u32(a + "rope.dimension_count", p.qk_rope);
    w.set_string(a + "rope.scaling.type", "yarn");
    w.set_f32(a + "rope.scaling.factor", 40.f);
    w.set_u32(a + "rope.scaling.original_context_length", 4096);
    w.set_f32(a + "rope.scaling.yarn_log_multiplier", 0.1f);
    if (s.expert_count) {
      w.set_u32(a + "expert_feed_forward_length", s.n_ff);
      w.set_u32(a + "expert_shared_count", p.n_shared);
      w.set_u32(a + "leading_dense_block_count", p.dense_lead);
      w.set_u32(a + "expert_gating_func", v3 ? 2 : 1);
      w.set_f32(a + "expert_weights_scale", v3 ? 2.5f : 1.5f);
      if (v3) w.set_bool(a + "expert_weights_norm", true);
      w.set_u32(a + "expert_group_count", p.n_group ? p.n_group : 1);
      w.set_u32(a + "expert_group_used_count", p.n_group ? p.n_group_used : 1);
    }
  }
  if (p.architecture == "gpt-oss") {
    // gpt-oss-20b's layout at any size: a sliding window of 128 on even layers (llama.cpp's
    // fixed pattern), attention sinks, YaRN x32 from 4096 (base 150000), the router bias and
    // softmax over the top-k, expert biases, the clamped SwiGLU.
    const uint32_t hd = s.n_embd / s.n_head;
    w.set_u32(a + "attention.key_length", hd);
    w.set_u32(a + "attention.value_length", hd);
    w.set_u32(a + "attention.sliding_window", 128);
    w.set_u32(a + "expert_feed_forward_length", s.n_ff);
    w.set_string(a + "rope.scaling.type", "yarn");
    w.set_f32(a + "rope.scaling.factor", 32.f);
    w.set_u32(a + "rope.scaling.original_context_length", 4096);
  }
  if (p.architecture == "qwen2moe") {
    w.set_u32(a + "expert_feed_forward_length", s.n_ff);
    w.set_u32(a + "expert_shared_feed_forward_length", p.n_ff_shexp);
  }
  if (vocab)
    copy_tokenizer(*vocab, w);
  else
    w.set_u32(a + "vocab_size", p.n_vocab);
  w.set_alignment(alignment);
}

}  // namespace

SyntheticModelInfo write_synthetic_model(const SyntheticModelSpec& spec, const std::string& path,
                                         const std::function<bool(float)>& progress) {
  std::unique_ptr<gguf::File> vocab;
  uint32_t n_vocab = spec.n_vocab;
  if (!spec.vocab_from.empty()) {
    vocab = gguf::File::open(spec.vocab_from);
    const gguf::Value* tokens = vocab->find("tokenizer.ggml.tokens");
    if (!tokens || tokens->type() != gguf::ValueType::ARRAY)
      throw Error(ErrorKind::BadInput, "has no tokenizer (tokenizer.ggml.tokens is missing)",
                  {.file = spec.vocab_from});
    n_vocab = static_cast<uint32_t>(tokens->size());
  }
  const Plan plan = make_plan(spec, n_vocab);

  // Header. gguf::Writer encodes the metadata; the tensor directory and data are streamed
  // here, so the tensor data never sits in memory. The writer pads its output to the
  // alignment; the unpadded length comes from the same metadata written with alignment 1 (the
  // general.alignment value has the same size whatever its value).
  constexpr uint32_t kAlign = gguf::kDefaultAlignment;
  gguf::Writer w1, w2;
  write_metadata(w1, spec, plan, vocab.get(), 1);
  write_metadata(w2, spec, plan, vocab.get(), kAlign);
  const size_t meta_len = w1.to_bytes().size();
  std::vector<uint8_t> header = w2.to_bytes();
  if (header.size() < meta_len) throw Error(ErrorKind::Internal, "GGUF header length mismatch");
  header.resize(meta_len);
  const uint64_t n_tensors = plan.tensors.size();
  std::memcpy(header.data() + 8, &n_tensors, sizeof n_tensors);  // after magic and version
  auto align = [&](uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; };
  uint64_t off = 0, total_data = 0;
  for (const auto& t : plan.tensors) {
    put<uint64_t>(header, t.name.size());
    header.insert(header.end(), t.name.begin(), t.name.end());
    put<uint32_t>(header, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) put<uint64_t>(header, static_cast<uint64_t>(d));
    put<uint32_t>(header, static_cast<uint32_t>(t.type));
    put<uint64_t>(header, off);
    off = align(off + t.bytes);
    total_data += t.bytes;
  }
  header.resize(align(header.size()), 0);

  // Temporary file plus rename, free space checked first; a non-regular target is refused
  // (moelab/core/files.h). Two processes writing the same file each rename a complete file.
  uint64_t file_bytes = header.size();
  for (const auto& t : plan.tensors) file_bytes += align(t.bytes);
  OutputFile out(path, file_bytes);
  auto fail = [&](ErrorKind kind, const std::string& why) {
    throw Error(kind, why, {.file = path});  // ~OutputFile removes the temporary
  };
  auto write = [&](const void* p, size_t n) { out.write(p, n); };
  write(header.data(), header.size());

  NormalStream normal(spec.seed);
  std::vector<float> row;
  std::vector<uint8_t> qrow;
  const std::vector<uint8_t> zeros(kAlign, 0);
  uint64_t done = 0, params = 0;
  for (const auto& t : plan.tensors) {
    const int64_t n_in = t.shape[0];
    int64_t n_rows = 1;
    for (size_t d = 1; d < t.shape.size(); ++d) n_rows *= t.shape[d];
    const uint64_t rb = t.bytes / static_cast<uint64_t>(n_rows);
    row.resize(static_cast<size_t>(n_in));
    qrow.resize(rb);
    const float std_dev = t.init == Init::Linear  ? t.gain / std::sqrt(static_cast<float>(n_in))
                          : t.init == Init::Embed ? 1.f
                                                  : 0.1f;
    const float mean = t.init == Init::Norm ? 1.f : 0.f;
    for (int64_t r = 0; r < n_rows; ++r) {
      for (auto& x : row) x = mean + std_dev * normal.next();
      if (t.type == TensorType::F32) {
        write(row.data(), rb);
      } else {
        kernels::quantize_row(t.type, row.data(), qrow.data(), n_in);
        write(qrow.data(), rb);
      }
      done += rb;
      if (progress && (r & 255) == 0 && !progress(static_cast<float>(done) / total_data))
        fail(ErrorKind::Cancelled, "make-model cancelled");
    }
    params += static_cast<uint64_t>(n_in * n_rows);
    write(zeros.data(), align(t.bytes) - t.bytes);
  }
  const uint64_t size = out.commit();
  if (progress) progress(1.f);
  return {static_cast<uint64_t>(size), params, plan.n_vocab, plan.architecture};
}

}  // namespace moelab
