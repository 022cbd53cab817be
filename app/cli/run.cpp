// moelab-cli run --model FILE --prompt STR [-n N] [--temp T] [--top-k K] [--top-p P]
//               [--min-p P] [--seed S] [--threads N] [--ctx N] [--chat] [--json] ...
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>

#include "backend_option.h"
#include "card_format.h"
#include "checks.h"
#include "cli.h"
#include "interrupt.h"
#include "moelab/compare/compare.h"
#include "moelab/core/error.h"
#include "moelab/runtime/generator.h"
#include "moelab/session/energy.h"
#include "moelab/telemetry/power.h"
#include "remote_run.h"
#include "run_store.h"

namespace moelab::cli {

namespace {
struct RunOptions {
  std::string model;
  std::string prompt;
  std::string system;
  int32_t n_predict = 128;
  SamplerParams sampling;
  uint64_t seed = 0;
  bool seed_set = false;
  int threads = 0;
  uint32_t n_ctx = 0;
  bool chat = false;
  bool json = false;
  bool ignore_eos = false;
  bool kv_f16 = false;
  bool escape = false;  // --escape: control bytes as control pictures also when piped
  std::vector<std::string> stop;
  std::string routing_policy = "default";  // moelab/policies/policies.h specs
  std::string attention_policy = "full";
  RunStoreOptions store;  // --db / --session
  // Per-head attention stored with the run (session::AttentionCapture): layers, F32 budget.
  std::vector<int> attention_layers;
  int attention_budget_kib = 16384;
  bool attention_capture_set = false;
  std::string backend = "auto";
  RemoteRunOptions remote;  // --remote URL: run on a server instead (remote_run.cpp)
};

int run_cmd(const RunOptions& o, Io io) {
  if (o.remote.enabled()) {
    if (!o.model.empty() || o.threads || o.n_ctx || o.kv_f16 || o.backend != "auto" ||
        o.routing_policy != "default" || o.attention_policy != "full" || o.attention_capture_set)
      throw Error(ErrorKind::BadInput,
                  "--remote runs on the server: --model, --threads, --ctx, --kv-f16, --backend, "
                  "the policies and --attention-layers/-budget-kib apply to local runs only",
                  {.subject = "run"});
    RemoteRunArgs a{o.prompt, o.system,     o.chat, o.n_predict, o.sampling,
                    o.stop,   o.ignore_eos, o.json, o.store,     o.escape || io.out_is_tty};
    if (o.seed_set) a.sampling.seed = o.seed;
    return remote_run_cmd(o.remote, a, io);
  }
  if (o.model.empty())
    throw Error(ErrorKind::BadInput, "run needs --model FILE (or --remote URL)",
                {.subject = "run"});
  if (o.remote.any_given())
    throw Error(ErrorKind::BadInput,
                "--remote-model, --api-key, --routed-experts-format, --remote-top-k and "
                "--remote-timeout need --remote URL",
                {.subject = "run"});
  if (!o.system.empty() && !o.chat)
    throw Error(ErrorKind::BadInput,
                "--system needs --chat (the system message goes into the "
                "model's chat template)",
                {.subject = "run"});
  session::RunRecipe recipe;
  recipe.prompt = o.prompt;
  recipe.system = o.system;
  recipe.chat = o.chat;
  recipe.max_tokens = o.n_predict;
  recipe.sampling = o.sampling;
  if (o.seed_set) recipe.sampling.seed = o.seed;
  recipe.stop = o.stop;
  recipe.ignore_eos = o.ignore_eos;
  recipe.threads = o.threads;
  recipe.n_ctx = o.n_ctx;
  recipe.kv_f16 = o.kv_f16;
  recipe.routing_policy = o.routing_policy;
  recipe.attention_policy = o.attention_policy;
  auto model = load_for_backend(o.model, o.backend, &recipe.backend);
  const ContextParams cp = recipe.context_params(model->card().context_length);
  // One memory preflight before the KV cache is allocated; a warning beyond the trained length.
  preflight_context(model->card(), cp.n_ctx, o.kv_f16 ? 2 : 4, false, backend_name(cp.backend),
                    "--ctx", io, true);
  Generator gen(model, cp);

  GenerateParams gp = recipe.generate_params();
  if (gp.sampling.temperature > 0) warn_top_k(model->card(), gp.sampling.top_k, io);

  // The model's text: control bytes as control pictures on a terminal (or with --escape), the
  // bytes as generated to a pipe or file (GeneratedText, checks.h).
  GeneratedText text(io.out, o.escape || io.out_is_tty);
  // Each token's latency, for the decode tokens/s that compare, sessions and the reports use.
  std::vector<storage::TokenRecord> latencies;
  TokenCallback stream = [&](const TokenEvent& ev) {
    if (ev.id >= 0) {
      storage::TokenRecord t;
      t.latency_us = ev.latency_us;
      latencies.push_back(std::move(t));
    }
    if (!o.json) text.write(ev.piece);
    return true;
  };
  std::unique_ptr<storage::AsyncWriter> writer;
  std::optional<RunStore> stored;
  if (o.store.enabled()) {
    writer = open_writer(o.store.db);
    stored.emplace(*writer, o.store.session, o.model, gen, gp, cp);
    session::AttentionCapture ac;
    const int n_layer = static_cast<int>(model->card().n_layer);
    for (int l : o.attention_layers)
      if (l < 0 || l >= n_layer)
        throw Error(ErrorKind::BadInput,
                    "layer " + std::to_string(l) + " does not exist (n_layer " +
                        std::to_string(n_layer) + ")",
                    {.subject = "--attention-layers"});
    ac.layers = o.attention_layers;
    ac.budget_bytes = static_cast<size_t>(o.attention_budget_kib) << 10;
    stored->recorder().set_attention_capture(ac);
  } else if (o.attention_capture_set) {
    throw Error(ErrorKind::BadInput,
                "--attention-layers and --attention-budget-kib choose what a stored run keeps: "
                "use them with --db or --session",
                {.subject = "run"});
  }
  // Energy from the machine's sensor (RAPL for the CPU backend, NVML for CUDA;
  // MOELAB_POWERCAP_ROOT moves the powercap sysfs root, for tests); without one the reason is
  // reported, never a number.
  const char* powercap = std::getenv("MOELAB_POWERCAP_ROOT");
  session::RunEnergy energy(
      open_power_meter(cp.backend == Backend::Cuda, powercap ? powercap : "/sys/class/powercap"));
  stream = energy.wrap(stream);
  if (stored) stored->recorder().set_energy(&energy);
  // Ctrl-C / SIGTERM stop the generation: the run ends `cancelled` with the tokens it made.
  const interrupt::OnInterrupt on_signal([&gen] { gen.request_cancel(); });
  const GenerateResult r = stored ? stored->generate(gp, stream) : gen.generate(gp, stream);
  const nlohmann::json ej = energy.json();
  text.finish();
  // Decode tokens/s has one definition (compare::latency_figures: tokens 1..n-1, without the
  // first token's prefill), the figure sessions show, compare and the reports give for this run.
  const auto figures = compare::latency_figures(latencies);
  const double decode_tps = figures.decode_tokens_per_s.value_or(0.0);

  if (o.json) {
    nlohmann::json j;
    j["model"] = o.model;
    j["prompt_tokens"] = r.prompt_tokens;
    j["tokens"] = r.tokens;
    j["logprobs"] = r.logprobs;
    j["text"] = r.text;
    j["seed"] = r.seed;
    j["ttft_ms"] = r.ttft_ms;
    if (figures.decode_tokens_per_s)
      j["tokens_per_s"] = decode_tps;
    else
      j["tokens_per_s"] = nullptr;  // fewer than two tokens: no decode step was measured
    j["prefill_tokens_per_s"] = r.prefill_tokens_per_s;
    j["stop_reason"] = std::string(stop_reason_name(r.stop_reason));
    if (!r.stop_string.empty()) j["stop_string"] = r.stop_string;
    j["n_ctx"] = cp.n_ctx;
    j["threads"] = cp.n_threads;
    j["backend"] = backend_name(cp.backend);
    j["sampling"] = gp.sampling.describe();
    const PolicyStats ps = gen.context().policy_stats();
    j["routing_policy"] = cp.routing.describe();
    j["attention_policy"] = cp.attention.describe();
    if (gen.model().card().expert_count > 0) {
      j["avg_active_experts"] = ps.avg_active_experts();
      j["failovers"] = ps.failovers;
      j["overflows"] = ps.overflows;
    }
    if (cp.attention.rule == AttentionRule::Evict) j["evicted_cells"] = ps.evicted;
    for (const auto& [k, v] : ej.items()) j[k] = v;
    if (stored) j["run_id"] = stored->id();
    io.out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  } else {
    io.out << '\n';
    io.err << std::fixed << std::setprecision(1) << "[" << r.prompt_tokens.size()
           << " prompt tokens, " << r.tokens.size() << " generated; ttft " << r.ttft_ms
           << " ms; prefill " << r.prefill_tokens_per_s << " tok/s; decode ";
    if (figures.decode_tokens_per_s)
      io.err << decode_tps << " tok/s";
    else
      io.err << "-";
    io.err << "; stop: " << stop_reason_name(r.stop_reason) << "; seed " << r.seed << "; "
           << gp.sampling.describe() << "]\n";
    if (!cp.routing.is_default() || !cp.attention.is_full())
      io.err << "[routing " << cp.routing.describe() << ", attention " << cp.attention.describe()
             << "; avg active experts " << gen.context().policy_stats().avg_active_experts()
             << "]\n";
    if (ej.contains("energy_unavailable"))
      io.err << "[energy: " << ej["energy_unavailable"].get<std::string>() << "]\n";
    else if (!ej["j_per_token"].is_null())
      io.err << std::setprecision(3) << "[energy " << ej["energy_j"].get<double>() << " J; "
             << ej["j_per_token"].get<double>() << " J/token (decode)]\n";
    if (stored) io.err << "run id: " << stored->id() << '\n';
  }
  return kOk;
}
}  // namespace

void add_run(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<RunOptions>();
  auto* sub = app.add_subcommand("run", "Generate text from a prompt (streams the text)");
  auto& s = o->sampling;
  sub->add_option("-m,--model", o->model, "GGUF model file")->check(CLI::ExistingFile);
  sub->add_option("-p,--prompt", o->prompt, "Prompt text")->required();
  sub->add_option("--system", o->system, "System message (with --chat)");
  sub->add_option("-n,--n-predict", o->n_predict, "Tokens to generate at most")
      ->transform(int_range(1, kMaxPredict))
      ->capture_default_str();
  add_sampling_options(sub, s, true);
  sub->add_option_function<uint64_t>(
         "--seed",
         [o](uint64_t v) {
           o->seed = v;
           o->seed_set = true;
         },
         "Random seed (default: random, and printed so the run can be repeated)")
      ->transform(uint_range(0, UINT64_MAX));
  sub->add_option("-t,--threads", o->threads, "CPU threads (default: cores, at most 8)")
      ->transform(int_range(1, kMaxThreads));
  sub->add_option("-c,--ctx", o->n_ctx, "Context size in tokens (default: min(trained, 2048))")
      ->transform(int_range(1, kMaxContext));
  sub->add_flag("--chat", o->chat, "Wrap the prompt in the model's chat template");
  sub->add_option("--stop", o->stop, "Stop string (repeatable)");
  sub->add_flag("--ignore-eos", o->ignore_eos, "Do not stop at end-of-generation tokens");
  sub->add_flag("--kv-f16", o->kv_f16, "Store the KV cache in F16 (default F32)");
  sub->add_flag("--escape", o->escape,
                "Show control bytes of the generated text (ESC, BEL, ...) as Unicode control "
                "pictures also when stdout is a pipe or file (on a terminal they always are)");
  sub->add_option("--routing-policy", o->routing_policy,
                  "MoE routing: default | k:N | top-p:P[,min,max] | entropy:min,max | "
                  "mask:L:E,.. | fail:E,.. | capacity:C (constraints join with '+')")
      ->capture_default_str();
  sub->add_option("--attention-policy", o->attention_policy,
                  "Attention: full | window:W | local-global:W,S,G | evict:S,W")
      ->capture_default_str();
  sub->add_flag("--json", o->json,
                "Print one JSON object (tokens, text, seed, ttft_ms, tokens_per_s, stop_reason, "
                "energy_j and j_per_token - null with energy_unavailable: reason when no sensor) "
                "instead of streaming");
  add_backend_option(sub, o->backend);
  add_run_store_options(sub, o->store);
  sub->add_option_function<std::vector<int>>(
         "--attention-layers",
         [o](const std::vector<int>& v) {
           o->attention_layers = v;
           o->attention_capture_set = true;
         },
         "Layers whose attention the stored run keeps per head, prompt and generated tokens "
         "(default: every layer, within --attention-budget-kib)")
      ->delimiter(',')
      ->transform(int_range(0, 1 << 20));
  sub->add_option_function<int>(
         "--attention-budget-kib",
         [o](int v) {
           o->attention_budget_kib = v;
           o->attention_capture_set = true;
         },
         "F32 KiB of per-head attention rows the stored run keeps at most (default 16384 = "
         "16 MiB; 0: none). Layers that do not fit the prompt's rows are skipped, decode steps "
         "past the "
         "budget are dropped; both counted in the run's attention_* metrics")
      ->transform(int_range(0, 1 << 22));
  add_remote_options(sub, o->remote);
  sub->callback([o, io, &action] { action = [o, io] { return run_cmd(*o, io); }; });
}

}  // namespace moelab::cli
