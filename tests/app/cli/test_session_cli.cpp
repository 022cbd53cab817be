// moelab-cli with the experiment store: `run --db --session`, `eval`, `sweep`, `compare` of runs
// and of groups, and a SIGKILLed `run --db` (QProcess). Values are read back from the database
// with storage::Store and checked against what the CLI printed, what the engine's observer
// reports, and statistics recomputed here.
#include <QCryptographicHash>
#include <QProcess>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "cli.h"
#include "cli_run.h"
#include "moelab/model/model.h"
#include "moelab/runtime/generator.h"
#include "moelab/storage/store.h"
#include "test_support.h"

using namespace moelab;

namespace {
const QString kStories = QStringLiteral("fixtures/models/stories260K/stories260K.F32.gguf");
const QString kMoe = QStringLiteral("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");

using moelab::test::cli_run;
using moelab::test::CliResult;

nlohmann::json json_of(const CliResult& r) {
  if (r.code != 0) qWarning("cli failed: %s", r.err.c_str());
  return nlohmann::json::parse(r.out);
}

std::vector<int32_t> ids_of(const std::vector<storage::TokenRecord>& t) {
  std::vector<int32_t> v;
  for (const auto& x : t) v.push_back(x.id);
  return v;
}

// Type-7 quantile of a sorted sample.
double q7(const std::vector<double>& s, double p) {
  const double h = (static_cast<double>(s.size()) - 1) * p;
  const size_t lo = static_cast<size_t>(std::floor(h));
  const size_t hi = std::min(lo + 1, s.size() - 1);
  return s[lo] + (h - static_cast<double>(lo)) * (s[hi] - s[lo]);
}

// Percentile bootstrap of mean(b) - mean(a), as documented in compare.h (recomputed here).
std::pair<double, double> bootstrap(const std::vector<double>& a, const std::vector<double>& b,
                                    int resamples, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> d;
  for (int r = 0; r < resamples; ++r) {
    double sa = 0, sb = 0;
    for (size_t i = 0; i < a.size(); ++i) sa += a[rng() % a.size()];
    for (size_t i = 0; i < b.size(); ++i) sb += b[rng() % b.size()];
    d.push_back(sa / static_cast<double>(a.size()) - sb / static_cast<double>(b.size()));  // A - B
  }
  std::sort(d.begin(), d.end());
  return {q7(d, 0.025), q7(d, 0.975)};
}

double js2(std::vector<double> p, std::vector<double> q) {
  auto norm = [](std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    for (double& x : v) x = s > 0 ? x / s : 1.0 / static_cast<double>(v.size());
  };
  norm(p);
  norm(q);
  double js = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double m = (p[i] + q[i]) / 2;
    if (p[i] > 0) js += 0.5 * p[i] * std::log2(p[i] / m);
    if (q[i] > 0) js += 0.5 * q[i] * std::log2(q[i] / m);
  }
  return js;
}

std::string sha256_hex(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  return QCryptographicHash::hash(f.readAll(), QCryptographicHash::Sha256).toHex().toStdString();
}
}  // namespace

class TestSessionCli : public QObject {
  Q_OBJECT
  QString dir_;
  std::string db_;

  std::string path(const char* name) const { return (dir_ + "/" + name).toStdString(); }

  // A text of about 700 tokens for the stories tokenizer.
  std::string write_text() const {
    const std::string p = path("text.txt");
    QFile f(QString::fromStdString(p));
    if (!f.exists() && f.open(QIODevice::WriteOnly)) {
      std::string t;
      for (int i = 0; i < 20; ++i)
        t += "Once upon a time there was a little girl named Lily. She liked to play in the park "
             "with her dog. One day the sun was hot and they went home to eat cake. ";
      f.write(t.data(), static_cast<qint64>(t.size()));
    }
    return p;
  }

 private slots:
  void initTestCase() {
    dir_ = moelab::test::temp_dir("test_session_cli");
    db_ = path("lab.db");
  }

