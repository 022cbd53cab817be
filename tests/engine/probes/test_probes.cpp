// Probes and policies on the fixture models (../shared/fixtures): routing records and attention
// rows through the probe API against llama.cpp's references, and the invariants of issue 5.
#include <QJsonArray>
#include <QJsonObject>
#include <QtTest>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "fixture_models.h"
#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"
#include "moelab/model/model.h"
#include "moelab/policies/policies.h"
#include "moelab/probes/probes.h"
#include "moelab/runtime/perplexity.h"
#include "test_support.h"

using namespace moelab;

namespace {

constexpr double kTolRouting = 1e-4;    // F32 files, as test_model_fixtures
constexpr double kTolAttention = 5e-4;  // F32 files, as test_model_fixtures

std::vector<int32_t> ints(const QJsonValue& v) {
  std::vector<int32_t> out;
  for (const auto& x : v.toArray()) out.push_back(x.toInt());
  return out;
}

QString fixture(const QString& name) {
  const QString dir = name.section('.', 0, 0);
  return test::shared_dir() + "/fixtures/models/" + dir + "/" + name;
}

struct Run {
  std::vector<std::vector<float>> logits;  // per eval, last token
  std::shared_ptr<RoutingProbe> routing;
  PolicyStats stats;
};

// Prompt + `steps` greedy tokens from the oracle file, fed one by one.
Run run(const QString& base, ContextParams cp, bool probes, int steps = 8,
        std::vector<int32_t> prompt = {}) {
  const QJsonObject o = test::read_json(base + ".oracle.json").object();
  auto model = Model::load((base + ".gguf").toStdString());
  auto ctx = Context::create(model, cp);
  Run r;
  std::unique_ptr<ProbeHub> hub;
  const ModelCard& c = model->card();
  if (probes) {
    hub = std::make_unique<ProbeHub>(*ctx);
    if (c.expert_count > 0) {
      r.routing = std::make_shared<RoutingProbe>(c.n_layer, c.expert_count);
      hub->add(r.routing);
    }
    AttentionProbeOptions ao;
    for (uint32_t il = 0; il < c.n_layer; ++il) ao.layers.push_back(static_cast<int>(il));
    hub->add(std::make_shared<AttentionProbe>(c.n_layer, c.n_head, ao));
    hub->add(std::make_shared<TimingProbe>(c.n_layer));
  }
  if (prompt.empty()) prompt = ints(o["prompt_tokens"]);
  const auto greedy = ints(o["greedy_tokens"]);
  auto eval = [&](std::span<const int32_t> t) {
    if (hub)
      hub->eval(t);
    else
      ctx->eval(t);
    const auto l = ctx->logits();
    r.logits.emplace_back(l.begin(), l.end());
  };
  eval(prompt);
  for (int s = 0; s < steps; ++s) eval({&greedy[s % greedy.size()], 1});
  r.stats = ctx->policy_stats();
  return r;
}

bool same_bits(const Run& a, const Run& b) {
  if (a.logits.size() != b.logits.size()) return false;
  for (size_t i = 0; i < a.logits.size(); ++i)
    if (a.logits[i].size() != b.logits[i].size() ||
        std::memcmp(a.logits[i].data(), b.logits[i].data(), a.logits[i].size() * 4) != 0)
      return false;
  return true;
}

// Greedy decoding of `steps` tokens through hub (observing ctx) and, in lockstep, on ref:
// every step's logits must be identical bit for bit (an evicting context against the
// local-global policy over a full cache that masks the same keys).
void greedy_in_lockstep(ProbeHub& hub, Context& ctx, Context& ref, int steps) {
  int32_t tok = 5;
  for (int s = 0; s < steps; ++s) {
    const auto a = ctx.logits(), b = ref.logits();
    QVERIFY2(std::memcmp(a.data(), b.data(), a.size() * 4) == 0, qPrintable(QString::number(s)));
    tok = static_cast<int32_t>(std::max_element(a.begin(), a.end()) - a.begin());
    hub.eval({&tok, 1});
    ref.eval({&tok, 1});
  }
}

}  // namespace

