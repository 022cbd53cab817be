// moelab-cli bench-serve URL --model NAME -n N -c C --prompts FILE [--max-tokens M] ...
//
// A bounded load generator for OpenAI-compatible servers: N streamed completions, at most C at
// once, prompts taken in turn from FILE (one per line). Per request it measures, client-side,
// TTFT (request sent -> first token), TPOT (mean time between later tokens), end-to-end time
// and the request's decode rate; it prints their distributions (mean, p50, p90, p99) and the
// aggregate throughput. With --db/--session every request is stored as a run (kind
// "bench-serve", metrics ttft_ms, tpot_ms, e2e_ms, tokens_per_s, generated_tokens), so two
// serving configurations compare with `moelab-cli compare --a <ids> --b <ids>` (bootstrap
// confidence intervals). Memory is bounded: per request only its metrics are kept.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <thread>

#include "checks.h"
#include "cli.h"
#include "interrupt.h"
#include "moelab/core/error.h"
#include "moelab/remote/client.h"
#include "moelab/session/session.h"
#include "run_store.h"
#include "store_cli.h"

namespace moelab::cli {

namespace {
using json = nlohmann::json;

struct BenchOptions {
  std::string url, model, api_key, prompts;
  int n = 16;
  int concurrency = 1;
  int32_t max_tokens = 64;
  SamplerParams sampling;
  uint64_t seed = 0;
  bool seed_set = false;
  bool ignore_eos = false;
  double timeout_s = 120;
  bool json = false;
  RunStoreOptions store;
};

struct Sample {
  bool ok = false;
  double ttft_ms = 0, tpot_ms = 0, e2e_ms = 0, tokens_per_s = 0;
  int64_t tokens = 0;
  int64_t run_id = 0;
  std::string error;
};

// Type-7 quantile (linear interpolation) of a sorted sample.
double quantile(const std::vector<double>& s, double p) {
  if (s.empty()) return 0;
  const double h = (static_cast<double>(s.size()) - 1) * p;
  const auto lo = static_cast<size_t>(std::floor(h));
  const size_t hi = std::min(lo + 1, s.size() - 1);
  return s[lo] + (h - static_cast<double>(lo)) * (s[hi] - s[lo]);
}

json summary(std::vector<double> v) {
  if (v.empty()) return nullptr;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  return {{"n", v.size()},
          {"mean", sum / static_cast<double>(v.size())},
          {"p50", quantile(v, 0.5)},
          {"p90", quantile(v, 0.9)},
          {"p99", quantile(v, 0.99)},
          {"min", v.front()},
          {"max", v.back()}};
}

int bench_cmd(const BenchOptions& o, Io io) {
  (void)remote::parse_endpoint_url(o.url);
  std::vector<std::string> prompts;
  {
    std::istringstream in(read_utf8_text(o.prompts));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) prompts.push_back(line);
    }
  }
  if (prompts.empty())
    throw Error(ErrorKind::BadInput, "no prompts (one per line) in " + o.prompts,
                {.file = o.prompts});

  std::unique_ptr<storage::AsyncWriter> writer;
  if (o.store.enabled()) writer = open_writer(o.store.db);
  const std::string session = o.store.session.empty() ? kDefaultSession : o.store.session;

  remote::Endpoint ep;
  ep.url = o.url;
  ep.api_key = o.api_key;
  ep.read_timeout_s = o.timeout_s;
  ep.connect_timeout_s = std::min(10.0, o.timeout_s);