  void run_stored_equals_printed() {
    MOELAB_REQUIRE_SHARED(kStories);
    const auto model = moelab::test::shared_path(kStories);
    const auto r = cli_run({"run",       "--model", model,    "--prompt",  "Once upon a time",
                            "-n",        "20",      "--temp", "1",         "--top-k",
                            "0",         "--seed",  "42",     "--threads", "1",
                            "--ctx",     "64",      "--json", "--db",      db_,
                            "--session", "s1"});
    QVERIFY2(r.code == 0, r.err.c_str());
    const auto j = nlohmann::json::parse(r.out);
    QVERIFY(j.contains("run_id"));
    const int64_t id = j["run_id"].get<int64_t>();

    storage::Store store(db_);
    const auto run = store.run(id);
    QVERIFY(run.has_value());
    QCOMPARE(run->status, storage::RunStatus::Complete);
    QCOMPARE(run->output, j["text"].get<std::string>());
    QCOMPARE(run->prompt, std::string("Once upon a time"));
    QCOMPARE(run->kind, std::string("generate"));
    QCOMPARE(store.session(run->session_id)->name, std::string("s1"));
    const auto cfg = nlohmann::json::parse(run->config_json);
    QCOMPARE(cfg["seed"].get<uint64_t>(), uint64_t(42));
    QCOMPARE(j["seed"].get<uint64_t>(), uint64_t(42));
    QCOMPARE(cfg["threads"].get<int>(), 1);
    QCOMPARE(cfg["n_ctx"].get<int>(), 64);
    QCOMPARE(cfg["sampling"]["temperature"].get<double>(), 1.0);
    QCOMPARE(cfg["sampling"]["top_k"].get<int>(), 0);
    QCOMPARE(cfg["routing_policy"].get<std::string>(), std::string("default"));
    QCOMPARE(cfg["attention_policy"].get<std::string>(), std::string("full"));
    QCOMPARE(cfg["backend"].get<std::string>(), std::string("cpu"));
    QVERIFY(cfg["build"].get<std::string>().rfind("moelab ", 0) == 0);
    QCOMPARE(cfg["model"]["sha256"].get<std::string>(), sha256_hex(QString::fromStdString(model)));
    const auto mrow = store.model(run->model_id);
    QVERIFY(mrow.has_value());
    QCOMPARE(mrow->architecture, std::string("llama"));
    QCOMPARE(nlohmann::json::parse(mrow->card_json)["n_layer"].get<int>(), 5);

    const auto tokens = store.tokens(id);
    const auto printed = j["tokens"].get<std::vector<int32_t>>();
    QCOMPARE(ids_of(tokens), printed);
    const auto lps = j["logprobs"].get<std::vector<float>>();
    std::string pieces;
    for (size_t i = 0; i < tokens.size(); ++i) {
      QCOMPARE(tokens[i].position, int64_t(i));
      QCOMPARE(tokens[i].logprob, lps[i]);
      // Entropy of the distribution the token was drawn from: positive, at most ln(n_vocab),
      // and at least... -logprob is not bounded by it, so only the range is checked here.
      QVERIFY(tokens[i].entropy > 0 && tokens[i].entropy <= std::log(512.0) + 1e-4);
      QVERIFY(tokens[i].latency_us > 0);
      pieces += tokens[i].piece;
    }
    QCOMPARE(pieces, j["text"].get<std::string>());
    std::map<std::string, double> m;
    for (const auto& x : store.metrics(id)) m[x.key] = x.value;
    QCOMPARE(m["ttft_ms"], j["ttft_ms"].get<double>());
    QCOMPARE(m["tokens_per_s"], j["tokens_per_s"].get<double>());
    QCOMPARE(m["generated_tokens"], 20.0);
    QCOMPARE(m["prompt_tokens"], static_cast<double>(j["prompt_tokens"].size()));

    // Streaming mode prints the id on stderr.
    const auto s =
        cli_run({"run", "--model", model, "--prompt", "Once upon a time", "-n", "5", "--temp", "0",
                 "--threads", "1", "--ctx", "64", "--db", db_, "--session", "s1"});
    QCOMPARE(s.code, 0);
    QVERIFY2(s.err.find("run id: " + std::to_string(id + 1)) != std::string::npos, s.err.c_str());
    QCOMPARE(store.runs(run->session_id).size(), size_t(2));
  }

  void entropy_matches_the_logits() {
    MOELAB_REQUIRE_SHARED(kStories);
    // Greedy run: recompute each token's entropy from the logits of an independent context.
    const auto model_path = moelab::test::shared_path(kStories);
    const auto j = json_of(cli_run({"run", "--model", model_path, "--prompt", "Once upon a time",
                                    "-n", "6", "--temp", "0", "--threads", "1", "--ctx", "64",
                                    "--json", "--db", db_, "--session", "entropy"}));
    storage::Store store(db_);
    const auto tokens = store.tokens(j["run_id"].get<int64_t>());
    auto model = Model::load(model_path);
    ContextParams cp;
    cp.n_ctx = 64;
    auto ctx = Context::create(model, cp);
    auto seq = j["prompt_tokens"].get<std::vector<int32_t>>();
    ctx->eval(seq);
    for (const auto& t : tokens) {
      const auto lg = ctx->logits();
      double mx = -INFINITY, z = 0, h = 0;
      for (float v : lg) mx = std::max(mx, static_cast<double>(v));
      for (float v : lg) z += std::exp(v - mx);
      for (float v : lg) {
        const double p = std::exp(v - mx) / z;
        if (p > 0) h -= p * std::log(p);
      }
      QVERIFY2(std::fabs(t.entropy - h) < 1e-4 * std::max(1.0, h),
               qPrintable(QString("%1 vs %2").arg(t.entropy).arg(h)));
      const int32_t one[1] = {t.id};
      ctx->eval(one);
    }
  }

