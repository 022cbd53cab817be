// The forward pass against llama.cpp's reference outputs (../shared/fixtures, README there):
// logits at every prompt position for every model file, greedy continuations with the KV cache,
// MoE routing and attention probabilities, and a deliberately broken quantized file.
// Covers fixtures/models (oracle c392e50) and fixtures/models-0c1e570 (the "Turn-2
// architectures", oracle 0c1e570); a file whose architecture moelab cannot run yet is skipped
// with "skipped: architecture X not supported yet" or "skipped: weight type T not supported
// yet" (a qInfo line, not QSKIP: a QSKIP marks the
// whole test skipped in ctest, SKIP_REGULAR_EXPRESSION in tests/CMakeLists.txt).
//
// Tolerances (max |Δ logit| against the SAME file's reference):
//  * F32 and F16 files: 1e-3 (the bound). moelab reproduces llama.cpp's arithmetic
//    choices (F32 K·Q, ggml's binary16-table GELU, tinyBLAS's unrounded activations for dense
//    F16 products, F16-rounded activations for F16 expert products).
//  * Quantized files: 0.25, and rms over all logits 0.02. The kernels quantize activations to
//    Q8_0 / Q8_1 / Q8_K like ggml, so moelab computes the same integer dot products; what
//    differs is F32 summation order, which now and then moves an activation across a Q8
//    rounding boundary (one quantization step of one element) and, in the 26-layer gemma2, a
//    GELU input across a binary16 boundary. Measured: <= 3e-6 for 2-layer files, max 0.08 and
//    rms 0.0094 for gemma2-swa.Q8_0, 0 (bit for bit) for gptoss-moe.Q8_0 (whose expert
//    activations are large on purpose, so a Q8 boundary crossing would show at once). Quantization
//    itself moves llama.cpp's logits by 0.15-3.5 (quant_vs_f32.txt) and a wrong scale or block
//    layout moves them by whole units (broken_quant_file_is_caught proves it on a file with one
//    tensor's scales doubled and one with nibbles swapped).
#include <QJsonArray>
#include <QJsonObject>
#include <QtTest>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "fixture_models.h"
#include "moelab/core/error.h"
#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"
#include "moelab/model/model.h"
#include "moelab/policies/policies.h"
#include "test_support.h"

using namespace moelab;

