#include "remote_run.h"

#include <atomic>
#include <cmath>
#include <iomanip>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>

#include "checks.h"
#include "interrupt.h"
#include "moelab/core/error.h"
#include "moelab/remote/client.h"
#include "moelab/remote/routed_experts.h"
#include "moelab/session/session.h"
#include "store_cli.h"

namespace moelab::cli {

namespace {
using json = nlohmann::json;

// What a remote engine does not report, stored with the run and printed: never invented.
const std::vector<std::string> kNotAvailable = {"logprobs",         "next_token_distribution",
                                                "routing_weights",  "attention",
                                                "per_layer_timing", "power"};

[[noreturn]] void bad(const std::string& what) {
  throw Error(ErrorKind::BadInput, what, {.subject = "run --remote"});
}
}  // namespace

void add_remote_options(CLI::App* sub, RemoteRunOptions& o) {
  sub->add_option("--remote", o.url,
                  "Run on an OpenAI-compatible server at this URL (http://host:port[/v1]) "
                  "instead of a local --model");
  sub->add_option("--remote-model", o.model, "Served model id (with --remote; see /v1/models)");
  sub->add_option("--api-key", o.api_key, "API key for --remote (Authorization: Bearer KEY)");
  sub->add_option("--routed-experts-format", o.routed_format,
                  "Routed experts to ask --remote for: auto (ask SGLang's shape, accept "
                  "either), sglang, vllm, none")
      ->check(CLI::IsMember({"auto", "sglang", "vllm", "none"}))
      ->capture_default_str();
  sub->add_option("--remote-top-k", o.top_k,
                  "Experts per token of the served model, to decode SGLang's flat routed "
                  "experts (default: from the server's /v1/models meta when it says)")
      ->transform(int_range(1, 1 << 16));
  sub->add_option("--remote-timeout", o.timeout_s,
                  "Seconds without data from --remote before the run fails")
      ->check(real_range(0.1, 86400))
      ->capture_default_str();
}

int remote_run_cmd(const RemoteRunOptions& ro, const RemoteRunArgs& a, Io io) {
  if (ro.model.empty()) bad("--remote needs --remote-model NAME (the served model id)");
  if (!a.system.empty() && !a.chat)
    bad("--system needs --chat (the system message is sent as a chat message)");
  remote::Endpoint ep;
  ep.url = ro.url;
  ep.api_key = ro.api_key;
  ep.read_timeout_s = ro.timeout_s;
  ep.connect_timeout_s = std::min(10.0, ro.timeout_s);
  (void)remote::parse_endpoint_url(ro.url);  // a bad URL is bad input before anything runs

  remote::RemoteRequest req;
  req.model = ro.model;
  req.chat = a.chat;
  req.prompt = a.prompt;
  req.system = a.system;
  req.max_tokens = a.max_tokens;
  req.sampling = a.sampling;
  session::ensure_seed(req.sampling);  // the seed is known (and stored) before the run
  req.stop = a.stop;
  req.ignore_eos = a.ignore_eos;
  const auto wanted =
      remote::routed_format_from_name(ro.routed_format == "auto" ? "sglang" : ro.routed_format);
  req.routed = wanted.value_or(remote::RoutedFormat::None);

  // Experts per token for SGLang's flat array: given, or what the server's /v1/models says.
  int64_t top_k = ro.top_k;
  if (top_k == 0 && req.routed != remote::RoutedFormat::None) {
    try {
      for (const json& m : remote::list_models(ep))
        if (m.is_object() && m.value("id", std::string()) == ro.model && m.contains("meta") &&
            m["meta"].is_object() && m["meta"].contains("expert_used_count") &&
            m["meta"]["expert_used_count"].is_number_integer())
          top_k = m["meta"]["expert_used_count"].get<int64_t>();
    } catch (const Error&) {
      // Servers without /v1/models: routed experts can then be decoded only with --remote-top-k.
    }
  }

  json config = {{"kind", "generate"},
                 {"engine", "remote"},
                 {"backend", "remote"},
                 {"sampling", session::sampling_json(req.sampling)},
                 {"seed", *req.sampling.seed},
                 {"max_tokens", a.max_tokens},
                 {"chat", a.chat},
                 {"system", a.system},
                 {"stop", a.stop},
                 {"ignore_eos", a.ignore_eos},
                 {"build", build_version_string()},
                 {"remote",
                  {{"url", ro.url},
                   {"requested_model", ro.model},
                   {"routed_experts_requested", routed_format_name(req.routed)}}}};

  std::unique_ptr<storage::AsyncWriter> writer;
  std::unique_ptr<storage::RunWriter> run;
  if (a.store.enabled()) {
    writer = open_writer(a.store.db);
    run = with_store_errors([&] {
      return std::make_unique<storage::RunWriter>(
          *writer, a.store.session.empty() ? kDefaultSession : a.store.session, std::nullopt,
          config.dump(), a.prompt);
    });
  }

  std::atomic<bool> cancel{false};
  const interrupt::OnInterrupt on_signal([&cancel] { cancel = true; });
  int64_t n_tokens = 0;
  double prev_ms = 0;
  std::vector<double> token_ms;  // arrival time of each token
  const auto on_chunk = [&](const remote::RemoteChunk& c) {
    if (!a.json) io.out << c.text << std::flush;
    const size_t n = std::max<size_t>(1, c.token_ids.size());
    const double step = (c.t_ms - prev_ms) / static_cast<double>(n);
    for (size_t i = 0; i < n; ++i) {
      storage::TokenRecord t;
      t.position = n_tokens++;
      t.id = c.token_ids.empty() ? -1 : c.token_ids[i];
      t.piece = i == 0 ? c.text : std::string();
      t.logprob = std::numeric_limits<float>::quiet_NaN();
      t.entropy = std::numeric_limits<float>::quiet_NaN();
      t.latency_us = static_cast<int64_t>(std::llround(step * 1000.0));
      token_ms.push_back(c.t_ms);
      if (run) run->token(std::move(t));
    }
    prev_ms = c.t_ms;
    return true;
  };
  remote::RemoteResult res = remote::stream_completion(ep, req, on_chunk, &cancel);
  if (!a.json) io.out << '\n';

  // Routed experts: decoded and placed on the generated tokens, or the reason they are absent.
  std::vector<std::vector<int32_t>> routed;
  int64_t routed_layers = 0, routed_k = 0;
  std::string routed_note;
  const int64_t completion = res.completion_tokens.value_or(n_tokens);
  if (res.error.empty() && res.routed_raw) {
    try {
      if (req.routed != remote::RoutedFormat::None && ro.routed_format != "auto" &&
          res.routed_format != req.routed)
        bad(std::string("the server returned routed experts in ") +
            routed_format_name(res.routed_format) + "'s shape, not " +
            routed_format_name(req.routed) + "'s");
      if (!res.prompt_tokens)
        bad("the server returned routed experts but no usage.prompt_tokens to place them");
      const int64_t start = res.routed_start.value_or(0);
      const int64_t rows = *res.prompt_tokens + completion - 1 - start;
      remote::RoutedExperts re;
      if (res.routed_format == remote::RoutedFormat::SGLang) {
        if (!res.routed_raw->is_string()) bad("SGLang routed_experts is not a base64 string");
        if (top_k <= 0)
          bad("SGLang routed experts need the experts per token: pass --remote-top-k K");
        re = remote::decode_sglang(res.routed_raw->get<std::string>(), rows, top_k, start);
      } else {
        re = remote::decode_vllm(*res.routed_raw, rows, start);
      }
      routed = remote::generated_rows(re, *res.prompt_tokens, completion);
      routed_layers = re.n_layers;
      routed_k = re.top_k;
      for (const auto& row : routed)
        for (const int32_t id : row)
          if (id > 0xffff) bad("routed expert id " + std::to_string(id) + " is out of range");
    } catch (const Error& e) {
      // The detail only: bad() below names "run --remote" once.
      res.error = e.where().subject == "run --remote" ? e.detail() : e.what();
    }
  } else if (req.routed == remote::RoutedFormat::None) {
    routed_note = "not requested";
  } else {
    routed_note = "not available from this engine";
  }

  // TPOT over the tokens the server says it generated (a chunk may carry several, e.g. the
  // bytes of one character), between the first and the last chunk's arrival.
  const double tpot_ms =
      token_ms.size() > 1 && completion > 1
          ? (token_ms.back() - token_ms.front()) / static_cast<double>(completion - 1)
          : 0.0;
  const std::string fmt = res.routed_raw ? routed_format_name(res.routed_format) : "none";
  json reported = {{"served_model", res.served_model},
                   {"token_ids", res.token_ids_reported},
                   {"usage", res.prompt_tokens.has_value()},
                   {"routed_experts", routed.empty() ? json(routed_note) : json(fmt)}};

  if (run) {
    for (size_t i = 0; i < routed.size(); ++i)
      for (int64_t l = 0; l < routed_layers; ++l) {
        storage::RoutingRecord rr;
        rr.position = static_cast<int64_t>(i);
        rr.layer = static_cast<int32_t>(l);
        for (int64_t k = 0; k < routed_k; ++k)
          rr.experts.push_back(
              static_cast<uint16_t>(routed[i][static_cast<size_t>(l * routed_k + k)]));
        rr.weights.assign(rr.experts.size(), std::numeric_limits<float>::quiet_NaN());
        run->routing(std::move(rr));
      }
    if (!res.chunks.empty()) {
      run->metric("ttft_ms", res.ttft_ms, "ms");
      if (tpot_ms > 0) {
        run->metric("tpot_ms", tpot_ms, "ms");
        run->metric("tokens_per_s", 1000.0 / tpot_ms, "tokens/s");
      }
    }
    run->metric("total_ms", res.total_ms, "ms");
    run->metric("generated_tokens", static_cast<double>(completion));
    if (res.prompt_tokens) run->metric("prompt_tokens", static_cast<double>(*res.prompt_tokens));
    // What the server reported, next to the config the run began with (metrics keep numbers;
    // the run's error text names a failure).
    const storage::RunStatus st = !res.error.empty()
                                      ? (res.error == "cancelled" ? storage::RunStatus::Cancelled
                                                                  : storage::RunStatus::Failed)
                                      : storage::RunStatus::Complete;
    with_store_errors([&] {
      run->finish(st, res.text,
                  res.error.empty()
                      ? std::string()
                      : res.error + " (remote " + ro.url + ", reported " + reported.dump() + ")");
      return 0;
    });
  }

  if (!res.error.empty() && res.error != "cancelled") {
    if (run) io.err << "run id: " << run->id() << " (stored as failed)\n";
    bad(res.error);
  }

  if (a.json) {
    json j;
    j["engine"] = "remote";
    j["url"] = ro.url;
    j["served_model"] = res.served_model;
    j["tokens"] = json::array();
    for (const auto& c : res.chunks)
      for (const int32_t id : c.token_ids) j["tokens"].push_back(id);
    if (!res.token_ids_reported) j["tokens"] = nullptr;
    j["text"] = res.text;
    j["seed"] = *req.sampling.seed;
    j["prompt_tokens"] = res.prompt_tokens ? json(*res.prompt_tokens) : json();
    j["generated_tokens"] = completion;  // usage.completion_tokens when reported
    j["chunks"] = res.chunks.size();
    j["ttft_ms"] = res.ttft_ms;
    j["tpot_ms"] = tpot_ms;
    j["tokens_per_s"] = tpot_ms > 0 ? json(1000.0 / tpot_ms) : json();
    j["total_ms"] = res.total_ms;
    j["stop_reason"] = res.error == "cancelled" ? "cancelled" : res.finish_reason;
    j["routed_experts_format"] = fmt;
    if (!routed.empty()) {
      j["routed_experts"] = routed;  // [generated tokens][layers * top_k]
      j["routed_layers"] = routed_layers;
      j["routed_top_k"] = routed_k;
    } else {
      j["routed_experts"] = nullptr;
      j["routed_experts_unavailable"] = routed_note;
    }
    j["not_available"] = kNotAvailable;
    if (run) j["run_id"] = run->id();
    io.out << json_text(j, -1) << '\n';
  } else {
    io.err << std::fixed << std::setprecision(1) << "[remote " << printable(ro.url) << " model "
           << printable(res.served_model.empty() ? ro.model : res.served_model) << ": "
           << (res.prompt_tokens ? std::to_string(*res.prompt_tokens) : std::string("?"))
           << " prompt tokens, " << completion << " generated; ttft " << res.ttft_ms << " ms; tpot "
           << tpot_ms << " ms (client-side); finish: "
           << (res.error == "cancelled" ? "cancelled" : printable(res.finish_reason)) << "; seed "
           << *req.sampling.seed << "]\n"
           << "[routed experts: "
           << (routed.empty() ? routed_note
                              : fmt + ", " + std::to_string(routed_layers) + " layers x top-" +
                                    std::to_string(routed_k))
           << "; not available from this engine: logprobs, attention, per-layer timing, "
              "power]\n";
    if (run) io.err << "run id: " << run->id() << '\n';
  }
  return kOk;
}

}  // namespace moelab::cli