class TestProbes : public QObject {
  Q_OBJECT
 private slots:
  void policy_specs() {
    for (const char* s :
         {"default", "k:3", "top-p:0.5,1,8", "top-p:0.7", "top-p:0.6,2,0", "entropy:1,4",
          "mask:*:1,2+mask:0:3", "top-p:0.9,2,4+fail:3,5+capacity:4", "k:2+fail:0"}) {
      const auto p = RoutingPolicy::parse(s);
      QCOMPARE(RoutingPolicy::parse(p.describe()), p);
    }
    // The short form stays short, and every description parses back (it is stored in run configs).
    QCOMPARE(RoutingPolicy::parse("top-p:0.7").describe(), std::string("top-p:0.7"));
    QCOMPARE(RoutingPolicy::parse("top-p:0.6,2,0").describe(), std::string("top-p:0.6,2,0"));
    QVERIFY(RoutingPolicy::parse("default").is_default());
    QVERIFY(!RoutingPolicy::parse("fail:1").is_default());
    for (const char* s : {"", "k", "k:0", "k:x", "top-p:0", "top-p:1.5", "top-p:0.5,3",
                          "entropy:4,1", "mask:1", "k:2+top-p:0.5", "bogus:1", "capacity:0"})
      QVERIFY_THROWS_EXCEPTION(Error, RoutingPolicy::parse(s));
    for (const char* s : {"full", "window:8", "local-global:8,4,16", "evict:4,28"})
      QCOMPARE(AttentionPolicy::parse(s).describe(), std::string(s));
    for (const char* s : {"window", "window:0", "local-global:8,4", "evict:4", "sliding:3"})
      QVERIFY_THROWS_EXCEPTION(Error, AttentionPolicy::parse(s));
    const auto lg = AttentionPolicy::parse("local-global:4,2,8");
    QVERIFY(lg.visible(20, 17, 0) && !lg.visible(20, 15, 0) && lg.visible(20, 16, 0));
    QVERIFY(lg.visible(20, 1, 0) && !lg.visible(20, 21, 0) && !lg.visible(20, 1, 10));
  }

