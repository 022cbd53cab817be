// moelab-cli eval --model FILE --file TEXT [--ctx N] [--chunks N] [--threads N]
//                 [--routing-policy SPEC] [--attention-policy SPEC] [--db PATH] [--session NAME]
//                 [--json]
// Perplexity of a model over a text (llama.cpp's chunked method, runtime/perplexity.h), stored
// as an evaluation run: the result with its method and text sha256, per-chunk perplexities,
// and progress metrics written after every chunk (a killed evaluation keeps them).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <thread>

#include "backend_option.h"
#include "checks.h"
#include "cli.h"
#include "eval_common.h"
#include "moelab/core/error.h"
#include "store_cli.h"

namespace moelab::cli {

namespace {

struct EvalCliOptions {
  EvalSpec spec;
  std::string session = kDefaultSession;
  bool json = false;
  std::string backend = "auto";
};

int eval_cmd(const EvalCliOptions& o, Io io) {
  // Contexts follow the model's backend (ContextParams::backend Auto).
  // The text and the context are checked before anything is stored (checks.h).
  const auto text = read_utf8_text(o.spec.file);
  Backend backend = Backend::Auto;
  auto model = load_for_backend(o.spec.model, o.backend, &backend);
  preflight_context(model->card(), o.spec.n_ctx, o.spec.kv_f16 ? 2 : 4, true, backend_name(backend),
                    "--ctx", io, true);
  auto writer = open_writer(o.spec.db);
  const auto model_row = session::model_record(*model, o.spec.model);
  auto progress = [&io, json = o.json](int done, int total, double ppl) {
    if (!json)
      io.err << "[" << done << "/" << total << "] " << std::fixed << std::setprecision(4) << ppl
             << '\n';
  };
  const EvalOutcome r = run_eval(*writer, o.session, model, model_row, o.spec, text,
                                 o.spec.routing_policy, o.spec.attention_policy, progress);
  if (o.json) {
    nlohmann::json j;
    j["run_id"] = r.run_id;
    j["model"] = o.spec.model;
    j["file"] = o.spec.file;
    j["ppl"] = r.result.ppl;
    j["ppl_stderr"] = r.result.ppl_stderr;
    j["mean_nll"] = r.result.mean_nll;
    j["n_ctx"] = r.result.n_ctx;
    j["n_chunks"] = r.result.n_chunks;
    j["n_scored"] = r.result.n_scored;
    j["chunk_ppl"] = r.result.chunk_ppl;
    j["chunk_values"] = session::chunk_perplexities(r.result.chunk_ppl);
    j["method"] = r.result.method;
    j["routing_policy"] = r.routing_policy;
    j["attention_policy"] = r.attention_policy;
    j["avg_active_experts"] = r.avg_active_experts;
    io.out << json_text(j) << '\n';
  } else {
    io.out << "method: " << r.result.method << '\n'
           << "policies: routing " << r.routing_policy << ", attention " << r.attention_policy
           << '\n'
           << "perplexity: " << std::fixed << std::setprecision(4) << r.result.ppl << " +/- "
           << r.result.ppl_stderr << '\n'
           << "run id: " << r.run_id << '\n';
  }
  return kOk;
}

}  // namespace

void add_eval(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<EvalCliOptions>();
  auto* sub = app.add_subcommand(
      "eval", "Perplexity over a text file, stored as an evaluation run in the database");
  add_eval_spec_options(sub, o->spec);
  sub->add_option("--routing-policy", o->spec.routing_policy,
                  "MoE routing policy (default, k:N, top-p:P[,min,max], entropy:min,max, ...)")
      ->capture_default_str();
  sub->add_option("--attention-policy", o->spec.attention_policy,
                  "Attention policy (full, window:W, local-global:W,S,G, evict:S,W)")
      ->capture_default_str();
  add_backend_option(sub, o->backend);
  add_db_option(sub, o->spec.db);
  sub->add_option("--session", o->session, "Session the run belongs to (created when missing)")
      ->capture_default_str();
  sub->add_flag("--json", o->json, "Print the result (with run_id) as one JSON object");
  sub->callback([o, io, &action] { action = [o, io] { return eval_cmd(*o, io); }; });
}

}  // namespace moelab::cli
