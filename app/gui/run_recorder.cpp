#include "run_recorder.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "moelab/core/error.h"
#include "moelab/model/card.h"
#include "moelab/tokenizer/tokenizer.h"
#ifdef MOELAB_HAVE_POLICIES
#include "moelab/policies/policies.h"
#endif

#ifndef MOELAB_VERSION
#define MOELAB_VERSION "dev"
#endif

namespace moelab::lab {

uint32_t RunSettings::context_for(uint64_t trained) const {
  if (n_ctx) return n_ctx;
  return static_cast<uint32_t>(trained ? std::min<uint64_t>(trained, 2048) : 2048);
}

ContextParams RunSettings::context_params(uint64_t trained) const {
  ContextParams cp;
  cp.n_ctx = context_for(trained);
  cp.n_threads = std::max(1, threads);
  cp.kv_type = kv_f16 ? KvType::F16 : KvType::F32;
  cp.backend = backend;
  return cp;
}

nlohmann::json run_config(const RunSettings& s, const Model& model, const ModelIdentity& id) {
  const auto& sp = s.sampling;
  const ModelCard& card = model.card();
  nlohmann::json j;
  j["sampling"] = {{"temperature", sp.temperature},
                   {"top_k", sp.top_k},
                   {"top_p", sp.top_p},
                   {"min_p", sp.min_p},
                   {"repeat_penalty", sp.repeat_penalty},
                   {"frequency_penalty", sp.frequency_penalty},
                   {"presence_penalty", sp.presence_penalty},
                   {"penalty_last_n", sp.penalty_last_n}};
  j["seed"] = sp.seed ? nlohmann::json(*sp.seed) : nlohmann::json(nullptr);
  j["max_tokens"] = s.max_tokens;
  j["ignore_eos"] = s.ignore_eos;
  j["chat"] = s.chat;
  if (s.chat && !s.system.empty()) j["system"] = s.system;
  j["threads"] = std::max(1, s.threads);
  j["backend"] = s.backend;
  j["n_ctx"] = s.context_for(card.context_length);
  j["kv_type"] = s.kv_f16 ? "f16" : "f32";
  j["routing_policy"] = s.routing_policy.empty() ? "default" : s.routing_policy;
  j["attention_policy"] = s.attention_policy.empty() ? "full" : s.attention_policy;
  j["model"] = {{"path", id.path},
                {"sha256", id.sha256.empty() ? nlohmann::json(nullptr) : nlohmann::json(id.sha256)},
                {"architecture", card.architecture},
                {"expert_count", card.expert_count},
                {"expert_used_count", card.expert_used_count},
                {"n_layer", card.n_layer}};
  j["version"] = MOELAB_VERSION;
  return j;
}

float entropy_and_top(std::span<const float> logits, size_t top_n, std::vector<int32_t>* ids,
                      std::vector<float>* probs) {
  if (logits.empty()) return std::nanf("");
  float mx = -INFINITY;
  for (float v : logits) mx = std::max(mx, v);
  double z = 0;
  for (float v : logits) z += std::exp(double(v) - mx);
  const double logz = std::log(z) + mx;
  double h = 0;
  for (float v : logits) {
    if (!std::isfinite(v)) continue;
    const double lp = double(v) - logz;
    h -= std::exp(lp) * lp;
  }
  if (ids && probs && top_n) {
    std::vector<int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    const size_t n = std::min(top_n, order.size());
    std::partial_sort(order.begin(), order.begin() + long(n), order.end(),
                      [&](int32_t a, int32_t b) {
                        return logits[size_t(a)] > logits[size_t(b)] ||
                               (logits[size_t(a)] == logits[size_t(b)] && a < b);
                      });
    ids->assign(order.begin(), order.begin() + long(n));
    probs->resize(n);
    for (size_t i = 0; i < n; ++i)
      (*probs)[i] = float(std::exp(double(logits[size_t(order[i])]) - logz));
  }
  return float(h);
}

namespace {

// Routing of the most recent forward step, per layer (the batch's last row).
struct StepRouting {
  std::vector<std::vector<int32_t>> ids;         // [n_layer][k]
  std::vector<std::vector<float>> weights;       // [n_layer][k] un-normalised
  std::vector<std::vector<float>> weights_norm;  // [n_layer][k] applied (renormalising archs)
  void ensure(int layer) {
    if (layer < 0) return;
    const size_t n = size_t(layer) + 1;
    if (ids.size() < n) {
      ids.resize(n);
      weights.resize(n);
      weights_norm.resize(n);
    }
  }
};

std::vector<float> last_row(const Observation& o) {
  const int64_t rows = o.n_dims >= 2 ? o.shape[0] : 1;
  const int64_t cols = o.n_dims >= 2 ? o.shape[1] : o.shape[0];
  if (rows <= 0 || cols <= 0 || int64_t(o.data.size()) < rows * cols) return {};
  const float* p = o.data.data() + (rows - 1) * cols;
  return std::vector<float>(p, p + cols);
}

}  // namespace

RecordedRun record_generation(Generator& gen, const RunSettings& settings_in,
                              storage::AsyncWriter& writer, const std::string& session,
                              const ModelIdentity& model_id,
                              const std::function<bool(const LiveToken&)>& on_token) {
  RunSettings settings = settings_in;
  if (!settings.sampling.seed)
    settings.sampling.seed = std::random_device{}() * 0x9E3779B97F4A7C15ull;
  const Model& model = gen.model();
  RecordedRun out;
  // A run may start before the background hash of the model file has finished: hash it here
  // (this runs on the generation thread) so that every stored run names its model.
  ModelIdentity id = model_id;
  if (id.sha256.size() != 64 && !id.path.empty()) id.sha256 = sha256_file(id.path);
  out.config = run_config(settings, model, id);
  std::optional<storage::ModelRecord> mrec;
  if (id.sha256.size() == 64) {
    storage::ModelRecord m;
    m.sha256 = id.sha256;
    m.path = id.path;
    m.architecture = model.card().architecture;
    m.card_json = id.card_json.empty() ? "{}" : id.card_json;
    mrec = m;
  }
  storage::RunWriter run(writer, session, mrec, out.config.dump(), settings.prompt);
  out.run_id = run.id();

  const bool moe = model.card().expert_count > 0;
  StepRouting step;
  if (moe) {
    gen.context().set_observer(
        [&step](const Observation& o) {
          if (o.layer < 0) return;
          step.ensure(o.layer);
          auto row = last_row(o);
          if (o.name == "ffn_moe_topk") {
            step.ids[size_t(o.layer)].clear();
            for (float v : row) step.ids[size_t(o.layer)].push_back(int32_t(std::lround(v)));
            step.weights_norm[size_t(o.layer)].clear();
          } else if (o.name == "ffn_moe_weights") {
            step.weights[size_t(o.layer)] = std::move(row);
          } else if (o.name == "ffn_moe_weights_norm") {
            step.weights_norm[size_t(o.layer)] = std::move(row);
          }
        },
        {"ffn_moe_topk", "ffn_moe_weights", "ffn_moe_weights_norm"});
  }

  GenerateParams gp;
  gp.prompt = settings.prompt;
  gp.chat = settings.chat;
  gp.system = settings.system;
  gp.max_tokens = settings.max_tokens;
  gp.sampling = settings.sampling;
  gp.ignore_eos = settings.ignore_eos;

  bool cancelled_by_callback = false;
  auto cb = [&](const TokenEvent& ev) -> bool {
    LiveToken lt;
    lt.run_id = out.run_id;
    lt.piece = ev.piece;
    if (ev.id < 0) {  // closing event: text only
      lt.index = -1;
      if (on_token) on_token(lt);
      return true;
    }
    lt.index = ev.index;
    lt.id = ev.id;
    lt.logprob = ev.logprob;
    lt.latency_us = ev.latency_us;
    storage::NextTokenDist dist;
    lt.entropy = entropy_and_top(gen.context().logits(), 16, &dist.ids, &dist.probs);
    dist.position = ev.index;
    dist.n_vocab = int32_t(gen.context().logits().size());

    storage::TokenRecord t;
    t.position = ev.index;
    t.id = ev.id;
    t.piece = ev.piece;
    t.logprob = ev.logprob;
    t.entropy = lt.entropy;
    t.latency_us = ev.latency_us;
    run.token(std::move(t));
    run.next_token_dist(std::move(dist));

    if (moe) {
      lt.experts.resize(step.ids.size());
      lt.weights.resize(step.ids.size());
      for (size_t l = 0; l < step.ids.size(); ++l) {
        const auto& ids = step.ids[l];
        if (ids.empty()) continue;
        const auto& w =
            step.weights_norm[l].size() == ids.size() ? step.weights_norm[l] : step.weights[l];
        storage::RoutingRecord r;
        r.position = ev.index;
        r.layer = int32_t(l);
        for (size_t i = 0; i < ids.size(); ++i) {
          if (ids[i] < 0) continue;  // unused slot (variable-k policies)
          r.experts.push_back(uint16_t(ids[i]));
          r.weights.push_back(i < w.size() ? w[i] : 0.f);
        }
        lt.experts[l] = r.experts;
        lt.weights[l] = r.weights;
        run.routing(std::move(r));
        ++out.routing_records;
      }
    }
    if (on_token && !on_token(lt)) {
      cancelled_by_callback = true;
      return false;
    }
    return true;
  };

  try {
    out.result = gen.generate(gp, cb);
  } catch (const std::exception& e) {
    if (moe) gen.context().set_observer(nullptr, {});
    out.status = storage::RunStatus::Failed;
    out.error = e.what();
    run.finish(out.status, {}, out.error);
    return out;
  }
  if (moe) gen.context().set_observer(nullptr, {});
  const GenerateResult& r = out.result;
  const double mib =
      double(model.card().memory_estimate(settings.context_for(model.card().context_length),
                                          settings.kv_f16 ? 2 : 4)) /
      (1024.0 * 1024.0);
  run.metric("ttft_ms", r.ttft_ms, "ms");
  run.metric("tokens_per_s", r.tokens_per_s, "tokens/s");
  run.metric("prefill_ms", r.prefill_ms, "ms");
  run.metric("prefill_tokens_per_s", r.prefill_tokens_per_s, "tokens/s");
  run.metric("total_ms", r.total_ms, "ms");
  run.metric("prompt_tokens", double(r.prompt_tokens.size()), "tokens");
  run.metric("generated_tokens", double(r.tokens.size()), "tokens");
  run.metric("model_memory_mib", mib, "MiB");
  out.status = (r.stop_reason == StopReason::Cancelled || cancelled_by_callback)
                   ? storage::RunStatus::Cancelled
                   : storage::RunStatus::Complete;
  run.finish(out.status, r.text,
             out.status == storage::RunStatus::Cancelled ? "cancelled by the user" : "");
  return out;
}

}  // namespace moelab::lab

namespace moelab::lab {

bool policies_available() {
#ifdef MOELAB_HAVE_POLICIES
  return true;
#else
  return false;
#endif
}

std::shared_ptr<const Model> with_run_policies(std::shared_ptr<const Model> model,
                                               const RunSettings& s) {
  const bool def_r = s.routing_policy.empty() || s.routing_policy == "default";
  const bool def_a = s.attention_policy.empty() || s.attention_policy == "full";
  if (def_r && def_a) return model;
#ifdef MOELAB_HAVE_POLICIES
  return with_policies(std::move(model), RoutingPolicy::parse(def_r ? "default" : s.routing_policy),
                       AttentionPolicy::parse(def_a ? "full" : s.attention_policy));
#else
  throw Error(ErrorKind::BadInput, "this build has no routing/attention policies");
#endif
}

}  // namespace moelab::lab
