#include "remote_run.h"

#include <atomic>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <ostream>

#include "checks.h"
#include "interrupt.h"
#include "moelab/core/error.h"
#include "moelab/remote/client.h"
#include "moelab/remote/remote_run.h"
#include "store_cli.h"

namespace moelab::cli {

namespace {
using json = nlohmann::json;

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
  remote::RemoteRunSpec spec;
  spec.endpoint.url = ro.url;
  spec.endpoint.api_key = ro.api_key;
  spec.endpoint.read_timeout_s = ro.timeout_s;
  spec.endpoint.connect_timeout_s = std::min(10.0, ro.timeout_s);
  (void)remote::parse_endpoint_url(ro.url);  // a bad URL is bad input before anything runs
  spec.model = ro.model;
  spec.routed_format = ro.routed_format;
  spec.top_k = ro.top_k;
  spec.prompt = a.prompt;
  spec.system = a.system;
  spec.chat = a.chat;
  spec.max_tokens = a.max_tokens;
  spec.sampling = a.sampling;
  spec.stop = a.stop;
  spec.ignore_eos = a.ignore_eos;
  spec.build = build_version_string();

  std::unique_ptr<storage::AsyncWriter> writer;
  if (a.store.enabled()) writer = open_writer(a.store.db);
  std::atomic<bool> cancel{false};
  const interrupt::OnInterrupt on_signal([&cancel] { cancel = true; });
  GeneratedText text(io.out, a.escape);  // as run prints a local model's text (checks.h)
  const auto print = [&](const storage::TokenRecord& t) {
    if (!a.json && !t.piece.empty()) text.write(t.piece);
    return true;
  };
  const remote::RemoteRunOutcome o = with_store_errors([&] {
    return remote::run_remote(spec, writer.get(),
                              a.store.session.empty() ? kDefaultSession : a.store.session, print,
                              &cancel);
  });
  const remote::RemoteResult& res = o.result;
  text.finish();
  if (!a.json) io.out << '\n';

  if (!o.error.empty() && o.error != "cancelled") {
    if (o.run_id) io.err << "run id: " << o.run_id << " (stored as failed)\n";
    bad(o.error);
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
    j["seed"] = o.seed;
    j["prompt_tokens"] = res.prompt_tokens ? json(*res.prompt_tokens) : json();
    j["generated_tokens"] = o.completion_tokens;  // usage.completion_tokens when reported
    j["chunks"] = res.chunks.size();
    j["ttft_ms"] = res.ttft_ms;
    j["tpot_ms"] = o.tpot_ms;
    j["tokens_per_s"] = o.tpot_ms > 0 ? json(1000.0 / o.tpot_ms) : json();
    j["total_ms"] = res.total_ms;
    j["stop_reason"] = o.error == "cancelled" ? "cancelled" : res.finish_reason;
    j["routed_experts_format"] = o.routed_format;
    if (!o.routed.empty()) {
      j["routed_experts"] = o.routed;  // [generated tokens][layers * top_k]
      j["routed_layers"] = o.routed_layers;
      j["routed_top_k"] = o.routed_top_k;
    } else {
      j["routed_experts"] = nullptr;
      j["routed_experts_unavailable"] = o.routed_note;
    }
    j["not_available"] = remote::remote_not_available();
    if (o.run_id) j["run_id"] = o.run_id;
    io.out << json_text(j, -1) << '\n';
  } else {
    io.err << std::fixed << std::setprecision(1) << "[remote " << printable(ro.url) << " model "
           << printable(res.served_model.empty() ? ro.model : res.served_model) << ": "
           << (res.prompt_tokens ? std::to_string(*res.prompt_tokens) : std::string("?"))
           << " prompt tokens, " << o.completion_tokens << " generated; ttft " << res.ttft_ms
           << " ms; tpot " << o.tpot_ms << " ms (client-side); finish: "
           << (o.error == "cancelled" ? "cancelled" : printable(res.finish_reason)) << "; seed "
           << o.seed << "]\n"
           << "[routed experts: "
           << (o.routed.empty() ? o.routed_note
                                : o.routed_format + ", " + std::to_string(o.routed_layers) +
                                      " layers x top-" + std::to_string(o.routed_top_k))
           << "; not available from this engine: logprobs, attention, per-layer timing, "
              "power]\n";
    if (o.run_id) io.err << "run id: " << o.run_id << '\n';
  }
  return kOk;
}

}  // namespace moelab::cli