  // `run --db` stores every head's attention of every layer for the prompt and each decode
  // step. Prompt rows equal llama.cpp's kq_soft_max (the fixture's attention_prompt); each
  // decode row equals the same query's row of one batch evaluation of prompt + generated tokens
  // (independent of the KV-cache path); rows sum to 1, or (gpt-oss: learned sinks) to 1 minus
  // the sink's share, so at most 1. MLA (deepseek2) and sinks (gpt-oss) both.
  void attention_rows_equal_the_fixture_data() {
    QTest::addColumn<QString>("name");
    QTest::newRow("gptoss-moe.F32") << QStringLiteral("gptoss-moe.F32");
    QTest::newRow("deepseek2-lite.F32") << QStringLiteral("deepseek2-lite.F32");
  }
  void attention_rows_equal_the_fixture() {
    QFETCH(QString, name);
    const QString rel = "fixtures/models-0c1e570/" + name.section('.', 0, 0) + "/" + name;
    MOELAB_REQUIRE_SHARED(rel + ".gguf");
    const std::string model_path = moelab::test::shared_path(rel + ".gguf");
    std::string oracle_text;
    {
      const QByteArray b = moelab::test::read_all(
          QString::fromStdString(moelab::test::shared_path(rel + ".oracle.json")));
      oracle_text.assign(b.constData(), static_cast<size_t>(b.size()));
    }
    const auto oracle = nlohmann::json::parse(oracle_text);
    const auto ref = oracle["attention_prompt"]["probs"];  // [layer][head][q][k]
    // The fixture's 17 prompt tokens as text (<s> is added by the tokenizer).
    std::string prompt;
    const auto pieces = oracle["prompt_pieces"];
    for (size_t i = 1; i < pieces.size(); ++i) prompt += pieces[i].get<std::string>();
    if (!prompt.empty() && prompt[0] == ' ') prompt.erase(0, 1);
    const int n_gen = 6;
    const auto j = json_of(cli_run({"run", "--model", model_path, "--prompt", prompt, "-n",
                                    std::to_string(n_gen), "--temp", "0", "--threads", "1", "--ctx",
                                    "64", "--json", "--db", db_, "--session", "attn"}));
    const int64_t id = j["run_id"].get<int64_t>();
    const auto gen_ids = j["tokens"].get<std::vector<int32_t>>();
    QCOMPARE(static_cast<int>(gen_ids.size()), n_gen);

    auto model = Model::load(model_path);
    const ModelCard& c = model->card();
    const int n_layer = static_cast<int>(c.n_layer), n_head = static_cast<int>(c.n_head);
    const std::vector<int32_t> prompt_ids = oracle["prompt_tokens"].get<std::vector<int32_t>>();
    const int P = static_cast<int>(prompt_ids.size());
    storage::Store store(db_);
    {
      const auto toks = store.tokens(id);
      QCOMPARE(static_cast<int>(toks.size()), n_gen);
    }
    // One batch of prompt + generated tokens 0..n_gen-2: query q's row over keys 0..q.
    std::vector<int32_t> all = prompt_ids;
    all.insert(all.end(), gen_ids.begin(), gen_ids.end() - 1);
    const int N = static_cast<int>(all.size());
    std::map<int, std::vector<float>> batch;  // layer -> [n_head, N, N]
    ContextParams cp;
    cp.n_ctx = 64;
    cp.n_threads = 1;
    auto ctx = Context::create(model, cp);
    ctx->set_observer(
        [&](const Observation& o) {
          if (o.layer >= 0) batch[o.layer].assign(o.data.begin(), o.data.end());
        },
        {"kq_soft_max"});
    ctx->eval(all);
    QCOMPARE(static_cast<int>(batch.size()), n_layer);

    const auto snaps = store.attention(id);
    int prompt_snaps = 0, step_snaps = 0;
    double max_fix = 0, max_batch = 0, max_sum_err = 0, max_sum = 0;
    for (const auto& a : snaps) {
      if (a.head != storage::kAttentionAllHeads) continue;
      QCOMPARE(a.shape.size(), size_t(3));
      QCOMPARE(a.shape[0], int64_t(n_head));
      const int nq = static_cast<int>(a.shape[1]), nk = static_cast<int>(a.shape[2]);
      const auto& b = batch[a.layer];
      for (int h = 0; h < n_head; ++h)
        for (int qi = 0; qi < nq; ++qi) {
          const int q = nk - nq + qi;  // query position
          double sum = 0;
          for (int k = 0; k < nk; ++k) {
            const float v = a.data[(static_cast<size_t>(h) * nq + qi) * nk + k];
            sum += v;
            if (k > q) QCOMPARE(v, 0.0f);  // causal mask
            const float bv = b[(static_cast<size_t>(h) * N + q) * N + k];
            max_batch = std::max(max_batch, std::fabs(double(v) - bv));
            if (a.position == 0)
              max_fix = std::max(max_fix, std::fabs(v - ref[a.layer][h][q][k].get<double>()));
          }
          max_sum = std::max(max_sum, sum);
          max_sum_err = std::max(max_sum_err, std::fabs(sum - 1.0));
        }
      if (a.position == 0) {
        ++prompt_snaps;
        QCOMPARE(nq, P);
        QCOMPARE(nk, P);
      } else {
        ++step_snaps;
        QCOMPARE(nq, 1);
        QCOMPARE(nk, P + static_cast<int>(a.position));  // the query of token i is P + i - 1
      }
    }
    qInfo("%s: max |stored - fixture| %.2g, |stored - batch| %.2g, max |row sum - 1| %.2g",
          qPrintable(name), max_fix, max_batch, max_sum_err);
    QCOMPARE(prompt_snaps, n_layer);
    QCOMPARE(step_snaps, n_layer * (n_gen - 1));
    QVERIFY(max_fix <= 5e-4);    // as test_model_fixtures' kTolAttention
    QVERIFY(max_batch <= 5e-4);  // KV-cache decode vs one batch: summation order only
    QVERIFY(max_sum <= 1.0 + 1e-5);
    if (name.startsWith("deepseek2"))
      QVERIFY(max_sum_err <= 1e-5);  // no sinks: every row is a distribution
    else
      QVERIFY(max_sum_err > 1e-3);  // the sinks take a share of every row
    const auto m = store.metrics(id);
    std::map<std::string, double> mv;
    for (const auto& x : m) mv[x.key] = x.value;
    QCOMPARE(mv["attention_head_layers"], double(n_layer));
    QCOMPARE(mv["attention_layers_skipped"], 0.0);
    QCOMPARE(mv["attention_steps_dropped"], 0.0);
  }

