#include "eval_common.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <span>
#include <sstream>

#include "card_format.h"
#include "checks.h"
#include "interrupt.h"
#include "moelab/core/error.h"
#include "moelab/model/model.h"
#include "moelab/policies/policies.h"
#include "moelab/tokenizer/tokenizer.h"
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
  sub->add_option("--reference", s.reference,
                  "Reference model (e.g. the dense source of a moefied model): also store the "
                  "mean KL(reference || model) per scored token as kl_vs_reference")
      ->check(CLI::ExistingFile);
}

double mean_kl_to_reference(std::shared_ptr<const Model> reference,
                            std::shared_ptr<const Model> model, const std::string& text,
                            uint32_t n_ctx, int max_chunks, int threads,
                            const RoutingPolicy& routing, const AttentionPolicy& attention) {
  const ModelCard& rc = reference->card();
  const ModelCard& mc = model->card();
  if (rc.n_vocab != mc.n_vocab)
    throw Error(ErrorKind::BadInput,
                "the reference model's vocabulary (" + std::to_string(rc.n_vocab) +
                    " tokens) differs from the model's (" + std::to_string(mc.n_vocab) + ")",
                {.subject = "--reference"});
  if (!model->tokenizer())
    throw Error(ErrorKind::BadInput, "the model has no tokenizer", {.subject = "--model"});
  std::vector<int32_t> tokens = model->tokenizer()->encode(text, true, false);
  if (n_ctx < 4 || tokens.size() < n_ctx)
    throw Error(ErrorKind::BadInput,
                "the text has " + std::to_string(tokens.size()) +
                    " tokens, fewer than one chunk of " + std::to_string(n_ctx),
                {.subject = "--reference"});
  const bool bos = model->tokenizer()->add_bos() && mc.bos_id >= 0;
  ContextParams cp;
  cp.n_ctx = n_ctx;
  cp.n_threads = threads;
  auto rctx = Context::create(reference, cp);
  cp.routing = routing;
  cp.attention = attention;
  auto mctx = Context::create(model, cp);
  int n_chunks = static_cast<int>(tokens.size() / n_ctx);
  if (max_chunks > 0) n_chunks = std::min(n_chunks, max_chunks);
  double sum = 0;
  int64_t n = 0;
  const int64_t V = mc.n_vocab;
  std::vector<double> p(V), q(V);
  auto log_softmax = [V](std::span<const float> l, std::vector<double>& out) {
    double mx = l[0];
    for (int64_t i = 1; i < V; ++i) mx = std::max(mx, static_cast<double>(l[i]));
    double s = 0;
    for (int64_t i = 0; i < V; ++i) s += std::exp(static_cast<double>(l[i]) - mx);
    const double lse = mx + std::log(s);
    for (int64_t i = 0; i < V; ++i) out[i] = static_cast<double>(l[i]) - lse;
  };
  for (int c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + static_cast<int64_t>(c) * n_ctx,
                               tokens.begin() + static_cast<int64_t>(c + 1) * n_ctx);
    if (bos) chunk[0] = static_cast<int32_t>(mc.bos_id);
    rctx->truncate(0);
    mctx->truncate(0);
    rctx->eval(chunk, true);
    mctx->eval(chunk, true);
    for (uint32_t i = n_ctx / 2; i + 1 < n_ctx; ++i) {
      log_softmax(rctx->logits(static_cast<int>(i)), p);
      log_softmax(mctx->logits(static_cast<int>(i)), q);
      double kl = 0;
      for (int64_t v = 0; v < V; ++v) kl += std::exp(p[v]) * (p[v] - q[v]);
      sum += kl;
      ++n;
    }
  }
  return n ? sum / static_cast<double>(n) : 0.0;
}

EvalOutcome run_eval(storage::AsyncWriter& writer, const std::string& session_name,
                     std::shared_ptr<const Model> model, const storage::ModelRecord& model_row,
                     const EvalSpec& spec, const std::string& text, const std::string& routing,
                     const std::string& attention,
                     const std::function<void(int, int, double)>& progress) {
  const auto rp = RoutingPolicy::parse(routing);
  const auto ap = AttentionPolicy::parse(attention);
  auto stats = std::make_shared<PolicyStats>();

  session::EvalConfig c;
  c.n_ctx = spec.n_ctx;
  c.threads = spec.threads > 0 ? spec.threads : default_threads();
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
  pp.routing = rp;
  pp.attention = ap;
  pp.policy_stats = stats;
  pp.progress = [&](int done, int total, double ppl) {
    run->metric("chunks_done", done);
    run->metric("running_ppl", ppl);
    if (progress) progress(done, total, ppl);
    return interrupt::received() == 0;  // Ctrl-C / SIGTERM: stop after this chunk
  };
  const interrupt::OnInterrupt on_signal([] {});  // received() is set; progress stops the run
  try {
    out.result = perplexity(model, text, pp);
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
  if (!spec.reference.empty()) {
    try {
      LoadOptions lo;
      lo.backend = Backend::Cpu;
      out.kl_vs_reference = mean_kl_to_reference(Model::load(spec.reference, lo), model, text,
                                                 spec.n_ctx, spec.chunks, c.threads, rp, ap);
    } catch (const std::exception& e) {
      try {
        run->finish(storage::RunStatus::Failed, {}, e.what());
      } catch (...) {
      }
      throw;
    }
  }
  with_store_errors([&] {
    session::record_perplexity(*run, out.result, c.text_sha256);
    if (out.avg_active_experts > 0) run->metric("avg_active_experts", out.avg_active_experts);
    if (out.kl_vs_reference >= 0) run->metric("kl_vs_reference", out.kl_vs_reference, "nats");
    run->finish(storage::RunStatus::Complete, {});
    return 0;
  });
  return out;
}

}  // namespace moelab::cli
