#include "moelab/remote/remote_run.h"

#include <cmath>
#include <limits>
#include <memory>

#include "moelab/core/error.h"
#include "moelab/remote/routed_experts.h"
#include "moelab/session/session.h"

namespace moelab::remote {

namespace {
using json = nlohmann::json;
constexpr const char* kSubject = "remote run";

[[noreturn]] void bad(const std::string& what) {
  throw Error(ErrorKind::BadInput, what, {.subject = kSubject});
}
}  // namespace

const std::vector<std::string>& remote_not_available() {
  static const std::vector<std::string> v = {"logprobs",         "next_token_distribution",
                                             "routing_weights",  "attention",
                                             "per_layer_timing", "power"};
  return v;
}

RemoteRunOutcome run_remote(const RemoteRunSpec& spec, storage::AsyncWriter* writer,
                            const std::string& session, const RemoteTokenFn& on_token,
                            const std::atomic<bool>* cancel,
                            const std::function<void(int64_t)>& on_started) {
  if (spec.model.empty()) bad("no served model id (see the server's /v1/models)");
  (void)parse_endpoint_url(spec.endpoint.url);  // a bad URL is bad input before anything runs
  const Endpoint& ep = spec.endpoint;
  if (spec.routed_format != "auto" && !routed_format_from_name(spec.routed_format))
    bad("routed-experts format '" + spec.routed_format + "' is not auto, sglang, vllm or none");

  RemoteRunOutcome out;
  RemoteRequest req;
  req.model = spec.model;
  req.chat = spec.chat;
  req.prompt = spec.prompt;
  req.system = spec.system;
  req.max_tokens = spec.max_tokens;
  req.sampling = spec.sampling;
  out.seed = session::ensure_seed(req.sampling);  // known (and stored) before the run
  req.stop = spec.stop;
  req.ignore_eos = spec.ignore_eos;
  const bool auto_format = spec.routed_format == "auto";
  req.routed = routed_format_from_name(auto_format ? "sglang" : spec.routed_format)
                   .value_or(RoutedFormat::None);

  // What the server's /v1/models says about the model (moelab serve adds a "meta" object with
  // the model card; vLLM/SGLang say max_model_len, owned_by, ...): stored as reported, and the
  // experts per token for SGLang's flat array when not given.
  json model_entry;  // null: not fetched (no /v1/models, or the model is not listed)
  std::string models_error;
  try {
    for (const json& m : list_models(ep))
      if (m.is_object() && m.value("id", std::string()) == spec.model) model_entry = m;
    if (model_entry.is_null()) models_error = "the model is not listed by /v1/models";
  } catch (const Error& e) {
    models_error = e.what();  // servers without /v1/models: SGLang's routed experts need top_k
  }
  int64_t top_k = spec.top_k;
  if (top_k == 0 && model_entry.is_object() && model_entry.contains("meta") &&
      model_entry["meta"].is_object() && model_entry["meta"].contains("expert_used_count") &&
      model_entry["meta"]["expert_used_count"].is_number_integer())
    top_k = model_entry["meta"]["expert_used_count"].get<int64_t>();

  out.config = {{"kind", "generate"},
                {"engine", "remote"},
                {"backend", "remote"},
                {"sampling", session::sampling_json(req.sampling)},
                {"seed", out.seed},
                {"max_tokens", spec.max_tokens},
                {"chat", spec.chat},
                {"system", spec.system},
                {"stop", spec.stop},
                {"ignore_eos", spec.ignore_eos},
                {"build", spec.build},
                {"remote",
                 {{"url", ep.url},
                  {"requested_model", spec.model},
                  {"served_model", spec.model},  // until the server's responses name it
                  {"routed_experts_requested", routed_format_name(req.routed)},
                  {"not_available", remote_not_available()}}}};

  std::unique_ptr<storage::RunWriter> run;
  if (writer) {
    run = std::make_unique<storage::RunWriter>(*writer, session, std::nullopt, out.config.dump(),
                                               spec.prompt);
    out.run_id = run->id();
  }
  if (on_started) on_started(out.run_id);

  int64_t n_tokens = 0;
  double prev_ms = 0;
  std::vector<double> token_ms;  // arrival time of each token
  const auto on_chunk = [&](const RemoteChunk& c) {
    const size_t n = std::max<size_t>(1, c.token_ids.size());
    const double step = (c.t_ms - prev_ms) / static_cast<double>(n);
    bool go_on = true;
    for (size_t i = 0; i < n; ++i) {
      storage::TokenRecord t;
      t.position = n_tokens++;
      t.id = c.token_ids.empty() ? -1 : c.token_ids[i];
      t.piece = i == 0 ? c.text : std::string();
      t.logprob = std::numeric_limits<float>::quiet_NaN();
      t.entropy = std::numeric_limits<float>::quiet_NaN();
      t.latency_us = static_cast<int64_t>(std::llround(step * 1000.0));
      token_ms.push_back(c.t_ms);
      if (on_token && !on_token(t)) go_on = false;
      if (run) run->token(std::move(t));
    }
    prev_ms = c.t_ms;
    return go_on;
  };
  RemoteResult& res = out.result;
  res = stream_completion(ep, req, on_chunk, cancel);

  // Routed experts: decoded and placed on the generated tokens, or the reason they are absent.
  out.completion_tokens = res.completion_tokens.value_or(n_tokens);
  const int64_t completion = out.completion_tokens;
  if (res.error.empty() && res.routed_raw) {
    try {
      if (req.routed != RoutedFormat::None && !auto_format && res.routed_format != req.routed)
        bad(std::string("the server returned routed experts in ") +
            routed_format_name(res.routed_format) + "'s shape, not " +
            routed_format_name(req.routed) + "'s");
      if (!res.prompt_tokens)
        bad("the server returned routed experts but no usage.prompt_tokens to place them");
      const int64_t start = res.routed_start.value_or(0);
      const int64_t rows = *res.prompt_tokens + completion - 1 - start;
      RoutedExperts re;
      int64_t rows_returned = -1;  // -1: re.n_tokens
      if (res.routed_format == RoutedFormat::SGLang) {
        if (!res.routed_raw->is_string()) bad("SGLang routed_experts is not a base64 string");
        if (top_k <= 0)
          bad("SGLang routed experts need the experts per token: pass --remote-top-k K");
        re = decode_sglang(res.routed_raw->get<std::string>(), rows, top_k, start);
      } else if (res.prompt_routed_raw) {
        // vLLM >= 0.21: prompt rows [prompt_len] on the response, generated rows [gen_len] on
        // the choice; together one row per sequence position. The last generated token's row
        // (no forward pass of it produced a stored token) is dropped to match [0, seqlen - 1).
        re = decode_vllm(*res.prompt_routed_raw, *res.prompt_tokens, 0);
        const RoutedExperts gen = decode_vllm(*res.routed_raw, completion, 0);
        if (gen.n_tokens > 0 && re.n_tokens > 0 &&
            (gen.n_layers != re.n_layers || gen.top_k != re.top_k))
          bad("vLLM's prompt_routed_experts has " + std::to_string(re.n_layers) + " layers x top-" +
              std::to_string(re.top_k) + " but routed_experts " + std::to_string(gen.n_layers) +
              " x top-" + std::to_string(gen.top_k));
        rows_returned = re.n_tokens + gen.n_tokens;
        if (re.n_tokens == 0)
          re = gen;
        else
          re.ids.insert(re.ids.end(), gen.ids.begin(), gen.ids.end());
        re.start = 0;
        re.n_tokens = std::max<int64_t>(0, *res.prompt_tokens + completion - 1);
        re.ids.resize(static_cast<size_t>(re.n_tokens * re.n_layers * re.top_k));
      } else {
        re = decode_vllm(*res.routed_raw, rows, start);
      }
      out.routed = generated_rows(re, *res.prompt_tokens, completion);
      out.routed_layers = re.n_layers;
      out.routed_top_k = re.top_k;
      out.routed_rows = rows_returned < 0 ? re.n_tokens : rows_returned;
      out.routed_start = re.start;
      // Rows before sequence position prompt - 1 route prompt tokens whose logits produced no
      // generated token; the routing trace keeps one forward pass per generated token (as a
      // local run does), so they are counted here, not stored.
      out.routed_prompt_rows = std::max<int64_t>(0, *res.prompt_tokens - 1 - re.start);
      for (const auto& row : out.routed)
        for (const int32_t id : row)
          if (id > 0xffff) bad("routed expert id " + std::to_string(id) + " is out of range");
    } catch (const Error& e) {
      out.routed.clear();
      res.error = e.where().subject == kSubject ? e.detail() : e.what();
    }
  } else if (req.routed == RoutedFormat::None) {
    out.routed_note = "not requested";
  } else {
    out.routed_note = kNotAvailableFromEngine;
  }

  // TPOT over the tokens the server says it generated (a chunk may carry several, e.g. the
  // bytes of one character), between the first and the last chunk's arrival.
  out.tpot_ms = token_ms.size() > 1 && completion > 1
                    ? (token_ms.back() - token_ms.front()) / static_cast<double>(completion - 1)
                    : 0.0;
  out.routed_format = res.routed_raw ? routed_format_name(res.routed_format) : "none";
  json routed_rep;
  if (!out.routed.empty()) {
    routed_rep = {{"format", out.routed_format},
                  {"layers", out.routed_layers},
                  {"top_k", out.routed_top_k},
                  {"rows_returned", out.routed_rows},
                  {"first_position", out.routed_start},
                  {"prompt_rows_returned", out.routed_prompt_rows},
                  {"stored",
                   "generated tokens (one forward pass each); the prompt rows are "
                   "counted, not stored"},
                  {"weights", "not reported by this engine"}};
  } else {
    routed_rep = {{"format", "none"}, {"note", res.routed_raw ? res.error : out.routed_note}};
  }
  json server_usage = json::object();
  if (res.prompt_tokens) server_usage["prompt_tokens"] = *res.prompt_tokens;
  if (res.completion_tokens) server_usage["completion_tokens"] = *res.completion_tokens;
  out.reported = {{"served_model", res.served_model},
                  {"model_entry", model_entry.is_null() ? json(models_error) : model_entry},
                  {"token_ids", res.token_ids_reported},
                  {"usage",
                   {{"server", server_usage.empty() ? json("not reported") : server_usage},
                    {"client", {{"completion_tokens", n_tokens}, {"chunks", res.chunks.size()}}}}},
                  {"routed_experts", routed_rep}};
  out.error = res.error;
  out.status = out.error.empty()          ? storage::RunStatus::Complete
               : out.error == "cancelled" ? storage::RunStatus::Cancelled
                                          : storage::RunStatus::Failed;

  // What the server reported goes into the run's config (config.remote.reported), next to what
  // was asked; the served model id is the one its responses named.
  out.config["remote"]["reported"] = out.reported;
  if (!res.served_model.empty()) out.config["remote"]["served_model"] = res.served_model;

  if (run) {
    run->set_config(out.config.dump());
    for (size_t i = 0; i < out.routed.size(); ++i)
      for (int64_t l = 0; l < out.routed_layers; ++l) {
        storage::RoutingRecord rr;
        rr.position = static_cast<int64_t>(i);
        rr.layer = static_cast<int32_t>(l);
        for (int64_t k = 0; k < out.routed_top_k; ++k)
          rr.experts.push_back(
              static_cast<uint16_t>(out.routed[i][static_cast<size_t>(l * out.routed_top_k + k)]));
        rr.weights.assign(rr.experts.size(), std::numeric_limits<float>::quiet_NaN());
        run->routing(std::move(rr));
      }
    if (!res.chunks.empty()) {
      run->metric("ttft_ms", res.ttft_ms, "ms");
      if (out.tpot_ms > 0) {
        run->metric("tpot_ms", out.tpot_ms, "ms");
        run->metric("tokens_per_s", 1000.0 / out.tpot_ms, "tokens/s");
      }
    }
    run->metric("total_ms", res.total_ms, "ms");
    run->metric("generated_tokens", static_cast<double>(completion));
    if (res.prompt_tokens) run->metric("prompt_tokens", static_cast<double>(*res.prompt_tokens));
    run->finish(out.status, res.text,
                out.error.empty() ? std::string() : out.error + " (remote " + ep.url + ")");
  }
  return out;
}

}  // namespace moelab::remote
