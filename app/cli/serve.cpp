// moelab-cli serve --model FILE [--host 127.0.0.1] [--port 8080] [--api-key K] [--parallel N]
//                  [--queue Q] [--db PATH --session NAME] ...
//
// An OpenAI-compatible HTTP server on moelab's engine (cpp-httplib): GET /v1/models, /health,
// POST /v1/completions and /v1/chat/completions, streamed (SSE) or not, with the sampling
// parameters, seed, stop strings, usage, token ids (vLLM's return_token_ids) and the routed
// experts of MoE models in SGLang's or vLLM's shape (moelab/remote/routed_experts.h). The
// request parser is moelab::remote::parse_completion_request (fuzzed).
//
// Limits: request bodies (--max-body), max_tokens (--max-tokens), N generators working at once
// (--parallel, each with its own KV cache) and a queue of Q waiting requests (--queue): a
// request beyond them is answered 429 at once, requests while shutting down 503. Loopback by
// default; another address needs --api-key (clients send "Authorization: Bearer K").
// SIGINT/SIGTERM: stop accepting, cancel running generations (stored runs end `cancelled`), exit.
// A client that disconnects cancels its generation, streamed or not (a non-streamed answer is
// preceded by one space per generated token, so the server notices a closed connection).
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "backend_option.h"
#include "card_format.h"
#include "checks.h"
#include "cli.h"
#include "interrupt.h"
#include "moelab/core/error.h"
#include "moelab/core/files.h"
#include "moelab/remote/openai_request.h"
#include "moelab/remote/routed_experts.h"
#include "moelab/runtime/generator.h"
#include "moelab/session/session.h"
#include "moelab/tokenizer/chat.h"
#include "moelab/tokenizer/tokenizer.h"
#include "run_store.h"
#include "version.h"

namespace moelab::cli {

namespace {
using json = nlohmann::json;
using remote::CompletionRequest;
using remote::RequestError;

struct ServeOptions {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string port_file;
  std::string api_key;
  std::string served_name;  // default: the file name without .gguf
  int parallel = 1;
  int queue = 16;
  int64_t max_body = 1 << 20;
  int32_t max_tokens = 4096;
  int threads = 0;
  uint32_t n_ctx = 0;
  std::string backend = "auto";
  RunStoreOptions store;
};

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// N generators and a bounded queue in front of them.
class Pool {
 public:
  Pool(std::vector<std::unique_ptr<Generator>> gens, size_t queue)
      : gens_(std::move(gens)), busy_(gens_.size(), false), capacity_(gens_.size() + queue) {}

  // Admission: 0 when admitted, else the HTTP status to answer (429 full, 503 stopping).
  int admit() {
    std::lock_guard lk(mu_);
    if (stopping_) return 503;
    if (admitted_ >= capacity_) return 429;
    ++admitted_;
    return 0;
  }
  void leave() {
    std::lock_guard lk(mu_);
    --admitted_;
  }
  // Waits for a free generator; -1 when stopping.
  int acquire() {
    std::unique_lock lk(mu_);
    for (;;) {
      if (stopping_) return -1;
      for (size_t i = 0; i < busy_.size(); ++i)
        if (!busy_[i]) {
          busy_[i] = true;
          return static_cast<int>(i);
        }
      cv_.wait(lk);
    }
  }
  void release(int i) {
    {
      std::lock_guard lk(mu_);
      busy_[static_cast<size_t>(i)] = false;
    }
    cv_.notify_all();
  }
  Generator& gen(int i) { return *gens_[static_cast<size_t>(i)]; }
  void stop() {
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& g : gens_) g->request_cancel();
  }
  bool stopping() const {
    std::lock_guard lk(mu_);
    return stopping_;
  }
  size_t size() const { return gens_.size(); }

