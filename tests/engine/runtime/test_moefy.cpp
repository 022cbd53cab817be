// moelab-cli moefy on the real stories260K model (../shared/fixtures): with every routed expert
// active the converted model computes the dense model's function (logits within 2e-4, the
// difference of summing the same neurons in another order; perplexity within 1 %), perplexity
// falls as k grows, the output is deterministic, metadata records the provenance, and bad input
// is refused before any work with exit code 2.
#include <QGuiApplication>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "cli_run.h"
#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"
#include "moelab/model/model.h"
#include "moelab/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace moelab;
using moelab::test::shared_path;

namespace {

const QString kDense = "fixtures/models/stories260K/stories260K.F32.gguf";
const QString kDense16 = "fixtures/models/stories260K/stories260K.F16.gguf";

using moelab::test::cli_run;
using moelab::test::CliResult;

std::string resource(const char* rel) {
  return std::string(MOELAB_SOURCE_DIR) + "/" + rel;
}
const std::string kCalib = resource("resources/moefy/calib.txt");
const std::string kHeldout = resource("resources/moefy/heldout.txt");

std::string read_file(const std::string& p) {
  return moelab::test::read_all(QString::fromStdString(p)).toStdString();
}

// Logits of every position of `tokens` (one batch).
std::vector<float> all_logits(const std::string& path, const std::vector<int32_t>& tokens,
                              const std::string& routing) {
  auto model = Model::load(path);
  ContextParams cp;
  cp.n_ctx = 256;
  cp.routing = RoutingPolicy::parse(routing);
  auto ctx = Context::create(model, cp);
  ctx->eval(tokens, true);
  std::vector<float> out;
  for (int i = 0; i < static_cast<int>(tokens.size()); ++i) {
    const auto l = ctx->logits(i);
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

std::vector<int32_t> heldout_tokens(const std::string& model_path, size_t n) {
  auto model = Model::load(model_path);
  auto t = model->tokenizer()->encode(read_file(kHeldout), true, false);
  t.resize(std::min(t.size(), n));
  return t;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

}  // namespace

class TestMoefy : public QObject {
  Q_OBJECT
  QString dir_;
  std::string moe_, moe_shared_;

  std::string out(const char* name) const { return (dir_ + "/" + name).toStdString(); }
  CliResult convert(const std::string& model, const std::string& o,
                    std::vector<std::string> extra) {
    std::vector<std::string> a = {"moefy", "--model", model, "--calib", kCalib, "-q", "-o", o};
    a.insert(a.end(), extra.begin(), extra.end());
    return cli_run(a);
  }
  double ppl_of(const std::string& model, const std::string& routing) {
    std::vector<std::string> a = {"perplexity", "--model", model, "--file",
                                  kHeldout,     "--ctx",   "128", "--json"};
    if (!routing.empty()) a.insert(a.end(), {"--routing-policy", routing});
    const auto r = cli_run(a);
    if (r.code != 0) qWarning("%s", r.err.c_str());
    const auto j = nlohmann::json::parse(r.out);
    return routing.empty() ? j.at("ppl").get<double>() : j.at("runs")[0].at("ppl").get<double>();
  }

 private slots:
  void initTestCase() {
    dir_ = moelab::test::temp_dir("test_moefy");
    if (!moelab::test::have_shared(kDense)) return;
    moe_ = out("stories-4x43.gguf");
    const auto r = convert(shared_path(kDense), moe_, {"--experts", "4", "--top-k", "2"});
    QVERIFY2(r.code == 0, r.err.c_str());
    QVERIFY(r.out.find("wrote") != std::string::npos);
    moe_shared_ = out("stories-3x43s1.gguf");
    const auto r2 = convert(shared_path(kDense), moe_shared_,
                            {"--experts", "3", "--shared", "1", "--top-k", "1"});
    QVERIFY2(r2.code == 0, r2.err.c_str());
  }

  void card_and_metadata() {
    MOELAB_REQUIRE_SHARED(kDense);
    const auto f = gguf::File::open(moe_shared_);
    const ModelCard c = make_model_card(*f);
    QVERIFY2(c.problems.empty(), c.problems.empty() ? "" : c.problems.front().c_str());
    QCOMPARE(c.architecture, std::string("llama"));
    QCOMPARE(c.expert_count, 3u);
    QCOMPARE(c.expert_used_count, 1u);
    QCOMPARE(c.n_ff_exp, 43u);
    QCOMPARE(c.n_ff_shexp, 43u);
    QCOMPARE(c.expert_shared_count, 1u);
    QCOMPARE(f->get_string("moelab.expert_gating"), std::string("unit"));
    QCOMPARE(f->get_string("moelab.moefy.source_sha256"), sha256_file(shared_path(kDense)));
    QCOMPARE(f->get_string("moelab.moefy.calib_sha256"), sha256_file(kCalib));
    QCOMPARE(f->get_string("moelab.moefy.method"), std::string("cluster"));
    QCOMPARE(f->get_u64("moelab.moefy.experts", 0), uint64_t(3));
    QCOMPARE(f->get_u64("moelab.moefy.shared", 0), uint64_t(1));
    QCOMPARE(f->get_u64("moelab.moefy.top_k", 0), uint64_t(1));
    QVERIFY(f->get_u64("moelab.moefy.calib_tokens", 0) >= 1000);
    // Same parameters as the dense model plus the routers (a re-partition of the same neurons).
    const ModelCard d = make_model_card(*gguf::File::open(shared_path(kDense)));
    QCOMPARE(c.params_total, d.params_total + uint64_t(c.n_layer) * c.n_embd * 3);
    QVERIFY(c.params_active < c.params_total);
  }

  // k:N reproduces the dense logits (routing-policy path and the model's own top-k path).
  void all_experts_reproduce_the_dense_logits_data() {
    QTest::addColumn<QString>("which");
    QTest::addColumn<QString>("routing");
    QTest::newRow("4x43 k:4") << "plain"
                              << "k:4";
    QTest::newRow("3x43+shared k:3") << "shared"
                                     << "k:3";
    QTest::newRow("4x43 top-p:1") << "plain"
                                  << "top-p:1";
  }
  void all_experts_reproduce_the_dense_logits() {
    MOELAB_REQUIRE_SHARED(kDense);
    QFETCH(QString, which);
    QFETCH(QString, routing);
    const std::string moe = which == "plain" ? moe_ : moe_shared_;
    const auto tokens = heldout_tokens(shared_path(kDense), 200);
    const auto dense = all_logits(shared_path(kDense), tokens, "default");
    const auto conv = all_logits(moe, tokens, routing.toStdString());
    QCOMPARE(conv.size(), dense.size());
    const double d = max_abs_diff(dense, conv);
    qInfo("max |logit difference| to dense: %.3g", d);
    QVERIFY2(d < 2e-4, qPrintable(QString("max |logit difference| %1").arg(d)));
    // k < N changes the function.
    const auto k1 = all_logits(moe, tokens, "k:1");
    QVERIFY(max_abs_diff(dense, k1) > 1e-2);
  }

  void default_top_k_equal_to_n_reproduces_dense() {
    MOELAB_REQUIRE_SHARED(kDense16);
    const std::string o = out("stories16-4x43-k4.gguf");
    const auto r = convert(shared_path(kDense16), o, {"--experts", "4", "--top-k", "4"});
    QVERIFY2(r.code == 0, r.err.c_str());
    const auto tokens = heldout_tokens(shared_path(kDense16), 200);
    const double d = max_abs_diff(all_logits(shared_path(kDense16), tokens, "default"),
                                  all_logits(o, tokens, "default"));
    qInfo("F16, default top-4 of 4: max |logit difference| to dense: %.3g", d);
    // F16 weights: the dense products use F32 activations (tinyBLAS), expert products round the
    // activations to F16 as ggml_mul_mat_id does, hence a looser bound than F32.
    QVERIFY2(d < 2e-2, qPrintable(QString("max |logit difference| %1").arg(d)));
  }

  void perplexity_within_one_percent_and_monotone_in_k() {
    MOELAB_REQUIRE_SHARED(kDense);
    const double dense = ppl_of(shared_path(kDense), "");
    const double all = ppl_of(moe_, "k:4");
    QVERIFY2(std::abs(all / dense - 1.0) < 0.01,
             qPrintable(QString("dense %1, k:4 %2").arg(dense).arg(all)));
    std::vector<double> p;
    for (int k = 1; k <= 4; ++k) p.push_back(ppl_of(moe_, "k:" + std::to_string(k)));
    qInfo("held-out perplexity: dense %.4f; k:1..4 %.4f %.4f %.4f %.4f", dense, p[0], p[1], p[2],
          p[3]);
    for (size_t i = 0; i < p.size(); ++i) {
      QVERIFY(std::isfinite(p[i]));
      if (i > 0)
        QVERIFY2(
            p[i] <= p[i - 1] * 1.02,
            qPrintable(QString("k:%1 %2 > k:%3 %4").arg(i + 1).arg(p[i]).arg(i).arg(p[i - 1])));
    }
    QVERIFY2(p[0] > p[3] * 1.05, qPrintable(QString("k:1 %1, k:4 %2").arg(p[0]).arg(p[3])));
  }

  // The k = 1..N evaluation stored as one session (sweep over routing policies, plus the dense
  // model's own evaluation) and its report: the quality-vs-active-parameters table and figure.
  void eval_over_k_is_stored_and_reported() {
    MOELAB_REQUIRE_SHARED(kDense);
    const std::string db = out("eval.db");
    QFile::remove(QString::fromStdString(db));
    auto r = cli_run({"sweep", "--model", moe_, "--file", kHeldout, "--ctx", "128",
                      "--routing-policy", "k:1,k:2,k:3,k:4", "--reference", shared_path(kDense),
                      "--db", db, "--session", "moefy k"});
    QVERIFY2(r.code == 0, r.err.c_str());
    r = cli_run({"eval", "--model", shared_path(kDense), "--file", kHeldout, "--ctx", "128", "--db",
                 db, "--session", "moefy k"});
    QVERIFY2(r.code == 0, r.err.c_str());
    const std::string md = out("eval-report.md");
    r = cli_run({"report", "--db", db, "--session", "moefy k", "-f", "md", "-o", md, "-q",
                 "--timestamp", "0"});
    QVERIFY2(r.code == 0, r.err.c_str());
    const std::string text = read_file(md);
    QVERIFY(text.find("Quality vs active parameters") != std::string::npos);
    QVERIFY(text.find("Perplexity vs active parameters per token") != std::string::npos);
    // Rows: the four k runs and the dense run; k:4's perplexity equals the dense one (9.135).
    QVERIFY2(text.find("| k:4 | 4 |") != std::string::npos, text.c_str());
    QVERIFY(text.find("| dense |") != std::string::npos);
    // KL to the dense model: 0 with every expert (to float rounding), larger at k:1 than k:2.
    QVERIFY(text.find("KL vs reference (nats/token)") != std::string::npos);
    auto kl_of = [&](const std::string& k) {
      const size_t row = text.find("| " + k + " | ");
      const size_t end = text.find('\n', row);
      const std::string line = text.substr(row, end - row);
      const size_t last = line.rfind('|', line.size() - 2);
      return std::stod(line.substr(last + 1));
    };
    const double kl1 = kl_of("k:1"), kl2 = kl_of("k:2"), kl4 = kl_of("k:4");
    qInfo("KL(dense || moefied) nats/token: k:1 %.4g k:2 %.4g k:4 %.3g", kl1, kl2, kl4);
    QVERIFY(kl4 < 1e-6);
    QVERIFY(kl1 > kl2 && kl2 > kl4);
    QVERIFY(QDir(QString::fromStdString(out("eval-report_files")))
                .entryList({"*quality-vs-active*"}, QDir::Files)
                .size() == 1);
  }

  void deterministic_bytes() {
    MOELAB_REQUIRE_SHARED(kDense);
    const std::string o = out("stories-4x43-again.gguf");
    const auto r = convert(shared_path(kDense), o, {"--experts", "4", "--top-k", "2", "-t", "3"});
    QVERIFY2(r.code == 0, r.err.c_str());
    QCOMPARE(sha256_file(o), sha256_file(moe_));
  }

  // The mixtral layout (softmax gating for other engines) at its own top-k stays within 2 % of
  // the unit-gated file's perplexity (router logits / 64, down projections x K: weights ~ 1);
  // the contiguous method runs.
  void contiguous_and_mixtral_layouts_run() {
    MOELAB_REQUIRE_SHARED(kDense);
    const std::string o = out("stories-mixtral.gguf");
    auto r =
        convert(shared_path(kDense), o, {"--experts", "4", "--top-k", "2", "--layout", "mixtral"});
    QVERIFY2(r.code == 0, r.err.c_str());
    const auto f = gguf::File::open(o);
    QVERIFY(!f->find("moelab.expert_gating"));
    QCOMPARE(f->get_u64("llama.feed_forward_length", 0), uint64_t(43));  // as Mixtral files
    const double mixtral = ppl_of(o, ""), unit = ppl_of(moe_, "k:2");
    qInfo("held-out perplexity at top-2: mixtral layout %.4f, unit gating %.4f", mixtral, unit);
    QVERIFY2(std::abs(mixtral / unit - 1.0) < 0.02,
             qPrintable(QString("mixtral %1, unit %2").arg(mixtral).arg(unit)));
    const std::string c = out("stories-contiguous.gguf");
    r = convert(shared_path(kDense), c,
                {"--experts", "4", "--top-k", "2", "--method", "contiguous"});
    QVERIFY2(r.code == 0, r.err.c_str());
    QCOMPARE(gguf::File::open(c)->get_string("moelab.moefy.method"), std::string("contiguous"));
    QVERIFY(std::isfinite(ppl_of(c, "k:2")));
  }

  void bad_input_is_refused_before_any_work_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("calib");
    QTest::addColumn<QString>("message");
    const QString d = kDense;
    QTest::newRow("already MoE") << "fixtures/models/mixtral-moe/mixtral-moe.F32.gguf"
                                 << QStringList{"--experts", "4", "--top-k", "2"} << "calib"
                                 << "already a Mixture-of-Experts model (expert_count 8)";
    QTest::newRow("unsupported arch") << "fixtures/models/gemma2-swa/gemma2-swa.F32.gguf"
                                      << QStringList{"--experts", "4", "--top-k", "2"} << "calib"
                                      << "architecture 'gemma2' is not supported by moefy";
    QTest::newRow("N not dividing n_ff")
        << d << QStringList{"--experts", "5", "--top-k", "2"} << "calib"
        << "n_ff 172 is not divisible by experts + shared = 5";
    QTest::newRow("N+S not dividing n_ff")
        << d << QStringList{"--experts", "4", "--shared", "1", "--top-k", "2"} << "calib"
        << "not divisible by experts + shared = 5";
    QTest::newRow("K > N") << d << QStringList{"--experts", "4", "--top-k", "5"} << "calib"
                           << "top-k 5 is outside 1..4";
    QTest::newRow("empty calib") << d << QStringList{"--experts", "4", "--top-k", "2"} << "empty"
                                 << "the calibration text is empty";
    QTest::newRow("tiny calib") << d << QStringList{"--experts", "4", "--top-k", "2"} << "tiny"
                                << "tokens; at least 64 are needed";
    QTest::newRow("missing calib")
        << d << QStringList{"--experts", "4", "--top-k", "2"} << "missing"
        << "cannot open the calibration text";
    QTest::newRow("bad method") << d
                                << QStringList{"--experts", "4", "--top-k", "2", "--method", "x"}
                                << "calib"
                                << "unknown method 'x'";
    QTest::newRow("mixtral with shared")
        << d
        << QStringList{"--experts", "3", "--shared", "1", "--top-k", "2", "--layout", "mixtral"}
        << "calib"
        << "the mixtral layout has no shared expert";
    QTest::newRow("binary calib") << d << QStringList{"--experts", "4", "--top-k", "2"} << "binary"
                                  << "byte 3: is not UTF-8 text: 0xE9";
    // Every numeric option has a range, named in the error (CLI11's transform, exit 2).
    QTest::newRow("ctx 0") << d << QStringList{"--experts", "4", "--top-k", "2", "--ctx", "0"}
                           << "calib"
                           << "--ctx: must be an integer from 8 to 1048576, not '0'";
    QTest::newRow("one expert") << d << QStringList{"--experts", "1", "--top-k", "1"} << "calib"
                                << "--experts: must be an integer from 2 to 256, not '1'";
    QTest::newRow("negative threads")
        << d << QStringList{"--experts", "4", "--top-k", "2", "-t", "-1"} << "calib"
        << "--threads: must be an integer from 0 to 1024, not '-1'";
    QTest::newRow("huge calib-tokens")
        << d << QStringList{"--experts", "4", "--top-k", "2", "--calib-tokens", "99999999999"}
        << "calib"
        << "--calib-tokens: must be an integer from 64 to 16777216, not '99999999999'";
  }
  void bad_input_is_refused_before_any_work() {
    QFETCH(QString, model);
    QFETCH(QStringList, args);
    QFETCH(QString, calib);
    QFETCH(QString, message);
    MOELAB_REQUIRE_SHARED(model);
    std::string calib_path = kCalib;
    if (calib == "empty" || calib == "tiny" || calib == "binary") {
      calib_path = (dir_ + "/" + calib + ".txt").toStdString();
      QFile f(QString::fromStdString(calib_path));
      QVERIFY(f.open(QIODevice::WriteOnly));
      if (calib == "tiny") f.write("Once upon a time there was a cat.");
      if (calib == "binary") f.write("Onc\xe9 upon a time, in Latin-1.");
    } else if (calib == "missing") {
      calib_path = (dir_ + "/no-such-text.txt").toStdString();
    }
    const std::string o = out("refused.gguf");
    QFile::remove(QString::fromStdString(o));
    std::vector<std::string> a = {
        "moefy", "--model", shared_path(model), "--calib", calib_path, "-q", "-o", o};
    for (const auto& s : args) a.push_back(s.toStdString());
    const auto r = cli_run(a);
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.rfind("error: ", 0) == 0, r.err.c_str());
    QVERIFY2(r.err.find(message.toStdString()) != std::string::npos, r.err.c_str());
    QVERIFY(!QFileInfo::exists(QString::fromStdString(o)));
  }

  void output_must_be_a_regular_file() {
    MOELAB_REQUIRE_SHARED(kDense);
    const auto r =
        convert(shared_path(kDense), dir_.toStdString(), {"--experts", "4", "--top-k", "2"});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.find("not a regular file") != std::string::npos, r.err.c_str());
    const auto r2 =
        convert(shared_path(kDense), shared_path(kDense), {"--experts", "4", "--top-k", "2"});
    QCOMPARE(r2.code, 2);
  }
};

// Reports draw figures (QPainter on QImage): a QGuiApplication, on the offscreen platform that
// ctest sets.
int main(int argc, char** argv) {
  QGuiApplication app(argc, argv);
  TestMoefy t;
  return QTest::qExec(&t, argc, argv);
}
#include "test_moefy.moc"