  void routing_matches_fixtures_data() {
    QTest::addColumn<QString>("base");
    if (!test::have_shared("fixtures/models")) {
      QTest::newRow("none") << QString();
      return;
    }
    // Both fixture sets: the files moelab runs (architecture and weight types supported).
    for (const auto& f : test::runnable_fixture_models())
      if (test::read_json(f.base + ".oracle.json").object().contains("moe"))
        QTest::newRow(qPrintable(f.name + ".gguf")) << f.base;
  }
  // Through RoutingProbe: selected experts, applied weights (ffn_moe_weights_norm where the
  // architecture renormalises, else ffn_moe_weights) and router probabilities (ffn_moe_probs)
  // at the 17 prompt and 23 greedy positions of every layer: identical expert lists (in order)
  // for every file. Values: F32/F16 within 1e-4; quantized files within 2e-3 (measured: up to
  // 1.1e-3 on qwen2moe.Q4_0 and 3.6e-4 on mixtral-moe-k.Q4_K_M, where activation quantization
  // rounds differently now and then; elsewhere ~3e-7). The records whose reference gap between
  // the k-th and (k+1)-th probability is under 0.02 (near-ties) are counted in the log.
  void routing_matches_fixtures() {
    MOELAB_REQUIRE_SHARED("fixtures/models");
    QFETCH(QString, base);
    const bool f32 = base.endsWith(".F32");
    const QJsonObject o = test::read_json(base + ".oracle.json").object();
    const QJsonObject moe = o["moe"].toObject();
    const QJsonArray ref_ids = moe["ffn_moe_topk"].toArray();
    // The applied weights: the last weight stage the oracle dumped (fixtures README).
    const QJsonArray ref_w =
        (moe.contains("ffn_moe_weights_scaled")    ? moe["ffn_moe_weights_scaled"]
         : moe.contains("ffn_moe_weights_softmax") ? moe["ffn_moe_weights_softmax"]
         : moe.contains("ffn_moe_weights_norm")    ? moe["ffn_moe_weights_norm"]
                                                   : moe["ffn_moe_weights"])
            .toArray();
    // Layers with a router (models-0c1e570 lists them; leading dense layers have none).
    int n_moe_layers = 0;
    const QJsonArray moe_layers = moe["moe_layers"].toArray();
    const QJsonArray ref_p = moe["ffn_moe_probs"].toArray();
    auto model = Model::load((base + ".gguf").toStdString());
    const ModelCard& c = model->card();
    ContextParams cp;
    cp.n_ctx = 64;
    cp.n_threads = 2;
    auto ctx = Context::create(model, cp);
    ProbeHub hub(*ctx);
    auto probe = std::make_shared<RoutingProbe>(c.n_layer, c.expert_count, true,
                                                router_scores_of(c.router_gating));
    hub.add(probe);
    QCOMPARE(hub.keys().size(), size_t{9});  // only what the routing probe asked for
    hub.eval(ints(o["prompt_tokens"]));
    const auto greedy = ints(o["greedy_tokens"]);
    for (int s = 0; s < 23; ++s) hub.eval({&greedy[s], 1});
    n_moe_layers = moe_layers.isEmpty() ? static_cast<int>(c.n_layer) : moe_layers.size();
    const int n_pos = ref_ids[moe_layers.isEmpty() ? 0 : moe_layers[0].toInt()].toArray().size();
    QCOMPARE(static_cast<int>(probe->size()), n_pos * n_moe_layers);
    const int k = static_cast<int>(c.expert_used_count);
    int checked = 0, decided = 0, same = 0, groups_checked = 0;
    double max_dw = 0, max_dp = 0;
    for (size_t i = 0; i < probe->size(); ++i) {
      const RoutingRecordView r = probe->record(i);
      const auto want = ints(ref_ids[r.layer].toArray()[r.pos]);
      const QJsonArray ww = ref_w[r.layer].toArray()[r.pos].toArray();
      const QJsonArray pp = ref_p[r.layer].toArray()[r.pos].toArray();
      QCOMPARE(static_cast<int>(r.experts.size()), k);
      const std::vector<int32_t> got(r.experts.begin(), r.experts.end());
      std::vector<double> sorted;
      for (const auto& v : pp) sorted.push_back(v.toDouble());
      std::sort(sorted.rbegin(), sorted.rend());
      const bool clear = k == static_cast<int>(c.expert_count) || sorted[k - 1] - sorted[k] > 0.02;
      ++checked;
      same += got == want;
      decided += clear;
      QVERIFY2(got == want, qPrintable(QString("layer %1 pos %2").arg(r.layer).arg(r.pos)));
      for (int j = 0; j < k; ++j)
        max_dw = std::max(max_dw, std::fabs(r.weights[j] - ww[j].toDouble()));
      for (int e = 0; e < static_cast<int>(c.expert_count); ++e)
        max_dp = std::max(max_dp, std::fabs(r.probs[e] - pp[e].toDouble()));
      // Entropy and top-1 margin over the distribution q of policies.h, here from the oracle's
      // scores: sigmoid (glm4-moe, deepseek3-moe) s / sum(s); softmax over the selected
      // (gpt-oss: biased logits) the softmax over every expert; else the probabilities.
      std::vector<double> q;
      for (const auto& v : pp) q.push_back(v.toDouble());
      double qsum = 0, qmax = -1e300;
      for (double v : q) qmax = std::max(qmax, v);
      for (double& v : q) {
        if (c.router_gating == "softmax_over_topk") v = std::exp(v - qmax);
        qsum += v;
      }
      if (c.router_gating == "sigmoid" || c.router_gating == "softmax_over_topk")
        for (double& v : q) v /= qsum;
      double want_h = 0;
      for (double v : q)
        if (v > 0) want_h -= v * std::log(v);
      std::vector<double> qs = q;
      std::sort(qs.rbegin(), qs.rend());
      QVERIFY(r.entropy >= 0 && r.entropy <= std::log(double(c.expert_count)) + 1e-6);
      QVERIFY(r.top1_margin >= 0 && r.top1_margin <= 1);
      max_dp = std::max(max_dp, std::fabs(r.entropy - want_h));
      max_dp = std::max(max_dp, std::fabs(r.top1_margin - (qs[0] - qs[1])));
      // Selection scores (probs + selection bias) and, for group-limited routers, the kept
      // groups (deepseek3-moe: 4 groups of 4, 2 kept) as the oracle dumped them.
      QCOMPARE(r.selection.empty(), !moe.contains("ffn_moe_probs_biased"));
      for (size_t e = 0; e < r.selection.size(); ++e)
        max_dp = std::max(max_dp, std::fabs(r.selection[e] - moe["ffn_moe_probs_biased"]
                                                                 .toArray()[r.layer]
                                                                 .toArray()[r.pos]
                                                                 .toArray()[int(e)]
                                                                 .toDouble()));
      QCOMPARE(r.groups.empty(), !moe.contains("ffn_moe_group_topk"));
      if (!r.groups.empty()) {
        const auto wg = ints(moe["ffn_moe_group_topk"].toArray()[r.layer].toArray()[r.pos]);
        QCOMPARE(std::vector<int32_t>(r.groups.begin(), r.groups.end()), wg);
        ++groups_checked;
      }
    }
    if (moe.contains("ffn_moe_group_topk")) QCOMPARE(groups_checked, n_pos * n_moe_layers);
    qInfo(
        "%s: %d/%d records identical (%d with a top-k gap > 0.02); max |dweight| %.2g, max |dprob| "
        "%.2g",
        qPrintable(QFileInfo(base).fileName()), same, checked, decided, max_dw, max_dp);
    QCOMPARE(same, checked);
    const bool quant = !f32 && !base.endsWith(".F16");
    const double tol = quant ? 2e-3 : kTolRouting;
    QVERIFY(max_dw <= tol && max_dp <= tol);
    // Aggregates agree with the records.
    for (const auto& s : probe->layer_stats()) {
      QCOMPARE(s.tokens, static_cast<uint64_t>(n_pos));
      uint64_t sum = 0;
      for (auto l : s.load) sum += l;
      QCOMPARE(sum, static_cast<uint64_t>(n_pos * k));
      QCOMPARE(s.avg_active, static_cast<double>(k));
      QVERIFY(s.coverage >= 1 && s.coverage <= static_cast<int>(c.expert_count));
      // Over the distribution q of every router (sigmoid scores normalised, logits softmaxed).
      QVERIFY(s.mean_entropy > 0 && s.mean_entropy < std::log(double(c.expert_count)) + 1e-9);
      uint64_t co = 0;
      for (auto v : s.coactivation) co += v;
      QCOMPARE(co, static_cast<uint64_t>(n_pos * k * (k - 1)));
    }
  }

