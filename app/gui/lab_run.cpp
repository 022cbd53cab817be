#include "lab_run.h"

#include <algorithm>
#include <cstdlib>

#include "card_format.h"
#include "moelab/core/backends.h"
#include "moelab/core/error.h"
#include "moelab/model/card.h"
#include "moelab/session/energy.h"
#include "moelab/session/session.h"
#include "moelab/telemetry/power.h"
#include "moelab/tokenizer/chat.h"
#include "moelab/tokenizer/tokenizer.h"

#ifndef MOELAB_VERSION
#define MOELAB_VERSION "dev"
#endif

namespace moelab::lab {

uint32_t RunSettings::context_for(uint64_t trained) const {
  return n_ctx ? n_ctx : default_n_ctx(trained);
}

session::RunRecipe RunSettings::recipe() const {
  session::RunRecipe r;
  r.prompt = prompt;
  r.system = system;
  r.chat = chat;
  r.max_tokens = max_tokens;
  r.sampling = sampling;
  r.ignore_eos = ignore_eos;
  r.threads = std::max(1, threads);
  r.n_ctx = n_ctx;
  r.kv_f16 = kv_f16;
  r.backend = parse_backend(backend);
  r.routing_policy = routing_policy;
  r.attention_policy = attention_policy;
  return r;
}

ContextParams RunSettings::context_params(uint64_t trained) const {
  return recipe().context_params(trained);
}

std::vector<BackendChoice> backend_choices() {
  const std::string why = cuda_unavailable_reason();
  return {{"auto", true, {}}, {"cpu", true, {}}, {"cuda", why.empty(), why}};
}

std::string cuda_unavailable_reason() {
  for (const auto& b : probe_backends())
    if (b.name == "cuda") {
      if (b.available) return {};
      return b.detail.empty() ? std::string("no usable NVIDIA GPU") : b.detail;
    }
  return "this build has no CUDA backend";
}

std::string load_backend_for(const std::string& requested) {
  if (requested != "cuda" && requested != "auto") return "cpu";
  if (!cuda_unavailable_reason().empty()) return "cpu";  // the panel says why; no log line
  return resolve_backend(requested);  // the engine's rule with a usable device (logs nothing)
}

std::string run_backend(const std::string& requested, const std::string& weights_on) {
  if (requested == "cpu" || requested == "cuda") return requested;
  return weights_on == "cuda" ? "cuda" : "cpu";
}

std::string backend_line(const std::string& used, const std::string& requested) {
  if (used == "cuda") {
    for (const auto& b : probe_backends())
      if (b.name == "cuda" && !b.detail.empty()) return "CUDA (" + b.detail + ")";
    return "CUDA";
  }
  std::string line = "CPU (reference)";
  if (requested == "auto" || requested == "cuda") {
    const std::string why = cuda_unavailable_reason();
    if (!why.empty()) line += " — CUDA unavailable: " + why;
  }
  return line;
}

std::string default_powercap_root() {
  const char* env = std::getenv("MOELAB_POWERCAP_ROOT");
  return env && *env ? env : "/sys/class/powercap";
}

bool policies_available() {
  return true;
}

std::vector<std::string> prompt_token_text(const Model& model, const std::string& prompt, bool chat,
                                           const std::string& system) {
  const Tokenizer* tok = model.tokenizer();
  if (!tok) return {};
  try {
    std::vector<int32_t> ids;
    if (!chat) {
      ids = tok->encode(prompt, /*add_special=*/true, /*parse_special=*/true);
    } else {
      // As Generator::tokenize renders a chat prompt.
      const ChatFamily family = detect_chat_family(tok->chat_template());
      if (family == ChatFamily::Unknown) return {};
      std::vector<ChatMessage> messages;
      if (!system.empty()) messages.push_back({"system", system});
      messages.push_back({"user", prompt});
      ids = tok->encode(render_chat(family, messages, /*add_generation_prompt=*/true), true, true);
    }
    std::vector<std::string> out;
    out.reserve(ids.size());
    for (int32_t id : ids) out.push_back(tok->token_to_piece(id));
    return out;
  } catch (const std::exception&) {
    return {};
  }
}

RecordedRun record_generation(Generator& gen, const RunSettings& settings_in,
                              storage::AsyncWriter& writer, const std::string& session_name,
                              const ModelIdentity& model_id,
                              const std::function<bool(const LiveToken&)>& on_token,
                              const std::string& powercap_root) {
  RunSettings settings = settings_in;
  session::ensure_seed(settings.sampling);
  const Model& model = gen.model();
  RecordedRun out;

  // The model row as the CLI writes it. A run may start before the GUI's background hash of
  // the file has finished: model_record hashes it here (the generation thread) then.
  std::optional<storage::ModelRecord> mrec;
  if (!model_id.path.empty())
    mrec = session::model_record(model, model_id.path,
                                 model_id.sha256.size() == 64 ? model_id.sha256 : std::string());

  const session::RunRecipe recipe = settings.recipe();
  const ContextParams cp = recipe.context_params(model.card().context_length);
  const GenerateParams gp = recipe.generate_params();
  // The backend the forward pass actually runs on ("cpu"/"cuda"), as `moelab-cli run` stores it.
  const std::string backend_used = run_backend(backend_name(cp.backend), model_backend(model));
  out.config = session::generate_config_json(session::generate_config(
      cp, gp, backend_used, std::string("moelab ") + MOELAB_VERSION + " (desktop lab)"));
  if (mrec) out.config["model"] = session::model_json(*mrec, model);

  // Router probabilities are recorded (F16, expert_count per MoE layer and token): the Routing
  // view colours by them (probability, margin, entropy), live and from the store.
  session::GenerationRecorder rec(writer, session_name, mrec, out.config, settings.prompt, gen,
                                  /*routing=*/true, /*routing_probs=*/true);
  out.run_id = rec.id();
  session::RunEnergy energy(open_power_meter(backend_used == "cuda", powercap_root));
  rec.set_energy(&energy);

  // Per layer / op wall time of the decode steps (single-token evaluations) for the Latency
  // view's breakdown; the op timer runs on this thread, inside the evaluations.
  const int n_layer = static_cast<int>(model.card().n_layer);
  std::vector<double> op_us(static_cast<size_t>(n_layer + 1) * kOpKindCount, 0.0);
  int64_t decode_steps = 0;
  uint32_t last_decode_pos = UINT32_MAX;
  if (on_token)
    gen.context().set_op_timer([&](const OpTime& t) {
      if (t.n_tokens != 1) return;
      const int row = t.layer >= 0 && t.layer < n_layer ? t.layer : n_layer;
      op_us[static_cast<size_t>(row) * kOpKindCount + static_cast<size_t>(t.op)] +=
          static_cast<double>(t.ns) / 1000.0;
      if (t.pos0 != last_decode_pos) {
        last_decode_pos = t.pos0;
        ++decode_steps;
      }
    });
  struct TimerOff {
    Generator& g;
    ~TimerOff() { g.context().set_op_timer(nullptr); }
  } timer_off{gen};
  auto live = [&](const TokenEvent& ev) -> bool {
    if (!on_token) return true;
    LiveToken lt;
    lt.run_id = out.run_id;
    lt.piece = ev.piece;
    if (ev.id < 0) {  // closing event: text only
      lt.index = -1;
      on_token(lt);
      return true;
    }
    lt.index = ev.index;
    lt.id = ev.id;
    lt.logprob = ev.logprob;
    lt.latency_us = ev.latency_us;
    lt.entropy = rec.last_entropy();
    lt.attention = rec.last_attention();
    if (ev.index == 0)
      lt.prompt_text = prompt_token_text(model, settings.prompt, settings.chat, settings.system);
    lt.op_us = op_us;
    lt.decode_steps = decode_steps;
    for (const auto& r : rec.last_routing()) {
      if (r.layer < 0) continue;
      const size_t l = static_cast<size_t>(r.layer);
      if (lt.experts.size() <= l) {
        lt.experts.resize(l + 1);
        lt.weights.resize(l + 1);
        lt.probs.resize(l + 1);
        lt.groups.resize(l + 1);
      }
      lt.experts[l] = r.experts;
      lt.weights[l] = r.weights;
      lt.probs[l] = r.probs;
      lt.groups[l] = r.groups;
    }
    return on_token(lt);
  };

  try {
    out.result = rec.generate(gp, energy.wrap(live));
  } catch (const storage::StorageError&) {
    throw;
  } catch (const std::exception& e) {
    out.status = storage::RunStatus::Failed;
    out.error = e.what();
    out.routing_records = static_cast<uint64_t>(rec.routing_recorded());
    out.energy = energy.finish();
    return out;
  }
  out.routing_records = static_cast<uint64_t>(rec.routing_recorded());
  out.energy = energy.finish();
  out.status = out.result.stop_reason == StopReason::Cancelled ? storage::RunStatus::Cancelled
                                                               : storage::RunStatus::Complete;
  return out;
}

}  // namespace moelab::lab