namespace {

constexpr double kTolFloat = 1e-3;
constexpr double kTolQuantMax = 0.25;
constexpr double kTolQuantRms = 0.02;
constexpr double kTolRoutingWeight = 1e-4;
constexpr double kTolAttention = 5e-4;

using Fixture = test::FixtureModel;
std::vector<Fixture> fixtures() {
  return test::fixture_models();
}
bool arch_supported(const Fixture& f) {
  return f.supported();
}
// The fixtures whose architecture moelab runs (the data rows of every test below).
std::vector<Fixture> runnable_fixtures() {
  return test::runnable_fixture_models();
}

Fixture fixture(const QString& base) {
  for (const auto& x : fixtures())
    if (x.base == base) return x;
  qFatal("no fixture %s", qPrintable(base));
}

// The MoE tensor that holds the weights actually multiplied into the experts' outputs
// (fixtures README, "oracle.json differences"): the last weight stage the oracle dumped.
QString applied_weights_tensor(const QJsonObject& moe) {
  for (const char* t :
       {"ffn_moe_weights_scaled", "ffn_moe_weights_softmax", "ffn_moe_weights_norm"})
    if (moe.contains(t)) return t;
  return "ffn_moe_weights";
}

std::vector<float> read_f32(const QString& path) {
  const QByteArray b = test::read_all(path);
  std::vector<float> v(static_cast<size_t>(b.size()) / 4);
  std::memcpy(v.data(), b.constData(), v.size() * 4);
  return v;
}

std::vector<int32_t> ints(const QJsonValue& v) {
  std::vector<int32_t> out;
  for (const auto& x : v.toArray()) out.push_back(x.toInt());
  return out;
}

struct Diff {
  double max = 0, rms = 0;
};
Diff compare_logits(Context& ctx, const std::vector<float>& ref, int n_pos, int n_vocab) {
  Diff d;
  double sq = 0;
  for (int p = 0; p < n_pos; ++p) {
    auto l = ctx.logits(p);
    for (int i = 0; i < n_vocab; ++i) {
      const double e =
          std::fabs(static_cast<double>(l[i]) - ref[static_cast<size_t>(p) * n_vocab + i]);
      d.max = std::max(d.max, e);
      sq += e * e;
    }
  }
  d.rms = std::sqrt(sq / (static_cast<double>(n_pos) * n_vocab));
  return d;
}

std::unique_ptr<Context> prompt_context(const std::shared_ptr<Model>& m, const QJsonObject& o,
                                        int threads = 2) {
  ContextParams cp;
  cp.n_ctx = 64;
  cp.n_threads = threads;
  auto ctx = Context::create(m, cp);
  const auto toks = ints(o["prompt_tokens"]);
  ctx->eval(toks, true);
  return ctx;
}

// llama.cpp's own F16 output for stories260K is wrong (its greedy text is " loatoooo..." while
// the F32 file continues " loved to play outside in the park..."): at this commit its x86
// tinyBLAS runs the F16 ffn_down product (k = n_ff = 172, not a multiple of its 8-lane step)
// over 176 elements, i.e. it reads 4 elements past every weight row (the next row's first 4)
// and past every activation row (the next token's first 4). Measured with an independent
// NumPy model of the file: exact F16 arithmetic (with or without F16-rounded activations)
// differs from that reference by 0.44 at position 0 (which sees only itself) and 3.24 overall;
// adding that over-read brings it to 0.067 / 0.35, and to 0.0024 / 0.0052 when the 4 bytes
// past each layer's last row are taken from the next layer's attn_q (fitting those 20 values
// freely gives 0.0049). What lies past a tensor depends on llama.cpp's memory layout, not on
// the file, so the reference is not reproducible to 1e-3 from the GGUF alone. moelab's F16
// logits are checked against the F32 reference there instead.
bool reference_is_broken(const Fixture& f) {
  return f.name == "stories260K.F16";
}

// gemma2-swa.F32 (26 layers, binary16-table GELU) is chaotic at the 1e-3 level: a last-bit
// difference anywhere moves a GELU input across a binary16 step now and then, and 26 layers
// amplify it. moelab reproduces llama.cpp's arithmetic bit for bit on this file: against the
// libllama of llama-cpp-python 0.3.36 (vendored llama.cpp 0c1e570, AVX2 build, the fixtures'
// settings) every one of the 17 x 512 logits is identical (bench/engine/llamacpp_bitexact.py,
// which also checks every intermediate of every layer). That llama.cpp build itself differs from
// the fixtures' c392e50 build by 0.00177 on this file (and by <= 3e-6 on the 2-layer files): the
// reference is not reproducible to 1e-3 by llama.cpp across versions. The 1e-3 check is kept as
// an expected failure; the measured llama.cpp-to-llama.cpp distance bounds it (max 2e-3,
// rms 4e-4; moelab measures 0.00177 / 0.00031).
bool chaotic_float_file(const Fixture& f) {
  return f.name == "gemma2-swa.F32";
}

}  // namespace

class TestModelFixtures : public QObject {
  Q_OBJECT
 private slots:
  // Names every fixture file left out because moelab does not run its architecture yet, and
  // checks that both fixture folders were found.
  void unsupported_architectures() {
    MOELAB_REQUIRE_SHARED("fixtures/models");
    int n_new = 0, n_skipped = 0;
    for (const auto& f : fixtures()) {
      if (f.base.contains("/models-0c1e570/")) ++n_new;
      if (arch_supported(f)) continue;
      ++n_skipped;
      qInfo("%s: skipped: %s", qPrintable(f.name), f.skip_reason().c_str());
    }
    qInfo("%d fixture files in models-0c1e570, %d skipped", n_new, n_skipped);
    if (test::have_shared("fixtures/models-0c1e570")) QVERIFY(n_new > 0);
  }

