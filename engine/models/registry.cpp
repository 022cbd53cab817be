// The architecture registry and the metadata helpers the arch_<name>.cpp files share.
// The one list of architectures: Model::load, the model card (engine/model/card.cpp:
// supported_architectures, make_model_card) and `inspect` read it.
#include <cmath>

#include "models/arch.h"
#include "moelab/core/error.h"

namespace moelab::models {

// Each defined in its arch_<name>.cpp; a new architecture is named here and listed below.
extern const ArchDef kArch_llama, kArch_qwen2, kArch_qwen2moe, kArch_qwen3, kArch_qwen3moe,
    kArch_olmoe, kArch_gemma2, kArch_granitemoe, kArch_glm4moe;

namespace {

std::vector<ArchDef>& registry() {
  static std::vector<ArchDef> v = {
      kArch_llama, kArch_qwen2,  kArch_qwen2moe,   kArch_qwen3,   kArch_qwen3moe,
      kArch_olmoe, kArch_gemma2, kArch_granitemoe, kArch_glm4moe,
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
  } else if (card.rope_scaling != "none" && !card.rope_scaling.empty()) {
    file.fail(
        "RoPE scaling '" + card.rope_scaling + "' is not implemented (supported: none, linear)",
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

}  // namespace moelab::models
