#include "card_format.h"

#include <cmath>
#include <cstdio>

namespace moelab {

using nlohmann::json;

std::string format_count(uint64_t n) {
  char buf[32];
  if (n >= 1000000000ull)
    std::snprintf(buf, sizeof buf, "%.2f B", n / 1e9);
  else if (n >= 1000000ull)
    std::snprintf(buf, sizeof buf, "%.1f M", n / 1e6);
  else if (n >= 1000ull)
    std::snprintf(buf, sizeof buf, "%.1f K", n / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
  return buf;
}

namespace {
json scalar_at(const gguf::Value& v, uint64_t i) {
  using gguf::ValueType;
  switch (v.elem_type()) {
    case ValueType::FLOAT32:
    case ValueType::FLOAT64:
      return v.number_at(i);
    case ValueType::BOOL:
      return v.number_at(i) != 0;
    default:
      return v.int_at(i);
  }
}
}  // namespace

json value_to_json(const gguf::Value& v, size_t max_array) {
  using gguf::ValueType;
  switch (v.type()) {
    case ValueType::STRING:
      return std::string(v.as_string());
    case ValueType::BOOL:
      return v.as_bool();
    case ValueType::FLOAT32:
    case ValueType::FLOAT64:
      return v.as_f64();
    case ValueType::INT8:
    case ValueType::INT16:
    case ValueType::INT32:
    case ValueType::INT64:
      return v.as_i64();
    case ValueType::ARRAY: {
      const uint64_t n = v.size();
      const uint64_t shown = std::min<uint64_t>(n, max_array);
      json items = json::array();
      for (uint64_t i = 0; i < shown; ++i) {
        if (v.elem_type() == ValueType::STRING)
          items.push_back(std::string(v.strings()[i]));
        else if (v.elem_type() == ValueType::ARRAY)
          items.push_back(value_to_json(v.arrays()[i], 8));
        else
          items.push_back(scalar_at(v, i));
      }
      if (shown == n) return items;
      return json{{"type", "array"},
                  {"elem_type", std::string(gguf::value_type_name(v.elem_type()))},
                  {"count", n},
                  {"head", items}};
    }
    default:
      return v.as_u64();
  }
}

json card_to_json(const ModelCard& c, const gguf::File& f, const std::string& sha256,
                  bool tensors) {
  json j;
  j["path"] = c.path;
  j["gguf_version"] = c.gguf_version;
  j["architecture"] = c.architecture;
  j["name"] = c.name;
  j["n_layer"] = c.n_layer;
  j["n_layer_mtp"] = c.n_layer_mtp;
  j["n_embd"] = c.n_embd;
  j["n_head"] = c.n_head;
  j["n_head_kv"] = c.n_head_kv;
  j["head_dim"] = c.head_dim;
  j["n_ff"] = c.n_ff;
  // Widths as the engine uses them: an expert's width is n_ff where the file has no
  // expert_feed_forward_length (granitemoe, Mixtral); several shared experts are one FFN of
  // count x the expert width where it has no expert_shared_feed_forward_length.
  const uint32_t ff_exp = c.n_ff_exp ? c.n_ff_exp : c.is_moe() ? c.n_ff : 0;
  j["n_ff_exp"] = ff_exp;
  j["n_ff_shexp"] = c.n_ff_shexp ? c.n_ff_shexp : c.expert_shared_count * ff_exp;
  j["expert_count"] = c.expert_count;
  j["expert_used_count"] = c.expert_used_count;
  j["expert_shared_count"] = c.expert_shared_count;
  j["n_vocab"] = c.n_vocab;
  j["context_length"] = c.context_length;
  j["rms_eps"] = c.rms_eps;
  j["rope"] = {{"type", c.rope_type},
               {"freq_base", c.rope_freq_base},
               {"scaling", c.rope_scaling},
               {"scaling_factor", c.rope_scaling_factor},
               {"original_context_length", c.rope_orig_ctx},
               {"dims", c.rope_dims}};
  j["sliding_window"] = c.sliding_window;
  j["swa_period"] = c.swa_period;
  j["attention_sinks"] = c.attn_sinks;
  // The router as the engine runs it (ModelCard::router_*; the file's keys where the engine
  // cannot run the file); weights_scale 1 when there is no routed scale.
  const std::string file_gating = c.gating_softmax_selected   ? "softmax_over_topk"
                                  : c.expert_gating_func == 2 ? "sigmoid"
                                  : c.expert_gating_func == 1 ? "softmax"
                                                              : "";
  const bool known = !c.router_gating.empty();
  const float scale = known ? c.router_scale : c.expert_weights_scale;
  j["router"] = {{"gating", known ? c.router_gating : file_gating},
                 {"weights_norm", known ? c.router_renormalise : c.expert_weights_norm},
                 {"weights_scale", scale > 0 ? scale : 1.0f},
                 {"leading_dense_layers", c.n_layer_dense_lead},
                 {"expert_groups", c.expert_group_count},
                 {"expert_groups_used", c.expert_group_used_count},
                 {"shared_experts", c.expert_shared_count}};
  if (c.is_mla())
    j["mla"] = {{"q_lora_rank", c.q_lora_rank},
                {"kv_lora_rank", c.kv_lora_rank},
                {"qk_nope", c.head_dim_mla > c.rope_dims ? c.head_dim_mla - c.rope_dims : 0},
                {"qk_rope", c.rope_dims},
                {"v_head", c.head_dim_v_mla}};
  // gqa_equivalent_f16: what a GQA/MHA cache of the same heads holds; for a GQA model that is
  // its own cache.
  j["kv_bytes_per_token"] = {
      {"f16", c.kv_bytes_per_token(2)},
      {"f32", c.kv_bytes_per_token(4)},
      {"gqa_equivalent_f16",
       c.is_mla() ? c.kv_bytes_per_token_gqa_equivalent(2) : c.kv_bytes_per_token(2)}};
  if (c.sliding_window)
    j["kv_bytes_per_token"]["sliding_window_layers"] =
        "full cache: the window masks keys but the cache is not sized to it";
  j["multipliers"] = {{"embedding_scale", c.embedding_scale},
                      {"residual_scale", c.residual_scale},
                      {"attention_scale", c.attention_scale},
                      {"logit_scale", c.logit_scale}};
  j["vocab_type"] = c.vocab_type;
  j["vocab_pre"] = c.vocab_pre;
  j["bos_id"] = c.bos_id;
  j["eos_id"] = c.eos_id;
  j["chat_template"] = c.has_chat_template;
  j["params_total"] = c.params_total;
  j["params_active"] = c.params_active;
  j["n_tensors"] = c.n_tensors;
  json types = json::object(), bytes = json::object();
  for (const auto& [name, u] : c.tensor_types) {
    types[name] = u.tensors;
    bytes[name] = u.bytes;
  }
  j["tensor_types"] = types;
  j["tensor_bytes"] = bytes;
  j["file_size"] = c.file_size;
  j["weight_bytes"] = c.weight_bytes;
  const uint64_t n_ctx = default_n_ctx(c.context_length);
  j["memory"] = {{"n_ctx", n_ctx},
                 {"f16_bytes", c.memory_estimate(n_ctx, 2)},
                 {"f32_bytes", c.memory_estimate(n_ctx, 4)}};
  j["runnable"] = c.problems.empty();
  j["problems"] = c.problems;
  j["sha256"] = sha256.empty() ? json(nullptr) : json(sha256);
  json md = json::object();
  for (const auto& v : f.metadata()) md[v.key()] = value_to_json(v);
  j["metadata"] = md;
  if (tensors) {
    json t = json::array();
    for (const auto& ti : f.tensors()) {
      std::vector<int64_t> shape(ti.ne, ti.ne + ti.n_dims);
      t.push_back({{"name", ti.name},
                   {"type", gguf::type_name(ti.type)},
                   {"shape", shape},
                   {"offset", ti.file_offset},
                   {"bytes", ti.nbytes}});
    }
    j["tensors"] = t;
  }
  return j;
}

std::string router_gating(const ModelCard& c) {
  if (!c.is_moe()) return "";
  // The engine's own answer (the architecture's configuration) where it could make one; a
  // moefied model's unit gating ranks by softmax probabilities.
  if (!c.router_gating.empty()) return c.router_gating == "unit" ? "softmax" : c.router_gating;
  if (c.gating_softmax_selected) return "softmax_over_topk";
  if (c.expert_gating_func == 2 || (c.architecture == "glm4moe" && c.expert_gating_func != 1))
    return "sigmoid";
  return "softmax";
}

std::vector<std::pair<std::string, std::string>> card_rows(const ModelCard& c,
                                                           const std::string& sha256,
                                                           uint64_t n_ctx) {
  std::vector<std::pair<std::string, std::string>> r;
  auto add = [&](std::string k, std::string v) { r.emplace_back(std::move(k), std::move(v)); };
  char buf[256];
  add("architecture", c.architecture.empty() ? "(none)" : c.architecture);
  if (!c.name.empty()) add("name", c.name);
  add("file", format_bytes(c.file_size) + ", GGUF v" + std::to_string(c.gguf_version) + ", " +
                  std::to_string(c.n_tensors) + " tensors");
  add("sha256", sha256.empty() ? "(not computed)" : sha256);
  if (c.n_layer) {
    add("layers (n_layer)", std::to_string(c.n_layer));
    if (c.n_layer_mtp)
      add("MTP layers", std::to_string(c.n_layer_mtp) +
                            " multi-token-prediction layer(s) after them, loaded but not used "
                            "for decoding");
    add("width (n_embd)", std::to_string(c.n_embd));
    std::snprintf(buf, sizeof buf, "%u heads, %u KV heads%s, head_dim %u", c.n_head, c.n_head_kv,
                  c.is_mla() ? " (MLA's absorbed view: one latent KV row)"
                  : c.n_head_kv && c.n_head_kv != c.n_head
                      ? (" (GQA " + std::to_string(c.n_head / c.n_head_kv) + ":1)").c_str()
                      : "",
                  c.head_dim);
    add("attention", buf);
    if (c.is_mla()) {
      // Multi-head latent attention: the metadata's KV head is the absorbed view (above).
      std::string m =
          "MLA: " + std::to_string(c.n_head) + " heads, q_lora " +
          (c.q_lora_rank ? std::to_string(c.q_lora_rank) : std::string("0 (plain Q)")) +
          ", kv_lora " + std::to_string(c.kv_lora_rank) + ", qk_nope " +
          std::to_string(c.head_dim_mla > c.rope_dims ? c.head_dim_mla - c.rope_dims : 0) +
          " + qk_rope " + std::to_string(c.rope_dims) + ", v " + std::to_string(c.head_dim_v_mla) +
          "; cached per token and layer: one row c_kv | k_pe (" + std::to_string(c.head_dim) +
          "), V = its first " + std::to_string(c.head_dim_v);
      add("attention kind", m);
    }
    if (c.n_layer && c.n_head_kv) {
      std::string kv = format_bytes(c.kv_bytes_per_token(2)) + " F16 / " +
                       format_bytes(c.kv_bytes_per_token(4)) + " F32, all layers";
      if (c.is_mla()) {
        const uint64_t g = c.kv_bytes_per_token_gqa_equivalent(2), m = c.kv_bytes_per_token(2);
        std::snprintf(buf, sizeof buf,
                      " as MLA stores it; the same heads as MHA would cache %s F16 (MLA: %.2fx "
                      "of that)",
                      format_bytes(g).c_str(), g ? static_cast<double>(m) / g : 0.0);
        kv += buf;
      }
      if (c.sliding_window)
        kv += "; sliding-window layers keep the full cache (not sized to the window)";
      add("KV bytes/token", kv);
    }
    if (c.is_moe()) {
      std::string e = std::to_string(c.expert_count) + " experts, top-" +
                      std::to_string(c.expert_used_count) + ", expert n_ff " +
                      std::to_string(c.n_ff_exp ? c.n_ff_exp : c.n_ff);
      if (c.expert_shared_count == 1)
        e += "; 1 shared expert (n_ff " +
             std::to_string(c.n_ff_shexp ? c.n_ff_shexp
                            : c.n_ff_exp ? c.n_ff_exp
                                         : c.n_ff) +
             ")";
      else if (c.expert_shared_count > 1)
        e += "; " + std::to_string(c.expert_shared_count) +
             " shared experts, always on (one FFN of n_ff " +
             std::to_string(c.n_ff_shexp
                                ? c.n_ff_shexp
                                : c.expert_shared_count * (c.n_ff_exp ? c.n_ff_exp : c.n_ff)) +
             ")";
      add("experts", e);
      {
        // The router as the engine runs it (ModelCard::router_*), else as the file states it.
        const bool known = !c.router_gating.empty();
        const std::string kind = known                       ? c.router_gating
                                 : c.gating_softmax_selected ? "softmax_over_topk"
                                 : c.expert_gating_func == 2 ? "sigmoid"
                                 : c.expert_gating_func == 1 ? "softmax"
                                                             : "";
        std::string g = kind == "softmax_over_topk"
                            ? "softmax over the top-k (selected on router logits + bias: scores, "
                              "not probabilities)"
                        : kind == "sigmoid" ? "sigmoid scores (not probabilities)"
                        : kind == "softmax" ? "softmax probabilities"
                        : kind == "unit"    ? "unit weights (1 for each chosen expert, ranked by "
                                              "softmax; a moefied model)"
                                            : "the architecture's default";
        if (known ? c.router_renormalise : c.expert_weights_norm) g += ", top-k weights normalised";
        const float scale = known ? c.router_scale : c.expert_weights_scale;
        if (scale > 0) {
          std::snprintf(buf, sizeof buf, ", x%g", scale);
          g += buf;
        }
        add("gating", g);
        if (c.expert_group_count > 1)
          add("expert groups", std::to_string(c.expert_group_count) + " groups of " +
                                   std::to_string(c.expert_count / c.expert_group_count) +
                                   ", the best " + std::to_string(c.expert_group_used_count) +
                                   " kept per token (group-limited top-k)");
        if (c.n_layer_dense_lead)
          add("dense layers", "the first " + std::to_string(c.n_layer_dense_lead) +
                                  " (dense FFN, n_ff " + std::to_string(c.n_ff) + ")");
      }
    } else {
      add("FFN (n_ff)", std::to_string(c.n_ff) + " (dense)");
    }
    add("context length", std::to_string(c.context_length) + " tokens");
    std::snprintf(buf, sizeof buf, "%s, freq_base %g, %u dims, scaling %s", c.rope_type.c_str(),
                  c.rope_freq_base, c.rope_dims, c.rope_scaling.c_str());
    std::string rope = buf;
    if (c.rope_scaling == "yarn") {
      std::snprintf(buf, sizeof buf, " (YaRN x%g, original context %u)", c.rope_scaling_factor,
                    c.rope_orig_ctx);
      rope += buf;
    }
    add("RoPE", rope);
    if (c.sliding_window) {
      std::string w = std::to_string(c.sliding_window) + " tokens";
      if (c.swa_period == 2)
        w += " on even layers (0, 2, ...); odd layers full";
      else if (c.swa_period > 2)
        w += " on layers 0, " + std::to_string(c.swa_period) + ", ...; the others full";
      add("sliding window", w);
    }
    if (c.attn_sinks) add("attention sinks", "learned, one logit per head (softmax denominator)");
    if (c.embedding_scale > 0 || c.residual_scale > 0 || c.logit_scale > 0) {
      std::snprintf(buf, sizeof buf, "embeddings x%g, residual branches x%g, logits /%g",
                    c.embedding_scale > 0 ? c.embedding_scale : 1.0,
                    c.residual_scale > 0 ? c.residual_scale : 1.0,
                    c.logit_scale > 0 ? c.logit_scale : 1.0);
      add("multipliers", buf);
    }
    if (c.attention_scale > 0) {
      std::snprintf(buf, sizeof buf, "%g (instead of 1/sqrt(head_dim) = %.4g)", c.attention_scale,
                    c.head_dim ? 1.0 / std::sqrt(static_cast<double>(c.head_dim)) : 0.0);
      add("attention scale", buf);
    }
  }
  if (c.n_vocab) {
    std::string v = (c.vocab_type.empty() ? "?" : c.vocab_type) +
                    (c.vocab_type == "llama"  ? " (SentencePiece)"
                     : c.vocab_type == "gpt2" ? " (byte-level BPE)"
                                              : "") +
                    ", " + std::to_string(c.n_vocab) + " tokens";
    if (!c.vocab_pre.empty()) v += ", pre-tokenizer " + c.vocab_pre;
    if (c.bos_id >= 0) v += ", BOS " + std::to_string(c.bos_id);
    if (c.eos_id >= 0) v += ", EOS " + std::to_string(c.eos_id);
    add("vocabulary", v);
    add("chat template", c.has_chat_template ? "yes" : "no");
  }
  std::string p = format_count(c.params_total) + " total";
  if (c.params_active != c.params_total) {
    std::snprintf(buf, sizeof buf, ", %s active per token (%.0f%%)",
                  format_count(c.params_active).c_str(),
                  100.0 * static_cast<double>(c.params_active) /
                      static_cast<double>(c.params_total ? c.params_total : 1));
    p += buf;
  }
  add("parameters", p);
  std::string q;
  for (const auto& [name, u] : c.tensor_types) {
    if (!q.empty()) q += "; ";
    q += name + ": " + std::to_string(u.tensors) + " tensors, " + format_bytes(u.bytes);
  }
  add("quantization", q.empty() ? "(no tensors)" : q);
  if (c.n_layer) {
    add("memory estimate", format_bytes(c.memory_estimate(n_ctx, 2)) + " at " +
                               std::to_string(n_ctx) + " tokens with an F16 KV cache (" +
                               format_bytes(c.kv_cache_bytes(n_ctx, 2)) + " cache), " +
                               format_bytes(c.memory_estimate(n_ctx, 4)) + " with F32" +
                               (c.sliding_window ? "; every layer's cache at full size, the "
                                                   "sliding-window layers too"
                                                 : ""));
  }
  if (c.problems.empty()) {
    add("runnable", "yes");
  } else {
    std::string s = "no: " + c.problems.front();
    if (c.problems.size() > 1) s += " (+" + std::to_string(c.problems.size() - 1) + " more)";
    add("runnable", s);
  }
  return r;
}

}  // namespace moelab
