// moelab-cli trace --model FILE (--prompt STR | --tokens IDS) [-n N] --json
//                  [--attention-layers L,..] [--attention-heads H,..] [--routing-policy SPEC]
//                  [--attention-policy SPEC]
// Greedy run with the routing, timing and (optionally) attention probes on; prints per token and
// layer {"pos", "layer", "experts", "weights", "probs"}, the per-layer routing aggregates, the
// timings and the captured attention rows as one JSON object.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>

#include "card_format.h"
#include "checks.h"
#include "cli.h"
#include "moelab/core/error.h"
#include "moelab/model/model.h"
#include "moelab/probes/probes.h"
#include "moelab/tokenizer/tokenizer.h"

namespace moelab::cli {

namespace {
struct TraceOptions {
  std::string model;
  std::string prompt;
  std::string tokens;
  int32_t n_predict = 8;
  bool json = false;
  std::vector<int> attention_layers;
  std::vector<int> attention_heads;
  bool head_mean = false;
  int64_t max_row_keys = 1024;
  std::string routing = "default";
  std::string attention = "full";
  int threads = 0;
  uint32_t n_ctx = 0;
};

int trace_cmd(const TraceOptions& o, Io io) {
  auto model = Model::load(o.model);
  const ModelCard& c = model->card();
  std::vector<int32_t> prompt;
  if (!o.tokens.empty()) {
    prompt = parse_token_ids(o.tokens, "--tokens", c.n_vocab);
  } else {
    if (!model->tokenizer())
      throw Error(ErrorKind::BadInput, "the model has no tokenizer: use --tokens",
                  {.file = o.model});
    prompt = model->tokenizer()->encode(o.prompt, true, true);
  }
  for (int l : o.attention_layers)
    if (l < 0 || l >= static_cast<int>(c.n_layer))
      throw Error(ErrorKind::BadInput,
                  "layer " + std::to_string(l) + " does not exist (n_layer " +
                      std::to_string(c.n_layer) + ")",
                  {.subject = "--attention-layers"});
  for (int h : o.attention_heads)
    if (h < 0 || h >= static_cast<int>(c.n_head))
      throw Error(
          ErrorKind::BadInput,
          "head " + std::to_string(h) + " does not exist (n_head " + std::to_string(c.n_head) + ")",
          {.subject = "--attention-heads"});
  ContextParams cp;
  // The same cap and memory preflight as run: --ctx is range-checked at parse time, the
  // default (prompt + n) here.
  const uint64_t n_ctx = o.n_ctx ? o.n_ctx : prompt.size() + static_cast<uint64_t>(o.n_predict);
  if (n_ctx > static_cast<uint64_t>(kMaxContext))
    throw Error(ErrorKind::BadInput,
                "the prompt (" + std::to_string(prompt.size()) + " tokens) and -n " +
                    std::to_string(o.n_predict) + " need a context of " + std::to_string(n_ctx) +
                    " tokens, more than the " + std::to_string(kMaxContext) + " moelab allows",
                {.subject = "--ctx"});
  preflight_context(c, n_ctx, 4, false, "cpu", "--ctx", io);
  cp.n_ctx = static_cast<uint32_t>(n_ctx);
  cp.n_threads = o.threads > 0 ? o.threads : default_threads();
  cp.routing = RoutingPolicy::parse(o.routing);
  cp.attention = AttentionPolicy::parse(o.attention);
  auto ctx = Context::create(model, cp);
  ProbeHub hub(*ctx);
  std::shared_ptr<RoutingProbe> routing;
  if (c.expert_count > 0) {
    routing = std::make_shared<RoutingProbe>(c.n_layer, c.expert_count, true,
                                             router_scores_of(c.router_gating));
    hub.add(routing);
  }
  auto timing = std::make_shared<TimingProbe>(c.n_layer);
  hub.add(timing);
  std::shared_ptr<AttentionProbe> attn;
  if (!o.attention_layers.empty()) {
    AttentionProbeOptions ao;
    ao.layers = o.attention_layers;
    ao.heads = o.attention_heads;
    ao.head_mean = o.head_mean;
    ao.max_row_keys = o.max_row_keys;
    attn = std::make_shared<AttentionProbe>(c.n_layer, c.n_head, ao);
    hub.add(attn);
  }
  std::vector<int32_t> generated;
  hub.eval(prompt);
  for (int i = 0; i < o.n_predict; ++i) {
    const auto l = ctx->logits();
    const int32_t next = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
    generated.push_back(next);
    if (i + 1 == o.n_predict) break;
    hub.eval({&next, 1});
  }

  nlohmann::json j;
  j["model"] = o.model;
  j["prompt_tokens"] = prompt;
  j["tokens"] = generated;
  j["routing_policy"] = ctx->routing_policy().describe();
  j["attention_policy"] = ctx->attention_policy().describe();
  const PolicyStats ps = ctx->policy_stats();
  j["avg_active_experts"] = ps.avg_active_experts();
  j["failovers"] = ps.failovers;
  j["overflows"] = ps.overflows;
  j["evicted"] = ps.evicted;
  nlohmann::json recs = nlohmann::json::array();
  if (routing)
    for (size_t i = 0; i < routing->size(); ++i) {
      const auto r = routing->record(i);
      recs.push_back({{"pos", r.pos},
                      {"layer", r.layer},
                      {"experts", std::vector<int32_t>(r.experts.begin(), r.experts.end())},
                      {"weights", std::vector<float>(r.weights.begin(), r.weights.end())},
                      {"probs", std::vector<float>(r.probs.begin(), r.probs.end())},
                      {"entropy", r.entropy},
                      {"top1_margin", r.top1_margin}});
    }
  j["routing"] = recs;
  nlohmann::json ls = nlohmann::json::array();
  if (routing)
    for (const auto& s : routing->layer_stats())
      ls.push_back({{"layer", s.layer},
                    {"tokens", s.tokens},
                    {"load", s.load},
                    {"coverage", s.coverage},
                    {"coactivation", s.coactivation},
                    {"mean_entropy", s.mean_entropy},
                    {"load_cv", s.load_cv},
                    {"avg_active", s.avg_active}});
  j["routing_layers"] = ls;
  nlohmann::json t;
  t["clock"] = "steady_clock";
  t["unit"] = "us";
  t["ttft_us"] = timing->ttft_us();
  t["tpot_us"] = timing->tpot_us();
  nlohmann::json evals = nlohmann::json::array();
  for (const auto& e : timing->evals()) {
    nlohmann::json ops;
    for (int k = 0; k < kOpKindCount; ++k) ops[op_kind_name(static_cast<OpKind>(k))] = e.op_us[k];
    evals.push_back(
        {{"pos0", e.pos0}, {"n_tokens", e.n_tokens}, {"total_us", e.total_us}, {"ops_us", ops}});
  }
  t["evals"] = evals;
  nlohmann::json layers = nlohmann::json::array();
  const auto& pl = timing->per_layer_us();
  for (size_t il = 0; il < pl.size(); ++il) {
    nlohmann::json ops;
    for (int k = 0; k < kOpKindCount; ++k) ops[op_kind_name(static_cast<OpKind>(k))] = pl[il][k];
    layers.push_back({{"layer", il + 1 == pl.size() ? -1 : static_cast<int>(il)}, {"ops_us", ops}});
  }
  t["layers"] = layers;
  j["timing"] = t;
  if (attn) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : attn->rows()) {
      nlohmann::json row{{"layer", r.layer},   {"head", r.head},         {"pos", r.pos},
                         {"n_keys", r.n_keys}, {"bin_size", r.bin_size}, {"probs", r.probs}};
      if (!r.key_pos.empty()) row["key_pos"] = r.key_pos;
      rows.push_back(std::move(row));
    }
    nlohmann::json hs = nlohmann::json::array();
    for (const auto& s : attn->head_stats())
      hs.push_back({{"layer", s.layer},
                    {"head", s.head},
                    {"rows", s.rows},
                    {"entropy", s.entropy},
                    {"sink_share", s.sink_share},
                    {"local_share", s.local_share},
                    {"distant_share", s.distant_share}});
    j["attention"] = {{"rows", rows}, {"heads", hs}, {"dropped_rows", attn->dropped_rows()}};
  }
  if (o.json) {
    io.out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  } else {
    io.out << "trace: " << prompt.size() << " prompt tokens, " << generated.size()
           << " generated; ttft " << timing->ttft_us() << " us, tpot " << timing->tpot_us()
           << " us; avg active experts " << ps.avg_active_experts() << " (use --json for the "
           << "records)\n";
  }
  return kOk;
}
}  // namespace