  // The per-head capture's budget and layer choice, as `run --attention-budget-kib` and
  // `--attention-layers` set them: gpt-oss fixture, 4 layers x 8 heads, 17 prompt tokens, so the
  // prompt's rows are 8 x 17 x 17 x 4 = 9248 B per layer and decode step i's rows
  // 8 x (17 + i) x 4 B per layer.
  void attention_capture_budget_and_layers() {
    const QString rel = "fixtures/models-0c1e570/gptoss-moe/gptoss-moe.F32";
    MOELAB_REQUIRE_SHARED(rel + ".gguf");
    const std::string model_path = moelab::test::shared_path(rel + ".gguf");
    const std::string prompt = "Once upon a time, there was a little girl named Lily. She";
    auto stored_run = [&](std::vector<std::string> extra) {
      std::vector<std::string> args = {"run", "--model",   model_path,   "--prompt", prompt,
                                       "-n",  "6",         "--temp",     "0",        "--threads",
                                       "1",   "--ctx",     "64",         "--json",   "--db",
                                       db_,   "--session", "attn-budget"};
      args.insert(args.end(), extra.begin(), extra.end());
      return json_of(cli_run(args))["run_id"].get<int64_t>();
    };
    storage::Store store(db_);
    auto metric = [&](int64_t id, const std::string& k) {
      for (const auto& m : store.metrics(id))
        if (m.key == k) return m.value;
      return -1.0;
    };
    auto per_head = [&](int64_t id) {
      std::map<int64_t, std::set<int>> layers;  // position -> layers
      for (const auto& a : store.attention(id))
        if (a.head == storage::kAttentionAllHeads) layers[a.position].insert(a.layer);
      return layers;
    };
    {
      // 20 KiB: two layers' prompt rows fit (18496 B), layers 2 and 3 are skipped; the first
      // decode step (2 x 576 B) fits, the second (2 x 608 B) does not: steps 2..5 dropped.
      const int64_t id = stored_run({"--attention-budget-kib", "20"});
      const auto l = per_head(id);
      QCOMPARE(l.size(), size_t(2));
      QCOMPARE(l.at(0), (std::set<int>{0, 1}));
      QCOMPARE(l.at(1), (std::set<int>{0, 1}));
      QCOMPARE(metric(id, "attention_head_layers"), 2.0);
      QCOMPARE(metric(id, "attention_layers_skipped"), 2.0);
      QCOMPARE(metric(id, "attention_steps_dropped"), 4.0);
      QCOMPARE(metric(id, "attention_head_bytes"), 2 * 9248.0 + 2 * 576.0);
      // The head mean of the prompt is kept for every layer as before.
      int means = 0;
      for (const auto& a : store.attention(id)) means += a.head == -1 ? 1 : 0;
      QCOMPARE(means, 4);
    }
    {
      // Chosen layers only, every step.
      const int64_t id = stored_run({"--attention-layers", "1,3"});
      const auto l = per_head(id);
      QCOMPARE(l.size(), size_t(6));
      for (const auto& [pos, layers] : l) QCOMPARE(layers, (std::set<int>{1, 3}));
      QCOMPARE(metric(id, "attention_steps_dropped"), 0.0);
    }
    {
      // 0: no per-head rows at all.
      const int64_t id = stored_run({"--attention-budget-kib", "0"});
      QVERIFY(per_head(id).empty());
    }
    // Bad input: exit 2 naming the option.
    const auto bad = cli_run({"run", "--model", model_path, "--prompt", "x", "-n", "1", "--db", db_,
                              "--attention-layers", "7"});
    QCOMPARE(bad.code, 2);
    QVERIFY2(bad.err.find("--attention-layers") != std::string::npos, bad.err.c_str());
    const auto nodb = cli_run(
        {"run", "--model", model_path, "--prompt", "x", "-n", "1", "--attention-budget-kib", "1"});
    QCOMPARE(nodb.code, 2);
    QVERIFY2(nodb.err.find("--db") != std::string::npos, nodb.err.c_str());
  }

  void routing_rows_equal_the_observer() {
    MOELAB_REQUIRE_SHARED(kMoe);
    const auto model_path = moelab::test::shared_path(kMoe);
    const auto j = json_of(
        cli_run({"run", "--model", model_path, "--prompt", "Once upon a time", "-n", "8", "--temp",
                 "0", "--threads", "1", "--ctx", "64", "--json", "--db", db_, "--session", "moe"}));
    const int64_t id = j["run_id"].get<int64_t>();
    storage::Store store(db_);
    const auto routing = store.routing(id);
    const auto n_tokens = j["tokens"].size();
    QCOMPARE(routing.size(), n_tokens * 2);  // 2 MoE layers

    // Independently: the same greedy generation with our own observer, keyed by the absolute
    // KV position of each row. Generated token i was drawn from the logits of the pass whose
    // input is at position n_prompt - 1 + i.
    auto model = Model::load(model_path);
    ContextParams cp;
    cp.n_ctx = 64;
    cp.n_threads = 1;
    Generator gen(model, cp);
    std::map<std::pair<int64_t, int>, std::vector<float>> topk, weights;  // (pos, layer)
    gen.context().set_observer(
        [&](const Observation& o) {
          for (int64_t r = 0; r < o.shape[0]; ++r) {
            std::vector<float> row(o.data.begin() + r * o.shape[1],
                                   o.data.begin() + (r + 1) * o.shape[1]);
            (o.name == "ffn_moe_topk" ? topk : weights)[{o.pos0 + r, o.layer}] = row;
          }
        },
        // Mixtral renormalises its top-2 probabilities: the mixing weights stored are
        // ffn_moe_weights_norm (the weights applied), not the router's ffn_moe_weights.
        {"ffn_moe_topk", "ffn_moe_weights_norm"});
    GenerateParams gp;
    gp.prompt = "Once upon a time";
    gp.max_tokens = 8;
    gp.sampling.temperature = 0;
    const auto r = gen.generate(gp);
    QCOMPARE(nlohmann::json(r.tokens), j["tokens"]);
    const int64_t n_prompt = static_cast<int64_t>(r.prompt_tokens.size());
    for (const auto& rec : routing) {
      const std::pair<int64_t, int> key{n_prompt - 1 + rec.position, rec.layer};
      QVERIFY(topk.count(key));
      const auto& ids = topk[key];
      const auto& w = weights[key];
      QCOMPARE(rec.experts.size(), size_t(2));
      for (size_t s = 0; s < 2; ++s) {
        QCOMPARE(static_cast<float>(rec.experts[s]), ids[s]);
        QCOMPARE(rec.weights[s], w[s]);
      }
      QVERIFY(std::fabs(rec.weights[0] + rec.weights[1] - 1.0f) < 1e-6f);
    }
  }

