// The architecture registry and the metadata helpers the arch_<name>.cpp files share.
// The one list of architectures: Model::load, the model card (engine/model/card.cpp:
// supported_architectures, make_model_card) and `inspect` read it.
#include <cmath>

#include "models/arch.h"
#include "moelab/core/error.h"
#include "ops/element/element.h"

namespace moelab::models {

// Each defined in its arch_<name>.cpp; a new architecture is named here and listed below.
extern const ArchDef kArch_llama, kArch_qwen2, kArch_qwen2moe, kArch_qwen3, kArch_qwen3moe,
    kArch_olmoe, kArch_gemma2, kArch_granitemoe, kArch_glm4moe, kArch_gptoss, kArch_deepseek2;

namespace {

std::vector<ArchDef>& registry() {
  static std::vector<ArchDef> v = {
      kArch_llama,  kArch_qwen2,      kArch_qwen2moe, kArch_qwen3,  kArch_qwen3moe,  kArch_olmoe,
      kArch_gemma2, kArch_granitemoe, kArch_glm4moe,  kArch_gptoss, kArch_deepseek2,
  };
  return v;
}

}  // namespace

const std::vector<ArchDef>& architectures() {
  return registry();
}

void register_architecture(const ArchDef& def) {
  if (!def.name || !*def.name || !def.configure || !def.block || !def.card.rope_type)
    throw Error(ErrorKind::BadInput,
                "an architecture needs a name, a rope type, configure and block functions");
  if (find_architecture(def.name))
    throw Error(ErrorKind::BadInput,
                "architecture '" + std::string(def.name) + "' is already registered");
  registry().push_back(def);
}

const ArchDef* find_architecture(const std::string& name) {
  for (const auto& a : architectures())
    if (name == a.name) return &a;
  return nullptr;
}

float arch_float(const gguf::File& file, const ModelCard& card, const std::string& key, float def) {
  const std::string k = card.architecture + "." + key;
  const gguf::Value* v = file.find(k);
  if (!v) return def;
  if (!v->is_number()) file.fail("expected a number", "metadata key '" + k + "'");
  return static_cast<float>(v->as_f64());
}

bool arch_bool(const gguf::File& file, const ModelCard& card, const std::string& key, bool def) {
  return file.get_bool(card.architecture + "." + key, def);
}

ops::RopeParams rope_from_card(const gguf::File& file, const ModelCard& card, ops::RopeType type) {
  ops::RopeParams p;
  p.type = type;
  p.n_rot = static_cast<int>(card.rope_dims ? card.rope_dims : card.head_dim);
  p.freq_base = card.rope_freq_base;  // validated by make_model_card (10000 when absent)
  p.freq_scale = 1.0f;
  const std::string subject = "metadata key '" + card.architecture + ".rope.scaling.type'";
  if (card.rope_scaling == "linear") {
    if (card.rope_scaling_factor > 0) p.freq_scale = 1.0f / card.rope_scaling_factor;
  } else if (card.rope_scaling == "yarn") {
    // YaRN (arXiv:2309.00071) as llama.cpp 0c1e570 sets it up: freq_scale = 1 / factor, the ramp
    // between the correction dims of beta_fast 32 / beta_slow 1 (its defaults: the
    // yarn_beta_* keys are not read), and ggml's magnitude 1 + 0.1 ln(factor) on cos / sin
    // (contracted as ggml's compiled rope_yarn computes it). An architecture that scales
    // attention otherwise (deepseek2: mscale² in the K·Q scale) sets attn_factor back to 1.
    const std::string fkey = "metadata key '" + card.architecture + ".rope.scaling.factor'";
    if (!(card.rope_scaling_factor >= 1.0f))
      file.fail("YaRN scaling needs a factor of at least 1, got " +
                    std::to_string(card.rope_scaling_factor),
                fkey);
    const std::string okey = card.architecture + ".rope.scaling.original_context_length";
    const gguf::Value* orig = file.find(okey);
    if (!orig || !orig->is_number() || orig->as_f64() < 1 || orig->as_f64() > (1 << 30))
      file.fail("YaRN scaling needs the original context length (a positive integer)",
                "metadata key '" + okey + "'");
    p.freq_scale = 1.0f / card.rope_scaling_factor;
    p.ext_factor = 1.0f;
    p.n_ctx_orig = static_cast<int>(orig->as_f64());
    p.attn_factor = std::fma(0.1f, std::log(1.0f / p.freq_scale), 1.0f);
  } else if (card.rope_scaling != "none" && !card.rope_scaling.empty()) {
    file.fail("RoPE scaling '" + card.rope_scaling +
                  "' is not implemented (supported: none, linear, yarn)",
              subject);
  } else if (card.rope_scaling_factor > 0 && card.rope_scaling_factor != 1.0f &&
             !file.find(card.architecture + ".rope.scaling.type")) {
    // Older files give only a factor, which llama.cpp treats as linear scaling.
    p.freq_scale = 1.0f / card.rope_scaling_factor;
  }
  if (p.n_rot <= 0 || p.n_rot % 2 != 0 || p.n_rot > static_cast<int>(card.head_dim))
    file.fail("rope dimension count " + std::to_string(p.n_rot) +
                  " must be even and at most the head size " + std::to_string(card.head_dim),
              "metadata key '" + card.architecture + ".rope.dimension_count'");
  return p;
}

void expert_groups_from_card(const gguf::File& file, const ModelCard& card, ArchConfig& c) {
  const uint32_t ng = card.expert_group_count, nu = card.expert_group_used_count;
  if (ng <= 1) return;
  const std::string a = card.architecture + ".";
  if (ng > static_cast<uint32_t>(ops::element::kMaxExpertGroups) || card.expert_count % ng != 0)
    file.fail("expert_group_count " + std::to_string(ng) + " must divide expert_count " +
                  std::to_string(card.expert_count) + " and be at most " +
                  std::to_string(ops::element::kMaxExpertGroups),
              "metadata key '" + a + "expert_group_count'");
  if (nu < 1 || nu > ng || card.expert_used_count > nu * (card.expert_count / ng))
    file.fail("expert_group_used_count " + std::to_string(nu) +
                  " must be 1..expert_group_count, and the kept groups must hold at least "
                  "expert_used_count experts",
              "metadata key '" + a + "expert_group_used_count'");
  c.expert_groups = static_cast<int>(ng);
  c.expert_groups_used = static_cast<int>(nu);
}

}  // namespace moelab::models
