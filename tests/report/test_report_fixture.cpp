// An A/B report of two routing policies (the model's own top-2 vs fixed top-1) on the fixture
// Mixtral model, generated for real and recorded through the storage API, written by
// `moelab-cli report` as HTML (rendered in headless Chromium) and PDF (pdftotext / pdftoppm).
// Set MOELAB_REPORT_KEEP=DIR to keep the reports, the screenshot and the PDF pages there.
#include <QTemporaryDir>
#include <QtTest>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>

#include "card_format.h"
#include "cli.h"
#include "moelab/model/card.h"
#include "moelab/model/model.h"
#include "moelab/policies/policies.h"
#include "moelab/report/report.h"
#include "moelab/runtime/generator.h"
#include "moelab/storage/store.h"
#include "moelab/views/colormap.h"
#include "report_test_util.h"
#include "test_support.h"

using namespace moelab;

namespace {

const char kModel[] = "fixtures/models/mixtral-moe/mixtral-moe.F32.gguf";
const char kPrompt[] = "Once upon a time, a little café in Tōkyō (東京) had a cat named Zoë.";

/// Routing and one attention map of a Context, from its observer.
struct Capture {
  std::mutex mu;
  std::map<int, std::vector<float>> ids, weights;  // layer -> last row
  std::vector<float> attention;                    // layer 0, head 1 of the prefill [n, n_kv]
  int64_t att_n = 0, att_kv = 0;
  bool prefill_done = false;

