#include "moelab/session/session.h"

#include "moelab/session/energy.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>
#include <numeric>
#include <random>

#include "card_format.h"
#include "moelab/compare/compare.h"
#include "moelab/core/error.h"
#include "moelab/tokenizer/tokenizer.h"

namespace moelab::session {

uint64_t ensure_seed(SamplerParams& s) {
  if (!s.seed) {
    std::random_device rd;
    s.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  return *s.seed;
}

nlohmann::json sampling_json(const SamplerParams& s) {
  nlohmann::json j = {{"temperature", s.temperature},
                      {"top_k", s.top_k},
                      {"top_p", s.top_p},
                      {"min_p", s.min_p},
                      {"repeat_penalty", s.repeat_penalty},
                      {"frequency_penalty", s.frequency_penalty},
                      {"presence_penalty", s.presence_penalty},
                      {"penalty_last_n", s.penalty_last_n}};
  return j;
}

ContextParams RunRecipe::context_params(uint64_t trained_context_length) const {
  ContextParams cp;
  cp.n_ctx = n_ctx ? n_ctx : default_n_ctx(trained_context_length);
  cp.n_threads = threads > 0 ? threads : default_threads();
  cp.kv_type = kv_f16 ? KvType::F16 : KvType::F32;
  cp.backend = backend;
  cp.routing = RoutingPolicy::parse(routing_policy.empty() ? "default" : routing_policy);
  cp.attention = AttentionPolicy::parse(attention_policy.empty() ? "full" : attention_policy);
  return cp;
}

GenerateParams RunRecipe::generate_params() const {
  GenerateParams gp;
  gp.prompt = prompt;
  gp.system = system;
  gp.chat = chat;
  gp.max_tokens = max_tokens;
  gp.sampling = sampling;
  gp.stop = stop;
  gp.ignore_eos = ignore_eos;
  return gp;
}

GenerateConfig generate_config(const ContextParams& cp, const GenerateParams& gp,
                               const std::string& backend_used, const std::string& build_version) {
  GenerateConfig c;
  c.sampling = gp.sampling;
  c.routing_policy = cp.routing.describe();
  c.attention_policy = cp.attention.describe();
  c.threads = cp.n_threads;
  c.backend = backend_used;
  c.n_ctx = cp.n_ctx;
  c.kv_type = cp.kv_type == KvType::F16 ? "f16" : "f32";
  c.max_tokens = gp.max_tokens;
  c.chat = gp.chat;
  c.system = gp.chat ? gp.system : std::string();
  c.stop = gp.stop;
  c.ignore_eos = gp.ignore_eos;
  c.build_version = build_version;
  return c;
}

nlohmann::json generate_config_json(const GenerateConfig& c) {
  nlohmann::json j;
  j["kind"] = "generate";
  j["sampling"] = sampling_json(c.sampling);
  if (c.sampling.seed)
    j["seed"] = *c.sampling.seed;
  else
    j["seed"] = nullptr;
  j["routing_policy"] = c.routing_policy;
  j["attention_policy"] = c.attention_policy;
  j["threads"] = c.threads;
  j["backend"] = c.backend;
  j["n_ctx"] = c.n_ctx;
  j["kv_type"] = c.kv_type;
  j["max_tokens"] = c.max_tokens;
  j["chat"] = c.chat;
  j["system"] = c.system;
  j["stop"] = c.stop;
  j["ignore_eos"] = c.ignore_eos;
  j["build"] = c.build_version;
  return j;
}

nlohmann::json eval_config_json(const EvalConfig& c) {
  nlohmann::json j;
  j["kind"] = "eval";
  j["metric"] = "perplexity";
  j["n_ctx"] = c.n_ctx;
  j["threads"] = c.threads;
  j["max_chunks"] = c.max_chunks;
  j["kv_type"] = c.kv_type;
  j["backend"] = c.backend;
  j["routing_policy"] = c.routing_policy;
  j["attention_policy"] = c.attention_policy;
  j["text"] = {{"path", c.text_path}, {"sha256", c.text_sha256}};
  j["build"] = c.build_version;
  return j;
}

storage::ModelRecord model_record(const Model& model, const std::string& path, std::string sha256) {
  if (sha256.empty()) sha256 = sha256_file(path);
  storage::ModelRecord m;
  m.sha256 = sha256;
  // Absolute, so a stored run's model (and its report's reproduce command) can be found from
  // any working directory.
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(path, ec);
  m.path = ec ? path : abs.lexically_normal().string();
  m.architecture = model.card().architecture;
  m.card_json = card_to_json(model.card(), model.file(), sha256, false)
                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return m;
}

nlohmann::json model_json(const storage::ModelRecord& m, const Model& model) {
  const ModelCard& c = model.card();
  nlohmann::json j = {{"path", m.path},
                      {"sha256", m.sha256},
                      {"architecture", m.architecture},
                      {"name", c.name},
                      {"n_layer", c.n_layer},
                      {"expert_count", c.expert_count},
                      {"expert_used_count", c.expert_used_count}};
  if (c.is_moe()) {
    // What the routing records mean (records.h): the gating the engine applied, the group
    // limit, the shared experts every token runs through, and the dense leading layers.
    j["gating"] = router_gating(c);
    j["expert_groups"] = c.expert_group_count > 1 ? c.expert_group_count : 0;
    j["expert_groups_used"] = c.expert_group_count > 1 ? c.expert_group_used_count : 0;
    j["shared_experts"] = c.expert_shared_count;
    j["leading_dense_layers"] = c.n_layer_dense_lead;
  }
  return j;
}

double entropy_nats(std::span<const float> logits) {
  if (logits.empty()) return NAN;
  double mx = -INFINITY;
  for (float v : logits)
    if (v > mx) mx = v;
  if (!std::isfinite(mx)) return NAN;
  // H = log Z - sum p_i x_i with x_i = logit_i - max, Z = sum exp(x_i).
  double z = 0, zx = 0;
  for (float v : logits) {
    const double x = static_cast<double>(v) - mx;
    const double e = std::exp(x);
    z += e;
    if (e > 0) zx += e * x;
  }
  return std::log(z) - zx / z;
}

storage::NextTokenDist top_next_tokens(std::span<const float> logits, size_t top_n,
                                       int64_t position) {
  storage::NextTokenDist d;
  d.position = position;
  d.n_vocab = static_cast<int32_t>(logits.size());
  if (logits.empty()) return d;
  double mx = -INFINITY;
  for (float v : logits) mx = std::max(mx, static_cast<double>(v));
  if (!std::isfinite(mx)) return d;
  double z = 0;
  for (float v : logits) z += std::exp(static_cast<double>(v) - mx);
  const double logz = std::log(z) + mx;
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t n = std::min(top_n, order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<long>(n), order.end(),
                    [&](int32_t a, int32_t b) {
                      const float la = logits[static_cast<size_t>(a)];
                      const float lb = logits[static_cast<size_t>(b)];
                      return la > lb || (la == lb && a < b);
                    });
  d.ids.assign(order.begin(), order.begin() + static_cast<long>(n));
  d.probs.resize(n);
  for (size_t i = 0; i < n; ++i)
    d.probs[i] = static_cast<float>(
        std::exp(static_cast<double>(logits[static_cast<size_t>(d.ids[i])]) - logz));
  return d;
}

std::vector<double> chunk_perplexities(const std::vector<double>& running) {
  std::vector<double> out;
  double prev = 0;  // c-1 times ln P_{c-1}
  for (size_t i = 0; i < running.size(); ++i) {
    const double cur = static_cast<double>(i + 1) * std::log(running[i]);
    out.push_back(std::exp(cur - prev));
    prev = cur;
  }
  return out;
}

// ---------------------------------------------------------------- routing

RoutingRecorder::RoutingRecorder(Context& ctx, bool probs, bool attention, AttentionCapture capture)
    : ctx_(ctx), probs_(probs), attention_(attention), capture_(std::move(capture)) {
  capture_on_ = attention_ && capture_.budget_bytes > 0;
  // The mixing weights are the last weight stage the layer emits (forward.cpp): the router's
  // probabilities of the selected experts (ffn_moe_weights), then - where the architecture
  // transforms them - renormalised, scaled, or (gpt-oss) the softmax over the selected.
  std::vector<std::string> names = {"ffn_moe_topk", "ffn_moe_weights", "ffn_moe_weights_norm",
                                    "ffn_moe_weights_scaled", "ffn_moe_weights_softmax"};
  // Group-limited routers: the kept groups (a few bytes per token and layer, always kept).
  names.push_back("ffn_moe_group_topk");
  // Routers with a selection-only bias: the scores the choice was made on, with the probs.
  if (probs) {
    names.push_back("ffn_moe_probs");
    names.push_back("ffn_moe_probs_biased");
  }
  observer_ = [this](const Observation& o) {
    if (o.layer < 0) return;
    if (o.name == "kq_soft_max") {
      // F32 [n_head, n_query, n_kv] -> head mean [n_query, n_kv] of the prompt.
      if (o.n_dims < 3 || !o.key_pos.empty()) return;
      const int64_t nh = o.shape[0], nq = o.shape[1], nk = o.shape[2];
      if (nh < 1 || nq < 1 || nk < 1 || int64_t(o.data.size()) < nh * nq * nk) return;
      std::lock_guard lock(mu_);
      if (capture_on_) keep_heads(o);
      if (!prompt_phase_) return;
      size_t total = 0;
      for (const auto& [l, a] : attn_)
        if (l != o.layer) total += a.data.size();
      if (total + static_cast<size_t>(nq * nk) > kMaxAttentionValues) return;
      storage::AttentionSnapshot& a = attn_[o.layer];
      a.position = 0;
      a.layer = o.layer;
      a.head = -1;
      a.shape = {nq, nk};
      a.data.assign(static_cast<size_t>(nq * nk), 0.f);
      std::vector<double> acc(static_cast<size_t>(nq * nk), 0.0);
      for (int64_t h = 0; h < nh; ++h)
        for (int64_t i = 0; i < nq * nk; ++i)
          acc[static_cast<size_t>(i)] += o.data[static_cast<size_t>(h * nq * nk + i)];
      for (size_t i = 0; i < acc.size(); ++i)
        a.data[i] = static_cast<float>(acc[i] / static_cast<double>(nh));
      return;
    }
    if (o.n_dims < 2 || o.shape[0] < 1) return;
    const int64_t n = o.shape[0], w = o.shape[1];
    const auto row = o.data.subspan(static_cast<size_t>((n - 1) * w), static_cast<size_t>(w));
    std::lock_guard lock(mu_);
    Layer& l = layers_[o.layer];
    if (o.name == "ffn_moe_topk")
      l.ids.assign(row.begin(), row.end());
    else if (o.name == "ffn_moe_weights" || o.name == "ffn_moe_weights_norm" ||
             o.name == "ffn_moe_weights_scaled" || o.name == "ffn_moe_weights_softmax")
      l.weights.assign(row.begin(), row.end());  // a later stage replaces an earlier one
    else if (o.name == "ffn_moe_probs")
      l.probs.assign(row.begin(), row.end());
    else if (o.name == "ffn_moe_probs_biased")
      l.selection.assign(row.begin(), row.end());
    else if (o.name == "ffn_moe_group_topk")
      l.groups.assign(row.begin(), row.end());
  };
  names_ = names;
  if (attention) names.push_back("kq_soft_max");
  ctx_.set_observer(observer_, names);
}

RoutingRecorder::~RoutingRecorder() {
  try {
    ctx_.set_observer(nullptr, {});
  } catch (...) {
  }
}

std::vector<storage::RoutingRecord> RoutingRecorder::take(int64_t position) {
  std::lock_guard lock(mu_);
  std::vector<storage::RoutingRecord> out;
  for (auto& [layer, l] : layers_) {
    if (l.ids.empty()) continue;
    storage::RoutingRecord r;
    r.position = position;
    r.layer = layer;
    for (size_t s = 0; s < l.ids.size(); ++s) {
      if (l.ids[s] < 0) continue;  // unused slot (variable-k policies)
      r.experts.push_back(static_cast<uint16_t>(l.ids[s]));
      r.weights.push_back(s < l.weights.size() ? l.weights[s] : NAN);
    }
    if (probs_ && !l.probs.empty()) {
      r.probs_format = storage::ProbFormat::F16;
      r.probs = l.probs;
      if (l.selection.size() == l.probs.size()) r.selection = l.selection;
    }
    for (float g : l.groups)
      if (g >= 0 && g < 256) r.groups.push_back(static_cast<uint8_t>(g));
    out.push_back(std::move(r));
  }
  layers_.clear();
  return out;
}

void RoutingRecorder::keep_heads(const Observation& o) {
  const int64_t nh = o.shape[0], nq = o.shape[1], nk = o.shape[2];
  const bool chosen =
      capture_.layers.empty() ||
      std::find(capture_.layers.begin(), capture_.layers.end(), o.layer) != capture_.layers.end();
  if (!chosen) return;
  if (prompt_phase_) {
    // Layers in the order the forward pass emits them (ascending): one that does not fit next
    // to the layers kept so far is skipped.
    size_t held = 0;
    for (const auto& [l, a] : heads_)
      if (l != o.layer) held += a.data.size() * sizeof(float);
    const size_t bytes = static_cast<size_t>(nh * nq * nk) * sizeof(float);
    if (held + bytes > capture_.budget_bytes) {
      heads_.erase(o.layer);
      if (std::find(skipped_layers_.begin(), skipped_layers_.end(), o.layer) ==
          skipped_layers_.end())
        skipped_layers_.push_back(o.layer);
      return;
    }
  } else if (std::find(kept_layers_.begin(), kept_layers_.end(), o.layer) == kept_layers_.end()) {
    return;
  }
  storage::AttentionSnapshot& a = heads_[o.layer];
  a.position = 0;
  a.layer = o.layer;
  a.head = storage::kAttentionAllHeads;
  a.shape = {nh, nq, nk};
  a.data.assign(o.data.begin(), o.data.begin() + static_cast<ptrdiff_t>(nh * nq * nk));
}

std::vector<storage::AttentionSnapshot> RoutingRecorder::take_attention(int64_t position) {
  std::vector<storage::AttentionSnapshot> out;
  bool was_prompt = false, stop = false;
  {
    std::lock_guard lock(mu_);
    was_prompt = prompt_phase_;
    prompt_phase_ = false;
    for (auto& [layer, a] : attn_) out.push_back(std::move(a));
    attn_.clear();
    if (was_prompt) {
      for (auto& [layer, a] : heads_) {
        kept_layers_.push_back(layer);
        stats_.bytes += a.data.size() * sizeof(float);
        out.push_back(std::move(a));
      }
      heads_.clear();
      stats_.layers_kept = static_cast<int>(kept_layers_.size());
      stats_.layers_skipped = static_cast<int>(skipped_layers_.size());
      if (kept_layers_.empty()) stop = capture_on_;
    } else if (capture_on_) {
      size_t bytes = 0;
      for (const auto& [layer, a] : heads_) bytes += a.data.size() * sizeof(float);
      if (heads_.size() == kept_layers_.size() && stats_.bytes + bytes <= capture_.budget_bytes) {
        for (auto& [layer, a] : heads_) {
          a.position = position;
          out.push_back(std::move(a));
        }
        stats_.bytes += bytes;
        ++stats_.steps_kept;
      } else if (!heads_.empty()) {
        ++stats_.steps_dropped;  // the budget is spent: no later step is kept either
        stop = true;
      }
      heads_.clear();
    } else if (stats_.steps_dropped > 0) {
      ++stats_.steps_dropped;
    }
    if (stop) capture_on_ = false;
  }
  // Without per-head capture the decode steps' attention is not kept: stop observing it
  // (called between evaluations).
  if (attention_ && ((was_prompt && !capture_on_) || stop)) ctx_.set_observer(observer_, names_);
  return out;
}

AttentionCaptureStats RoutingRecorder::attention_stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void RoutingRecorder::set_capture(AttentionCapture capture) {
  std::lock_guard lock(mu_);
  capture_ = std::move(capture);
  capture_on_ = attention_ && capture_.budget_bytes > 0;
}

// ---------------------------------------------------------------- generation

GenerationRecorder::GenerationRecorder(storage::AsyncWriter& writer,
                                       const std::string& session_name,
                                       const std::optional<storage::ModelRecord>& model,
                                       const nlohmann::json& config, const std::string& prompt,
                                       Generator& gen, bool routing, bool routing_probs,
                                       const std::string& kind, bool attention)
    : run_(writer, session_name, model,
           config.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), prompt, kind),
      gen_(gen),
      config_(config) {
  route_ = routing && gen.model().card().is_moe();
  attention_ = attention;
  if (route_ || attention)
    routing_ = std::make_unique<RoutingRecorder>(gen.context(), routing_probs, attention);
}

GenerationRecorder::~GenerationRecorder() {
  routing_.reset();  // the observer must not outlive this object
  // run_'s destructor finishes an unfinished run as failed / cancelled.
}

TokenCallback GenerationRecorder::wrap(TokenCallback inner) {
  return [this, inner = std::move(inner)](const TokenEvent& ev) {
    if (ev.id >= 0) {
      storage::TokenRecord t;
      t.position = ev.index;
      t.id = ev.id;
      if (const Tokenizer* tok = gen_.model().tokenizer()) t.piece = tok->token_to_piece(ev.id);
      t.logprob = ev.logprob;
      // The callback runs before the token is evaluated: the context's logits are still the
      // distribution this token was drawn from.
      const auto logits = gen_.context().logits();
      t.entropy = static_cast<float>(entropy_nats(logits));
      t.latency_us = ev.latency_us;
      latencies_.emplace_back().latency_us = ev.latency_us;
      last_entropy_ = t.entropy;
      last_routing_.clear();
      if (routing_) {
        last_attention_ = routing_->take_attention(ev.index);
        for (const auto& a : last_attention_) run_.attention(a);
        if (route_) last_routing_ = routing_->take(ev.index);
      }
      for (const auto& r : last_routing_) run_.routing(r);
      n_routing_ += static_cast<int64_t>(last_routing_.size());
      run_.token(std::move(t));
      run_.next_token_dist(top_next_tokens(logits, kNextTokenTop, ev.index));
      ++n_tokens_;
    }
    return inner ? inner(ev) : true;
  };
}

GenerateResult GenerationRecorder::generate(const GenerateParams& gp, TokenCallback inner) {
  if (!stats_) gen_.context().reset_policy_stats();  // count this run only
  GenerateResult r;
  try {
    r = gen_.generate(gp, wrap(std::move(inner)));
  } catch (const storage::StorageError&) {
    throw;  // the store failed: the run record cannot be finished either
  } catch (const std::exception& e) {
    try {
      fail(e.what());
    } catch (...) {
    }
    throw;
  }
  const PolicyStats ps = stats_ ? *stats_ : gen_.context().policy_stats();
  if (ps.routed) {
    run_.metric("avg_active_experts", ps.avg_active_experts());
    uint64_t failovers = 0, overflows = 0;
    for (auto v : ps.failovers) failovers += v;
    for (auto v : ps.overflows) overflows += v;
    run_.metric("failovers", static_cast<double>(failovers));
    run_.metric("overflows", static_cast<double>(overflows));
  }
  finish(r);
  return r;
}

void GenerationRecorder::set_attention_capture(const AttentionCapture& c) {
  capture_ = c;
  if (routing_) routing_->set_capture(c);
}

void GenerationRecorder::finish(const GenerateResult& r) {
  if (routing_ && attention_ && capture_.budget_bytes > 0) {
    // What the per-head attention capture kept, so a reader can tell a budget cut from a run
    // without attention.
    const AttentionCaptureStats st = routing_->attention_stats();
    run_.metric("attention_head_bytes", static_cast<double>(st.bytes), "B");
    run_.metric("attention_head_layers", st.layers_kept);
    run_.metric("attention_layers_skipped", st.layers_skipped);
    run_.metric("attention_steps_dropped", static_cast<double>(st.steps_dropped));
  }
  routing_.reset();
  // Only what was measured: a run stopped during its prefill has no TTFT and no prefill speed,
  // one with fewer than two tokens no decode speed (absent, not 0 - a 0 would read as a
  // measurement in compare and group means).
  if (!r.tokens.empty()) {
    run_.metric("ttft_ms", r.ttft_ms, "ms");
    run_.metric("prefill_ms", r.prefill_ms, "ms");
    run_.metric("prefill_tokens_per_s", r.prefill_tokens_per_s, "tokens/s");
  }
  // Decode tokens/s has one definition (compare::latency_figures over the tokens' latencies,
  // first token excluded), the figure run prints and compare, sessions and the reports use.
  if (const auto f = compare::latency_figures(latencies_);
      r.tokens.size() >= 2 && f.decode_tokens_per_s)
    run_.metric("tokens_per_s", *f.decode_tokens_per_s, "tokens/s");
  run_.metric("total_ms", r.total_ms, "ms");
  run_.metric("prompt_tokens", static_cast<double>(r.prompt_tokens.size()), "tokens");
  run_.metric("generated_tokens", static_cast<double>(r.tokens.size()), "tokens");
  {
    // Weights plus a KV cache of the configured n_ctx (Context::n_ctx() is a position limit
    // under an evicting attention policy).
    const bool obj = config_.is_object();
    const std::string kv = obj ? config_.value("kv_type", std::string("f32")) : "f32";
    const uint64_t n_ctx =
        obj && config_.value("n_ctx", 0u) > 0 ? config_.value("n_ctx", 0u) : gen_.context().n_ctx();
    const double mib =
        static_cast<double>(gen_.model().card().memory_estimate(n_ctx, kv == "f16" ? 2 : 4)) /
        (1024.0 * 1024.0);
    run_.metric("model_memory_mib", mib, "MiB");
  }
  if (energy_) energy_->store_metrics(run_);
  run_.finish(r.stop_reason == StopReason::Cancelled ? storage::RunStatus::Cancelled
                                                     : storage::RunStatus::Complete,
              r.text);
  done_ = true;
}

void GenerationRecorder::fail(const std::string& error) {
  routing_.reset();
  run_.finish(storage::RunStatus::Failed, {}, error);
  done_ = true;
}

// ---------------------------------------------------------------- evaluation

void record_perplexity(storage::RunWriter& run, const PerplexityResult& r,
                       const std::string& text_sha256) {
  storage::EvalResult e;
  e.metric = "perplexity";
  e.method = r.method;
  e.text_sha256 = text_sha256;
  e.value = r.ppl;
  e.n_tokens = static_cast<int64_t>(r.n_scored);
  e.chunk_values = chunk_perplexities(r.chunk_ppl);
  run.eval_result(std::move(e));
  run.metric("ppl", r.ppl);
  run.metric("ppl_stderr", r.ppl_stderr);
  run.metric("mean_nll", r.mean_nll, "nats");
  run.metric("n_chunks", r.n_chunks);
  run.metric("n_scored", static_cast<double>(r.n_scored), "tokens");
  run.metric("n_text_tokens", static_cast<double>(r.n_text_tokens), "tokens");
  run.metric("eval_seconds", r.seconds, "s");
  if (r.seconds > 0)
    run.metric("eval_tokens_per_s",
               static_cast<double>(r.n_chunks) * static_cast<double>(r.n_ctx) / r.seconds,
               "tokens/s");
}

}  // namespace moelab::session
