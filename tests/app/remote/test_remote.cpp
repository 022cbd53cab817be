// Serving and remote runs (issue 21), through the surfaces a user touches: `moelab-cli serve`
// (a QProcess) and `moelab-cli run --remote` / `bench-serve` (cli_run), read back from the
// experiment store; the decoders of the routed-experts formats on responses written here from
// the engines' documentation; the request parser and SSE framing; and the faults of a server,
// played by a scripted cpp-httplib server inside the test.
#include <httplib.h>

#include <QFileInfo>
#include <QProcess>
#include <QTemporaryDir>
#include <atomic>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "cli_run.h"
#include "demo_model_path.h"
#include "moelab/core/error.h"
#include "moelab/remote/client.h"
#include "moelab/remote/openai_request.h"
#include "moelab/remote/routed_experts.h"
#include "moelab/remote/sse.h"
#include "moelab/storage/store.h"
#include "test_support.h"

using namespace moelab;
using moelab::test::cli_run;
using json = nlohmann::json;

namespace {
const QString kMoe = QStringLiteral("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");

// A scripted server on a free loopback port, run on its own thread.
struct FakeServer {
  httplib::Server svr;
  int port = 0;
  std::thread thread;
  FakeServer() = default;
  void start() {
    port = svr.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { svr.listen_after_bind(); });
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  ~FakeServer() {
    svr.stop();
    if (thread.joinable()) thread.join();
  }
};

std::string sse_of(const std::vector<std::string>& events) {
  std::string s;
  for (const auto& e : events) s += "data: " + e + "\n\n";
  return s;
}

// A streamed completion chunk as OpenAI-compatible servers send it.
std::string chunk(const std::string& text, int id, const char* finish = nullptr) {
  json c = {{"index", 0}, {"text", text}, {"token_ids", {id}}};
  c["finish_reason"] = finish ? json(finish) : json();
  return json({{"model", "fake"}, {"choices", {c}}}).dump();
}
}  // namespace

class TestRemote : public QObject {
  Q_OBJECT

 private slots:
  // SGLang: docs "OpenAI APIs - Completions", "Returning Routed Experts (MoE Models)" (SGLang
  // 0.5.x): sgl_ext.routed_experts = base64 of little-endian int32, logical shape
  // [num_tokens, num_layers, top_k] over [routed_experts_start_len, seqlen - 1). The literal
  // below was written independently of moelab's encoder (Python: base64.b64encode(
  // struct.pack('<12i', 1,2,3,4,5,6,7,0,9,10,11,12))): 3 tokens x 2 layers x top-2.
  void sglang_decoder() {
    const std::string b64 = "AQAAAAIAAAADAAAABAAAAAUAAAAGAAAABwAAAAAAAAAJAAAACgAAAAsAAAAMAAAA";
    const auto r = remote::decode_sglang(b64, 3, 2, 0);
    QCOMPARE(r.n_layers, int64_t{2});
    QCOMPARE(r.at(0, 0, 0), 1);
    QCOMPARE(r.at(0, 1, 1), 4);
    QCOMPARE(r.at(1, 1, 1), 0);
    QCOMPARE(r.at(2, 1, 1), 12);
    QCOMPARE(remote::encode_sglang(r), b64);  // and back
    // Prompt of 2 tokens, 2 generated: seqlen 4, rows [0, 3); generated token i = row 1 + i.
    const auto g = remote::generated_rows(r, 2, 2);
    QCOMPARE(g.size(), size_t{2});
    QCOMPARE(g[0], (std::vector<int32_t>{5, 6, 7, 0}));
    QCOMPARE(g[1], (std::vector<int32_t>{9, 10, 11, 12}));
    // Wrong shapes and bytes: clear errors, never a crash or a guess.
    QVERIFY_THROWS_EXCEPTION(Error, remote::decode_sglang(b64, 5, 2, 0));  // 12 ids != 5 rows
    QVERIFY_THROWS_EXCEPTION(Error, remote::decode_sglang(b64, 3, 5, 0));  // width 4 / top-5
    QVERIFY_THROWS_EXCEPTION(Error, remote::decode_sglang("AQAAAA=!", 1, 1, 0));
    QVERIFY_THROWS_EXCEPTION(Error, remote::decode_sglang("AQAA", 1, 1, 0));      // 3 bytes
    QVERIFY_THROWS_EXCEPTION(Error, remote::decode_sglang("/////w==", 1, 1, 0));  // id -1
    QVERIFY_THROWS_EXCEPTION(Error, remote::generated_rows(r, 3, 2));  // 3 rows != [0, 4)
    try {
      remote::decode_sglang(b64, 5, 2, 0);
    } catch (const Error& e) {
      QVERIFY2(std::string(e.what()).find("12 ids") != std::string::npos, e.what());
    }
  }