  void grouped_router_stores_its_groups_and_gating() {
    // DeepSeek-V3 style: sigmoid gating with a selection bias, 4 groups of 4 experts, 2 kept.
    // The stored groups of every generated token equal llama.cpp's ffn_moe_group_topk at that
    // (position, layer) (fixture README, "Turn-2 architectures").
    const QString rel = QStringLiteral("fixtures/models-0c1e570/deepseek3-moe/deepseek3-moe.F32");
    MOELAB_REQUIRE_SHARED(rel + ".gguf");
    const auto base = moelab::test::shared_path(rel);
    std::ifstream in(base + ".oracle.json");
    const auto oracle = nlohmann::json::parse(in);
    std::string prompt;  // the oracle's prompt pieces after BOS, without SPM's leading space
    for (size_t i = 1; i < oracle["prompt_pieces"].size(); ++i)
      prompt += oracle["prompt_pieces"][i].get<std::string>();
    prompt.erase(0, 1);
    const int n_prompt = oracle["n_prompt"].get<int>();
    const auto j = json_of(cli_run({"run", "--model", base + ".gguf", "--prompt", prompt, "-n",
                                    "24", "--temp", "0", "--threads", "1", "--ctx", "64",
                                    "--ignore-eos", "--json", "--db", db_, "--session", "ds3"}));
    const int64_t id = j["run_id"].get<int64_t>();
    storage::Store store(db_);
    const auto run = store.run(id);
    QVERIFY(run);
    const auto cfg = nlohmann::json::parse(run->config_json)["model"];
    QCOMPARE(cfg["gating"].get<std::string>(), std::string("sigmoid"));
    QCOMPARE(cfg["expert_groups"].get<int>(), 4);
    QCOMPARE(cfg["expert_groups_used"].get<int>(), 2);
    QCOMPARE(cfg["shared_experts"].get<int>(), 1);
    QCOMPARE(cfg["leading_dense_layers"].get<int>(), 1);

    const auto& want = oracle["moe"]["ffn_moe_group_topk"];  // [layer][position][group]
    const auto& topk = oracle["moe"]["ffn_moe_topk"];
    const auto greedy = oracle["greedy_tokens"].get<std::vector<int>>();
    const auto got_tokens = j["tokens"].get<std::vector<int>>();
    const auto routing = store.routing(id);
    QCOMPARE(routing.size(), got_tokens.size());  // one MoE layer (layer 0 is dense)
    // Generated token i was drawn from the pass at position n_prompt - 1 + i, whose input was
    // the oracle's token there while our greedy tokens agree with its greedy tokens.
    size_t compared = 0;
    for (const auto& rec : routing) {
      const int64_t pos = n_prompt - 1 + rec.position;
      const size_t prev = size_t(std::max<int64_t>(rec.position, 1) - 1);
      if (rec.position > 0 && got_tokens[prev] != greedy[prev]) break;  // other inputs from here
      QCOMPARE(rec.layer, 1);
      const auto& g = want[size_t(rec.layer)][size_t(pos)];
      QCOMPARE(rec.groups.size(), size_t(2));
      for (size_t s = 0; s < 2; ++s) QCOMPARE(int(rec.groups[s]), g[s].get<int>());
      // And the experts lie in the kept groups (4 experts per group), as llama.cpp chose them.
      const auto& e = topk[size_t(rec.layer)][size_t(pos)];
      QCOMPARE(rec.experts.size(), e.size());
      for (size_t s = 0; s < e.size(); ++s) {
        QCOMPARE(int(rec.experts[s]), e[s].get<int>());
        QVERIFY(rec.experts[s] / 4 == rec.groups[0] || rec.experts[s] / 4 == rec.groups[1]);
      }
      ++compared;
    }
    QVERIFY2(compared >= 20, qPrintable(QString("compared %1 positions").arg(compared)));
  }

