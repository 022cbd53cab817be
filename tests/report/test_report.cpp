// Session reports from a synthetic store: every format, self-containedness, Chromium and
// poppler rendering, CSV round trip, JSON Schema, determinism, bounded size of a 100k-token
// run, progress and cancellation.
#include <QTemporaryDir>
#include <QXmlStreamReader>
#include <QtTest>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <regex>

#include "moelab/core/error.h"
#include "moelab/report/report.h"
#include "moelab/views/colormap.h"
#include "report_test_util.h"
#include "test_support.h"

using namespace moelab;
using storage::Store;

namespace {

const char kPrompt[] = "Café, crème brûlée & naïve «test»: 日本語のテキストを続けて";
const char kModelName[] = "TinyMixtral-Report";

struct Fixture {
  std::unique_ptr<Store> store;
  int64_t a = 0, b = 0, big = 0;
  std::string session = "routing A/B";
};

std::string piece_of(int i) {
  static const char* pieces[] = {" the", ",", " \"quoted\"", "\n", " 東京", " déjà", " vu", "."};
  return pieces[i % 8];
}

/// Two runs (top-2 and top-1 routing, A with an energy sensor, B without) in one session.
int64_t add_run(Store& s, int64_t session, int64_t model, int k, bool energy, int n_tokens,
                int id_shift, bool attention,
                const std::function<void(nlohmann::json&)>& edit_config = {},
                bool weights_reported = true) {
  nlohmann::json cfg = {{"kind", "generate"},
                        {"sampling", {{"temperature", 0.0}, {"top_k", 40}, {"top_p", 0.95}}},
                        {"seed", 1234},
                        {"routing_policy", k == 2 ? "default" : "k:1"},
                        {"attention_policy", "full"},
                        {"threads", 2},
                        {"backend", "cpu"},
                        {"n_ctx", 256},
                        {"kv_type", "f32"},
                        {"max_tokens", n_tokens},
                        {"model", {{"path", "/models/tiny.gguf"}, {"name", kModelName}}}};
  if (edit_config) edit_config(cfg);
  storage::RunBegin rb;
  rb.session_id = session;
  rb.model_id = model;
  rb.config_json = cfg.dump();
  rb.prompt = kPrompt;
  const int64_t run = s.begin_run(rb);
  std::mt19937 rng(static_cast<uint32_t>(7 + k));
  std::vector<storage::TokenRecord> toks;
  std::vector<storage::RoutingRecord> routing;
  std::string output;
  for (int i = 0; i < n_tokens; ++i) {
    storage::TokenRecord t;
    t.position = i;
    t.id = (i * 7 + (i > 10 ? id_shift : 0)) % 512;
    t.piece = piece_of(i + (i > 10 ? id_shift : 0));
    t.logprob = -0.125f * static_cast<float>(i % 9) - 0.0625f;
    t.entropy = 0.5f + 0.01f * static_cast<float>(i % 13);
    t.latency_us =
        i == 0 ? 45000 : 9000 + static_cast<int64_t>(rng() % 3000) + (k == 1 ? -1500 : 0);
    if (energy) t.energy_uj = 0.25 * static_cast<double>(t.latency_us) + (i % 5);
    output += t.piece;
    toks.push_back(t);
    for (int layer = 0; layer < 2; ++layer) {
      storage::RoutingRecord r;
      r.position = i;
      r.layer = layer;
      const uint16_t e0 = static_cast<uint16_t>((i * (layer + 1) + (rng() % 3)) % 8);
      r.experts = {e0};
      r.weights = {k == 2 ? 0.7f : 1.0f};
      if (k == 2) {
        r.experts.push_back(static_cast<uint16_t>((e0 + 3) % 8));
        r.weights.push_back(0.3f);
      }
      if (!weights_reported)  // a remote engine: expert ids only
        r.weights.assign(r.experts.size(), std::numeric_limits<float>::quiet_NaN());
      routing.push_back(r);
    }
  }
  s.append_tokens(run, toks);
  s.append_routing(run, routing);
  if (attention) {
    storage::AttentionSnapshot a;
    a.position = 0;
    a.layer = 0;
    a.head = 1;
    const int n = 12;
    a.shape = {n, n};
    for (int q = 0; q < n; ++q)
      for (int kk = 0; kk < n; ++kk)
        a.data.push_back(
            kk > q ? 0.0f
                   : (k == 2 ? 1.0f / static_cast<float>(q + 1)
                             : (kk == q ? 0.5f : 0.5f / static_cast<float>(std::max(1, q)))));
    // Every head's rows as the lab stores them next to the maps (kAttentionAllHeads): data of
    // the lab's Attention view, not a figure of the report (the image count below).
    storage::AttentionSnapshot all = a;
    all.head = storage::kAttentionAllHeads;
    all.shape = {2, n, n};
    all.data.insert(all.data.end(), a.data.begin(), a.data.end());
    s.append_attention(run, std::vector<storage::AttentionSnapshot>{a, all});
  }
  s.append_metrics(run, std::vector<storage::MetricRecord>{
                            {"ttft_ms", 45.0, "ms"}, {"prefill_tokens_per_s", 311.5, "tokens/s"}});
  storage::EvalResult e;
  e.method = "perplexity ctx=128 stride=128 score-second-half";
  e.text_sha256 = std::string(64, 'c');
  e.value = k == 2 ? 12.5 : 14.25;
  e.n_tokens = 1024;
  e.chunk_values = {12.0, 13.0};
  s.add_eval_result(run, e);
  s.finish_run(run, storage::RunStatus::Complete, output);
  return run;
}

report::Options fixed(report::Format f) {
  report::Options o;
  o.format = f;
  o.generated_at_ms = 1700000000000;
  report::MachineInfo m;
  m.cpu_model = "Test CPU";
  m.cores = 4;
  m.gpu = "none";
  m.ram_bytes = 8ull << 30;
  m.os = "Test OS";
  o.machine = m;
  o.bootstrap_resamples = 2000;
  return o;
}

}  // namespace