  // vLLM: PR #28284 ("Support recording expert indices for rollout router replay"), routed
  // experts per request as an array [num_tokens][num_layers][top_k]; on each OpenAI choice as
  // `routed_experts` (vLLM 0.22, --enable-return-routed-experts).
  void vllm_decoder() {
    const json v = json::parse("[[[1,2],[3,4]],[[5,6],[7,0]],[[9,10],[11,12]]]");
    const auto r = remote::decode_vllm(v, 3, 0);
    QCOMPARE(r.n_layers, int64_t{2});
    QCOMPARE(r.top_k, int64_t{2});
    QCOMPARE(r.at(2, 0, 1), 10);
    QCOMPARE(remote::encode_vllm(r), v);
    QVERIFY_THROWS_EXCEPTION(Error, remote::decode_vllm(v, 4, 0));  // row count
    QVERIFY_THROWS_EXCEPTION(Error, remote::decode_vllm(json::parse("[[[1,2],[3]]]"), 1, 0));
    QVERIFY_THROWS_EXCEPTION(Error,
                             remote::decode_vllm(json::parse("[[[1,2]],[[3,4],[5,6]]]"), 2, 0));
    QVERIFY_THROWS_EXCEPTION(Error, remote::decode_vllm(json::parse("[[[1,-2]]]"), 1, 0));
    QVERIFY_THROWS_EXCEPTION(Error, remote::decode_vllm(json::parse("[[[1,\"2\"]]]"), 1, 0));
    QVERIFY_THROWS_EXCEPTION(Error, remote::decode_vllm(json::parse("{\"a\":1}"), 1, 0));
    // moelab serve's shape: the generated tokens' rows only, start = prompt - 1.
    const auto g = remote::generated_rows(remote::decode_vllm(v, 3, 4), 5, 3);
    QCOMPARE(g[2], (std::vector<int32_t>{9, 10, 11, 12}));
  }