  void observe(const Observation& o) {
    std::lock_guard lock(mu);
    if (o.name == "kq_soft_max") {
      if (o.layer == 0 && !prefill_done) {
        const int64_t n = o.shape[1], kv = o.shape[2];
        const auto head = o.data.subspan(static_cast<size_t>(n * kv), static_cast<size_t>(n * kv));
        attention.assign(head.begin(), head.end());
        att_n = n;
        att_kv = kv;
      }
      return;
    }
    const int64_t n = o.shape[0], k = o.shape[1];
    const auto last = o.data.subspan(static_cast<size_t>((n - 1) * k), static_cast<size_t>(k));
    (o.name == "ffn_moe_topk" ? ids : weights)[o.layer].assign(last.begin(), last.end());
  }
  std::vector<storage::RoutingRecord> take(int64_t position) {
    std::lock_guard lock(mu);
    std::vector<storage::RoutingRecord> out;
    for (const auto& [layer, id] : ids) {
      storage::RoutingRecord r;
      r.position = position;
      r.layer = layer;
      const auto& w = weights[layer];
      for (size_t j = 0; j < id.size(); ++j) {
        if (id[j] < 0) continue;  // unused slot of a variable-k policy
        r.experts.push_back(static_cast<uint16_t>(id[j]));
        r.weights.push_back(j < w.size() ? w[j] : 0.f);
      }
      out.push_back(std::move(r));
    }
    prefill_done = true;
    return out;
  }
};

int64_t record_run(storage::Store& store, int64_t session, int64_t model_row,
                   std::shared_ptr<const Model> model, const std::string& model_path,
                   const std::string& sha, const std::string& policy) {
  ContextParams cp;
  cp.n_ctx = 256;
  cp.n_threads = 2;
  cp.routing = RoutingPolicy::parse(policy);
  Generator gen(model, cp);
  {
    // Warm-up (thread pool start, page cache): otherwise the first run of the process pays
    // for it and the A/B latencies compare process start-up, not routing policies.
    GenerateParams warm;
    warm.prompt = kPrompt;
    warm.max_tokens = 8;
    warm.sampling.temperature = 0;
    gen.generate(warm);
  }
  Capture cap;
  gen.context().set_observer([&cap](const Observation& o) { cap.observe(o); },
                             {"ffn_moe_topk", "ffn_moe_weights", "kq_soft_max"});
  GenerateParams gp;
  gp.prompt = kPrompt;
  gp.max_tokens = 32;
  gp.ignore_eos = true;
  gp.sampling.temperature = 0;  // greedy: the policy is the only difference
  gp.sampling.seed = 7;
  nlohmann::json cfg = {{"kind", "generate"},
                        {"sampling",
                         {{"temperature", 0.0},
                          {"top_k", gp.sampling.top_k},
                          {"top_p", gp.sampling.top_p},
                          {"min_p", gp.sampling.min_p}}},
                        {"seed", 7},
                        {"routing_policy", cp.routing.describe()},
                        {"attention_policy", "full"},
                        {"threads", cp.n_threads},
                        {"backend", "cpu"},
                        {"n_ctx", cp.n_ctx},
                        {"kv_type", "f32"},
                        {"max_tokens", gp.max_tokens},
                        {"ignore_eos", true},
                        {"model",
                         {{"path", model_path},
                          {"sha256", sha},
                          {"architecture", model->card().architecture},
                          {"name", model->card().name}}}};
  storage::RunBegin rb;
  rb.session_id = session;
  rb.model_id = model_row;
  rb.config_json = cfg.dump();
  rb.prompt = kPrompt;
  const int64_t run = store.begin_run(rb);
  std::vector<storage::TokenRecord> tokens;
  std::vector<storage::RoutingRecord> routing;
  const GenerateResult r = gen.generate(gp, [&](const TokenEvent& ev) {
    storage::TokenRecord t;
    t.position = ev.index;
    t.id = ev.id;
    t.piece = ev.piece;
    t.logprob = ev.logprob;
    t.entropy = std::numeric_limits<float>::quiet_NaN();
    t.latency_us = ev.latency_us;
    tokens.push_back(t);
    for (auto& x : cap.take(ev.index)) routing.push_back(std::move(x));
    return true;
  });
  store.append_tokens(run, tokens);
  store.append_routing(run, routing);
  if (!cap.attention.empty()) {
    storage::AttentionSnapshot a;
    a.layer = 0;
    a.head = 1;
    a.shape = {cap.att_n, cap.att_kv};
    a.data = cap.attention;
    store.append_attention(run, std::vector<storage::AttentionSnapshot>{a});
  }
  store.append_metrics(run, std::vector<storage::MetricRecord>{
                                {"ttft_ms", r.ttft_ms, "ms"},
                                {"tokens_per_s", r.tokens_per_s, "tokens/s"},
                                {"prefill_tokens_per_s", r.prefill_tokens_per_s, "tokens/s"}});
  store.finish_run(run, storage::RunStatus::Complete, r.text);
  return run;
}

int run_cli(const std::vector<std::string>& args, std::string* out = nullptr) {
  std::ostringstream o, e;
  const int rc = cli::run(args, cli::Io{o, e});
  if (out) *out = o.str();
  if (rc != 0) qWarning("%s", e.str().c_str());
  return rc;
}

}  // namespace

class TestReportFixture : public QObject {
  Q_OBJECT