  void logits_data() {
    QTest::addColumn<QString>("base");
    if (!test::have_shared("fixtures/models")) {
      QTest::newRow("none") << QString();
      return;
    }
    for (const auto& f : runnable_fixtures()) QTest::newRow(qPrintable(f.name)) << f.base;
  }
  void logits() {
    MOELAB_REQUIRE_SHARED("fixtures/models");
    QFETCH(QString, base);
    const Fixture f = fixture(base);
    const QJsonObject o = test::read_json(base + ".oracle.json").object();
    auto model = Model::load((base + ".gguf").toStdString());
    const int n_vocab = o["n_vocab"].toInt();
    QCOMPARE(static_cast<int>(model->card().n_vocab), n_vocab);
    auto ctx = prompt_context(model, o);
    const int n_pos = o["logits_shape"].toArray()[0].toInt();
    QCOMPARE(n_pos, 17);
    QString ref_path = base + ".logits.f32";
    if (reference_is_broken(f)) ref_path = base.left(base.size() - 3) + "F32.logits.f32";
    const auto ref = read_f32(ref_path);
    QCOMPARE(ref.size(), static_cast<size_t>(n_pos) * n_vocab);
    const Diff d = compare_logits(*ctx, ref, n_pos, n_vocab);
    qInfo("%s: max|dlogit| %.3g rms %.3g%s", qPrintable(f.name), d.max, d.rms,
          reference_is_broken(f) ? " (against the F32 reference)" : "");
    if (reference_is_broken(f)) {
      // F16 weights and activations against F32: llama.cpp's F16 drift on the random models
      // is ~0.005; the trained stories260K has larger activations.
      QVERIFY2(d.max <= 0.05, qPrintable(QString::number(d.max)));
    } else if (chaotic_float_file(f)) {
      QVERIFY2(d.max <= 2e-3, qPrintable(QString::number(d.max)));
      QVERIFY2(d.rms <= 4e-4, qPrintable(QString::number(d.rms)));
      QEXPECT_FAIL("", "llama.cpp's own version-to-version difference on this file (see above)",
                   Continue);
      QVERIFY2(d.max <= kTolFloat, qPrintable(QString::number(d.max)));
    } else if (f.is_float()) {
      QVERIFY2(d.max <= kTolFloat, qPrintable(QString::number(d.max)));
    } else {
      QVERIFY2(d.max <= kTolQuantMax, qPrintable(QString::number(d.max)));
      QVERIFY2(d.rms <= kTolQuantRms, qPrintable(QString::number(d.rms)));
    }
    // One thread gives the same logits (threads split rows, never a reduction).
    auto ctx1 = prompt_context(model, o, 1);
    for (int p = 0; p < n_pos; p += 8) {
      auto a = ctx->logits(p), b = ctx1->logits(p);
      QVERIFY(std::equal(a.begin(), a.end(), b.begin()));
    }
  }

  void greedy_data() {
    QTest::addColumn<QString>("base");
    if (!test::have_shared("fixtures/models")) {
      QTest::newRow("none") << QString();
      return;
    }
    for (const auto& f : runnable_fixtures())
      if (f.is_float() && !reference_is_broken(f)) QTest::newRow(qPrintable(f.name)) << f.base;
  }
  // 24 greedy tokens with single-token decodes through the KV cache (the reference token is fed
  // back, so a skipped near-tie cannot derail the rest).
  void greedy() {
    MOELAB_REQUIRE_SHARED("fixtures/models");
    QFETCH(QString, base);
    const QJsonObject o = test::read_json(base + ".oracle.json").object();
    auto model = Model::load((base + ".gguf").toStdString());
    auto ctx = prompt_context(model, o);
    const auto want = ints(o["greedy_tokens"]);
    const QJsonArray steps = o["greedy_steps"].toArray();
    QCOMPARE(want.size(), size_t{24});
    int skipped = 0, compared = 0;
    std::vector<float> last(ctx->logits(16).begin(), ctx->logits(16).end());
    for (size_t s = 0; s < want.size(); ++s) {
      int best = 0;
      for (size_t i = 1; i < last.size(); ++i)
        if (last[i] > last[best]) best = static_cast<int>(i);
      const double margin = steps[static_cast<int>(s)].toObject()["margin_top1_top2"].toDouble();
      if (margin < 2 * kTolFloat) {
        ++skipped;
      } else {
        QVERIFY2(best == want[s], qPrintable(QString("step %1: %2 vs reference %3 (margin %4)")
                                                 .arg(s)
                                                 .arg(best)
                                                 .arg(want[s])
                                                 .arg(margin)));
        ++compared;
      }
      const int32_t t = want[s];
      ctx->eval({&t, 1});
      auto l = ctx->logits();
      last.assign(l.begin(), l.end());
    }
    qInfo("%s: %d/24 greedy steps identical, %d skipped as near-ties (margin < %.0e)",
          qPrintable(QFileInfo(base).fileName()), compared, skipped, 2 * kTolFloat);
    QCOMPARE(ctx->n_past(), 17u + 24u);
  }