  std::vector<Sample> samples(static_cast<size_t>(o.n));
  std::atomic<int> next{0};
  std::atomic<bool> stop{false};
  std::mutex store_mu;  // store errors are reported once
  std::string store_error;
  const interrupt::OnInterrupt on_signal([&stop] { stop = true; });
  const auto t0 = std::chrono::steady_clock::now();
  const auto worker = [&] {
    for (;;) {
      const int i = next.fetch_add(1);
      if (i >= o.n || stop.load()) return;
      remote::RemoteRequest rq;
      rq.model = o.model;
      rq.prompt = prompts[static_cast<size_t>(i) % prompts.size()];
      rq.max_tokens = o.max_tokens;
      rq.sampling = o.sampling;
      if (o.seed_set) rq.sampling.seed = o.seed + static_cast<uint64_t>(i);
      session::ensure_seed(rq.sampling);
      rq.ignore_eos = o.ignore_eos;
      const remote::RemoteResult r = remote::stream_completion(ep, rq, {}, &stop);
      Sample& s = samples[static_cast<size_t>(i)];
      s.ok = r.error.empty();
      s.error = r.error;
      s.e2e_ms = r.total_ms;
      s.ttft_ms = r.ttft_ms;
      for (const auto& c : r.chunks)
        s.tokens += std::max<int64_t>(1, static_cast<int64_t>(c.token_ids.size()));
      if (r.completion_tokens) s.tokens = *r.completion_tokens;
      if (r.chunks.size() > 1 && s.tokens > 1) {
        s.tpot_ms =
            (r.chunks.back().t_ms - r.chunks.front().t_ms) / static_cast<double>(s.tokens - 1);
        s.tokens_per_s = s.tpot_ms > 0 ? 1000.0 / s.tpot_ms : 0;
      }
      if (!writer) continue;
      try {
        json config = {
            {"kind", "bench-serve"},
            {"engine", "remote"},
            {"backend", "remote"},
            {"sampling", session::sampling_json(rq.sampling)},
            {"seed", *rq.sampling.seed},
            {"max_tokens", o.max_tokens},
            {"ignore_eos", o.ignore_eos},
            {"build", build_version_string()},
            {"remote",
             {{"url", o.url}, {"requested_model", o.model}, {"served_model", r.served_model}}},
            {"bench",
             {{"request", i},
              {"requests", o.n},
              {"concurrency", o.concurrency},
              {"prompts", o.prompts}}}};
        storage::RunWriter run(*writer, session, std::nullopt, config.dump(), rq.prompt,
                               "bench-serve");
        s.run_id = run.id();
        if (!r.chunks.empty()) run.metric("ttft_ms", s.ttft_ms, "ms");
        if (s.tpot_ms > 0) {
          run.metric("tpot_ms", s.tpot_ms, "ms");
          run.metric("tokens_per_s", s.tokens_per_s, "tokens/s");
        }
        run.metric("e2e_ms", s.e2e_ms, "ms");
        run.metric("generated_tokens", static_cast<double>(s.tokens));
        if (r.prompt_tokens) run.metric("prompt_tokens", static_cast<double>(*r.prompt_tokens));
        run.finish(s.ok ? storage::RunStatus::Complete
                        : (r.error == "cancelled" ? storage::RunStatus::Cancelled
                                                  : storage::RunStatus::Failed),
                   r.text, r.error);
      } catch (const storage::StorageError& e) {
        std::lock_guard lk(store_mu);
        if (store_error.empty()) store_error = e.what();
        stop = true;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int c = 0; c < o.concurrency; ++c) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!store_error.empty())
    throw Error(ErrorKind::Io, "storing the bench runs failed: " + store_error);

  std::vector<double> ttft, tpot, e2e, tps;
  int failed = 0, sent = 0;
  int64_t tokens = 0;
  std::string first_error;
  json ids = json::array();
  for (int i = 0; i < std::min(o.n, next.load()); ++i) {
    const Sample& s = samples[static_cast<size_t>(i)];
    ++sent;
    if (s.run_id) ids.push_back(s.run_id);
    if (!s.ok) {
      ++failed;
      if (first_error.empty()) first_error = s.error;
      continue;
    }
    tokens += s.tokens;
    ttft.push_back(s.ttft_ms);
    e2e.push_back(s.e2e_ms);
    if (s.tpot_ms > 0) {
      tpot.push_back(s.tpot_ms);
      tps.push_back(s.tokens_per_s);
    }
  }
  json j = {{"url", o.url},
            {"model", o.model},
            {"requests", sent},
            {"failed", failed},
            {"concurrency", o.concurrency},
            {"max_tokens", o.max_tokens},
            {"wall_s", wall_s},
            {"requests_per_s", static_cast<double>(sent - failed) / wall_s},
            {"output_tokens", tokens},
            {"output_tokens_per_s", static_cast<double>(tokens) / wall_s},
            {"ttft_ms", summary(ttft)},
            {"tpot_ms", summary(tpot)},
            {"e2e_ms", summary(e2e)},
            {"request_tokens_per_s", summary(tps)},
            {"run_ids", ids}};
  if (!first_error.empty()) j["first_error"] = first_error;
  if (o.json) {
    io.out << json_text(j, -1) << '\n';
  } else {
    io.out << std::fixed << std::setprecision(2) << "bench-serve " << printable(o.url) << " model "
           << printable(o.model) << ": " << sent << " requests (" << failed
           << " failed), concurrency " << o.concurrency << ", " << wall_s << " s\n"
           << "  throughput: " << j["requests_per_s"].get<double>() << " requests/s, "
           << j["output_tokens_per_s"].get<double>() << " output tokens/s\n";
    for (const char* k : {"ttft_ms", "tpot_ms", "e2e_ms", "request_tokens_per_s"}) {
      if (j[k].is_null()) {
        io.out << "  " << k << ": no sample\n";
        continue;
      }
      io.out << "  " << k << ": mean " << j[k]["mean"].get<double>() << ", p50 "
             << j[k]["p50"].get<double>() << ", p90 " << j[k]["p90"].get<double>() << ", p99 "
             << j[k]["p99"].get<double>() << "\n";
    }
    if (!first_error.empty()) io.out << "  first error: " << printable(first_error) << '\n';
    if (!ids.empty()) {
      // Requests finish out of order: the lowest and the highest id, not the first and last.
      int64_t lo = ids.front().get<int64_t>(), hi = lo;
      for (const auto& id : ids) {
        lo = std::min(lo, id.get<int64_t>());
        hi = std::max(hi, id.get<int64_t>());
      }
      io.out << "  stored " << ids.size() << " runs, ids " << lo << ".." << hi << " in session '"
             << printable(session) << "' (compare --a ... --b ...)\n";
    }
  }
  if (sent > 0 && failed == sent)
    throw Error(ErrorKind::BadInput, "every request failed; the first: " + first_error,
                {.subject = "bench-serve"});
  return kOk;
}
}  // namespace

