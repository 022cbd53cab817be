#include "eval_common.h"

#include <algorithm>
#include <thread>

#include "checks.h"
#include "interrupt.h"
#include "moelab/core/error.h"
#include "moelab/policies/policies.h"
#include "store_cli.h"

namespace moelab::cli {

void add_eval_spec_options(CLI::App* sub, EvalSpec& s, bool file_required) {
  sub->add_option("-m,--model", s.model, "GGUF model file")->required()->check(CLI::ExistingFile);
  auto* f = sub->add_option("-f,--file", s.file, "UTF-8 text file (at most 64 MiB)");
  if (file_required) f->required();
  sub->add_option("-c,--ctx", s.n_ctx, "Tokens per perplexity chunk")
      ->transform(int_range(1, kMaxContext))
      ->capture_default_str();
  sub->add_option("-t,--threads", s.threads, "CPU threads (default: cores, at most 8)")
      ->transform(int_range(1, kMaxThreads));
  sub->add_option("--chunks", s.chunks, "Evaluate at most this many chunks (0: all)")
      ->transform(int_range(0, kMaxChunks));
  sub->add_flag("--kv-f16", s.kv_f16, "Store the KV cache in F16 (default F32)");
}

int default_cli_threads() {
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
}

EvalOutcome run_eval(storage::AsyncWriter& writer, const std::string& session_name,
                     std::shared_ptr<const Model> model, const storage::ModelRecord& model_row,
                     const EvalSpec& spec, const std::string& text, const std::string& routing,
                     const std::string& attention,
                     const std::function<void(int, int, double)>& progress) {
  const auto rp = RoutingPolicy::parse(routing);
  const auto ap = AttentionPolicy::parse(attention);
  auto stats = std::make_shared<PolicyStats>();
  auto view = with_policies(model, rp, ap, stats);

  session::EvalConfig c;
  c.n_ctx = spec.n_ctx;
  c.threads = spec.threads > 0 ? spec.threads : default_cli_threads();
  c.max_chunks = spec.chunks;
  c.kv_type = spec.kv_f16 ? "f16" : "f32";
  c.routing_policy = rp.describe();
  c.attention_policy = ap.describe();
  c.text_path = spec.file;
  c.text_sha256 = sha256_file(spec.file);
  c.build_version = build_version_string();
  auto config = session::eval_config_json(c);
  config["model"] = session::model_json(model_row, *model);

  EvalOutcome out;
  out.routing_policy = c.routing_policy;
  out.attention_policy = c.attention_policy;
  auto run = with_store_errors([&] {
    return std::make_unique<storage::RunWriter>(
        writer, session_name, model_row,
        config.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), c.text_path, "eval");
  });
  out.run_id = run->id();

  PerplexityParams pp;
  pp.n_ctx = spec.n_ctx;
  pp.n_threads = c.threads;
  pp.kv_type = spec.kv_f16 ? KvType::F16 : KvType::F32;
  pp.max_chunks = spec.chunks;
  pp.progress = [&](int done, int total, double ppl) {
    run->metric("chunks_done", done);
    run->metric("running_ppl", ppl);
    if (progress) progress(done, total, ppl);
    return interrupt::received() == 0;  // Ctrl-C / SIGTERM: stop after this chunk
  };
  const interrupt::OnInterrupt on_signal([] {});  // received() is set; progress stops the run
  try {
    out.result = perplexity(view, text, pp);
  } catch (const storage::StorageError& e) {
    rethrow_as_moelab(e);
  } catch (const std::exception& e) {
    const auto* me = dynamic_cast<const Error*>(&e);
    const bool cancelled = me && me->kind() == ErrorKind::Cancelled;
    try {
      run->finish(cancelled ? storage::RunStatus::Cancelled : storage::RunStatus::Failed, {},
                  cancelled && interrupt::received()
                      ? std::string("stopped by ") + interrupt::signal_name(interrupt::received())
                      : std::string(e.what()));
    } catch (...) {
    }
    throw;
  }
  out.avg_active_experts = stats->avg_active_experts();
  with_store_errors([&] {
    session::record_perplexity(*run, out.result, c.text_sha256);
    if (out.avg_active_experts > 0) run->metric("avg_active_experts", out.avg_active_experts);
    run->finish(storage::RunStatus::Complete, {});
    return 0;
  });
  return out;
}

}  // namespace moelab::cli