 private:
  std::vector<std::unique_ptr<Generator>> gens_;
  std::vector<bool> busy_;
  size_t capacity_;
  size_t admitted_ = 0;
  bool stopping_ = false;
  mutable std::mutex mu_;
  std::condition_variable cv_;
};

// An admitted request: leaves the pool when the last owner (handler or stream) drops it.
struct Ticket {
  Pool& pool;
  explicit Ticket(Pool& p) : pool(p) {}
  ~Ticket() { pool.leave(); }
};

struct Server {
  const ServeOptions& o;
  std::shared_ptr<const Model> model;
  ContextParams cp;
  std::string id;  // served model id
  Pool* pool = nullptr;
  remote::RequestLimits limits;
  std::mutex tok_mu;  // tokenization outside the generators
  storage::AsyncWriter* writer = nullptr;
  std::optional<storage::ModelRecord> model_row;
  std::atomic<uint64_t> next_id{1};
  std::atomic<bool> stopping{false};
};

const char* finish_reason(StopReason r) {
  switch (r) {
    case StopReason::Eos:
    case StopReason::StopString:
      return "stop";
    case StopReason::MaxTokens:
    case StopReason::ContextFull:
      return "length";
    case StopReason::Cancelled:
      break;
  }
  return "abort";
}

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void send_error(httplib::Response& res, const RequestError& e) {
  res.status = e.status;
  res.set_content(remote::error_body(e), "application/json");
}

// What a request runs: the prompt as token ids (validated against the context before any
// answer is sent) and the generation parameters.
struct Job {
  CompletionRequest req;
  GenerateParams gp;
  std::string prompt_text;  // the prompt as sent to the model (chat: rendered)
  std::string id;
};

std::optional<RequestError> prepare(Server& s, Job& job) {
  const CompletionRequest& r = job.req;
  if (!r.model.empty() && r.model != s.id)
    return RequestError{404, "model '" + r.model + "' is not served here (serving '" + s.id + "')",
                        "model"};
  const Tokenizer* tok = s.model->tokenizer();
  if (!tok) return RequestError{400, "the served model has no tokenizer", ""};
  if (r.chat) {
    const ChatFamily family = detect_chat_family(tok->chat_template());
    if (family == ChatFamily::Unknown)
      return RequestError{400,
                          "the served model has no chat template moelab recognises; use "
                          "/v1/completions",
                          ""};
    try {
      job.prompt_text = render_chat(family, r.messages, /*add_generation_prompt=*/true);
    } catch (const Error& e) {
      return RequestError{400, e.what(), "messages"};
    }
  } else {
    job.prompt_text = r.prompt;
  }
  std::vector<int32_t> ids;
  {
    std::lock_guard lk(s.tok_mu);
    ids = tok->encode(job.prompt_text, /*add_special=*/true, /*parse_special=*/true);
  }
  if (ids.empty()) return RequestError{400, "the prompt has no tokens", "prompt"};
  if (ids.size() >= s.cp.n_ctx)
    return RequestError{400,
                        "the prompt has " + std::to_string(ids.size()) +
                            " tokens; the context holds " + std::to_string(s.cp.n_ctx),
                        r.chat ? "messages" : "prompt"};
  job.gp.prompt = job.prompt_text;
  job.gp.prompt_tokens = std::move(ids);
  job.gp.max_tokens = r.max_tokens;
  job.gp.sampling = r.sampling;
  session::ensure_seed(job.gp.sampling);
  job.gp.stop = r.stop;
  job.gp.ignore_eos = r.ignore_eos;
  job.id = (r.chat ? "chatcmpl-" : "cmpl-") + std::to_string(s.next_id.fetch_add(1));
  return std::nullopt;
}

// Routing rows of the generated tokens -> RoutedExperts starting at prompt - 1.
remote::RoutedExperts routed_of(const std::vector<std::vector<storage::RoutingRecord>>& rows,
                                int64_t prompt_tokens) {
  remote::RoutedExperts re;
  re.start = prompt_tokens - 1;
  re.n_tokens = static_cast<int64_t>(rows.size());
  if (!rows.empty()) {
    re.n_layers = static_cast<int64_t>(rows[0].size());
    re.top_k = rows[0].empty() ? 0 : static_cast<int64_t>(rows[0][0].experts.size());
  }
  for (const auto& row : rows)
    for (int64_t l = 0; l < re.n_layers; ++l)
      for (int64_t k = 0; k < re.top_k; ++k) {
        const auto& rec = row[static_cast<size_t>(l)];
        re.ids.push_back(l < static_cast<int64_t>(row.size()) &&
                                 k < static_cast<int64_t>(rec.experts.size())
                             ? rec.experts[static_cast<size_t>(k)]
                             : -1);
      }
  return re;
}

// The routed-experts fields of a choice, in the requested shape.
void add_routed(json& choice, const CompletionRequest& r, const remote::RoutedExperts& re) {
  if (r.routed == remote::RoutedFormat::SGLang) {
    choice["sgl_ext"] = {{"routed_experts", remote::encode_sglang(re)},
                         {"routed_experts_start_len", re.start}};
  } else if (r.routed == remote::RoutedFormat::VLLM) {
    choice["routed_experts"] = remote::encode_vllm(re);
    choice["routed_experts_start_len"] = re.start;
  }
}

struct Outcome {
  GenerateResult r;
  std::vector<std::vector<storage::RoutingRecord>> routing;  // per generated token, by layer
  int64_t run_id = 0;
};

// Runs one job on generator `g`, recording it when --db is given; `emit` sees each token
// (returning false cancels).
Outcome execute(Server& s, Generator& g, const Job& job,
                const std::function<bool(const TokenEvent&)>& emit) {
  Outcome out;
  const bool want_routing =
      job.req.routed != remote::RoutedFormat::None && g.model().card().expert_count > 0;
  GenerateParams gp = job.gp;
  if (s.writer) {
    RunStore stored(*s.writer, s.o.store.session, s.o.model, g, gp, s.cp, s.model_row);
    out.run_id = stored.id();
    out.r = stored.generate(gp, [&](const TokenEvent& ev) {
      if (want_routing) out.routing.push_back(stored.recorder().last_routing());
      return !s.stopping.load() && (!emit || emit(ev));
    });
    return out;
  }
  std::optional<session::RoutingRecorder> rec;
  if (want_routing) rec.emplace(g.context(), false);
  out.r = g.generate(gp, [&](const TokenEvent& ev) {
    if (rec) out.routing.push_back(rec->take(ev.index));
    return !s.stopping.load() && (!emit || emit(ev));
  });
  return out;
}

json usage_json(const GenerateResult& r) {
  const auto p = static_cast<int64_t>(r.prompt_tokens.size());
  const auto c = static_cast<int64_t>(r.tokens.size());
  return {{"prompt_tokens", p}, {"completion_tokens", c}, {"total_tokens", p + c}};
}

json final_choice(const Job& job, const Outcome& out) {
  json c = {{"index", 0}, {"finish_reason", finish_reason(out.r.stop_reason)}};
  if (!out.routing.empty())
    add_routed(c, job.req,
               routed_of(out.routing, static_cast<int64_t>(out.r.prompt_tokens.size())));
  return c;
}

json envelope(const Server& s, const Job& job, bool chunk, uint64_t seed) {
  return {{"id", job.id},
          {"object", job.req.chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                  : "text_completion"},
          {"created", unix_seconds()},
          {"model", s.id},
          {"system_fingerprint", std::string("moelab-") + kVersion},
          {"seed", seed}};
}

void handle_completion(Server& s, const httplib::Request& hreq, httplib::Response& res, bool chat) {
  if (!s.o.api_key.empty() && hreq.get_header_value("Authorization") != "Bearer " + s.o.api_key)
    return send_error(res, {401, "missing or wrong API key (Authorization: Bearer <key>)", ""});
  auto parsed = remote::parse_completion_request(hreq.body, chat, s.limits);
  if (!parsed.ok()) return send_error(res, parsed.error);
  auto job = std::make_shared<Job>();
  job->req = std::move(*parsed.request);
  if (auto e = prepare(s, *job)) return send_error(res, *e);
  if (const int refused = s.pool->admit())
    return send_error(res, {refused,
                            refused == 429 ? "all " + std::to_string(s.pool->size()) +
                                                 " generators are busy and the queue is full; "
                                                 "retry later"
                                           : "the server is shutting down",
                            ""});
  auto ticket = std::make_shared<Ticket>(*s.pool);
  const uint64_t seed = *job->gp.sampling.seed;

  if (!job->req.stream) {
    // One JSON answer, sent through a chunked content provider so that a client that goes away
    // cancels the generation (cpp-httplib 0.11 has no is_connection_closed): every token writes
    // one space before the JSON (whitespace JSON allows), and a failed write - the socket's
    // peer closed - stops the run, stored `cancelled` with --db. Errors after the headers went
    // out arrive as {"error": {...}} in the body.
    res.set_chunked_content_provider(
        "application/json", [&s, job, ticket, seed, chat](size_t, httplib::DataSink& sink) {
          const auto send = [&sink](const json& j) {
            const std::string body = j.dump(-1, ' ', false, json::error_handler_t::replace);
            return sink.write(body.data(), body.size());
          };
          const int gi = s.pool->acquire();
          if (gi < 0) {
            send({{"error", {{"message", "the server is shutting down"}, {"code", 503}}}});
            sink.done();
            return true;
          }
          Outcome out;
          bool gone = false;
          try {
            out = execute(s, s.pool->gen(gi), *job, [&](const TokenEvent&) {
              gone = gone || !sink.write(" ", 1);
              return !gone;
            });
          } catch (const Error& e) {
            s.pool->release(gi);
            send({{"error", {{"message", e.what()}, {"code", 400}}}});
            sink.done();
            return true;
          }
          s.pool->release(gi);
          if (gone) return false;  // the client is gone; the run ended cancelled
          json j = envelope(s, *job, false, seed);
          json c = final_choice(*job, out);
          if (chat)
            c["message"] = {{"role", "assistant"}, {"content", out.r.text}};
          else
            c["text"] = out.r.text;
          if (job->req.return_token_ids) c["token_ids"] = out.r.tokens;
          j["choices"] = json::array({c});
          j["usage"] = usage_json(out.r);
          if (out.run_id) j["moelab_run_id"] = out.run_id;
          send(j);
          sink.done();
          return true;
        });
    return;
  }

  res.set_chunked_content_provider(
      "text/event-stream", [&s, job, ticket, seed, chat](size_t, httplib::DataSink& sink) {
        const auto send = [&sink](const json& j) {
          const std::string line =
              "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
          return sink.write(line.data(), line.size());
        };
        const int gi = s.pool->acquire();
        if (gi < 0) {
          send({{"error", {{"message", "the server is shutting down"}, {"code", 503}}}});
          sink.done();
          return true;
        }
        bool first = true;
        Outcome out;
        try {
          out = execute(s, s.pool->gen(gi), *job, [&](const TokenEvent& ev) {
            json j = envelope(s, *job, true, seed);
            json c = {{"index", 0}, {"finish_reason", nullptr}};
            if (chat) {
              c["delta"] = {{"content", ev.piece}};
              if (first) c["delta"]["role"] = "assistant";
            } else {
              c["text"] = ev.piece;
            }
            if (job->req.return_token_ids) c["token_ids"] = json::array({ev.id});
            j["choices"] = json::array({c});
            first = false;
            return send(j);  // a client that went away cancels the run
          });
        } catch (const Error& e) {
          s.pool->release(gi);
          send({{"error", {{"message", e.what()}, {"code", 400}}}});
          sink.done();
          return true;
        }
        s.pool->release(gi);
        json j = envelope(s, *job, true, seed);
        json c = final_choice(*job, out);
        if (chat)
          c["delta"] = json::object();
        else
          c["text"] = "";
        j["choices"] = json::array({c});
        if (out.run_id) j["moelab_run_id"] = out.run_id;
        send(j);
        if (job->req.include_usage) {
          json u = envelope(s, *job, true, seed);
          u["choices"] = json::array();
          u["usage"] = usage_json(out.r);
          send(u);
        }
        const std::string done = "data: [DONE]\n\n";
        sink.write(done.data(), done.size());
        sink.done();
        return true;
      });
}

int serve_cmd(const ServeOptions& o, Io io) {
  if (!is_loopback(o.host) && o.api_key.empty())
    throw Error(ErrorKind::BadInput,
                "--host " + o.host +
                    " is not a loopback address: serving beyond this machine needs --api-key",
                {.subject = "serve"});
  if (o.port_file.size()) check_output_target(o.port_file);

  Server s{o, nullptr, {}, {}, nullptr, {}, {}, nullptr, {}, {1}, {false}};
  s.model = load_for_backend(o.model, o.backend, &s.cp.backend);
  const ModelCard& card = s.model->card();
  s.cp.n_ctx = o.n_ctx ? o.n_ctx : default_n_ctx(card.context_length);
  s.cp.n_threads = o.threads > 0 ? o.threads : std::max(1, default_threads() / o.parallel);
  preflight_context(card, s.cp.n_ctx, 4, false, backend_name(s.cp.backend), "--ctx", io);
  // One KV cache per generator: the preflight above checks one, the product is checked here.
  const uint64_t per = context_bytes(card, s.cp.n_ctx, 4, false);
  const uint64_t avail = memory_available();
  const auto mib = [](uint64_t b) {
    char t[32];
    std::snprintf(t, sizeof t, "%.1f MiB", static_cast<double>(b) / 1048576.0);
    return std::string(t);
  };
  if (o.parallel > 1 && s.cp.backend == Backend::Cpu && avail > 0 &&
      per > avail / static_cast<uint64_t>(o.parallel))
    throw Error(ErrorKind::BadInput,
                "--parallel " + std::to_string(o.parallel) + " needs " +
                    std::to_string(o.parallel) + " KV caches of " + mib(per) + "; " + mib(avail) +
                    " of memory is available (lower --parallel or --ctx)",
                {.subject = "serve"});
  std::vector<std::unique_ptr<Generator>> gens;
  for (int i = 0; i < o.parallel; ++i) gens.push_back(std::make_unique<Generator>(s.model, s.cp));
  Pool pool(std::move(gens), static_cast<size_t>(o.queue));
  s.pool = &pool;
  s.id = o.served_name.empty() ? std::filesystem::path(o.model).stem().string() : o.served_name;
  s.limits.max_body_bytes = static_cast<size_t>(o.max_body);
  s.limits.max_tokens = o.max_tokens;

  std::unique_ptr<storage::AsyncWriter> writer;
  if (o.store.enabled()) {
    writer = open_writer(o.store.db);
    s.writer = writer.get();
    s.model_row = session::model_record(*s.model, o.model);
  }

  httplib::Server svr;
  const size_t threads = static_cast<size_t>(o.parallel + o.queue + 4);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(static_cast<size_t>(o.max_body));
  svr.set_keep_alive_timeout(2);
  svr.set_read_timeout(30, 0);
  svr.set_write_timeout(30, 0);
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });
  svr.Get("/v1/models", [&s, &card](const httplib::Request& req, httplib::Response& res) {
    if (!s.o.api_key.empty() && req.get_header_value("Authorization") != "Bearer " + s.o.api_key)
      return send_error(res, {401, "missing or wrong API key (Authorization: Bearer <key>)", ""});
    json m = {{"id", s.id},
              {"object", "model"},
              {"created", unix_seconds()},
              {"owned_by", "moelab"},
              {"max_model_len", s.cp.n_ctx},
              {"meta",
               {{"architecture", card.architecture},
                {"n_layer", card.n_layer},
                {"expert_count", card.expert_count},
                {"expert_used_count", card.expert_used_count}}}};
    res.set_content(json({{"object", "list"}, {"data", json::array({m})}}).dump(),
                    "application/json");
  });
  svr.Post("/v1/completions", [&s](const httplib::Request& req, httplib::Response& res) {
    handle_completion(s, req, res, false);
  });
  svr.Post("/v1/chat/completions", [&s](const httplib::Request& req, httplib::Response& res) {
    handle_completion(s, req, res, true);
  });
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string what = res.status == 404 ? "no such endpoint: " + req.method + " " + req.path
                       : res.status == 413
                           ? "request body too large (over --max-body, or a form-encoded body over "
                             "8192 bytes: send Content-Type: application/json)"
                           : "request failed";
    send_error(res, {res.status, what, ""});
  });
  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        send_error(res, {500, "internal error", ""});
      });

  int port = o.port;
  if (port == 0)
    port = svr.bind_to_any_port(o.host);
  else if (!svr.bind_to_port(o.host, port))
    port = -1;
  if (port < 0)
    throw Error(ErrorKind::Io,
                "cannot listen on " + o.host + ":" + std::to_string(o.port) +
                    " (address in use, or not an address of this machine)",
                {.subject = "serve"});
  if (!o.port_file.empty()) write_file_atomic(o.port_file, std::to_string(port) + "\n");
  io.err << "moelab serve: '" << s.id << "' on http://" << o.host << ":" << port
         << " (/v1/models, /v1/completions, /v1/chat/completions; " << o.parallel
         << " generator(s), queue " << o.queue << ")" << std::endl;

  const interrupt::OnInterrupt on_signal([&] {
    s.stopping = true;
    pool.stop();
    svr.stop();
  });
  svr.listen_after_bind();
  if (interrupt::received())
    io.err << "moelab serve: stopped by " << interrupt::signal_name(interrupt::received())
           << std::endl;
  return kOk;
}
}  // namespace