  void base64_rfc4648() {
    // RFC 4648 section 10 test vectors.
    const char* plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char* enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; ++i) {
      QCOMPARE(remote::base64_encode(plain[i]), std::string(enc[i]));
      QCOMPARE(remote::base64_decode(enc[i]).value_or("?"), std::string(plain[i]));
    }
    QVERIFY(!remote::base64_decode("Zg=").has_value());
    QVERIFY(!remote::base64_decode("Z===").has_value());
    QVERIFY(!remote::base64_decode("Zg==Zg==").has_value());
  }

  void request_parser() {
    const remote::RequestLimits lim;
    auto p = remote::parse_completion_request(
        R"({"model":"m","prompt":"hi","max_tokens":5,"temperature":0,"top_k":3,"seed":42,
            "stop":["x","y"],"stream":true,"stream_options":{"include_usage":true},
            "return_routed_experts":true,"return_token_ids":true})",
        false, lim);
    QVERIFY2(p.ok(), p.error.message.c_str());
    QCOMPARE(p.request->prompt, std::string("hi"));
    QCOMPARE(p.request->max_tokens, 5);
    QCOMPARE(p.request->sampling.temperature, 0.f);
    QCOMPARE(p.request->sampling.top_k, 3);
    QCOMPARE(*p.request->sampling.seed, uint64_t{42});
    QCOMPARE(p.request->stop.size(), size_t{2});
    QVERIFY(p.request->stream && p.request->include_usage && p.request->return_token_ids);
    QVERIFY(p.request->routed == remote::RoutedFormat::SGLang);
    p = remote::parse_completion_request(
        R"({"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"routed_experts_format":"vllm"})",
        true, lim);
    QVERIFY2(p.ok(), p.error.message.c_str());
    QCOMPARE(p.request->messages.size(), size_t{2});
    QCOMPARE(p.request->messages[1].content, std::string("ab"));
    QVERIFY(p.request->routed == remote::RoutedFormat::VLLM);
    // Errors name the field; nothing throws.
    const std::pair<const char*, const char*> bad[] = {
        {"not json", ""},
        {"[1]", ""},
        {R"({"prompt":1})", "prompt"},
        {R"({"prompt":""})", "prompt"},
        {R"({"prompt":["a","b"]})", "prompt"},
        {R"({"prompt":"a","max_tokens":0})", "max_tokens"},
        {R"({"prompt":"a","max_tokens":100000000})", "max_tokens"},
        {R"({"prompt":"a","temperature":"hot"})", "temperature"},
        {R"({"prompt":"a","temperature":3})", "temperature"},
        {R"({"prompt":"a","top_p":1.5})", "top_p"},
        {R"({"prompt":"a","seed":-1})", "seed"},
        {R"({"prompt":"a","stop":[1]})", "stop"},
        {R"({"prompt":"a","n":2})", "n"},
        {R"({"prompt":"a","stream":"yes"})", "stream"},
        {R"({"prompt":"a","routed_experts_format":"x"})", "routed_experts_format"},
    };
    for (const auto& [body, param] : bad) {
      const auto e = remote::parse_completion_request(body, false, lim);
      QVERIFY2(!e.ok(), body);
      QCOMPARE(e.error.status, 400);
      QCOMPARE(e.error.param, std::string(param));
    }
    const auto role = remote::parse_completion_request(
        R"({"messages":[{"role":"tool","content":"x"}]})", true, lim);
    QCOMPARE(role.error.param, std::string("messages[0].role"));
    // Oversized and deeply nested bodies.
    remote::RequestLimits small;
    small.max_body_bytes = 64;
    const auto big = remote::parse_completion_request(
        "{\"prompt\":\"" + std::string(100, 'a') + "\"}", false, small);
    QCOMPARE(big.error.status, 413);
    const auto deep = remote::parse_completion_request(
        "{\"prompt\":\"a\",\"x\":" + std::string(10000, '[') + std::string(10000, ']') + "}", false,
        lim);
    QVERIFY(!deep.ok());
    QVERIFY(json::parse(remote::error_body(deep.error))["error"]["message"].is_string());
  }

  void sse_framing() {
    remote::SseParser p(1024);
    std::vector<std::string> got;
    const auto on = [&](const std::string& d) {
      got.push_back(d);
      return true;
    };
    QVERIFY(p.feed(": comment\r\ndata: {\"a\"", on));
    QVERIFY(p.feed(":1}\r\n\r\nevent: x\ndata:b\ndata: c\n\n", on));
    QCOMPARE(got, (std::vector<std::string>{"{\"a\":1}", "b\nc"}));
    QVERIFY(!p.pending());
    QVERIFY(p.feed("data: cut", on));
    QVERIFY(p.pending());
    remote::SseParser q(16);
    QVERIFY(!q.feed("data: " + std::string(100, 'x'), on));
    QVERIFY(q.overflow());
  }

  // serve refuses to bind beyond loopback without an API key (before loading anything).
  void serve_needs_key_beyond_loopback() {
    MOELAB_REQUIRE_SHARED(kMoe);
    const auto r = cli_run({"serve", "--model", test::shared_path(kMoe), "--host", "0.0.0.0"});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.find("needs --api-key") != std::string::npos, r.err.c_str());
  }

  // --parallel N allocates N KV caches: refused up front when they do not fit.
  void serve_parallel_memory() {
    MOELAB_REQUIRE_SHARED(kMoe);
    qputenv("MOELAB_MEMORY_AVAILABLE", "600000");
    const auto r =
        cli_run({"serve", "--model", test::shared_path(kMoe), "--parallel", "8", "--port", "0"});
    qunsetenv("MOELAB_MEMORY_AVAILABLE");
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.find("--parallel 8 needs 8 KV caches") != std::string::npos, r.err.c_str());
  }

  // The acceptance round trip: serve a fixture MoE, run --remote against it (SGLang and vLLM
  // shapes, streamed), run locally at the same seed and threads; tokens and routed experts
  // equal, read back from the store.
  void round_trip() {
    MOELAB_REQUIRE_SHARED(kMoe);
    QTemporaryDir dir;
    const std::string model = test::shared_path(kMoe);
    const std::string db = dir.filePath("lab.db").toStdString();
    const QString port_file = dir.filePath("port");
    QProcess srv;
    srv.setProgram(QStringLiteral(MOELAB_CLI_EXE));
    srv.setArguments({"serve", "--model", QString::fromStdString(model), "--port", "0",
                      "--port-file", port_file, "--threads", "1", "--api-key", "k3y",
                      "--served-name", "moe"});
    srv.start();
    QVERIFY(srv.waitForStarted(10000));
    while (!QFile::exists(port_file) && srv.state() == QProcess::Running) srv.waitForFinished(50);
    QVERIFY2(QFile::exists(port_file), srv.readAllStandardError().constData());
    const std::string url = "http://127.0.0.1:" + test::read_all(port_file).trimmed().toStdString();

    // No key, wrong model: refused with the reason.
    auto r = cli_run({"run", "--remote", url, "--remote-model", "moe", "-p", "x"});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.find("HTTP 401") != std::string::npos, r.err.c_str());
    r = cli_run({"run", "--remote", url, "--remote-model", "other", "--api-key", "k3y", "-p", "x"});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.find("HTTP 404") != std::string::npos, r.err.c_str());

    const std::vector<std::string> common = {"-p", "Once upon a time", "-n",   "12", "--seed",
                                             "5",  "--json",           "--db", db,   "--session"};
    auto with = [&](std::vector<std::string> head, std::vector<std::string> tail) {
      head.insert(head.end(), common.begin(), common.end());
      head.insert(head.end(), tail.begin(), tail.end());
      return head;
    };
    const auto local = cli_run(with({"run", "--model", model, "--threads", "1"}, {"local"}));
    QVERIFY2(local.code == 0, local.err.c_str());
    const json lj = json::parse(local.out);
    storage::Store store(db);
    for (const char* fmt : {"sglang", "vllm"}) {
      const auto rem = cli_run(with({"run", "--remote", url, "--remote-model", "moe", "--api-key",
                                     "k3y", "--routed-experts-format", fmt},
                                    {std::string("remote-") + fmt}));
      QVERIFY2(rem.code == 0, rem.err.c_str());
      const json rj = json::parse(rem.out);
      QCOMPARE(rj["tokens"], lj["tokens"]);
      QCOMPARE(rj["text"], lj["text"]);
      QCOMPARE(rj["routed_experts_format"], json(fmt));
      QCOMPARE(rj["prompt_tokens"].get<size_t>(), lj["prompt_tokens"].size());

      const auto run = store.run(rj["run_id"].get<int64_t>());
      QVERIFY(run.has_value());
      QCOMPARE(storage::status_name(run->status), "complete");
      const json cfg = json::parse(run->config_json);
      QCOMPARE(cfg["engine"], json("remote"));
      QCOMPARE(cfg["remote"]["url"], json(url));
      QCOMPARE(cfg["remote"]["served_model"], json("moe"));
      const json& rep = cfg["remote"]["reported"];
      QCOMPARE(rep["token_ids"], json(true));
      QCOMPARE(rep["usage"]["server"]["completion_tokens"], json(12));
      QCOMPARE(rep["usage"]["client"]["completion_tokens"], json(12));
      QCOMPARE(rep["model_entry"]["id"], json("moe"));
      QVERIFY(rep["model_entry"]["meta"]["expert_used_count"].get<int64_t>() > 0);
      QCOMPARE(rep["routed_experts"]["format"], json(fmt));
      QCOMPARE(rep["routed_experts"]["rows_returned"], json(12));  // moelab serve: generated only
      QCOMPARE(rep["routed_experts"]["prompt_rows_returned"], json(0));
      QCOMPARE(rep["routed_experts"]["weights"], json("not reported by this engine"));
      const auto lt = store.tokens(lj["run_id"].get<int64_t>());
      const auto rt = store.tokens(run->id);
      QCOMPARE(rt.size(), lt.size());
      for (size_t i = 0; i < lt.size(); ++i) {
        QCOMPARE(rt[i].id, lt[i].id);
        QVERIFY(std::isnan(rt[i].logprob));  // not reported: unknown, never invented
      }
      // Routed experts equal the local routing trace, token by token and layer by layer.
      const auto lr = store.routing(lj["run_id"].get<int64_t>());
      const auto rr = store.routing(run->id);
      QCOMPARE(rr.size(), lr.size());
      QVERIFY(!lr.empty());
      for (size_t i = 0; i < lr.size(); ++i) {
        QCOMPARE(rr[i].position, lr[i].position);
        QCOMPARE(rr[i].layer, lr[i].layer);
        QCOMPARE(rr[i].experts, lr[i].experts);
        QVERIFY(std::isnan(rr[i].weights[0]));
      }
      std::map<std::string, double> m;
      for (const auto& x : store.metrics(run->id)) m[x.key] = x.value;
      QVERIFY(m.count("ttft_ms") && m["ttft_ms"] > 0);
      QVERIFY(m.count("tpot_ms") && m["tpot_ms"] > 0);
      QCOMPARE(m["generated_tokens"], 12.0);
    }
    // Not streamed: one JSON answer with the same tokens, usage and routed experts (vLLM shape).
    {
      httplib::Client nc(url);
      const json body = {{"model", "moe"},
                         {"prompt", "Once upon a time"},
                         {"max_tokens", 12},
                         {"temperature", 0.8},
                         {"top_k", 40},
                         {"top_p", 0.95},
                         {"min_p", 0.05},
                         {"seed", 5},
                         {"return_token_ids", true},
                         {"routed_experts_format", "vllm"}};
      auto res = nc.Post("/v1/completions", {{"Authorization", "Bearer k3y"}}, body.dump(),
                         "application/json");
      QVERIFY(res);
      QCOMPARE(res->status, 200);
      const json j = json::parse(res->body);
      const json& c = j["choices"][0];
      QCOMPARE(c["token_ids"], lj["tokens"]);
      QCOMPARE(c["text"], lj["text"]);
      QCOMPARE(j["usage"]["completion_tokens"], json(12));
      QCOMPARE(j["seed"], json(5));
      const auto lr = store.routing(lj["run_id"].get<int64_t>());
      const int64_t p = j["usage"]["prompt_tokens"].get<int64_t>();
      const auto rows =
          remote::generated_rows(remote::decode_vllm(c["routed_experts"], 12,
                                                     c["routed_experts_start_len"].get<int64_t>()),
                                 p, 12);
      for (const auto& rec : lr)
        for (size_t k = 0; k < rec.experts.size(); ++k)
          QCOMPARE(rows[static_cast<size_t>(rec.position)]
                       [static_cast<size_t>(rec.layer) * rec.experts.size() + k],
                   static_cast<int32_t>(rec.experts[k]));
    }
    // The server survives malformed and oversized requests and answers them as errors.
    httplib::Client c(url);
    const httplib::Headers h = {{"Authorization", "Bearer k3y"}};
    auto res = c.Post("/v1/completions", h, "{\"prompt\": ", "application/json");
    QVERIFY(res);
    QCOMPARE(res->status, 400);
    res = c.Post("/v1/completions", h, std::string(2 << 20, 'x'), "application/json");
    QVERIFY(!res || res->status == 413);
    res = c.Post("/v1/completions", h,
                 "{\"prompt\":\"" + std::string(4000, 'a') + "\",\"max_tokens\":1}",
                 "application/json");
    QVERIFY(res);
    QCOMPARE(res->status, 400);  // longer than the context
    QVERIFY(json::parse(res->body)["error"]["message"].get<std::string>().find("context") !=
            std::string::npos);
    res = c.Get("/v1/models", h);
    QVERIFY(res);
    QCOMPARE(json::parse(res->body)["data"][0]["id"], json("moe"));

    // bench-serve against it: every request stored as a run of the session, with metrics.
    const std::string prompts = dir.filePath("prompts.txt").toStdString();
    std::ofstream(prompts) << "Once upon a time\nThe cat\n\nA dog ran\n";
    const auto b = cli_run({"bench-serve", url, "--model", "moe", "--api-key", "k3y", "-n", "6",
                            "-c", "2", "--prompts", prompts, "--max-tokens", "8", "--db", db,
                            "--session", "bench-a", "--json"});
    QVERIFY2(b.code == 0, b.err.c_str());
    const json bj = json::parse(b.out);
    QCOMPARE(bj["requests"], json(6));
    QCOMPARE(bj["failed"], json(0));
    QCOMPARE(bj["run_ids"].size(), size_t{6});
    QVERIFY(bj["ttft_ms"]["p50"].get<double>() > 0);
    for (const auto& id : bj["run_ids"]) {
      std::map<std::string, double> m;
      for (const auto& x : store.metrics(id.get<int64_t>())) m[x.key] = x.value;
      QVERIFY(m["ttft_ms"] > 0);
      QCOMPARE(m["generated_tokens"], 8.0);
    }

    srv.terminate();  // SIGTERM: clean shutdown, exit 128 + 15
    QVERIFY(srv.waitForFinished(20000));
    QCOMPARE(srv.exitCode(), 143);
    QVERIFY(srv.readAllStandardError().contains("stopped by SIGTERM"));
  }

  // A non-streamed request whose client goes away is cancelled (stored `cancelled` with the
  // tokens made so far), not generated to its max_tokens: the client here closes the
  // connection as soon as the first byte of the answer arrives.
  void serve_cancels_non_streamed_when_client_leaves() {
    MOELAB_REQUIRE_SHARED(kMoe);
    QTemporaryDir dir;
    const std::string db = dir.filePath("gone.db").toStdString();
    const QString port_file = dir.filePath("port");
    QProcess srv;
    srv.setProgram(QStringLiteral(MOELAB_CLI_EXE));
    srv.setArguments({"serve", "--model", QString::fromStdString(test::shared_path(kMoe)), "--port",
                      "0", "--port-file", port_file, "--threads", "1", "--ctx", "8192",
                      "--max-tokens", "8000", "--db", QString::fromStdString(db), "--session",
                      "served", "--served-name", "moe"});
    srv.start();
    QVERIFY(srv.waitForStarted(10000));
    while (!QFile::exists(port_file) && srv.state() == QProcess::Running) srv.waitForFinished(50);
    QVERIFY2(QFile::exists(port_file), srv.readAllStandardError().constData());
    const std::string url = "http://127.0.0.1:" + test::read_all(port_file).trimmed().toStdString();
    {
      httplib::Client c(url);
      httplib::Request rq;
      rq.method = "POST";
      rq.path = "/v1/completions";
      rq.headers.emplace("Content-Type", "application/json");
      rq.body = json({{"model", "moe"},
                      {"prompt", "Once upon a time"},
                      {"max_tokens", 8000},
                      {"ignore_eos", true},
                      {"seed", 3}})
                    .dump();
      size_t got = 0;
      rq.content_receiver = [&](const char*, size_t n, uint64_t, uint64_t) {
        got += n;
        return false;  // leave at the first byte
      };
      httplib::Response res;
      httplib::Error err;
      QVERIFY(!c.send(rq, res, err));
      QVERIFY(got > 0);
      QCOMPARE(res.status, 200);
    }
    // The server notices at its next writes; wait (bounded) until the run is finished.
    storage::Store store(db);
    std::optional<storage::RunRecord> run;
    for (int i = 0; i < 600; ++i) {
      const auto s = store.session_by_name("served");
      if (s && !store.runs(s->id).empty() &&
          store.runs(s->id).front().status != storage::RunStatus::Running) {
        run = store.runs(s->id).front();
        break;
      }
      QTest::qWait(100);
    }
    QVERIFY(run.has_value());
    QCOMPARE(storage::status_name(run->status), "cancelled");
    QVERIFY2(run->n_tokens < 8000, std::to_string(run->n_tokens).c_str());
    // And the server goes on answering.
    httplib::Client c2(url);
    auto ok = c2.Post("/v1/completions",
                      json({{"model", "moe"}, {"prompt", "The cat"}, {"max_tokens", 3}}).dump(),
                      "application/json");
    QVERIFY(ok);
    QCOMPARE(ok->status, 200);
    QCOMPARE(json::parse(ok->body)["usage"]["completion_tokens"], json(3));
    srv.terminate();
    QVERIFY(srv.waitForFinished(20000));
  }

  // /v1/chat/completions through the model's chat template (the fixtures have none: SmolLM2's
  // ChatML, when cached): the same tokens as `run --chat --system` locally.
  void chat_round_trip() {
    const std::string smol = smollm2_gguf_path();
    if (!QFileInfo::exists(QString::fromStdString(smol)))
      QSKIP(qPrintable(QString::fromStdString("skipped: model file not cached at " + smol)));
    QTemporaryDir dir;
    const QString port_file = dir.filePath("port");
    QProcess srv;
    srv.setProgram(QStringLiteral(MOELAB_CLI_EXE));
    srv.setArguments({"serve", "--model", QString::fromStdString(smol), "--port", "0",
                      "--port-file", port_file, "--threads", "1", "--served-name", "smol"});
    srv.start();
    QVERIFY(srv.waitForStarted(10000));
    while (!QFile::exists(port_file) && srv.state() == QProcess::Running) srv.waitForFinished(50);
    QVERIFY2(QFile::exists(port_file), srv.readAllStandardError().constData());
    const std::string url = "http://127.0.0.1:" + test::read_all(port_file).trimmed().toStdString();
    const std::vector<std::string> args = {
        "--chat", "--system", "Be brief.", "-p", "What is a cat?",
        "-n",     "8",        "--seed",    "9",  "--json"};
    std::vector<std::string> l = {"run", "--model", smol, "--threads", "1"};
    std::vector<std::string> r = {"run", "--remote", url, "--remote-model", "smol"};
    l.insert(l.end(), args.begin(), args.end());
    r.insert(r.end(), args.begin(), args.end());
    const auto lc = cli_run(l);
    QVERIFY2(lc.code == 0, lc.err.c_str());
    const auto rc = cli_run(r);
    QVERIFY2(rc.code == 0, rc.err.c_str());
    const json lj = json::parse(lc.out), rj = json::parse(rc.out);
    QCOMPARE(rj["tokens"], lj["tokens"]);
    QCOMPARE(rj["text"], lj["text"]);
    QCOMPARE(rj["prompt_tokens"].get<size_t>(), lj["prompt_tokens"].size());
    QCOMPARE(rj["routed_experts_unavailable"], json("not available from this engine"));  // dense
    srv.terminate();
    QVERIFY(srv.waitForFinished(20000));
  }

  // Faults of a server: each a clear error, exit 2, and the partial run stored as failed with
  // the tokens that arrived.
  void faults() {
    QTemporaryDir dir;
    const std::string db = dir.filePath("f.db").toStdString();
    FakeServer fs;
    const std::string two = chunk("Hel", 7) + "\n" + chunk("lo", 8);
    fs.svr.Post("/500/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.status = 500;
      res.set_content(R"({"error":{"message":"GPU on fire"}})", "application/json");
    });
    fs.svr.Post("/malformed/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(sse_of({chunk("Hel", 7), "{not json"}), "text/event-stream");
    });
    fs.svr.Post("/cut/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(sse_of({chunk("Hel", 7), chunk("lo", 8)}), "text/event-stream");
    });
    fs.svr.Post("/shape/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      json last = json::parse(chunk("", 9, "stop"));
      last["choices"][0]["routed_experts"] = json::parse("[[[1,2]],[[3]],[[4,5]]]");
      res.set_content(
          sse_of({chunk("Hel", 7), last.dump(),
                  R"({"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":2}})", "[DONE]"}),
          "text/event-stream");
    });
    fs.svr.Post("/big/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      // A response that never ends: the client stops at its bound (64 MiB), not at our 96 MiB.
      res.set_chunked_content_provider("text/event-stream", [](size_t, httplib::DataSink& sink) {
        const std::string head = sse_of({chunk("Hel", 7)}) + "data: ";
        sink.write(head.data(), head.size());
        const std::string block(1 << 20, 'a');
        for (int i = 0; i < 96 && sink.write(block.data(), block.size()); ++i) {
        }
        sink.done();
        return true;
      });
    });
    fs.svr.Post("/slow/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/event-stream", [](size_t, httplib::DataSink& sink) {
        const std::string s = sse_of({chunk("Hel", 7)});
        sink.write(s.data(), s.size());
        std::this_thread::sleep_for(std::chrono::seconds(3));
        sink.done();
        return true;
      });
    });
    fs.svr.Post("/endless/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      // A server that ignores max_tokens: token chunks without end (bounded here at 100000).
      res.set_chunked_content_provider("text/event-stream", [](size_t, httplib::DataSink& sink) {
        for (int i = 0; i < 100000; ++i) {
          const std::string s = sse_of({chunk("a", 5)});
          if (!sink.write(s.data(), s.size())) break;
        }
        sink.done();
        return true;
      });
    });
    fs.svr.Post("/vllm021/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      // vLLM >= 0.21 (docs.vllm.ai v0.21.0, "Routed Experts Replay"): prompt_routed_experts
      // [prompt_len, num_moe_layers, top_k] on the response, routed_experts [gen_len, ...] on
      // the choice. 3 prompt tokens, 2 generated, 2 layers, top-2.
      json last = json::parse(chunk("lo", 8, "stop"));
      last["choices"][0]["routed_experts"] = json::parse("[[[7,1],[6,2]],[[5,3],[4,0]]]");
      json usage = {
          {"choices", json::array()},
          {"usage", {{"prompt_tokens", 3}, {"completion_tokens", 2}}},
          {"prompt_routed_experts", json::parse("[[[0,1],[2,3]],[[1,2],[3,4]],[[2,3],[4,5]]]")}};
      res.set_content(sse_of({chunk("Hel", 7), last.dump(), usage.dump(), "[DONE]"}),
                      "text/event-stream");
    });
    fs.svr.Post("/llama/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      // llama-server-like: no token ids, no routed experts.
      const std::string a =
          json({{"choices", {{{"index", 0}, {"text", "Hi"}, {"finish_reason", nullptr}}}}}).dump();
      const std::string b =
          json({{"model", "ll"},
                {"choices", {{{"index", 0}, {"text", "!"}, {"finish_reason", "stop"}}}},
                {"usage", {{"prompt_tokens", 3}, {"completion_tokens", 2}}}})
              .dump();
      res.set_content(sse_of({a, b, "[DONE]"}), "text/event-stream");
    });
    fs.start();
    const auto run = [&](const std::string& path, std::vector<std::string> extra = {}) {
      std::vector<std::string> a = {
          "run",  "--remote", fs.url() + path, "--remote-model", "m", "-p", "x",
          "--db", db,         "--session",     "faults"};
      a.insert(a.end(), extra.begin(), extra.end());
      return cli_run(a);
    };
    storage::Store store(db);
    const auto last_run = [&] {
      const auto s = store.session_by_name("faults");
      return store.runs(s->id).back();
    };
    struct Case {
      const char* path;
      const char* message;
      size_t tokens;
      std::vector<std::string> extra;
    };
    const Case cases[] = {
        {"/500", "HTTP 500: GPU on fire", 0, {}},
        {"/malformed", "malformed JSON in stream event 2", 1, {}},
        {"/cut", "ended before the response was complete", 2, {}},
        {"/shape", "ragged", 2, {"--routed-experts-format", "vllm"}},
        {"/big", "larger than", 1, {}},
        {"/slow", "no data for", 1, {"--remote-timeout", "0.5"}},
        {"/nothing-here", "HTTP 404", 0, {}},
        // -n 8: read up to 8 + max(16, 8 / 4) tokens, then stopped with the reason.
        {"/endless", "sent 25 tokens for max_tokens 8 (it ignores max_tokens)", 24, {"-n", "8"}},
    };
    for (const auto& c : cases) {
      const auto r = run(c.path, c.extra);
      QCOMPARE(r.code, 2);
      QVERIFY2(r.err.find(c.message) != std::string::npos, (c.path + (": " + r.err)).c_str());
      const auto rec = last_run();
      QCOMPARE(storage::status_name(rec.status), "failed");
      QVERIFY2(rec.error.find(c.message) != std::string::npos, rec.error.c_str());
      QCOMPARE(store.tokens(rec.id).size(), c.tokens);
    }
    // vLLM >= 0.21's split shape: generated token 0 was drawn from the last prompt token's pass,
    // token 1 from generated token 0's; the prompt's other rows are counted, not stored.
    {
      const auto v = run("/vllm021", {"--routed-experts-format", "vllm"});
      QVERIFY2(v.code == 0, v.err.c_str());
      const auto rec = last_run();
      const auto rr = store.routing(rec.id);
      QCOMPARE(rr.size(), size_t{4});
      QCOMPARE(rr[0].experts, (std::vector<uint16_t>{2, 3}));  // prompt row 2, layer 0
      QCOMPARE(rr[1].experts, (std::vector<uint16_t>{4, 5}));  // prompt row 2, layer 1
      QCOMPARE(rr[2].experts, (std::vector<uint16_t>{7, 1}));  // generated row 0, layer 0
      QCOMPARE(rr[3].experts, (std::vector<uint16_t>{6, 2}));
      const json re = json::parse(rec.config_json)["remote"]["reported"]["routed_experts"];
      QCOMPARE(re["format"], json("vllm"));
      QCOMPARE(re["prompt_rows_returned"], json(2));
      QCOMPARE(re["rows_returned"], json(5));
    }
    // A server that is down.
    const auto down =
        cli_run({"run", "--remote", "http://127.0.0.1:1", "--remote-model", "m", "-p", "x"});
    QCOMPARE(down.code, 2);
    QVERIFY2(down.err.find("cannot connect") != std::string::npos, down.err.c_str());
    // llama-server-like: works; what it does not report is stored and shown as unavailable.
    const auto ll = run("/llama", {"--json"});
    QVERIFY2(ll.code == 0, ll.err.c_str());
    const json lj = json::parse(ll.out);
    QCOMPARE(lj["text"], json("Hi!"));
    QVERIFY(lj["tokens"].is_null());
    QVERIFY(lj["routed_experts"].is_null());
    QCOMPARE(lj["routed_experts_unavailable"], json("not available from this engine"));
    const auto rec = last_run();
    QCOMPARE(storage::status_name(rec.status), "complete");
    const auto toks = store.tokens(rec.id);
    QCOMPARE(toks.size(), size_t{2});
    QCOMPARE(toks[0].id, -1);
    QVERIFY(store.routing(rec.id).empty());
    // What the server reported is in the run's config; what it did not report says so.
    const json rep = json::parse(rec.config_json)["remote"]["reported"];
    QCOMPARE(json::parse(rec.config_json)["remote"]["served_model"], json("ll"));
    QCOMPARE(rep["served_model"], json("ll"));
    QCOMPARE(rep["token_ids"], json(false));
    QCOMPARE(rep["usage"]["server"]["prompt_tokens"], json(3));
    QCOMPARE(rep["usage"]["server"]["completion_tokens"], json(2));
    QCOMPARE(rep["usage"]["client"]["completion_tokens"], json(2));
    QCOMPARE(rep["routed_experts"]["format"], json("none"));
    QCOMPARE(rep["routed_experts"]["note"], json("not available from this engine"));
    QVERIFY2(rep["model_entry"].get<std::string>().find("HTTP 404") != std::string::npos,
             rep.dump().c_str());
    const auto shown = cli_run({"sessions", "show", "faults", "--db", db});
    QVERIFY2(shown.code == 0, shown.err.c_str());
    QVERIFY2(shown.out.find("served model ll, token ids no, usage 3 + 2 (client counted 2), "
                            "routed experts: not available from this engine") != std::string::npos,
             shown.out.c_str());
  }

  // The oversized-response bound of the client, at a small limit.
  void client_response_bound() {
    FakeServer fs;
    fs.svr.Post("/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(sse_of({chunk(std::string(5000, 'a'), 1), chunk("b", 2, "stop"), "[DONE]"}),
                      "text/event-stream");
    });
    fs.start();
    remote::Endpoint ep;
    ep.url = fs.url() + "/v1";
    ep.max_response_bytes = 1000;
    remote::RemoteRequest rq;
    rq.model = "m";
    rq.prompt = "x";
    const auto r = remote::stream_completion(ep, rq);
    QVERIFY2(r.error.find("larger than 1000 bytes") != std::string::npos, r.error.c_str());
    ep.max_response_bytes = 1 << 20;
    const auto ok = remote::stream_completion(ep, rq);
    QVERIFY2(ok.error.empty(), ok.error.c_str());
    QCOMPARE(ok.chunks.size(), size_t{2});
    QCOMPARE(ok.finish_reason, std::string("stop"));
  }

  // run --remote prints the server's text as run prints a local model's: control bytes as
  // control pictures on a terminal (and with --escape), the bytes as sent to a pipe.
  void remote_text_is_escaped_on_a_terminal() {
    FakeServer fs;
    fs.svr.Post("/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(
          sse_of({chunk("a\x1b[31m", 1), chunk("caf\xc3\xa9\x07", 2, "stop"), "[DONE]"}),
          "text/event-stream");
    });
    fs.start();
    const std::vector<std::string> args = {"run", "--remote", fs.url(), "--remote-model",
                                           "m",   "-p",       "x"};
    const auto piped = cli_run(args);
    QVERIFY2(piped.code == 0, piped.err.c_str());
    QCOMPARE(piped.out, std::string("a\x1b[31mcaf\xc3\xa9\x07\n"));
    const auto tty = cli_run(args, true);
    QVERIFY2(tty.code == 0, tty.err.c_str());
    QCOMPARE(tty.out, std::string("a\xe2\x90\x9b[31mcaf\xc3\xa9\xe2\x90\x87\n"));  // ESC, BEL
    auto escaped_args = args;
    escaped_args.push_back("--escape");
    QCOMPARE(cli_run(escaped_args).out, tty.out);
  }
};

QTEST_GUILESS_MAIN(TestRemote)
#include "test_remote.moc"