  void attention_matches_fixtures_data() {
    QTest::addColumn<QString>("name");
    for (const char* n : {"llama-dense-spm.F32", "llama-dense-k.F32", "stories260K.F32",
                          "mixtral-moe.F32", "qwen2moe.F32", "olmoe.F32", "gemma2-swa.F32"})
      QTest::newRow(n) << QString(n);
  }
  // AttentionProbe rows (every layer and head, exact) against attention_prompt. gemma2-swa:
  // its sliding-window layers (even) are compared; its global layers too are reported.
  void attention_matches_fixtures() {
    QFETCH(QString, name);
    MOELAB_REQUIRE_SHARED("fixtures/models/" + name.section('.', 0, 0) + "/" + name + ".gguf");
    const QString base = fixture(name);
    const QJsonObject o = test::read_json(base + ".oracle.json").object();
    const QJsonArray ref = o["attention_prompt"].toObject()["probs"].toArray();
    auto model = Model::load((base + ".gguf").toStdString());
    const ModelCard& c = model->card();
    ContextParams cp;
    cp.n_ctx = 64;
    auto ctx = Context::create(model, cp);
    ProbeHub hub(*ctx);
    AttentionProbeOptions ao;
    const bool swa = name.startsWith("gemma2");
    for (uint32_t il = 0; il < c.n_layer; ++il)
      if (!swa || il % 2 == 0) ao.layers.push_back(static_cast<int>(il));
    ao.sink_tokens = 1;
    ao.local_window = 4;
    auto probe = std::make_shared<AttentionProbe>(c.n_layer, c.n_head, ao);
    hub.add(probe);
    hub.eval(ints(o["prompt_tokens"]));
    const int T = static_cast<int>(ints(o["prompt_tokens"]).size());
    QCOMPARE(probe->rows().size(), ao.layers.size() * c.n_head * T);
    double max_d = 0;
    for (const AttentionRow& r : probe->rows()) {
      QCOMPARE(r.bin_size, 1u);
      const QJsonArray row = ref[r.layer].toArray()[r.head].toArray()[r.pos].toArray();
      QCOMPARE(static_cast<int>(r.probs.size()), row.size());
      for (int i = 0; i < row.size(); ++i)
        max_d = std::max(max_d, std::fabs(r.probs[i] - row[i].toDouble()));
      if (swa)  // the window: keys older than 8 get nothing
        for (uint32_t i = 0; i + 8 <= r.pos; ++i) QCOMPARE(r.probs[i], 0.0f);
    }
    qInfo("%s: %zu rows, max |d| %.2g", qPrintable(name), probe->rows().size(), max_d);
    QVERIFY(max_d <= kTolAttention);
    for (const auto& s : probe->head_stats()) {
      QCOMPARE(s.rows, static_cast<uint64_t>(T));
      QVERIFY(std::fabs(s.sink_share + s.local_share + s.distant_share - 1.0) < 1e-5);
      QVERIFY(s.entropy >= 0 && s.entropy <= std::log(double(T)));
    }
  }

  // Probes on (routing + attention for every layer + timing) change no logit bit.
  void probes_change_no_logit_bit() {
    MOELAB_REQUIRE_SHARED("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");
    for (const char* name : {"mixtral-moe.F32", "gemma2-swa.F32", "qwen2moe.Q8_0"}) {
      ContextParams cp;
      cp.n_ctx = 64;
      cp.n_threads = 2;
      const Run off = run(fixture(name), cp, false);
      const Run on = run(fixture(name), cp, true);
      QVERIFY2(same_bits(off, on), name);
    }
  }

  void timing_probe() {
    MOELAB_REQUIRE_SHARED("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");
    auto model = Model::load(fixture("mixtral-moe.F32").toStdString() + ".gguf");
    ContextParams cp;
    cp.n_ctx = 64;
    auto ctx = Context::create(model, cp);
    ProbeHub hub(*ctx);
    auto t = std::make_shared<TimingProbe>(2);
    hub.add(t);
    QVERIFY(hub.keys().empty());  // timing needs no intermediates
    const std::vector<int32_t> prompt = {1, 20, 30, 40, 50};
    hub.eval(prompt);
    for (int i = 0; i < 4; ++i) hub.eval(std::vector<int32_t>{7});
    QCOMPARE(t->evals().size(), size_t{5});
    QVERIFY(t->ttft_us() > 0 && t->tpot_us() > 0);
    for (const auto& e : t->evals()) {
      double ops = 0;
      for (double v : e.op_us) ops += v;
      QVERIFY(ops > 0 && ops <= e.total_us);
      QVERIFY(e.op_us[static_cast<int>(OpKind::Attention)] > 0);
      QVERIFY(e.op_us[static_cast<int>(OpKind::Router)] > 0);
      QVERIFY(e.op_us[static_cast<int>(OpKind::Experts)] > 0);
      QVERIFY(e.op_us[static_cast<int>(OpKind::Head)] > 0);
      QCOMPARE(e.op_us[static_cast<int>(OpKind::Ffn)], 0.0);  // MoE model: no dense FFN
    }
    QCOMPARE(t->evals()[0].n_tokens, int64_t{5});
    QCOMPARE(t->evals()[1].pos0, 5u);
    QVERIFY(t->per_layer_us()[0][static_cast<int>(OpKind::Attention)] > 0);
    QVERIFY(t->per_layer_us()[2][static_cast<int>(OpKind::Head)] > 0);  // row n_layer: layer -1
  }