void add_serve(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<ServeOptions>();
  auto* sub = app.add_subcommand(
      "serve", "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions)");
  sub->add_option("-m,--model", o->model, "GGUF model file")->required()->check(CLI::ExistingFile);
  sub->add_option("--host", o->host,
                  "Address to listen on (a non-loopback address needs --api-key)")
      ->capture_default_str();
  sub->add_option("--port", o->port, "TCP port (0: any free port; see --port-file)")
      ->transform(int_range(0, 65535))
      ->capture_default_str();
  sub->add_option("--port-file", o->port_file, "Write the port to this file once listening");
  sub->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY'");
  sub->add_option("--served-name", o->served_name,
                  "Model id in /v1/models and responses (default: the file name)");
  sub->add_option("--parallel", o->parallel, "Requests generated at once (one KV cache each)")
      ->transform(int_range(1, 64))
      ->capture_default_str();
  sub->add_option("--queue", o->queue, "Requests that may wait; beyond them: HTTP 429")
      ->transform(int_range(0, 1024))
      ->capture_default_str();
  sub->add_option("--max-body", o->max_body, "Largest request body in bytes (HTTP 413 beyond)")
      ->transform(int_range(1024, 64 << 20))
      ->capture_default_str();
  sub->add_option("--max-tokens", o->max_tokens, "Largest max_tokens a request may ask")
      ->transform(int_range(1, kMaxPredict))
      ->capture_default_str();
  sub->add_option("-t,--threads", o->threads, "CPU threads per generator")
      ->transform(int_range(1, kMaxThreads));
  sub->add_option("-c,--ctx", o->n_ctx, "Context size in tokens (default: min(trained, 2048))")
      ->transform(int_range(1, kMaxContext));
  add_backend_option(sub, o->backend);
  add_run_store_options(sub, o->store);
  sub->callback([o, io, &action] { action = [o, io] { return serve_cmd(*o, io); }; });
}

}  // namespace moelab::cli