  void eval_stores_the_perplexity_of_the_perplexity_command() {
    MOELAB_REQUIRE_SHARED(kStories);
    const auto model = moelab::test::shared_path(kStories);
    const auto text = write_text();
    const auto p = json_of(cli_run({"perplexity", "--model", model, "--file", text, "--ctx", "64",
                                    "--threads", "1", "--json"}));
    const auto e =
        json_of(cli_run({"eval", "--model", model, "--file", text, "--ctx", "64", "--threads", "1",
                         "--json", "--db", db_, "--session", "evals"}));
    QCOMPARE(e["ppl"].get<double>(), p["ppl"].get<double>());
    storage::Store store(db_);
    const int64_t id = e["run_id"].get<int64_t>();
    const auto run = store.run(id);
    QCOMPARE(run->status, storage::RunStatus::Complete);
    QCOMPARE(run->kind, std::string("eval"));
    const auto ev = store.eval_results(id);
    QCOMPARE(ev.size(), size_t(1));
    QCOMPARE(ev[0].metric, std::string("perplexity"));
    QCOMPARE(ev[0].value, p["ppl"].get<double>());
    QCOMPARE(ev[0].method, p["method"].get<std::string>());
    QCOMPARE(ev[0].n_tokens, p["n_scored"].get<int64_t>());
    QCOMPARE(ev[0].text_sha256, sha256_hex(QString::fromStdString(text)));
    const int n_chunks = p["n_chunks"].get<int>();
    QVERIFY(n_chunks >= 3);
    QCOMPARE(ev[0].chunk_values.size(), size_t(n_chunks));
    // Every chunk scores the same number of tokens, so the running perplexity after c chunks is
    // the geometric mean of the first c chunk perplexities.
    const auto running = p["chunk_ppl"].get<std::vector<double>>();
    double log_sum = 0;
    for (int c = 0; c < n_chunks; ++c) {
      log_sum += std::log(ev[0].chunk_values[c]);
      QVERIFY(std::fabs(std::exp(log_sum / (c + 1)) / running[c] - 1) < 1e-9);
    }
    const auto cfg = nlohmann::json::parse(run->config_json);
    QCOMPARE(cfg["n_ctx"].get<int>(), 64);
    QCOMPARE(cfg["text"]["sha256"].get<std::string>(), ev[0].text_sha256);
  }

  void compare_two_runs_matches_independent_values() {
    MOELAB_REQUIRE_SHARED(kMoe);
    const auto model = moelab::test::shared_path(kMoe);
    std::vector<int64_t> ids;
    for (const char* seed : {"1", "2", "3", "4"})
      ids.push_back(
          json_of(cli_run({"run",       "--model", model,    "--prompt",  "Once upon a time",
                           "-n",        "16",      "--temp", "1",         "--top-k",
                           "0",         "--seed",  seed,     "--threads", "1",
                           "--ctx",     "64",      "--json", "--db",      db_,
                           "--session", "cmp"}))["run_id"]
              .get<int64_t>());
    storage::Store store(db_);
    auto latencies = [&](std::vector<int64_t> runs) {  // decode tokens: all but token 0
      std::vector<double> v;
      for (int64_t id : runs) {
        const auto toks = store.tokens(id);
        for (size_t i = 1; i < toks.size(); ++i)
          v.push_back(static_cast<double>(toks[i].latency_us) / 1e3);
      }
      return v;
    };
    auto load = [&](std::vector<int64_t> runs, int layer) {
      std::vector<double> l(8, 0);
      for (int64_t id : runs)
        for (const auto& r : store.routing(id))
          if (r.layer == layer)
            for (auto e : r.experts) l[e] += 1;
      return l;
    };

    // Two runs.
    const auto c = json_of(cli_run({"compare", std::to_string(ids[0]), std::to_string(ids[1]),
                                    "--json", "--db", db_, "--resamples", "2000"}));
    const auto la = latencies({ids[0]}), lb = latencies({ids[1]});
    const auto [lo, hi] = bootstrap(la, lb, 2000, 0x6d6f656c6162ull);
    QVERIFY2(c.contains("tpot_ms_ci") && !c["tpot_ms_ci"].is_null(), c.dump().c_str());
    QCOMPARE(c["tpot_ms_ci"]["lo"].get<double>(), lo);
    QCOMPARE(c["tpot_ms_ci"]["hi"].get<double>(), hi);
    for (const auto& l : c["routing"]) {
      const int layer = l["layer"].get<int>();
      QVERIFY(std::fabs(l["js_divergence"].get<double>() -
                        js2(load({ids[0]}, layer), load({ids[1]}, layer))) < 1e-12);
    }
    QCOMPARE(c["routing"].size(), size_t(2));

    // Two groups of two seeds: pooled samples.
    const auto g =
        json_of(cli_run({"compare", "--a", std::to_string(ids[0]) + "," + std::to_string(ids[1]),
                         "--b", std::to_string(ids[2]) + "," + std::to_string(ids[3]), "--json",
                         "--db", db_, "--resamples", "2000"}));
    const auto ga = latencies({ids[0], ids[1]}), gb = latencies({ids[2], ids[3]});
    const auto [glo, ghi] = bootstrap(ga, gb, 2000, 0x6d6f656c6162ull);
    QCOMPARE(g["tpot_ms_ci"]["lo"].get<double>(), glo);
    QCOMPARE(g["tpot_ms_ci"]["hi"].get<double>(), ghi);
    QCOMPARE(g["tpot_ms_ci"]["n_a"].get<size_t>(), ga.size());
    for (const auto& l : g["routing"]) {
      const int layer = l["layer"].get<int>();
      QVERIFY(std::fabs(l["js_divergence"].get<double>() -
                        js2(load({ids[0], ids[1]}, layer), load({ids[2], ids[3]}, layer))) < 1e-12);
    }
    // Config: only the seed differs between and inside the groups.
    QCOMPARE(g["config_diff"].size(), size_t(1));
    QCOMPARE(g["config_diff"][0]["path"].get<std::string>(), std::string("/seed"));
    QCOMPARE(g["varying_in_a"], nlohmann::json({"/seed"}));
    // Metric means and spreads over the runs of each group.
    std::map<std::string, nlohmann::json> rows;
    for (const auto& r : g["metrics"]) rows[r["key"].get<std::string>()] = r;
    QVERIFY(rows.count("ttft_ms"));
    // TTFT: token 0's latency of each run (compare::latency_figures), as every other figure.
    std::vector<double> ttft;
    for (int64_t id : {ids[2], ids[3]})
      ttft.push_back(static_cast<double>(store.tokens(id).front().latency_us) / 1000.0);
    const double mean = (ttft[0] + ttft[1]) / 2;
    QVERIFY(std::fabs(rows["ttft_ms"]["b"]["mean"].get<double>() - mean) < 1e-12);
    QVERIFY(std::fabs(rows["ttft_ms"]["b"]["stddev"].get<double>() -
                      std::fabs(ttft[0] - ttft[1]) / std::sqrt(2.0)) < 1e-9);
    // Seed stability: identical pairs among outputs.
    const bool same = ids_of(store.tokens(ids[0])) == ids_of(store.tokens(ids[1]));
    QCOMPARE(g["stability_a"]["identical_pairs"].get<double>(), same ? 1.0 : 0.0);
    QCOMPARE(g["stability_a"]["n_runs"].get<int>(), 2);

    // Text output mentions both groups; bad usage is bad input.
    const auto t = cli_run(
        {"compare", "--a", std::to_string(ids[0]), "--b", std::to_string(ids[1]), "--db", db_});
    QCOMPARE(t.code, 0);
    QVERIFY(t.out.find("seed stability") != std::string::npos);
    QCOMPARE(cli_run({"compare", "--a", "1", "--db", db_}).code, 2);
    QCOMPARE(cli_run({"compare", "--db", db_}).code, 2);
    QCOMPARE(cli_run({"compare", "--a", "1", "--b", "99999", "--db", db_}).code, 2);
  }