class TestReport : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  Fixture f_;
  std::string path(const char* name) const { return dir_.filePath(name).toStdString(); }

 private slots:
  void initTestCase() {
    QVERIFY(dir_.isValid());
    f_.store = std::make_unique<Store>(path("store.db"));
    storage::ModelRecord m;
    m.sha256 = std::string("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    m.path = "/models/tiny.gguf";
    m.architecture = "llama";
    m.card_json = nlohmann::json{{"name", kModelName}, {"architecture", "llama"},
                                 {"n_layer", 2},       {"n_embd", 64},
                                 {"n_head", 4},        {"n_head_kv", 2},
                                 {"expert_count", 8},  {"expert_used_count", 2},
                                 {"n_vocab", 512},     {"context_length", 512}}
                      .dump();
    const int64_t model = f_.store->upsert_model(m);
    const int64_t s = f_.store->create_session(f_.session, "top-2 vs top-1", {"routing", "demo"});
    f_.a = add_run(*f_.store, s, model, 2, true, 48, 0, true);
    f_.b = add_run(*f_.store, s, model, 1, false, 44, 3, true);
  }

  void html_is_well_formed_and_self_contained() {
    const auto out = path("ab.html");
    const auto w = report::write_report(*f_.store, report::Selection::compare(f_.a, f_.b), out,
                                        fixed(report::Format::Html));
    QCOMPARE(w.files.size(), size_t(1));
    const std::string html = test::read_file(out);
    QXmlStreamReader xml(QByteArray::fromStdString(html));
    int imgs = 0;
    while (!xml.atEnd()) {
      xml.readNext();
      if (xml.isStartElement() && xml.name() == QLatin1String("img")) {
        ++imgs;
        QVERIFY2(xml.attributes().value("src").startsWith(QLatin1String("data:image/png;base64,")),
                 "every image is inline");
      }
    }
    QVERIFY2(!xml.hasError(),
             qPrintable(xml.errorString() + " at line " + QString::number(xml.lineNumber())));
    // Two runs x (routing, load, attention, latency, histogram) + A's power trace + the
    // comparison's load diff, attention diff and latency overlay.
    QCOMPARE(imgs, 2 * 5 + 1 + 3);
    QVERIFY(!std::regex_search(html, std::regex("(https?|ftp)://", std::regex::icase)));
    QVERIFY(html.find("prefers-color-scheme: dark") != std::string::npos);
    for (const char* s :
         {kModelName, "TTFT", "TPOT p99", "tokens/s", "J/token", "no sensor",
          "Expert load difference", "routing_policy", "&quot;k:1&quot;", "<del>", "<ins>",
          "95% CI of A - B", "Café", "日本語", "Test CPU", "0123456789abcdef"})
      QVERIFY2(html.find(s) != std::string::npos, s);
  }

  void html_renders_in_chromium() {
    const QString chromium = test::chromium_path();
    if (chromium.isEmpty())
      QSKIP("skipped: chromium not installed (apt-get install chromium; scripts/deps.sh)");
    const auto out = path("ab-shot.html");
    report::write_report(*f_.store, report::Selection::compare(f_.a, f_.b), out,
                         fixed(report::Format::Html));
    const QString png = dir_.filePath("ab.png");
    const QImage shot =
        test::chromium_screenshot(chromium, QString::fromStdString(out), png, 1100, 9000);
    QVERIFY2(!shot.isNull(), "chromium produced no screenshot");
    // The categorical colours of the routing grid and the sequential map of the load heatmap
    // must appear as drawn: figures decoded and shown.
    std::vector<QRgb> cat;
    for (const auto& c : views::colormap_table(views::Colormap::kCategorical).subspan(0, 8))
      cat.push_back(qRgb(c.r, c.g, c.b));
    const int n = test::count_colours(shot, cat);
    QVERIFY2(n > 5000, qPrintable(QString("routing-grid pixels in the screenshot: %1").arg(n)));
    if (const char* keep = std::getenv("MOELAB_REPORT_KEEP")) {
      std::filesystem::copy_file(out, std::string(keep) + "/synthetic-ab.html",
                                 std::filesystem::copy_options::overwrite_existing);
      shot.save(QString(keep) + "/synthetic-ab-light.png");
      test::chromium_screenshot(chromium, QString::fromStdString(out),
                                QString(keep) + "/synthetic-ab-dark.png", 1100, 2500, true);
    }
  }

  void pdf_renders_and_has_text() {
    if (QStandardPaths::findExecutable("pdftotext").isEmpty() ||
        QStandardPaths::findExecutable("pdftoppm").isEmpty())
      QSKIP("skipped: poppler-utils not installed (pdftotext, pdftoppm; scripts/deps.sh)");
    const auto out = path("ab.pdf");
    report::write_report(*f_.store, report::Selection::compare(f_.a, f_.b), out,
                         fixed(report::Format::Pdf));
    QVERIFY(test::read_file(out).rfind("%PDF-", 0) == 0);
    if (const char* keep = std::getenv("MOELAB_REPORT_KEEP"))
      std::filesystem::copy_file(out, std::string(keep) + "/synthetic-ab.pdf",
                                 std::filesystem::copy_options::overwrite_existing);
    QByteArray text;
    QCOMPARE(
        test::run_tool("pdftotext", {"-enc", "UTF-8", QString::fromStdString(out), "-"}, &text), 0);
    const std::string t = text.toStdString();
    for (const char* s :
         {kModelName, "TTFT", "TPOT p50", "TPOT p90", "TPOT p99", "tokens/s", "J/token",
          "no sensor", "perplexity", "Café", "crème brûlée", "naïve", "日本語のテキスト",
          "A/B comparison", "Confidence intervals", "CI of A - B"})
      QVERIFY2(t.find(s) != std::string::npos, s);
    const QString prefix = dir_.filePath("page");
    QCOMPARE(test::run_tool("pdftoppm", {"-r", "72", "-png", QString::fromStdString(out), prefix}),
             0);
    // The figures are on the pages: strongly coloured pixels (heatmaps, chart lines).
    int pages = 0, coloured = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path().toStdString())) {
      const std::string name = e.path().filename().string();
      if (name.rfind("page-", 0) != 0) continue;
      ++pages;
      const QImage img(QString::fromStdString(e.path().string()));
      QVERIFY(!img.isNull());
      coloured += test::count_saturated(img);
    }
    QVERIFY2(pages >= 3, qPrintable(QString::number(pages)));
    qInfo("strongly coloured pixels on %d pages: %d", pages, coloured);
    QVERIFY2(coloured > 20000, qPrintable(QString::number(coloured)));
    // Letter size on request.
    auto o = fixed(report::Format::Pdf);
    o.page = report::PageSize::Letter;
    const auto letter = path("letter.pdf");
    report::write_report(*f_.store, report::Selection::one_run(f_.a), letter, o);
    QByteArray info;
    QCOMPARE(test::run_tool("pdfinfo", {QString::fromStdString(letter)}, &info), 0);
    QVERIFY2(info.contains("612 x 792"), info.constData());
    QCOMPARE(test::run_tool("pdfinfo", {QString::fromStdString(out)}, &info), 0);
    QVERIFY2(info.contains("595") && info.contains("842"), info.constData());  // A4 in points
  }

  void csv_parses_back_to_stored_values() {
    const auto out = path("session.csv");
    const auto w = report::write_report(*f_.store, report::Selection::whole_session(f_.session),
                                        out, fixed(report::Format::Csv));
    QCOMPARE(w.files.size(), size_t(3));
    QCOMPARE(w.files[0], out);
    // Tokens.
    const auto rows = test::parse_csv(test::read_file(path("session.tokens.csv")));
    QCOMPARE(rows[0], (std::vector<std::string>{"run_id", "position", "token_id", "piece",
                                                "logprob", "entropy", "latency_us", "energy_uj"}));
    std::map<int64_t, std::vector<storage::TokenRecord>> stored = {{f_.a, f_.store->tokens(f_.a)},
                                                                   {f_.b, f_.store->tokens(f_.b)}};
    QCOMPARE(rows.size(), 1 + stored[f_.a].size() + stored[f_.b].size());
    std::map<int64_t, size_t> next;
    for (size_t i = 1; i < rows.size(); ++i) {
      const auto& r = rows[i];
      QCOMPARE(r.size(), size_t(8));
      const int64_t run = std::stoll(r[0]);
      const auto& t = stored.at(run)[next[run]++];
      QCOMPARE(std::stoll(r[1]), t.position);
      QCOMPARE(std::stoi(r[2]), t.id);
      QCOMPARE(r[3], t.piece);  // commas, quotes, newlines, CJK survive
      QCOMPARE(std::stof(r[4]), t.logprob);
      QCOMPARE(std::stof(r[5]), t.entropy);
      QCOMPARE(std::stoll(r[6]), t.latency_us);
      if (t.energy_uj)
        QCOMPARE(std::stod(r[7]), *t.energy_uj);
      else
        QVERIFY(r[7].empty());
    }
    // Metrics: stored ones exactly.
    const auto m = test::parse_csv(test::read_file(out));
    int found = 0;
    for (const auto& r : m)
      if (r[1] == "prefill_tokens_per_s" || r[1] == "ttft_ms") {
        QCOMPARE(r[3], std::string(r[1] == "ttft_ms" ? "ms" : "tokens/s"));
        QCOMPARE(std::stod(r[2]), r[1] == "ttft_ms" ? 45.0 : 311.5);
        ++found;
      }
    QCOMPARE(found, 4);
    // Routing: per run and layer the selections add up to tokens x k.
    const auto ro = test::parse_csv(test::read_file(path("session.routing.csv")));
    std::map<std::pair<int64_t, int>, int64_t> sel;
    for (size_t i = 1; i < ro.size(); ++i)
      sel[{std::stoll(ro[i][0]), std::stoi(ro[i][1])}] += std::stoll(ro[i][3]);
    QCOMPARE((sel[std::make_pair(f_.a, 0)]), int64_t(48 * 2));
    QCOMPARE((sel[std::make_pair(f_.b, 1)]), int64_t(44 * 1));
  }

  void json_validates_against_schema() {
    const auto out = path("ab.json");
    report::write_report(*f_.store, report::Selection::compare(f_.a, f_.b), out,
                         fixed(report::Format::Json));
    const auto doc = nlohmann::json::parse(test::read_file(out));
    const auto schema = nlohmann::json::parse(report::json_schema());
    // The compiled-in schema is the committed file.
    QCOMPARE(nlohmann::json::parse(test::read_file(std::string(MOELAB_SOURCE_DIR) +
                                                   "/app/report/report.schema.json")),
             schema);
    std::vector<std::string> errors;
    test::validate_schema(schema, schema, doc, "", errors);
    QVERIFY2(errors.empty(), errors.empty() ? "" : errors[0].c_str());
    QCOMPARE(doc["schema_version"].get<int>(), report::kSchemaVersion);
    QCOMPARE(doc["runs"].size(), size_t(2));
    QCOMPARE(doc["runs"][0]["metrics"]["ttft_ms"].get<double>(), 45.0);
    QVERIFY(doc["runs"][1]["metrics"]["j_per_token"].is_null());
    QCOMPARE(doc["runs"][0]["routing"]["k"]["max"].get<int>(), 2);
    QCOMPARE(doc["runs"][1]["routing"]["k"]["max"].get<int>(), 1);
    QCOMPARE(doc["runs"][0]["prompt"].get<std::string>(), std::string(kPrompt));
    bool policy_diff = false;
    for (const auto& c : doc["comparison"]["config_diff"])
      policy_diff |= c["path"] == "/routing_policy" && c["a"] == "default" && c["b"] == "k:1";
    QVERIFY(policy_diff);
    // The validator is not vacuous.
    auto bad = doc;
    bad["runs"][0].erase("metrics");
    bad["kind"] = "other";
    errors.clear();
    test::validate_schema(schema, schema, bad, "", errors);
    QCOMPARE(errors.size(), size_t(2));
  }

  void reproducing_command_line() {
    const auto doc = report::build_json(*f_.store, report::Selection::one_run(f_.b),
                                        fixed(report::Format::Json));
    const std::string cmd = doc["runs"][0]["command_line"];
    QVERIFY2(cmd.find("moelab-cli run --model /models/tiny.gguf --prompt 'Café, crème") == 0,
             cmd.c_str());
    for (const char* s : {"--temp 0", "--top-k 40", "--top-p 0.95", "--seed 1234", "--threads 2",
                          "--ctx 256", "-n 44"})
      QVERIFY2(cmd.find(s) != std::string::npos, s);
    // `run` sets the routing policy and the backend the run used itself; the model's own
    // attention rule needs no option, so nothing is left unexpressed.
    QVERIFY2(cmd.find(" --routing-policy k:1") != std::string::npos, cmd.c_str());
    QVERIFY2(cmd.find("--attention-policy") == std::string::npos, cmd.c_str());
    QVERIFY2(cmd.find(" --backend cpu") != std::string::npos, cmd.c_str());
    QCOMPARE(doc["runs"][0]["command_notes"].size(), size_t(0));
    // Run A (default routing) gets no policy option at all.
    const auto doc_a = report::build_json(*f_.store, report::Selection::one_run(f_.a),
                                          fixed(report::Format::Json));
    const std::string cmd_a = doc_a["runs"][0]["command_line"];
    QVERIFY2(cmd_a.find("--routing-policy") == std::string::npos, cmd_a.c_str());
  }

  void reproducing_command_names_the_backend() {
    // A run on the GPU gets --backend cuda; a run stored before configs recorded the backend
    // gets no --backend (and no note); an unknown backend name is a note, not an option.
    Store s(path("backend.db"));
    storage::ModelRecord m;
    m.sha256 = std::string(64, 'b');
    m.path = "/models/tiny.gguf";
    m.architecture = "llama";
    m.card_json = nlohmann::json{{"name", kModelName}}.dump();
    const int64_t model = s.upsert_model(m);
    const int64_t sess = s.create_session("backends", "", {});
    const int64_t gpu = add_run(s, sess, model, 2, false, 4, 0, false,
                                [](nlohmann::json& c) { c["backend"] = "cuda"; });
    const int64_t old = add_run(s, sess, model, 2, false, 4, 0, false,
                                [](nlohmann::json& c) { c.erase("backend"); });
    const int64_t odd = add_run(s, sess, model, 2, false, 4, 0, false,
                                [](nlohmann::json& c) { c["backend"] = "vulkan"; });
    auto run_doc = [&](int64_t id) {
      return report::build_json(s, report::Selection::one_run(id),
                                fixed(report::Format::Json))["runs"][0];
    };
    const auto d_gpu = run_doc(gpu), d_old = run_doc(old), d_odd = run_doc(odd);
    const std::string c_gpu = d_gpu["command_line"], c_old = d_old["command_line"],
                      c_odd = d_odd["command_line"];
    QVERIFY2(c_gpu.find(" --backend cuda") != std::string::npos, c_gpu.c_str());
    QCOMPARE(d_gpu["command_notes"].size(), size_t(0));
    QVERIFY2(c_old.find("--backend") == std::string::npos, c_old.c_str());
    QCOMPARE(d_old["command_notes"].size(), size_t(0));
    QVERIFY2(c_odd.find("--backend") == std::string::npos, c_odd.c_str());
    QCOMPARE(d_odd["command_notes"].size(), size_t(1));
    QCOMPARE(d_odd["command_notes"][0].get<std::string>(), std::string("backend = \"vulkan\""));
    // A run streamed from a server (run --remote) is reproduced with --remote, not --model.
    const int64_t remote = add_run(
        s, sess, model, 2, false, 4, 0, false,
        [](nlohmann::json& c) {
          c["engine"] = "remote";
          c["backend"] = "remote";
          c["remote"] = {{"url", "http://10.0.0.7:30000"},
                         {"requested_model", "deepseek-v3"},
                         {"routed_experts_requested", "vllm"},
                         {"reported",
                          {{"served_model", "deepseek-ai/DeepSeek-V3"},
                           {"token_ids", true},
                           {"usage",
                            {{"server", {{"prompt_tokens", 9}, {"completion_tokens", 4}}},
                             {"client", {{"completion_tokens", 4}}}}},
                           {"routed_experts", {{"format", "vllm"}, {"prompt_rows_returned", 8}}}}}};
          c.erase("model");
          c.erase("threads");
          c.erase("n_ctx");
          c.erase("kv_type");
          c.erase("routing_policy");
          c.erase("attention_policy");
        },
        false);
    const auto d_remote = run_doc(remote);
    // Its routed experts came without router weights: null mean weights, never NaN, and the
    // report says so in words.
    for (const auto& l : d_remote["routing"]["per_layer"])
      for (const auto& w : l["mean_weight"]) QVERIFY2(w.is_null(), l.dump().c_str());
    QVERIFY(!d_remote["routing"]["grid"]["top_expert"].empty());
    const auto md_path = path("remote/remote.md");
    report::write_report(s, report::Selection::one_run(remote), md_path,
                         fixed(report::Format::Markdown));
    const std::string md = test::read_file(md_path);
    QVERIFY(md.find("Mixing weights: weights not reported by this engine") != std::string::npos);
    QVERIFY(md.find("first expert listed per token and layer") != std::string::npos);
    QVERIFY2(md.find("The server reported: served model deepseek-ai/DeepSeek-V3; token ids yes; "
                     "usage 9 prompt + 4 completion tokens (the client counted 4); routed "
                     "experts in vllm's shape, 8 prompt rows returned and not stored") !=
                 std::string::npos,
             md.c_str());
    QVERIFY(md.find(" nan") == std::string::npos && md.find("NaN") == std::string::npos);
    const std::string c_remote = d_remote["command_line"];
    QVERIFY2(c_remote.rfind("moelab-cli run --remote http://10.0.0.7:30000 --remote-model "
                            "deepseek-v3 --routed-experts-format vllm --prompt ",
                            0) == 0,
             c_remote.c_str());
    QVERIFY2(c_remote.find("--model") == std::string::npos, c_remote.c_str());
    QCOMPARE(d_remote["command_notes"].size(), size_t(0));
  }

  void markdown_with_images_beside_it() {
    const auto out = path("md/ab.md");
    const auto w = report::write_report(*f_.store, report::Selection::compare(f_.a, f_.b), out,
                                        fixed(report::Format::Markdown));
    QCOMPARE(w.files.size(), size_t(1 + 14));
    const std::string md = test::read_file(out);
    for (size_t i = 1; i < w.files.size(); ++i) {
      const std::string rel = "ab_files/" + std::filesystem::path(w.files[i]).filename().string();
      QVERIFY2(md.find("](" + rel + ")") != std::string::npos, rel.c_str());
      QVERIFY(!QImage(QString::fromStdString(w.files[i])).isNull());
    }
    QVERIFY(md.find("| **TPOT p99** | ") != std::string::npos);
  }

  void deterministic_except_timestamp() {
    for (auto f : {report::Format::Html, report::Format::Pdf, report::Format::Markdown,
                   report::Format::Csv, report::Format::Json}) {
      const std::string ext = report::format_name(f);
      // Same file name in two folders (Markdown names its image folder after the file).
      const auto p1 = path(("det1/det." + ext).c_str()), p2 = path(("det2/det." + ext).c_str());
      const auto w1 =
          report::write_report(*f_.store, report::Selection::compare(f_.a, f_.b), p1, fixed(f));
      const auto w2 =
          report::write_report(*f_.store, report::Selection::compare(f_.a, f_.b), p2, fixed(f));
      QCOMPARE(w1.files.size(), w2.files.size());
      for (size_t i = 0; i < w1.files.size(); ++i)
        QVERIFY2(test::read_file(w1.files[i]) == test::read_file(w2.files[i]), w1.files[i].c_str());
    }
    // Another timestamp changes only the timestamp text.
    auto o = fixed(report::Format::Html);
    o.generated_at_ms = 1800000000000;
    const auto p3 = path("det3.html");
    report::write_report(*f_.store, report::Selection::compare(f_.a, f_.b), p3, o);
    std::string a = test::read_file(path("det1/det.html")), b = test::read_file(p3);
    QVERIFY(a != b);
    const std::string ta = "2023-11-14T22:13:20Z", tb = "2027-01-15T08:00:00Z";
    QVERIFY(a.find(ta) != std::string::npos);
    for (size_t p; (p = b.find(tb)) != std::string::npos;) b.replace(p, tb.size(), ta);
    QVERIFY(a == b);
  }

  // A run measured for its whole decode phase stores J/token as a metric, without per-token
  // energy: the report shows that number (and says where it came from), never "no sensor".
  void stored_j_per_token_metric_is_reported() {
    const int64_t s = f_.store->create_session("phase energy");
    storage::RunBegin rb;
    rb.session_id = s;
    rb.prompt = "p";
    const int64_t run = f_.store->begin_run(rb);
    std::vector<storage::TokenRecord> toks(4);
    for (int i = 0; i < 4; ++i) {
      toks[i].position = i;
      toks[i].id = i;
      toks[i].piece.assign(1, 'y');
      toks[i].latency_us = 2000;
    }
    f_.store->append_tokens(run, toks);
    f_.store->append_metrics(run, std::vector<storage::MetricRecord>{{"j_per_token", 0.375, "J"}});
    f_.store->finish_run(run, storage::RunStatus::Complete, "yyyy");
    const auto html = path("phase_energy.html");
    report::write_report(*f_.store, report::Selection::one_run(run), html,
                         fixed(report::Format::Html));
    const std::string h = test::read_file(html);
    QVERIFY(h.find("0.375") != std::string::npos);
    QVERIFY(h.find("stored metric j_per_token") != std::string::npos);
    QVERIFY(h.find("no energy reading was stored") == std::string::npos);
  }

  // A model's output (or a file's metadata) may hold terminal escape sequences and other control
  // bytes: no report carries them; they show as Unicode control pictures (ESC as "␛").
  void control_bytes_show_as_pictures() {
    const int64_t s = f_.store->create_session("control \x1b[31mbytes");
    storage::RunBegin rb;
    rb.session_id = s;
    rb.prompt = "say \x1b]0;title\x07 red";
    const int64_t run = f_.store->begin_run(rb);
    const std::string out = "\x1b[31mred\x1b[0m\x7f\tdone\n";
    std::vector<storage::TokenRecord> toks(1);
    toks[0].id = 1;
    toks[0].piece = out;
    toks[0].latency_us = 1000;
    f_.store->append_tokens(run, toks);
    f_.store->finish_run(run, storage::RunStatus::Complete, out);
    for (const auto fmt : {report::Format::Markdown, report::Format::Html}) {
      const auto file = path(fmt == report::Format::Html ? "ctl.html" : "ctl/ctl.md");
      report::write_report(*f_.store, report::Selection::one_run(run), file, fixed(fmt));
      const std::string t = test::read_file(file);
      for (char c : t) {
        const auto u = static_cast<unsigned char>(c);
        QVERIFY2(u >= 0x20 || c == '\n' || c == '\t' || c == '\r',
                 qPrintable(QString("control byte 0x%1 in the report").arg(u, 2, 16, QChar('0'))));
        QVERIFY(u != 0x7F);
      }
      QVERIFY2(t.find("\u241B[31mred\u241B[0m\u2421") != std::string::npos, file.c_str());
    }
  }

  void large_run_is_bounded() {
    const int n = 100000;
    const int64_t s = f_.store->create_session("big");
    storage::RunBegin rb;
    rb.session_id = s;
    rb.prompt = "long";
    const int64_t run = f_.store->begin_run(rb);
    std::vector<storage::TokenRecord> toks(n);
    std::vector<storage::RoutingRecord> routing;
    routing.reserve(2 * n);
    for (int i = 0; i < n; ++i) {
      toks[i].position = i;
      toks[i].id = i % 500;
      toks[i].piece.assign(1, 'x');  // not = "x": GCC 12 -Wrestrict false positive
      toks[i].latency_us = 1000 + (i % 97);
      for (int l = 0; l < 2; ++l) {
        storage::RoutingRecord r;
        r.position = i;
        r.layer = l;
        r.experts = {static_cast<uint16_t>((i + l) % 8), static_cast<uint16_t>((i + 3) % 8)};
        r.weights = {0.6f, 0.4f};
        routing.push_back(std::move(r));
      }
    }
    f_.store->append_tokens(run, toks);
    f_.store->append_routing(run, routing);
    f_.store->finish_run(run, storage::RunStatus::Complete, std::string(n, 'x'));
    const auto html = path("big.html");
    const auto wh = report::write_report(*f_.store, report::Selection::one_run(run), html,
                                         fixed(report::Format::Html));
    QVERIFY2(wh.bytes < 1500000, qPrintable(QString::number(wh.bytes)));
    const std::string h = test::read_file(html);
    QVERIFY(h.find("100000 tokens; per-token detail") != std::string::npos);
    QVERIFY(h.find("average consecutive tokens into 1000 bins") != std::string::npos);
    QVERIFY(h.find("Shows the first 512 of 100000 tokens") != std::string::npos);
    const auto json = path("big.json");
    const auto wj = report::write_report(*f_.store, report::Selection::one_run(run), json,
                                         fixed(report::Format::Json));
    QVERIFY2(wj.bytes < 1500000, qPrintable(QString::number(wj.bytes)));
    const auto doc = nlohmann::json::parse(test::read_file(json));
    QCOMPARE(doc["runs"][0]["tokens"]["count"].get<int>(), n);
    QCOMPARE(doc["runs"][0]["tokens"]["detail"].size(), size_t(512));
    QVERIFY(doc["runs"][0]["tokens"]["sampled"].get<bool>());
    QCOMPARE(doc["runs"][0]["latency"]["ms"].size(), size_t(1000));
    // Aggregates use every token: 100000 tokens x 2 selections per layer.
    int64_t sel = 0;
    for (const auto& x : doc["runs"][0]["routing"]["per_layer"][0]["selections"])
      sel += x.get<int64_t>();
    QCOMPARE(sel, int64_t(2 * n));
    QCOMPARE(doc["runs"][0]["metrics"]["tpot_ms"]["n"].get<int>(), n - 1);
    f_.store->delete_session(s);
  }

  void progress_and_cancel() {
    auto o = fixed(report::Format::Html);
    std::vector<int> done;
    int total = 0;
    o.progress = [&](int d, int t, const std::string&) {
      done.push_back(d);
      total = t;
      return true;
    };
    report::write_report(*f_.store, report::Selection::compare(f_.a, f_.b), path("p.html"), o);
    QVERIFY(done.size() >= 4);
    QVERIFY(std::is_sorted(done.begin(), done.end()));
    QCOMPARE(done.back(), total);
    o.progress = [](int d, int, const std::string&) { return d < 2; };
    const auto out = path("cancelled.html");
    try {
      report::write_report(*f_.store, report::Selection::compare(f_.a, f_.b), out, o);
      QFAIL("no exception");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::Cancelled);
    }
    QVERIFY(!std::filesystem::exists(out));
  }

  void errors_name_the_problem() {
    try {
      report::write_report(*f_.store, report::Selection::one_run(999), path("x.html"),
                           fixed(report::Format::Html));
      QFAIL("no exception");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::BadInput);
      QVERIFY(std::string(e.what()).find("no run with id 999") != std::string::npos);
    }
    try {
      report::write_report(*f_.store, report::Selection::whole_session("nope"), path("x.html"),
                           fixed(report::Format::Html));
      QFAIL("no exception");
    } catch (const Error& e) {
      QVERIFY(std::string(e.what()).find("no session named 'nope'") != std::string::npos);
    }
    QVERIFY(!report::parse_format("docx"));
    QCOMPARE(*report::parse_format("md"), report::Format::Markdown);
  }
};

QTEST_MAIN(TestReport)
#include "test_report.moc"