void add_trace(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<TraceOptions>();
  auto* sub = app.add_subcommand(
      "trace", "Greedy run with probes: routing per token and layer, timings, attention rows");
  sub->add_option("-m,--model", o->model, "GGUF model file")->required()->check(CLI::ExistingFile);
  auto* p = sub->add_option("-p,--prompt", o->prompt, "Prompt text");
  auto* t = sub->add_option("--tokens", o->tokens, "Prompt token ids, comma-separated");
  p->excludes(t);
  sub->add_option("-n,--n-predict", o->n_predict, "Greedy tokens to generate")
      ->transform(int_range(0, kMaxPredict))
      ->capture_default_str();
  sub->add_flag("--json", o->json, "Print one JSON object");
  sub->add_option("--attention-layers", o->attention_layers, "Layers whose attention to capture")
      ->delimiter(',')
      ->transform(int_range(0, 1 << 20));
  sub->add_option("--attention-heads", o->attention_heads, "Heads to capture (default: all)")
      ->delimiter(',')
      ->transform(int_range(0, 1 << 20));
  sub->add_flag("--head-mean", o->head_mean, "Capture the mean over the chosen heads");
  sub->add_option("--max-row-keys", o->max_row_keys,
                  "Rows over more keys are stored as this many summed bins")
      ->transform(int_range(1, kMaxContext))
      ->capture_default_str();
  sub->add_option("--routing-policy", o->routing, "Routing policy (see 'run --help')")
      ->capture_default_str();
  sub->add_option("--attention-policy", o->attention, "Attention policy (see 'run --help')")
      ->capture_default_str();
  sub->add_option("-t,--threads", o->threads, "CPU threads (default: cores, at most 8)")
      ->transform(int_range(1, kMaxThreads));
  sub->add_option("-c,--ctx", o->n_ctx, "KV cache size (default: prompt + n)")
      ->transform(int_range(1, kMaxContext));
  sub->callback([o, io, &action, p, t] {
    if (p->count() == 0 && t->count() == 0)
      throw CLI::ValidationError("trace", "one of --prompt or --tokens is required");
    action = [o, io] { return trace_cmd(*o, io); };
  });
}

}  // namespace moelab::cli