  void attention_budget_and_summaries() {
    MOELAB_REQUIRE_SHARED("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");
    auto model = Model::load(fixture("mixtral-moe.F32").toStdString() + ".gguf");
    ContextParams cp;
    cp.n_ctx = 64;
    auto ctx = Context::create(model, cp);
    ProbeHub hub(*ctx);
    AttentionProbeOptions ao;
    ao.layers = {1};
    ao.heads = {2};
    ao.max_row_keys = 4;   // rows over more than 4 keys are binned...
    ao.exact_rows = {10};  // ...except the query at position 10
    auto binned = std::make_shared<AttentionProbe>(2, 4, ao);
    hub.add(binned);
    AttentionProbeOptions mean;
    mean.layers = {0};
    mean.head_mean = true;
    mean.budget_bytes = 20 * sizeof(float);
    auto small = std::make_shared<AttentionProbe>(2, 4, mean);
    hub.add(small);
    std::vector<int32_t> prompt(17);
    for (int i = 0; i < 17; ++i) prompt[i] = 3 + 11 * i;
    hub.eval(prompt);
    QCOMPARE(binned->rows().size(), size_t{17});
    for (const auto& r : binned->rows()) {
      QCOMPARE(r.layer, 1);
      QCOMPARE(r.head, 2);
      double sum = 0;
      for (float v : r.probs) sum += v;
      QVERIFY(std::fabs(sum - 1.0) < 1e-5);
      if (r.pos == 10) {
        QCOMPARE(r.bin_size, 1u);
        QCOMPARE(r.probs.size(), size_t{17});
      } else {
        QCOMPARE(r.bin_size, 5u);  // ceil(17 / 4)
        QCOMPARE(r.probs.size(), size_t{4});
      }
    }
    // 17 keys per row, 20 floats of budget: one row fits, the other 16 are counted as dropped.
    QCOMPARE(small->rows().size(), size_t{1});
    QCOMPARE(small->rows()[0].head, -1);
    QCOMPARE(small->dropped_rows(), uint64_t{16});
    QVERIFY(small->bytes() <= mean.budget_bytes);
  }

  void masked_expert_never_selected() {
    MOELAB_REQUIRE_SHARED("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");
    ContextParams cp;
    cp.n_ctx = 64;
    const Run base = run(fixture("mixtral-moe.F32"), cp, true, 20);
    const auto stats = base.routing->layer_stats();
    const int busiest = static_cast<int>(
        std::max_element(stats[0].load.begin(), stats[0].load.end()) - stats[0].load.begin());
    QVERIFY(stats[0].load[busiest] > 0);
    cp.routing = RoutingPolicy::parse("mask:*:" + std::to_string(busiest) + "+mask:1:0");
    const Run m = run(fixture("mixtral-moe.F32"), cp, true, 20);
    QCOMPARE(m.routing->size(), base.routing->size());
    for (size_t i = 0; i < m.routing->size(); ++i) {
      const auto r = m.routing->record(i);
      QCOMPARE(r.experts.size(), size_t{2});
      for (int e : r.experts) {
        QVERIFY(e != busiest);
        QVERIFY(!(r.layer == 1 && e == 0));
      }
    }
    QCOMPARE(m.routing->layer_stats()[0].load[busiest], uint64_t{0});
    QVERIFY(!same_bits(base, m));
  }

  void top_p_one_selects_all() {
    MOELAB_REQUIRE_SHARED("fixtures/models/olmoe/olmoe.F32.gguf");
    ContextParams cp;
    cp.n_ctx = 64;
    cp.routing = RoutingPolicy::parse("top-p:1");
    const Run r = run(fixture("olmoe.F32"), cp, true);
    for (size_t i = 0; i < r.routing->size(); ++i) {
      const auto rec = r.routing->record(i);
      QCOMPARE(rec.experts.size(), size_t{16});
      const std::set<int> s(rec.experts.begin(), rec.experts.end());
      QCOMPARE(s.size(), size_t{16});
      for (size_t j = 1; j < rec.experts.size(); ++j)  // descending probability
        QVERIFY(rec.probs[rec.experts[j - 1]] >= rec.probs[rec.experts[j]]);
    }
    QCOMPARE(r.stats.avg_active_experts(), 16.0);
    // Small p, min 1: the top-1 alone whenever it holds the mass.
    cp.routing = RoutingPolicy::parse("top-p:0.3,1,3");
    const Run s = run(fixture("olmoe.F32"), cp, true);
    for (size_t i = 0; i < s.routing->size(); ++i) {
      const auto rec = s.routing->record(i);
      QVERIFY(rec.experts.size() >= 1 && rec.experts.size() <= 3);
      double before_last = 0;
      for (size_t j = 0; j + 1 < rec.experts.size(); ++j) before_last += rec.probs[rec.experts[j]];
      QVERIFY(before_last < 0.3);  // the set is minimal
    }
    QVERIFY(s.stats.avg_active_experts() < 3.0);
  }

