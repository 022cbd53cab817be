// moelab-cli sweep --model FILE (--prompt STR | --file TEXT)
//                  --routing-policy k:1,k:2,top-p:0.5 [--attention-policy full,window:64]
//                  [--seeds 1,2,3] --db PATH --session NAME [generation / eval options] [--json]
// Runs one prompt (generation) or one text (perplexity) over every combination of the given
// routing policies, attention policies and seeds, stores all runs in ONE session, prints a
// summary table and the comparison of each configuration against the first (groups over seeds:
// pooled bootstrap CI of TPOT, metric means, perplexity, routing divergence, seed stability).
#include <CLI/CLI.hpp>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>

#include "card_format.h"
#include "checks.h"
#include "cli.h"
#include "eval_common.h"
#include "interrupt.h"
#include "moelab/core/error.h"
#include "moelab/policies/policies.h"
#include "moelab/session/group_compare.h"
#include "store_cli.h"

namespace moelab::cli {

std::vector<std::string> split_policy_list(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (const auto& arg : args) {
    size_t start = 0;
    bool first = true;
    while (start <= arg.size()) {
      size_t comma = arg.find(',', start);
      if (comma == std::string::npos) comma = arg.size();
      std::string piece = arg.substr(start, comma - start);
      const bool cont = !first && !piece.empty() && !out.empty() &&
                        (std::isdigit(static_cast<unsigned char>(piece[0])) || piece[0] == '.' ||
                         piece[0] == '-' || piece[0] == '*');
      if (cont)
        out.back() += "," + piece;
      else if (!piece.empty())
        out.push_back(piece);
      first = false;
      start = comma + 1;
    }
  }
  return out;
}

namespace {

struct SweepOptions {
  EvalSpec spec;  // model, file, ctx, threads, chunks, kv_f16, db
  std::string prompt;
  std::string session;
  std::vector<std::string> routing = {"default"};
  std::vector<std::string> attention = {"full"};
  std::vector<uint64_t> seeds;
  int32_t n_predict = 64;
  SamplerParams sampling;
  bool chat = false;
  bool ignore_eos = false;
  bool json = false;
  int resamples = 10000;
};

struct Config {
  std::string routing, attention;            // canonical specs (describe())
  std::string routing_spec, attention_spec;  // as given (parsed again for each Generator)
  std::vector<int64_t> runs;
};

std::string fmt(double v, const char* spec = "%.4g") {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, spec, v);
  return buf;
}

std::optional<double> metric_of(const std::vector<storage::MetricRecord>& m,
                                const std::string& key) {
  for (const auto& x : m)
    if (x.key == key) return x.value;
  return std::nullopt;
}

int sweep_cmd(const SweepOptions& o, Io io) {
  const bool eval_mode = o.prompt.empty();
  if (eval_mode && o.spec.file.empty())
    throw Error(ErrorKind::BadInput, "give --prompt (generation) or --file (perplexity)",
                {.subject = "sweep"});
  if (!eval_mode && !o.spec.file.empty())
    throw Error(ErrorKind::BadInput, "give either --prompt or --file, not both",
                {.subject = "sweep"});
  const auto routing = split_policy_list(o.routing);
  const auto attention = split_policy_list(o.attention);
  if (routing.empty() || attention.empty())
    throw Error(ErrorKind::BadInput, "the policy lists are empty", {.subject = "sweep"});
  // Parse everything first: a typo must fail before the first run.
  std::vector<Config> configs;
  for (const auto& r : routing)
    for (const auto& a : attention)
      configs.push_back(
          {RoutingPolicy::parse(r).describe(), AttentionPolicy::parse(a).describe(), r, a, {}});
  // A configuration or seed given twice would be compared with itself and show a fake
  // "seed stability" or "no difference".
  for (size_t i = 0; i < configs.size(); ++i)
    for (size_t k = 0; k < i; ++k)
      if (configs[i].routing == configs[k].routing && configs[i].attention == configs[k].attention)
        throw Error(ErrorKind::BadInput,
                    "the configuration routing " + configs[i].routing + ", attention " +
                        configs[i].attention + " is given twice; each must appear once",
                    {.subject = "--routing-policy/--attention-policy"});
  require_unique(o.seeds, "--seeds", "seed");
  if (eval_mode && o.seeds.size() > 1)
    io.err << "warning: --seeds is ignored with --file (perplexity does not sample)\n";
  std::vector<uint64_t> seeds = o.seeds;
  if (seeds.empty()) {
    SamplerParams s = o.sampling;
    seeds.push_back(session::ensure_seed(s));  // one seed shared by every configuration
  }
  if (eval_mode) seeds.resize(1);  // perplexity does not sample

  // The text and the context are checked before anything is stored (checks.h).
  const std::string text = eval_mode ? read_utf8_text(o.spec.file) : std::string();
  auto model = Model::load(o.spec.model);
  {
    const uint64_t trained = model->card().context_length;
    const uint64_t n_ctx = eval_mode || o.spec.n_ctx ? o.spec.n_ctx : default_n_ctx(trained);
    if (!eval_mode && o.sampling.temperature > 0) warn_top_k(model->card(), o.sampling.top_k, io);
    preflight_context(model->card(), n_ctx, o.spec.kv_f16 ? 2 : 4, eval_mode, "cpu", "--ctx", io,
                      true);
  }
  const std::string db = db_or_default(o.spec.db);
  auto writer = open_writer(db);
  const auto model_row = session::model_record(*model, o.spec.model);
  const int threads = o.spec.threads > 0 ? o.spec.threads : default_threads();
  const size_t total = configs.size() * seeds.size();
  size_t done = 0;
  // Ctrl-C / SIGTERM: the run in progress ends `cancelled` with what it made, no further run
  // starts, and the summary covers the runs stored so far.
  std::mutex current_mu;
  Generator* current = nullptr;
  const interrupt::OnInterrupt on_signal([&] {
    std::lock_guard lock(current_mu);
    if (current) current->request_cancel();
  });

  for (auto& c : configs) {
    if (interrupt::received()) break;
    if (eval_mode) {
      const auto r = run_eval(*writer, o.session, model, model_row, o.spec, text, c.routing_spec,
                              c.attention_spec);
      c.runs.push_back(r.run_id);
      if (!o.json)
        io.err << "[" << ++done << "/" << total << "] routing " << c.routing << ", attention "
               << c.attention << ": perplexity " << fmt(r.result.ppl, "%.4f") << " (run "
               << r.run_id << ")\n";
      continue;
    }
    session::RunRecipe recipe;  // as `run` derives its parameters
    recipe.prompt = o.prompt;
    recipe.chat = o.chat;
    recipe.max_tokens = o.n_predict;
    recipe.sampling = o.sampling;
    recipe.ignore_eos = o.ignore_eos;
    recipe.threads = threads;
    recipe.n_ctx = o.spec.n_ctx;
    recipe.kv_f16 = o.spec.kv_f16;
    recipe.routing_policy = c.routing_spec;
    recipe.attention_policy = c.attention_spec;
    const ContextParams cp = recipe.context_params(model->card().context_length);
    Generator gen(model, cp);
    struct Current {  // `current` names gen while it exists
      std::mutex& mu;
      Generator*& cur;
      Current(std::mutex& m, Generator*& c, Generator* g) : mu(m), cur(c) {
        std::lock_guard lock(mu);
        cur = g;
      }
      ~Current() {
        std::lock_guard lock(mu);
        cur = nullptr;
      }
    } named(current_mu, current, &gen);
    for (uint64_t seed : seeds) {
      if (interrupt::received()) break;
      recipe.sampling.seed = seed;
      GenerateParams gp = recipe.generate_params();
      RunStore stored(*writer, o.session, o.spec.model, gen, gp, cp, model_row);
      const auto r = stored.generate(gp, {});
      c.runs.push_back(stored.id());
      if (!o.json)
        io.err << "[" << ++done << "/" << total << "] routing " << c.routing << ", attention "
               << c.attention << ", seed " << seed << ": " << r.tokens.size() << " tokens, "
               << fmt(r.tokens_per_s, "%.1f") << " tok/s (run " << stored.id() << ")\n";
    }
  }
  with_store_errors([&] {
    writer->flush();
    return 0;
  });

  // Summary and comparisons, read back from the store.
  const auto store = with_store_errors([&] { return open_existing_store(db); });
  compare::CompareOptions co;
  co.resamples = o.resamples;
  // Each configuration (A) against the first one (B, the baseline): deltas are A - B.
  std::vector<session::GroupComparison> cmps;
  for (size_t i = 1; i < configs.size(); ++i)
    cmps.push_back(with_store_errors(
        [&] { return session::compare_groups(*store, configs[i].runs, configs[0].runs, co); }));
  const auto sess = store->session_by_name(o.session);

  if (o.json) {
    nlohmann::json j;
    j["session"] = o.session;
    j["session_id"] = sess ? sess->id : 0;
    j["kind"] = eval_mode ? "eval" : "generate";
    j["seeds"] = seeds;
    auto jc = nlohmann::json::array();
    for (const auto& c : configs) {
      auto runs = nlohmann::json::array();
      for (int64_t id : c.runs) {
        const auto rr = store->run(id);
        nlohmann::json m = nlohmann::json::object();
        for (const auto& x : store->metrics(id)) m[x.key] = x.value;
        runs.push_back({{"run_id", id},
                        {"n_tokens", rr ? rr->n_tokens : 0},
                        {"status", rr ? storage::status_name(rr->status) : "missing"},
                        {"metrics", m}});
      }
      jc.push_back(
          {{"routing_policy", c.routing}, {"attention_policy", c.attention}, {"runs", runs}});
    }
    j["configs"] = jc;
    auto jv = nlohmann::json::array();
    for (const auto& c : cmps) jv.push_back(session::to_json(c));
    j["compare_vs_first"] = jv;
    io.out << json_text(j) << '\n';
    return kOk;
  }

  auto& out = io.out;
  out << "session '" << o.session << "' (id " << (sess ? sess->id : 0) << "): " << total
      << " runs, " << configs.size() << " configurations"
      << (eval_mode ? "" : ", " + std::to_string(seeds.size()) + " seed(s)") << "\n\n";
  char line[512];
  if (eval_mode)
    std::snprintf(line, sizeof line, "%-6s %-22s %-18s %10s %10s %9s %9s\n", "run", "routing",
                  "attention", "ppl", "+/-", "experts", "tok/s");
  else
    std::snprintf(line, sizeof line, "%-6s %-22s %-18s %20s %7s %9s %9s %9s %8s\n", "run",
                  "routing", "attention", "seed", "tokens", "tok/s", "ttft ms", "tpot ms",
                  "experts");
  out << line;
  for (const auto& c : configs)
    for (size_t s = 0; s < c.runs.size(); ++s) {
      const int64_t id = c.runs[s];
      const auto m = store->metrics(id);
      auto v = [&](const char* k) { return metric_of(m, k).value_or(NAN); };
      if (eval_mode) {
        std::snprintf(line, sizeof line, "%-6lld %-22s %-18s %10s %10s %9s %9s\n",
                      static_cast<long long>(id), c.routing.c_str(), c.attention.c_str(),
                      fmt(v("ppl"), "%.4f").c_str(), fmt(v("ppl_stderr"), "%.4f").c_str(),
                      fmt(v("avg_active_experts"), "%.2f").c_str(),
                      fmt(v("eval_tokens_per_s"), "%.1f").c_str());
      } else {
        const auto toks = store->tokens(id);
        double lat = 0;
        for (const auto& t : toks) lat += static_cast<double>(t.latency_us) / 1000.0;
        std::snprintf(
            line, sizeof line, "%-6lld %-22s %-18s %20llu %7zu %9s %9s %9s %8s\n",
            static_cast<long long>(id), c.routing.c_str(), c.attention.c_str(),
            static_cast<unsigned long long>(seeds[s]), toks.size(),
            fmt(v("tokens_per_s"), "%.1f").c_str(), fmt(v("ttft_ms"), "%.2f").c_str(),
            toks.empty() ? "-" : fmt(lat / static_cast<double>(toks.size()), "%.3f").c_str(),
            fmt(v("avg_active_experts"), "%.2f").c_str());
      }
      out << line;
    }

  if (!cmps.empty())
    out << "\ncompared with the first configuration (routing " << configs[0].routing
        << ", attention " << configs[0].attention << "):\n";
  for (size_t i = 0; i < cmps.size(); ++i) {
    const auto& c = cmps[i];
    out << "  routing " << configs[i + 1].routing << ", attention " << configs[i + 1].attention
        << ":\n";
    if (c.perplexity_mean)
      out << "    perplexity " << fmt(c.perplexity_mean->b, "%.4f") << " -> "
          << fmt(c.perplexity_mean->a, "%.4f") << " (" << fmt(100 * c.perplexity_mean->rel, "%+.2f")
          << "%)\n";
    if (c.tpot_ms)
      out << "    TPOT " << fmt(c.tpot_ms->mean_b, "%.3f") << " -> "
          << fmt(c.tpot_ms->mean_a, "%.3f") << " ms, diff " << fmt(c.tpot_ms->diff, "%+.3f")
          << " ms, " << fmt(100 * c.tpot_ms->level, "%.0f") << "% CI ["
          << fmt(c.tpot_ms->lo, "%+.3f") << ", " << fmt(c.tpot_ms->hi, "%+.3f") << "]\n";
    for (const auto& r : c.metrics)
      if ((r.key == "avg_active_experts" || r.key == "tokens_per_s") && r.a.n && r.b.n)
        out << "    " << r.key << " " << fmt(r.b.mean) << " -> " << fmt(r.a.mean) << " ("
            << fmt(100 * r.delta.rel, "%+.1f") << "%)\n";
    if (!c.routing.empty()) {
      double js = 0;
      for (const auto& l : c.routing) js += l.js;
      out << "    routing JS divergence (mean over " << c.routing.size() << " layers) "
          << fmt(js / static_cast<double>(c.routing.size()), "%.4f") << '\n';
    }
    if (!eval_mode) {
      // Output agreement between the runs of the same seed.
      double sim = 0;
      size_t n = 0;
      for (size_t s = 0; s < c.a_ids.size() && s < c.b_ids.size(); ++s) {
        auto ta = store->tokens(c.a_ids[s]), tb = store->tokens(c.b_ids[s]);
        std::vector<int32_t> a, b;
        for (const auto& t : ta) a.push_back(t.id);
        for (const auto& t : tb) b.push_back(t.id);
        sim += compare::summarize(compare::token_diff(a, b), a.size(), b.size()).similarity;
        ++n;
      }
      if (n)
        out << "    output similarity (same seed, token level) "
            << fmt(sim / static_cast<double>(n), "%.3f") << '\n';
    }
  }
  if (!eval_mode && seeds.size() > 1) {
    out << "\nseed stability (" << seeds.size() << " seeds):\n";
    for (size_t i = 0; i < configs.size(); ++i) {
      const auto& s = i == 0 ? (cmps.empty() ? session::compare_groups(*store, configs[0].runs,
                                                                       configs[0].runs, co)
                                                   .stability_b
                                             : cmps[0].stability_b)
                             : cmps[i - 1].stability_a;
      double cv = NAN;
      for (const auto& m : s.metrics)
        if (m.key == "tokens_per_s") cv = m.cv;
      out << "  routing " << configs[i].routing << ", attention " << configs[i].attention << ": "
          << s.distinct_outputs << " distinct outputs of " << s.n_runs << ", identical pairs "
          << fmt(100 * s.identical_pairs, "%.0f") << "%, mean similarity "
          << fmt(s.mean_similarity, "%.3f") << ", tokens/s CV " << fmt(100 * cv, "%.1f") << "%\n";
    }
  }
  return kOk;
}

}  // namespace