  void moe_routing_data() {
    QTest::addColumn<QString>("base");
    if (!test::have_shared("fixtures/models")) {
      QTest::newRow("none") << QString();
      return;
    }
    for (const auto& f : runnable_fixtures())
      if (test::read_json(f.base + ".oracle.json").object().contains("moe"))
        QTest::newRow(qPrintable(f.name)) << f.base;
  }
  // ffn_moe_topk, ffn_moe_weights (the probabilities of the selected experts) and, where the
  // oracle dumped them, the router logits, probs / biased selection scores and a later stage,
  // the applied weights (applied_weights_tensor) per layer and
  // position (17 prompt + 23 decode positions; layers without MoE have none). F32 files:
  // identical sets (and order), weights within 1e-4. Quantized files: the share of identical
  // sets is reported (routing may legitimately flip on near-ties there).
  void moe_routing() {
    MOELAB_REQUIRE_SHARED("fixtures/models");
    QFETCH(QString, base);
    const bool f32 = base.endsWith(".F32");
    const QJsonObject o = test::read_json(base + ".oracle.json").object();
    const QJsonObject moe = o["moe"].toObject();
    const QJsonArray ref_topk = moe["ffn_moe_topk"].toArray();
    std::vector<std::string> w_names = {"ffn_moe_weights"};
    if (applied_weights_tensor(moe) != "ffn_moe_weights")
      w_names.push_back(applied_weights_tensor(moe).toStdString());
    // The router's scores over all experts (softmax probabilities or sigmoid scores) and, with a
    // selection bias, the scores the choice is made on.
    // The router logits too (oracle3 dumps them; gpt-oss: before its router bias).
    for (const char* s : {"ffn_moe_probs", "ffn_moe_probs_biased", "ffn_moe_logits"})
      if (moe.contains(s)) w_names.push_back(s);
    // Group-limited routers: the kept groups (ints, descending group score; compared exactly).
    const bool grouped = moe.contains("ffn_moe_group_topk");
    if (grouped) w_names.push_back("ffn_moe_group_topk");
    auto model = Model::load((base + ".gguf").toStdString());
    const int n_layer = static_cast<int>(model->card().n_layer);
    // ids[layer][pos], w[name][layer][pos]
    using PerLayer = std::vector<std::vector<std::vector<float>>>;
    PerLayer got_ids(n_layer);
    std::map<std::string, PerLayer> got_w;
    for (const auto& nm : w_names) got_w[nm] = PerLayer(n_layer);
    ContextParams cp;
    cp.n_ctx = 64;
    cp.n_threads = 2;
    auto ctx = Context::create(model, cp);
    std::vector<std::string> observed = w_names;
    observed.push_back("ffn_moe_topk");
    ctx->set_observer(
        [&](const Observation& ob) {
          const int n = static_cast<int>(ob.shape[0]);
          auto& L =
              ob.name == "ffn_moe_topk" ? got_ids[ob.layer] : got_w[std::string(ob.name)][ob.layer];
          if (L.size() < ob.pos0 + n) L.resize(ob.pos0 + n);
          const int w = static_cast<int>(ob.shape[1]);
          for (int t = 0; t < n; ++t)
            for (int j = 0; j < w; ++j) L[ob.pos0 + t].push_back(ob.data[t * w + j]);
        },
        observed);
    ctx->eval(ints(o["prompt_tokens"]), true);
    const auto greedy = ints(o["greedy_tokens"]);
    for (int s = 0; s < 23; ++s) ctx->eval({&greedy[s], 1});
    int same = 0, total = 0;
    std::map<std::string, double> max_dw;
    for (int il = 0; il < n_layer; ++il) {
      const QJsonArray rl = ref_topk[il].toArray();
      QCOMPARE(static_cast<int>(got_ids[il].size()), rl.size());
      for (int p = 0; p < rl.size(); ++p) {
        const auto want = ints(rl[p]);
        std::vector<int> ids(got_ids[il][p].begin(), got_ids[il][p].end());
        ++total;
        const bool equal_set =
            std::set<int>(ids.begin(), ids.end()) == std::set<int>(want.begin(), want.end());
        same += equal_set;
        if (!f32) continue;
        QVERIFY2(ids == want, qPrintable(QString("layer %1 pos %2").arg(il).arg(p)));
        for (const auto& nm : w_names) {
          const QJsonArray ww =
              moe[QString::fromStdString(nm)].toArray()[il].toArray()[p].toArray();
          const auto& w = got_w[nm][il][p];
          QCOMPARE(static_cast<int>(w.size()), ww.size());
          for (int j = 0; j < ww.size(); ++j)
            max_dw[nm] = std::max(max_dw[nm], std::fabs(w[j] - ww[j].toDouble()));
        }
      }
    }
    QString dws;
    for (const auto& nm : w_names)
      if (f32)
        dws +=
            QString(", max |d %1| %2").arg(QString::fromStdString(nm)).arg(max_dw[nm], 0, 'g', 2);
    qInfo("%s: %d/%d (layer, position) expert sets identical%s",
          qPrintable(QFileInfo(base).fileName()), same, total, qPrintable(dws));
    if (f32) {
      QCOMPARE(same, total);
      for (const auto& nm : w_names) QVERIFY2(max_dw[nm] <= kTolRoutingWeight, nm.c_str());
    }
  }