 private slots:
  void ab_report_of_two_routing_policies() {
    MOELAB_REQUIRE_SHARED(kModel);
    QTemporaryDir dir;
    const std::string keep = qEnvironmentVariable("MOELAB_REPORT_KEEP").toStdString();
    const std::string base = keep.empty() ? dir.path().toStdString() : keep;
    std::filesystem::create_directories(base);
    const std::string db = base + "/fixture-ab.db";
    std::filesystem::remove(db);
    const std::string model_path = test::shared_path(kModel);
    int64_t a = 0, b = 0;
    {
      storage::Store store(db);
      auto model = Model::load(model_path);
      const std::string sha = sha256_file(model_path);
      storage::ModelRecord m;
      m.sha256 = sha;
      m.path = model_path;
      m.architecture = model->card().architecture;
      m.card_json = card_to_json(model->card(), model->file(), sha, false).dump();
      const int64_t row = store.upsert_model(m);
      const int64_t session = store.create_session("routing policies", "top-2 vs top-1");
      a = record_run(store, session, row, model, model_path, sha, "default");
      b = record_run(store, session, row, model, model_path, sha, "k:1");
    }
    const std::string html = base + "/fixture-ab.html", pdf = base + "/fixture-ab.pdf",
                      json = base + "/fixture-ab.json";
    std::string printed;
    QCOMPARE(run_cli({"moelab-cli", "report", "--db", db, "--compare", std::to_string(a),
                      std::to_string(b), "--format", "html", "-o", html, "--timestamp",
                      "1700000000", "-q"},
                     &printed),
             0);
    QCOMPARE(printed, html + "\n");
    QCOMPARE(run_cli({"moelab-cli", "report", "--db", db, "--compare", std::to_string(a),
                      std::to_string(b), "-f", "pdf", "-o", pdf, "-q"}),
             0);
    QCOMPARE(run_cli({"moelab-cli", "report", "--db", db, "--compare", std::to_string(a),
                      std::to_string(b), "-f", "json", "-o", json, "-q"}),
             0);
    // Bad input: exit code 2 with a message.
    QCOMPARE(
        run_cli({"moelab-cli", "report", "--db", db, "--run", "999", "-o", base + "/x.html", "-q"}),
        2);
    QCOMPARE(run_cli({"moelab-cli", "report", "--db", db, "-o", base + "/x.html"}), 2);

    // The data: A routes top-2, B top-1; the routing differs measurably.
    const auto doc = nlohmann::json::parse(test::read_file(json));
    QCOMPARE(doc["runs"][0]["routing"]["k"]["max"].get<int>(), 2);
    QCOMPARE(doc["runs"][1]["routing"]["k"]["max"].get<int>(), 1);
    QCOMPARE(doc["runs"][0]["routing"]["layers"].size(), size_t(2));
    QCOMPARE(doc["runs"][0]["model"]["card"]["expert_count"].get<int>(), 8);
    QCOMPARE(doc["comparison"]["config_diff"][0]["b"].get<std::string>(), std::string("k:1"));
    for (const auto& l : doc["comparison"]["routing"])
      QVERIFY(l["js_divergence"].get<double>() > 0.01);
    std::vector<std::string> errors;
    const auto schema = nlohmann::json::parse(report::json_schema());
    test::validate_schema(schema, schema, doc, "", errors);
    QVERIFY2(errors.empty(), errors.empty() ? "" : errors[0].c_str());

    const std::string h = test::read_file(html);
    // Layer 0's attention comes before any routing decision: identical, so a note, not a map.
    for (const char* s : {"mixtral-moe", "k:1", "Expert load difference", "is identical in A and B",
                          "TPOT p99", "東京"})
      QVERIFY2(h.find(s) != std::string::npos, s);

    std::vector<QRgb> cat;
    for (const auto& c : views::colormap_table(views::Colormap::kCategorical).subspan(0, 8))
      cat.push_back(qRgb(c.r, c.g, c.b));
    const QString chromium = test::chromium_path();
    if (!chromium.isEmpty()) {
      const QImage shot =
          test::chromium_screenshot(chromium, QString::fromStdString(html),
                                    QString::fromStdString(base + "/fixture-ab.png"), 1100, 7000);
      QVERIFY(!shot.isNull());
      QVERIFY(test::count_colours(shot, cat) > 3000);
    }
    QByteArray text;
    if (test::run_tool("pdftotext", {"-enc", "UTF-8", QString::fromStdString(pdf), "-"}, &text) ==
        0) {
      const std::string t = text.toStdString();
      for (const char* s : {"mixtral-moe", "TTFT", "TPOT p99", "tokens/s", "J/token", "Zoë", "東京",
                            "routing_policy"})
        QVERIFY2(t.find(s) != std::string::npos, s);
      QCOMPARE(test::run_tool("pdftoppm", {"-r", "60", "-png", QString::fromStdString(pdf),
                                           QString::fromStdString(base + "/fixture-ab-page")}),
               0);
    }
    if (chromium.isEmpty()) QSKIP("skipped: chromium not installed (HTML not rendered)");
  }
};

QTEST_MAIN(TestReportFixture)
#include "test_report_fixture.moc"