  void fixed_k_equals_default() {
    MOELAB_REQUIRE_SHARED("fixtures/models/qwen2moe/qwen2moe.F32.gguf");
    for (const char* name : {"mixtral-moe.F32", "qwen2moe.F32", "olmoe.Q8_0"}) {
      ContextParams cp;
      cp.n_ctx = 64;
      const Run def = run(fixture(name), cp, true);
      auto model = Model::load(fixture(name).toStdString() + ".gguf");
      cp.routing.rule = RoutingRule::FixedK;
      cp.routing.k = static_cast<int>(model->card().expert_used_count);
      const Run k = run(fixture(name), cp, true);
      QVERIFY2(same_bits(def, k), name);
      QCOMPARE(k.routing->size(), def.routing->size());
      for (size_t i = 0; i < k.routing->size(); ++i) {
        const auto a = def.routing->record(i), b = k.routing->record(i);
        QVERIFY(std::equal(a.experts.begin(), a.experts.end(), b.experts.begin(), b.experts.end()));
        QVERIFY(std::memcmp(a.weights.data(), b.weights.data(), a.weights.size() * 4) == 0);
      }
      // And k:1 changes things and runs one expert.
      cp.routing.k = 1;
      const Run one = run(fixture(name), cp, false);
      QCOMPARE(one.stats.avg_active_experts(), 1.0);
      QVERIFY(!same_bits(def, one));
    }
  }

  void window_at_least_sequence_is_full() {
    MOELAB_REQUIRE_SHARED("fixtures/models/gemma2-swa/gemma2-swa.F32.gguf");
    for (const char* name : {"mixtral-moe.F32", "gemma2-swa.F32"}) {
      ContextParams cp;
      cp.n_ctx = 64;
      const Run full = run(fixture(name), cp, false, 10);
      cp.attention = AttentionPolicy::parse("window:27");  // 17 + 10 tokens
      QVERIFY2(same_bits(full, run(fixture(name), cp, false, 10)), name);
      cp.attention = AttentionPolicy::parse("local-global:64,0,0");
      QVERIFY2(same_bits(full, run(fixture(name), cp, false, 10)), name);
      cp.attention = AttentionPolicy::parse("window:8");
      QVERIFY2(!same_bits(full, run(fixture(name), cp, false, 10)), name);
    }
  }