  void sweep_creates_one_session_with_n_runs() {
    MOELAB_REQUIRE_SHARED(kMoe);
    const auto model = moelab::test::shared_path(kMoe);
    const auto r = cli_run({"sweep",
                            "--model",
                            model,
                            "--prompt",
                            "Once upon a time",
                            "--routing-policy",
                            "k:1,k:2,top-p:0.5",
                            "--seeds",
                            "1,2",
                            "-n",
                            "6",
                            "--temp",
                            "1",
                            "--top-k",
                            "0",
                            "--threads",
                            "1",
                            "--ctx",
                            "64",
                            "--db",
                            db_,
                            "--session",
                            "sweep1",
                            "--json"});
    QVERIFY2(r.code == 0, r.err.c_str());
    const auto j = nlohmann::json::parse(r.out);
    storage::Store store(db_);
    const auto sess = store.session_by_name("sweep1");
    QVERIFY(sess.has_value());
    const auto runs = store.runs(sess->id);
    QCOMPARE(runs.size(), size_t(6));
    QCOMPARE(j["configs"].size(), size_t(3));
    QCOMPARE(j["compare_vs_first"].size(), size_t(2));
    std::map<std::string, int> per_policy;
    for (const auto& run : runs) {
      QCOMPARE(run.status, storage::RunStatus::Complete);
      const auto cfg = nlohmann::json::parse(run.config_json);
      const auto policy = cfg["routing_policy"].get<std::string>();
      ++per_policy[policy];
      const auto routing = store.routing(run.id);
      QCOMPARE(routing.size(), static_cast<size_t>(run.n_tokens) * 2);
      for (const auto& rec : routing) {
        if (policy == "k:1") QCOMPARE(rec.experts.size(), size_t(1));
        if (policy == "k:2") QCOMPARE(rec.experts.size(), size_t(2));
        QVERIFY(!rec.experts.empty() && rec.experts.size() <= 8);
        QCOMPARE(rec.weights.size(), rec.experts.size());
      }
    }
    QCOMPARE(per_policy.size(), size_t(3));
    // Average experts per token and layer, from the policy statistics of each run.
    for (const auto& run : runs) {
      const auto policy = nlohmann::json::parse(run.config_json)["routing_policy"];
      std::optional<double> avg;
      for (const auto& m : store.metrics(run.id))
        if (m.key == "avg_active_experts") avg = m.value;
      QVERIFY2(avg.has_value(), "avg_active_experts missing");
      if (policy == "k:1") QCOMPARE(*avg, 1.0);
      if (policy == "k:2") QCOMPARE(*avg, 2.0);
      QVERIFY(*avg >= 1.0 && *avg <= 8.0);
    }
    for (const auto& [k, n] : per_policy) QCOMPARE(n, 2);
    // Same seed and policy as a plain run with --routing-policy would give: the k:2 run of seed
    // 1 equals the model's default routing (Mixtral uses top-2).
    const auto plain = json_of(
        cli_run({"run", "--model", model, "--prompt", "Once upon a time", "-n", "6", "--temp", "1",
                 "--top-k", "0", "--seed", "1", "--threads", "1", "--ctx", "64", "--json"}));
    for (const auto& run : runs) {
      const auto cfg = nlohmann::json::parse(run.config_json);
      if (cfg["routing_policy"] == "k:2" && cfg["seed"] == 1)
        QCOMPARE(nlohmann::json(ids_of(store.tokens(run.id))), plain["tokens"]);
    }
    // Text mode prints the table and the comparisons.
    const auto t = cli_run({"sweep", "--model", model, "--prompt", "Once upon a time",
                            "--routing-policy", "k:1", "--routing-policy", "k:2", "-n", "4",
                            "--threads", "1", "--ctx", "64", "--db", db_, "--session", "sweep2"});
    QVERIFY2(t.code == 0, t.err.c_str());
    QVERIFY2(t.out.find("compared with the first configuration") != std::string::npos,
             t.out.c_str());
    QCOMPARE(store.runs(store.session_by_name("sweep2")->id).size(), size_t(2));
  }

