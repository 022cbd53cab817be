// moelab-cli perplexity --model FILE --file TEXT [--ctx N] [--threads N] [--chunks N] [--json]
//                       [--routing-policy SPEC]... [--attention-policy SPEC]
// With policies: one perplexity per routing policy (repeat the option), printed as a table with
// the average active experts per token - a perplexity-vs-active-experts curve in one command.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>

#include "backend_option.h"
#include "card_format.h"
#include "checks.h"
#include "cli.h"
#include "moelab/core/error.h"
#include "moelab/policies/policies.h"
#include "moelab/runtime/perplexity.h"

namespace moelab::cli {

namespace {
struct PerplexityOptions {
  std::string model;
  std::string file;
  uint32_t n_ctx = 512;
  int threads = 0;
  int chunks = 0;
  bool json = false;
  std::vector<std::string> routing;  // routing policy specs, one run each
  std::string attention;             // attention policy spec
  std::string backend = "auto";
};

int perplexity_policies(const PerplexityOptions& o, const std::string& text,
                        std::shared_ptr<const Model> model, PerplexityParams pp, Io io) {
  pp.progress = nullptr;  // one table row per policy instead
  const AttentionPolicy ap = AttentionPolicy::parse(o.attention.empty() ? "full" : o.attention);
  std::vector<std::string> specs =
      o.routing.empty() ? std::vector<std::string>{"default"} : o.routing;
  nlohmann::json runs = nlohmann::json::array();
  std::ostringstream table;
  table << std::left << std::setw(28) << "routing policy" << std::right << std::setw(14)
        << "active/token" << std::setw(12) << "PPL" << std::setw(10) << "+/-" << std::setw(10)
        << "seconds" << '\n';
  std::string method;
  for (const auto& spec : specs) {
    const RoutingPolicy rp = RoutingPolicy::parse(spec);
    auto stats = std::make_shared<PolicyStats>();
    pp.routing = rp;
    pp.attention = ap;
    pp.policy_stats = stats;
    const PerplexityResult r = perplexity(model, text, pp);
    method = r.method;
    uint64_t failovers = 0;
    for (auto f : stats->failovers) failovers += f;
    runs.push_back({{"routing_policy", rp.describe()},
                    {"attention_policy", ap.describe()},
                    {"avg_active_experts", stats->avg_active_experts()},
                    {"failovers", failovers},
                    {"ppl", r.ppl},
                    {"ppl_stderr", r.ppl_stderr},
                    {"mean_nll", r.mean_nll},
                    {"n_scored", r.n_scored},
                    {"seconds", r.seconds}});
    table << std::left << std::setw(28) << rp.describe() << std::right << std::fixed
          << std::setprecision(3) << std::setw(14) << stats->avg_active_experts()
          << std::setprecision(4) << std::setw(12) << r.ppl << std::setw(10) << r.ppl_stderr
          << std::setprecision(2) << std::setw(10) << r.seconds << '\n';
  }
  if (o.json) {
    nlohmann::json j;
    j["model"] = o.model;
    j["file"] = o.file;
    j["n_ctx"] = pp.n_ctx;
    j["threads"] = pp.n_threads;
    j["method"] = method;
    j["runs"] = runs;
    io.out << json_text(j) << '\n';
  } else {
    io.out << "method: " << method << "\nattention policy: " << ap.describe() << '\n'
           << table.str();
  }
  return kOk;
}

int perplexity_cmd(const PerplexityOptions& o, Io io) {
  // A bounded regular file of UTF-8 text; binary input is refused (checks.h).
  const std::string text = read_utf8_text(o.file);
  // Contexts follow the model's backend (ContextParams::backend Auto).
  Backend backend = Backend::Auto;
  auto model = load_for_backend(o.model, o.backend, &backend);
  preflight_context(model->card(), o.n_ctx, 4, true, backend_name(backend), "--ctx", io);
  PerplexityParams pp;
  pp.n_ctx = o.n_ctx;
  pp.n_threads = o.threads > 0 ? o.threads : default_threads();
  pp.max_chunks = o.chunks;
  if (!o.json)
    pp.progress = [&io](int done, int total, double ppl) {
      io.err << "[" << done << "/" << total << "] " << std::fixed << std::setprecision(4) << ppl
             << '\n';
      return true;
    };
  if (!o.routing.empty() || !o.attention.empty())
    return perplexity_policies(o, text, model, pp, io);
  const PerplexityResult r = perplexity(model, text, pp);
  if (o.json) {
    nlohmann::json j;
    j["model"] = o.model;
    j["file"] = o.file;
    j["ppl"] = r.ppl;
    j["ppl_stderr"] = r.ppl_stderr;
    j["mean_nll"] = r.mean_nll;
    j["n_ctx"] = r.n_ctx;
    j["n_chunks"] = r.n_chunks;
    j["n_text_tokens"] = r.n_text_tokens;
    j["n_scored"] = r.n_scored;
    j["chunk_ppl"] = r.chunk_ppl;
    j["seconds"] = r.seconds;
    j["threads"] = pp.n_threads;
    j["method"] = r.method;
    io.out << json_text(j) << '\n';
  } else {
    io.out << "method: " << r.method << '\n'
           << "text: " << r.n_text_tokens << " tokens; scored " << r.n_scored << " tokens in "
           << std::fixed << std::setprecision(2) << r.seconds << " s\n"
           << "perplexity: " << std::setprecision(4) << r.ppl << " +/- " << r.ppl_stderr << '\n';
  }
  return kOk;
}
}  // namespace

void add_perplexity(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<PerplexityOptions>();
  auto* sub = app.add_subcommand(
      "perplexity", "Perplexity of a model over a text file (llama.cpp's chunked method)");
  sub->add_option("-m,--model", o->model, "GGUF model file")->required()->check(CLI::ExistingFile);
  sub->add_option("-f,--file", o->file, "UTF-8 text file (at most 64 MiB)")->required();
  sub->add_option("-c,--ctx", o->n_ctx, "Tokens per chunk")
      ->transform(int_range(4, kMaxContext))
      ->capture_default_str();
  sub->add_option("-t,--threads", o->threads, "CPU threads (default: cores, at most 8)")
      ->transform(int_range(1, kMaxThreads));
  sub->add_option("--chunks", o->chunks, "Evaluate at most this many chunks (0: all)")
      ->transform(int_range(0, kMaxChunks));
  sub->add_flag("--json", o->json, "Print the result as one JSON object");
  sub->add_option("--routing-policy", o->routing,
                  "Routing policy (repeat for a table of perplexity vs active experts; specs as "
                  "in 'run --help')");
  sub->add_option("--attention-policy", o->attention, "Attention policy for every run");
  add_backend_option(sub, o->backend);
  sub->callback([o, io, &action] { action = [o, io] { return perplexity_cmd(*o, io); }; });
}

}  // namespace moelab::cli