  void failure_injection_reroutes_and_counts() {
    MOELAB_REQUIRE_SHARED("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");
    ContextParams cp;
    cp.n_ctx = 64;
    const QString f = fixture("mixtral-moe.F32");
    const Run base = run(f, cp, true, 12);
    const int failed = 3;
    cp.routing = RoutingPolicy::parse("fail:" + std::to_string(failed));
    const Run r = run(f, cp, true, 12);
    // Layer 0 of the prompt batch sees the same router input in both runs: every token whose
    // default set holds the failed expert gets the next best expert instead.
    uint64_t expect_l0_prompt = 0;
    int n_prompt = 0;
    for (size_t i = 0; i < base.routing->size(); ++i) {
      const auto a = base.routing->record(i), b = r.routing->record(i);
      QCOMPARE(b.pos, a.pos);
      QCOMPARE(b.layer, a.layer);
      for (int e : b.experts) QVERIFY(e != failed);
      if (a.layer != 0 || a.pos >= 17) continue;
      ++n_prompt;
      std::vector<int> order(8);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int x, int y) { return a.probs[x] > a.probs[y]; });
      std::erase(order, failed);
      const bool hit = std::find(a.experts.begin(), a.experts.end(), failed) != a.experts.end();
      expect_l0_prompt += hit;
      QCOMPARE(std::vector<int>(b.experts.begin(), b.experts.end()),
               std::vector<int>(order.begin(), order.begin() + 2));
      if (!hit) QVERIFY(std::equal(a.experts.begin(), a.experts.end(), b.experts.begin()));
    }
    QCOMPARE(n_prompt, 17);
    QVERIFY(expect_l0_prompt > 0);
    // Count over the whole run: every (token, layer) whose policy-run ranking put the failed
    // expert in the top-2.
    uint64_t expect[2] = {0, 0};
    for (size_t i = 0; i < r.routing->size(); ++i) {
      const auto b = r.routing->record(i);
      int rank = 0;
      for (int e = 0; e < 8; ++e)
        rank += b.probs[e] > b.probs[failed] || (b.probs[e] == b.probs[failed] && e < failed);
      expect[b.layer] += rank < 2;
    }
    QCOMPARE(r.stats.failovers.size(), size_t{2});
    QCOMPARE(r.stats.failovers[0], expect[0]);
    QCOMPARE(r.stats.failovers[1], expect[1]);
    QVERIFY(r.stats.failovers[0] >= expect_l0_prompt);
    QCOMPARE(r.stats.avg_active_experts(), 2.0);
  }

  void capacity_and_entropy() {
    MOELAB_REQUIRE_SHARED("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");
    ContextParams cp;
    cp.n_ctx = 64;
    const QString f = fixture("mixtral-moe.F32");
    cp.routing = RoutingPolicy::parse("capacity:5");
    const Run r = run(f, cp, true, 4);
    // Prompt batch (17 tokens x 2 slots over 8 experts): no expert takes more than 5 tokens.
    for (int il = 0; il < 2; ++il) {
      std::vector<int> load(8, 0);
      for (size_t i = 0; i < r.routing->size(); ++i) {
        const auto rec = r.routing->record(i);
        if (rec.layer == il && rec.pos < 17)
          for (int e : rec.experts) ++load[e];
      }
      for (int l : load) QVERIFY(l <= 5);
    }
    QVERIFY(r.stats.overflows[0] + r.stats.overflows[1] > 0);
    cp.routing = RoutingPolicy::parse("entropy:1,4");
    const Run e = run(f, cp, true, 4);
    for (size_t i = 0; i < e.routing->size(); ++i) {
      const auto rec = e.routing->record(i);
      const int want = 1 + static_cast<int>(std::lround(3 * rec.entropy / std::log(8.0)));
      QCOMPARE(static_cast<int>(rec.experts.size()), std::clamp(want, 1, 4));
    }
    QVERIFY(e.stats.avg_active_experts() >= 1 && e.stats.avg_active_experts() <= 4);
  }

  // evict:S,W with a 32-cell cache runs 60 tokens past n_ctx and gives exactly the logits of
  // the same sinks + window mask over a cache that holds everything.
  void eviction_runs_past_n_ctx() {
    MOELAB_REQUIRE_SHARED("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");
    const QString f = fixture("mixtral-moe.F32");
    std::vector<int32_t> prompt(10);
    for (int i = 0; i < 10; ++i) prompt[i] = 2 + 37 * i;
    ContextParams cp;
    cp.n_ctx = 32;
    cp.attention = AttentionPolicy::parse("evict:4,20");
    auto model = Model::load(f.toStdString() + ".gguf");
    auto ctx = Context::create(model, cp);
    QCOMPARE(ctx->n_ctx(), uint32_t{INT32_MAX});
    ContextParams ref_cp;
    ref_cp.n_ctx = 128;
    ref_cp.attention = AttentionPolicy::parse("local-global:20,4,0");
    auto ref = Context::create(model, ref_cp);
    // Attention rows after eviction carry key positions.
    ProbeHub hub(*ctx);
    AttentionProbeOptions ao;
    ao.layers = {0};
    ao.heads = {0};
    auto ap = std::make_shared<AttentionProbe>(2, 4, ao);
    hub.add(ap);
    hub.eval(prompt);
    ref->eval(prompt);
    greedy_in_lockstep(hub, *ctx, *ref, 60);
    if (QTest::currentTestFailed()) return;
    QCOMPARE(ctx->n_past(), 70u);
    QVERIFY(ctx->policy_stats().evicted > 0);
    const AttentionRow& last = ap->rows().back();
    QCOMPARE(last.pos, 69u);
    QVERIFY(!last.key_pos.empty() && last.key_pos.size() <= 32);
    QCOMPARE(last.key_pos.front(), 0);
    QCOMPARE(last.key_pos.back(), 69);
    for (size_t i = 0; i < last.key_pos.size(); ++i)
      if (last.key_pos[i] >= 4 && 69 - last.key_pos[i] >= 20) QCOMPARE(last.probs[i], 0.0f);
    // Policies are checked against the model.
    ContextParams bad;
    bad.n_ctx = 16;
    bad.attention = AttentionPolicy::parse("evict:4,20");
    QVERIFY_THROWS_EXCEPTION(Error, Context::create(model, bad));
    bad.attention = {};
    bad.routing = RoutingPolicy::parse("k:9");
    QVERIFY_THROWS_EXCEPTION(Error, Context::create(model, bad));
    bad.routing = RoutingPolicy::parse("fail:8");
    QVERIFY_THROWS_EXCEPTION(Error, Context::create(model, bad));
  }

  // gpt-oss (attention sinks, even layers a sliding window of 8) under evict:S,W: the learned
  // sink is a virtual key of the softmax, not a KV cell, so eviction never drops it - the
  // evicting context gives bit for bit the logits of local-global:W,S,0 over a full cache, and
  // every attention row still leaves the sink its share (sums below 1). On the windowed layers
  // the model's window of 8 still applies (policies restrict, never widen).
  void eviction_with_attention_sinks_gptoss() {
    const QString f = test::shared_dir() + "/fixtures/models-0c1e570/gptoss-moe/gptoss-moe.F32";
    MOELAB_REQUIRE_SHARED("fixtures/models-0c1e570/gptoss-moe/gptoss-moe.F32.gguf");
    std::vector<int32_t> prompt(10);
    for (int i = 0; i < 10; ++i) prompt[i] = 2 + 37 * i;
    auto model = Model::load(f.toStdString() + ".gguf");
    ContextParams cp;
    cp.n_ctx = 32;
    cp.attention = AttentionPolicy::parse("evict:4,20");
    auto ctx = Context::create(model, cp);
    ContextParams ref_cp;
    ref_cp.n_ctx = 128;
    ref_cp.attention = AttentionPolicy::parse("local-global:20,4,0");
    auto ref = Context::create(model, ref_cp);
    ProbeHub hub(*ctx);
    AttentionProbeOptions ao;
    ao.layers = {0, 1};
    ao.heads = {0};
    auto ap = std::make_shared<AttentionProbe>(4, 8, ao);
    hub.add(ap);
    hub.eval(prompt);
    ref->eval(prompt);
    greedy_in_lockstep(hub, *ctx, *ref, 50);
    if (QTest::currentTestFailed()) return;
    QVERIFY(ctx->policy_stats().evicted > 0);
    int rows_after_eviction = 0;
    for (const AttentionRow& r : ap->rows()) {
      double sum = 0;
      for (float p : r.probs) sum += p;
      QVERIFY2(sum > 0 && sum < 1,
               qPrintable(QString("layer %1 pos %2 sum %3").arg(r.layer).arg(r.pos).arg(sum)));
      if (r.pos >= 32) ++rows_after_eviction;
      if (r.layer == 0 && !r.key_pos.empty())  // the model's window of 8 on layer 0
        for (size_t i = 0; i < r.key_pos.size(); ++i)
          if (static_cast<int64_t>(r.pos) - r.key_pos[i] >= 8) QCOMPARE(r.probs[i], 0.0f);
    }
    QVERIFY(rows_after_eviction > 0);
    // A routing policy composes with eviction on its softmax-over-selected router
    // (policies.h "Gated routers"): k:2 runs past n_ctx with 2 experts per token and layer.
    ContextParams k2;
    k2.n_ctx = 32;
    k2.routing = RoutingPolicy::parse("k:2");
    k2.attention = AttentionPolicy::parse("evict:4,20");
    auto kctx = Context::create(model, k2);
    kctx->eval(prompt);
    for (int i = 0; i < 30; ++i) {
      const int32_t t = (i * 29 + 3) % 512;
      kctx->eval({&t, 1});
    }
    QVERIFY(kctx->policy_stats().evicted > 0);
    QCOMPARE(kctx->policy_stats().avg_active_experts(), 2.0);
  }

  // ContextParams::policy_stats: contexts report what their policies did into one shared
  // object (perplexity and eval create their contexts themselves and read it afterwards).
  void shared_policy_stats() {
    MOELAB_REQUIRE_SHARED("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");
    auto model = Model::load(fixture("mixtral-moe.F32").toStdString() + ".gguf");
    auto stats = std::make_shared<PolicyStats>();
    for (int i = 0; i < 2; ++i) {
      ContextParams cp;
      cp.n_ctx = 16;
      cp.routing = RoutingPolicy::parse("k:1");
      cp.policy_stats = stats;
      auto ctx = Context::create(model, cp);
      QCOMPARE(ctx->routing_policy().describe(), std::string("k:1"));
      ctx->eval(std::vector<int32_t>{1, 2, 3});
    }
    QCOMPARE(stats->routed, uint64_t{12});  // 2 contexts x 3 tokens x 2 MoE layers
    QCOMPARE(stats->avg_active_experts(), 1.0);
  }

  // perplexity() runs under PerplexityParams' policies and reports into its stats.
  void perplexity_under_a_policy() {
    MOELAB_REQUIRE_SHARED("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");
    auto model = Model::load(fixture("mixtral-moe.F32").toStdString() + ".gguf");
    std::vector<int32_t> tokens(16);
    for (int i = 0; i < 16; ++i) tokens[i] = 1 + (i * 7) % 50;
    PerplexityParams pp;
    pp.n_ctx = 8;
    const PerplexityResult plain = perplexity(model, tokens, pp);
    auto stats = std::make_shared<PolicyStats>();
    pp.routing = RoutingPolicy::parse("k:1");
    pp.policy_stats = stats;
    const PerplexityResult k1 = perplexity(model, tokens, pp);
    QCOMPARE(stats->routed, uint64_t{2 * 8 * 2});  // 2 chunks x 8 tokens x 2 MoE layers
    QCOMPARE(stats->avg_active_experts(), 1.0);
    QVERIFY(k1.ppl != plain.ppl);
  }
};

QTEST_GUILESS_MAIN(TestProbes)
#include "test_probes.moc"