  void sweep_over_a_text_stores_evaluations() {
    MOELAB_REQUIRE_SHARED(kMoe);
    const auto model = moelab::test::shared_path(kMoe);
    const auto text = write_text();
    const auto r = cli_run({"sweep", "--model", model, "--file", text, "--ctx", "64", "--chunks",
                            "2", "--routing-policy", "default,k:1", "--threads", "1", "--db", db_,
                            "--session", "sweep-eval", "--json"});
    QVERIFY2(r.code == 0, r.err.c_str());
    const auto j = nlohmann::json::parse(r.out);
    const auto p = json_of(cli_run({"perplexity", "--model", model, "--file", text, "--ctx", "64",
                                    "--chunks", "2", "--threads", "1", "--json"}));
    storage::Store store(db_);
    const auto runs = store.runs(store.session_by_name("sweep-eval")->id);
    QCOMPARE(runs.size(), size_t(2));
    const auto ev0 = store.eval_results(runs[0].id), ev1 = store.eval_results(runs[1].id);
    QCOMPARE(ev0.at(0).value, p["ppl"].get<double>());
    QVERIFY(ev1.at(0).value != ev0.at(0).value);  // top-1 routing changes the model
    const auto& cmp = j["compare_vs_first"][0];
    QVERIFY(cmp["perplexity"]["comparable"].get<bool>());
    // Each configuration (A) against the first (B, the baseline): A - B.
    QCOMPARE(cmp["perplexity"]["mean"]["a"].get<double>(), ev1[0].value);
    QCOMPARE(cmp["perplexity"]["mean"]["b"].get<double>(), ev0[0].value);
  }

  void killed_run_keeps_a_prefix_and_is_interrupted() {
    MOELAB_REQUIRE_SHARED(kStories);
    // A synthetic model slow enough (~ms per token) to be killed mid-run, with a real tokenizer.
    const std::string model = path("slow.gguf");
    if (!QFileInfo::exists(QString::fromStdString(model))) {
      const auto m = cli_run({"make-model",
                              "--arch",
                              "llama",
                              "--n-embd",
                              "512",
                              "--n-layer",
                              "8",
                              "--n-head",
                              "8",
                              "--n-head-kv",
                              "4",
                              "--n-ff",
                              "1536",
                              "--type",
                              "Q8_0",
                              "--vocab-from",
                              moelab::test::shared_path(kStories),
                              "--quiet",
                              "-o",
                              model});
      QVERIFY2(m.code == 0, m.err.c_str());
    }
    const std::string db = path("kill.db");
    const QStringList args = {"run",
                              "--model",
                              QString::fromStdString(model),
                              "--prompt",
                              "Once upon a time",
                              "-n",
                              "400",
                              "--ignore-eos",
                              "--temp",
                              "1",
                              "--top-k",
                              "0",
                              "--seed",
                              "7",
                              "--threads",
                              "1",
                              "--ctx",
                              "512",
                              "--db",
                              QString::fromStdString(db),
                              "--session",
                              "kill"};
    QProcess p;
    p.start(QStringLiteral(MOELAB_CLI_EXE), args);
    QVERIFY(p.waitForStarted());
    QByteArray out;
    QElapsedTimer t;
    t.start();
    while (out.size() < 80 && t.elapsed() < 60000 && p.state() == QProcess::Running) {
      p.waitForReadyRead(100);
      out += p.readAllStandardOutput();
    }
    QVERIFY2(p.state() == QProcess::Running, "the run ended before it could be killed");
    QTest::qWait(50);
    p.kill();  // SIGKILL
    QVERIFY(p.waitForFinished());
    QCOMPARE(p.exitStatus(), QProcess::CrashExit);

    storage::Store store(db);  // opening marks the dead process's run interrupted
    QCOMPARE(store.integrity_check(), std::string("ok"));
    const auto sess = store.session_by_name("kill");
    QVERIFY(sess.has_value());
    const auto runs = store.runs(sess->id);
    QCOMPARE(runs.size(), size_t(1));
    QCOMPARE(runs[0].status, storage::RunStatus::Interrupted);
    const auto killed = ids_of(store.tokens(runs[0].id));
    QVERIFY(!killed.empty());
    QVERIFY(killed.size() < 400);
    for (size_t i = 0; i < killed.size(); ++i)
      QCOMPARE(store.tokens(runs[0].id)[i].position, int64_t(i));

    // The uninterrupted run with the same seed: the stored tokens are its prefix.
    std::vector<std::string> full = {"run",
                                     "--model",
                                     model,
                                     "--prompt",
                                     "Once upon a time",
                                     "-n",
                                     std::to_string(killed.size() + 5),
                                     "--ignore-eos",
                                     "--temp",
                                     "1",
                                     "--top-k",
                                     "0",
                                     "--seed",
                                     "7",
                                     "--threads",
                                     "1",
                                     "--ctx",
                                     "512",
                                     "--json"};
    const auto j = json_of(cli_run(full));
    const auto all = j["tokens"].get<std::vector<int32_t>>();
    QVERIFY(all.size() > killed.size());
    QVERIFY(std::equal(killed.begin(), killed.end(), all.begin()));
  }
};

QTEST_GUILESS_MAIN(TestSessionCli)
#include "test_session_cli.moc"