  void attention_data() {
    QTest::addColumn<QString>("base");
    if (!test::have_shared("fixtures/models")) {
      QTest::newRow("none") << QString();
      return;
    }
    for (const auto& f : runnable_fixtures())
      if (f.type == "F32") QTest::newRow(qPrintable(f.name)) << f.base;
  }
  // kq_soft_max of the prompt batch against attention_prompt (causal; gemma2's even layers see
  // only the last 8 keys).
  void attention() {
    MOELAB_REQUIRE_SHARED("fixtures/models");
    QFETCH(QString, base);
    const QJsonObject o = test::read_json(base + ".oracle.json").object();
    const QJsonArray probs = o["attention_prompt"].toObject()["probs"].toArray();
    auto model = Model::load((base + ".gguf").toStdString());
    ContextParams cp;
    cp.n_ctx = 64;
    auto ctx = Context::create(model, cp);
    double max_d = 0;
    int layers = 0;
    ctx->set_observer(
        [&](const Observation& ob) {
          ++layers;
          const int H = static_cast<int>(ob.shape[0]), T = static_cast<int>(ob.shape[1]);
          const int K = static_cast<int>(ob.shape[2]);
          const QJsonArray L = probs[ob.layer].toArray();
          for (int h = 0; h < H; ++h)
            for (int t = 0; t < T; ++t) {
              const QJsonArray row = L[h].toArray()[t].toArray();
              for (int i = 0; i < K; ++i)
                max_d =
                    std::max(max_d, std::fabs(ob.data[(h * T + t) * K + i] - row[i].toDouble()));
            }
        },
        {"kq_soft_max"});
    ctx->eval(ints(o["prompt_tokens"]), false);
    QCOMPARE(layers, probs.size());
    qInfo("%s: attention probabilities max |d| %.2g", qPrintable(QFileInfo(base).fileName()),
          max_d);
    QVERIFY(max_d <= kTolAttention);
  }

  // Breaking the block layout or the scales of one Q8_0 tensor must push the logits far outside
  // the quantized tolerance.
  void broken_quant_file_is_caught() {
    MOELAB_REQUIRE_SHARED("fixtures/models/llama-dense-spm/llama-dense-spm.Q8_0.gguf");
    const QString base =
        test::shared_dir() + "/fixtures/models/llama-dense-spm/llama-dense-spm.Q8_0";
    const QJsonObject o = test::read_json(base + ".oracle.json").object();
    const auto ref = read_f32(base + ".logits.f32");
    const int n_vocab = o["n_vocab"].toInt();
    const QByteArray orig = test::read_all(base + ".gguf");
    const std::string name = "blk.0.ffn_down.weight";
    uint64_t off = 0, nbytes = 0;
    {
      auto f = gguf::File::open((base + ".gguf").toStdString());
      const gguf::TensorInfo* t = f->find_tensor(name);
      QVERIFY(t);
      QCOMPARE(t->type, static_cast<uint32_t>(gguf::TensorType::Q8_0));
      off = t->file_offset;
      nbytes = t->nbytes;
    }
    const QString dir = test::temp_dir("test_model_fixtures");
    for (const char* how : {"scale", "layout"}) {
      QByteArray b = orig;
      for (uint64_t blk = off; blk < off + nbytes; blk += 34) {  // Q8_0: f16 d + 32 int8
        if (std::string(how) == "scale") {
          uint16_t d;
          std::memcpy(&d, b.data() + blk, 2);
          d = static_cast<uint16_t>(d + (1u << 10));  // exponent + 1: scale x2
          std::memcpy(b.data() + blk, &d, 2);
        } else {
          for (int i = 0; i < 16; ++i) std::swap(b.data()[blk + 2 + i], b.data()[blk + 2 + 16 + i]);
        }
      }
      const QString path = dir + "/broken-" + how + ".gguf";
      QFile out(path);
      QVERIFY(out.open(QIODevice::WriteOnly));
      out.write(b);
      out.close();
      auto model = Model::load(path.toStdString());
      auto ctx = prompt_context(model, o);
      const Diff d = compare_logits(*ctx, ref, 17, n_vocab);
      qInfo("broken %s: max|dlogit| %.3g rms %.3g", how, d.max, d.rms);
      QVERIFY(d.max > 4 * kTolQuantMax);
      QVERIFY(d.rms > 2 * kTolQuantRms);
    }
  }
};

QTEST_GUILESS_MAIN(TestModelFixtures)
#include "test_model_fixtures.moc"