void add_sweep(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<SweepOptions>();
  auto* sub = app.add_subcommand(
      "sweep",
      "Run one prompt or text over a list of routing/attention policies and seeds, "
      "stored as one session, with a comparison against the first configuration");
  add_eval_spec_options(sub, o->spec, false);
  sub->add_option("-p,--prompt", o->prompt, "Prompt (generation runs)");
  sub->add_option("--routing-policy", o->routing,
                  "Routing policies, comma-separated or repeated (e.g. k:1,k:2,top-p:0.5)");
  sub->add_option("--attention-policy", o->attention,
                  "Attention policies, comma-separated or repeated (e.g. full,window:64)");
  sub->add_option("--seeds", o->seeds,
                  "Seeds, comma-separated (generation; default: one random "
                  "seed shared by every configuration)")
      ->delimiter(',')
      ->transform(uint_range(0, UINT64_MAX));
  sub->add_option("-n,--n-predict", o->n_predict, "Tokens to generate at most per run")
      ->transform(int_range(1, kMaxPredict))
      ->capture_default_str();
  auto& s = o->sampling;
  add_sampling_options(sub, s, false);
  sub->add_flag("--chat", o->chat, "Wrap the prompt in the model's chat template");
  sub->add_flag("--ignore-eos", o->ignore_eos, "Do not stop at end-of-generation tokens");
  add_db_option(sub, o->spec.db);
  sub->add_option("--session", o->session,
                  "Session that receives every run (created when "
                  "missing)")
      ->required();
  sub->add_option("--resamples", o->resamples, "Bootstrap resamples for the comparisons")
      ->transform(int_range(100, 1000000));
  sub->add_flag("--json", o->json, "Print the summary and comparisons as JSON");
  sub->callback([o, io, &action] {
    // --ctx means the generation context here unless --file is used (then: perplexity chunk).
    action = [o, io] { return sweep_cmd(*o, io); };
  });
}

}  // namespace moelab::cli