void add_bench_serve(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<BenchOptions>();
  o->sampling.temperature = 0;  // greedy unless asked: comparable work per request
  auto* sub = app.add_subcommand(
      "bench-serve", "Load-test an OpenAI-compatible server: TTFT/TPOT/throughput distributions");
  sub->add_option("URL", o->url, "Server URL (http://host:port[/v1])")->required();
  sub->add_option("--model", o->model, "Served model id")->required();
  sub->add_option("--api-key", o->api_key, "Authorization: Bearer KEY");
  sub->add_option("-n,--requests", o->n, "Requests to send")
      ->transform(int_range(1, 1000000))
      ->capture_default_str();
  sub->add_option("-c,--concurrency", o->concurrency, "Requests in flight at most")
      ->transform(int_range(1, 256))
      ->capture_default_str();
  sub->add_option("--prompts", o->prompts, "Prompt file, one prompt per line (used in turn)")
      ->required();
  sub->add_option("--max-tokens", o->max_tokens, "max_tokens of each request")
      ->transform(int_range(1, kMaxPredict))
      ->capture_default_str();
  add_sampling_options(sub, o->sampling, false);
  sub->add_option_function<uint64_t>(
         "--seed",
         [o](uint64_t v) {
           o->seed = v;
           o->seed_set = true;
         },
         "Seed of request 0 (request i uses seed + i; default: random per request)")
      ->transform(uint_range(0, UINT64_MAX));
  sub->add_flag("--ignore-eos", o->ignore_eos, "Ask the server to generate max_tokens each time");
  sub->add_option("--timeout", o->timeout_s, "Seconds without data before a request fails")
      ->check(real_range(0.1, 86400))
      ->capture_default_str();
  sub->add_flag("--json", o->json, "Print one JSON object");
  add_run_store_options(sub, o->store);
  sub->callback([o, io, &action] { action = [o, io] { return bench_cmd(*o, io); }; });
}

}  // namespace moelab::cli
