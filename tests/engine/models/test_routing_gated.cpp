// Routing policies on gated routers (moelab/policies/policies.h, "Gated routers"): sigmoid gating
// with a selection-only bias (glm4-moe), the same with group-limited top-k (deepseek3-moe) and a
// softmax over the selected logits (gptoss-moe), on the llama.cpp 0c1e570 fixtures.
//
//   * every rule against a float64 reference written in this file from the header's text: the
//     first MoE layer's router input is the fixture's dump (llama.cpp's ffn_moe_logits plus the
//     file's exp_probs_b bias; gpt-oss: ffn_moe_probs, the router-biased logits), later layers
//     the engine's own router input of the same run (the policy changes the hidden states
//     there). Chosen experts identical (near-ties of the float64 reference within 1e-5 skipped
//     and counted), applied weights within 1e-4 (fixture input) / 1e-5 (engine input), the
//     fail-over and overflow counts equal;
//   * the identities: k:expert_used_count and top-p:1,K,K give logits bit-equal to no policy;
//   * the effect through the CLI (moelab-cli trace --routing-policy): k:1 -> one expert per
//     token and layer, mask:*:3 -> expert 3 never chosen.
#include <QtTest>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "cli_run.h"
#include "moelab/core/error.h"
#include "moelab/gguf/gguf.h"
#include "moelab/model/model.h"
#include "moelab/policies/policies.h"
#include "test_support.h"

using namespace moelab;

namespace {

// ---- the float64 reference -----------------------------------------------------------------

enum class Gate { Softmax, Sigmoid, SoftmaxSelected };

struct RefGating {
  Gate gate = Gate::Softmax;
  bool renorm = false;
  double scale = 0;
  int n_group = 0, n_used = 0;
  int nx = 0, k_model = 0;
};

// Reads the router's description from the GGUF keys (not from moelab's ArchConfig).
RefGating read_gating(const std::string& path) {
  const auto f = gguf::File::open(path);
  const std::string a = f->get_string("general.architecture");
  RefGating g;
  g.nx = static_cast<int>(f->get_u64(a + ".expert_count", 0));
  g.k_model = static_cast<int>(f->get_u64(a + ".expert_used_count", 0));
  if (a == "gpt-oss") {
    g.gate = Gate::SoftmaxSelected;
  } else {
    g.gate = f->get_u64(a + ".expert_gating_func", 1) == 2 ? Gate::Sigmoid : Gate::Softmax;
    g.renorm = f->get_bool(a + ".expert_weights_norm", false);
    g.scale = f->get_f64(a + ".expert_weights_scale", 0);
    g.n_group = static_cast<int>(f->get_u64(a + ".expert_group_count", 0));
    g.n_used = static_cast<int>(f->get_u64(a + ".expert_group_used_count", 0));
  }
  return g;
}

std::vector<float> tensor_f32(const std::string& path, const std::string& name) {
  const auto f = gguf::File::open(path);
  const gguf::TensorInfo* t = f->find_tensor(name);
  if (!t) return {};
  std::vector<float> v(static_cast<size_t>(t->n_elements()));
  std::memcpy(v.data(), t->data, v.size() * sizeof(float));
  return v;
}

struct RefToken {
  std::vector<int> ids;
  std::vector<double> applied;
  int failovers = 0;
  bool overflow = false;
  double margin = 1e9;  // the closest call of the decision (near-ties are skipped)
};

// One token's routing under `p` (see the policy header), given the experts' loads so far.
RefToken ref_route(const RefGating& g, const RoutingPolicy& p, int layer, const float* z,
                   const float* bias, const std::vector<int>& load) {
  const int nx = g.nx;
  std::vector<double> s(nx), q(nx), sel(nx);
  if (g.gate == Gate::Sigmoid) {
    double tot = 0;
    for (int e = 0; e < nx; ++e) tot += (s[e] = 1.0 / (1.0 + std::exp(-double(z[e]))));
    for (int e = 0; e < nx; ++e) q[e] = s[e] / tot;
  } else {
    double mx = -INFINITY, tot = 0;
    for (int e = 0; e < nx; ++e) mx = std::max(mx, double(z[e]));
    for (int e = 0; e < nx; ++e) tot += (q[e] = std::exp(double(z[e]) - mx));
    for (int e = 0; e < nx; ++e) q[e] /= tot;
    for (int e = 0; e < nx; ++e) s[e] = g.gate == Gate::Softmax ? q[e] : double(z[e]);
  }
  for (int e = 0; e < nx; ++e) sel[e] = s[e] + (bias ? bias[e] : 0.0);
  std::vector<char> masked(nx, 0), failed(nx, 0);
  for (auto [l, e] : p.masked)
    if (l < 0 || l == layer) masked[e] = 1;
  for (int e : p.failed) failed[e] = 1;
  RefToken r;
  auto note = [&](double a, double b) { r.margin = std::min(r.margin, std::fabs(a - b)); };
  auto by_sel = [&](std::vector<int>& v) {
    std::stable_sort(v.begin(), v.end(), [&](int x, int y) { return sel[x] > sel[y]; });
  };
  auto ranking = [&](const std::vector<char>& removed) {
    std::vector<int> order;
    if (g.n_group <= 1) {
      order.resize(nx);
      std::iota(order.begin(), order.end(), 0);
      by_sel(order);
      for (int j = 0; j + 1 < nx; ++j) note(sel[order[j]], sel[order[j + 1]]);
      return order;
    }
    const int per = nx / g.n_group;
    std::vector<double> gs(g.n_group);
    for (int gi = 0; gi < g.n_group; ++gi) {
      std::vector<double> v;
      for (int i = gi * per; i < (gi + 1) * per; ++i)
        if (!removed[i]) v.push_back(sel[i]);
      std::sort(v.rbegin(), v.rend());
      gs[gi] = v.empty() ? -INFINITY : v[0] + (v.size() > 1 ? v[1] : 0.0);
    }
    std::vector<int> go(g.n_group);
    std::iota(go.begin(), go.end(), 0);
    std::stable_sort(go.begin(), go.end(), [&](int x, int y) { return gs[x] > gs[y]; });
    for (int j = 0; j + 1 < g.n_group; ++j)
      if (std::isfinite(gs[go[j + 1]])) note(gs[go[j]], gs[go[j + 1]]);
    std::vector<int> first;
    for (int j = 0; j < g.n_used; ++j)
      for (int i = go[j] * per; i < (go[j] + 1) * per; ++i) first.push_back(i);
    std::sort(first.begin(), first.end());
    by_sel(first);
    order = first;
    for (int j = g.n_used; j < g.n_group; ++j) {
      std::vector<int> grp;
      for (int i = go[j] * per; i < (go[j] + 1) * per; ++i) grp.push_back(i);
      by_sel(grp);
      order.insert(order.end(), grp.begin(), grp.end());
    }
    for (int j = 0; j + 1 < nx; ++j) note(sel[order[j]], sel[order[j + 1]]);
    return order;
  };
  std::vector<int> order = ranking(masked);
  int want = g.k_model;
  const int max_k = p.max_k ? p.max_k : nx;
  if (p.rule == RoutingRule::FixedK) want = p.k;
  if (p.rule == RoutingRule::TopP) {
    if (p.p >= 1.0) {
      want = nx;
    } else {
      double mass = 0;
      want = 0;
      while (want < nx && mass < p.p) mass += q[order[want++]];
      note(mass, p.p);
      note(mass - q[order[want - 1]], p.p);
    }
    want = std::clamp(want, p.min_k, max_k);
  }
  if (p.rule == RoutingRule::Entropy) {
    double h = 0;
    for (double v : q)
      if (v > 0) h -= v * std::log(v);
    const double x = (max_k - p.min_k) * h / std::log(double(nx));
    note(x - std::floor(x), 0.5);
    want = std::clamp(p.min_k + static_cast<int>(std::lround(x)), p.min_k, max_k);
  }
  for (int j = 0; j < want; ++j) r.failovers += failed[order[j]];
  std::vector<char> unavailable(nx);
  for (int e = 0; e < nx; ++e) unavailable[e] = masked[e] || failed[e];
  if (g.n_group > 1 && !p.failed.empty()) order = ranking(unavailable);
  for (int j = 0; j < nx && static_cast<int>(r.ids.size()) < want; ++j) {
    const int e = order[j];
    if (unavailable[e]) continue;
    if (p.capacity > 0 && load[e] >= p.capacity) {
      r.overflow = true;
      continue;
    }
    r.ids.push_back(e);
  }
  std::vector<double> w;
  for (int e : r.ids) w.push_back(s[e]);
  if (g.gate == Gate::SoftmaxSelected && !w.empty()) {
    const double mx = *std::max_element(w.begin(), w.end());
    double tot = 0;
    for (double& v : w) tot += (v = std::exp(v - mx));
    for (double& v : w) v /= tot;
  } else if (g.renorm) {
    const double tot = std::accumulate(w.begin(), w.end(), 0.0);
    for (double& v : w) v /= tot;
  }
  if (g.scale > 0)
    for (double& v : w) v *= g.scale;
  r.applied = w;
  return r;
}

// ---- the engine's side -----------------------------------------------------------------------

struct Layer {
  std::vector<float> input;    // the router input [n, nx] (gpt-oss: after its router bias)
  std::vector<float> topk;     // [n, max_k]
  std::vector<float> applied;  // [n, max_k]
  int width = 0;
};

struct Run {
  std::map<int, Layer> layers;
  std::vector<std::vector<float>> logits;
  PolicyStats stats;
};

Run run_policy(const std::shared_ptr<Model>& model, const std::string& spec,
               const std::vector<int32_t>& prompt, bool gptoss, int decode_steps = 0) {
  Run r;
  ContextParams cp;
  cp.n_ctx = 64;
  cp.n_threads = 2;
  if (spec != "none") cp.routing = RoutingPolicy::parse(spec);
  auto ctx = Context::create(model, cp);
  const std::string applied_name = gptoss ? "ffn_moe_weights_softmax" : "ffn_moe_weights_scaled";
  const std::string input_name = gptoss ? "ffn_moe_probs" : "ffn_moe_logits";
  ctx->set_observer(
      [&](const Observation& o) {
        if (o.pos0 != 0) return;  // the prompt batch only
        Layer& L = r.layers[o.layer];
        std::vector<float> d(o.data.begin(), o.data.end());
        if (o.name == input_name) L.input = d;
        if (o.name == "ffn_moe_topk") {
          L.topk = d;
          L.width = static_cast<int>(o.shape[1]);
        }
        if (o.name == applied_name) L.applied = d;
      },
      {input_name, "ffn_moe_topk", applied_name});
  ctx->eval(prompt, true);
  for (size_t i = 0; i < prompt.size(); ++i) {
    const auto l = ctx->logits(static_cast<int>(i));
    r.logits.emplace_back(l.begin(), l.end());
  }
  int32_t t = 7;
  for (int s = 0; s < decode_steps; ++s) {
    ctx->eval({&t, 1});
    const auto l = ctx->logits();
    r.logits.emplace_back(l.begin(), l.end());
    t = (t * 31 + 5) % 512;
  }
  r.stats = ctx->policy_stats();
  return r;
}

std::vector<float> oracle_rows(const QJsonArray& rows, int n_pos) {
  std::vector<float> out;
  for (int p = 0; p < n_pos; ++p)
    for (const auto& v : rows[p].toArray()) out.push_back(static_cast<float>(v.toDouble()));
  return out;
}

const char* kModels[] = {"glm4-moe", "deepseek3-moe", "gptoss-moe"};

QString rel_of(const QString& m) {
  return QString("fixtures/models-0c1e570/%1/%1.F32").arg(m);
}

}  // namespace

class TestRoutingGated : public QObject {
  Q_OBJECT

 private slots:
  void policy_matches_reference_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("spec");
    const char* specs[] = {"default",
                           "k:1",
                           "k:3",
                           "k:6",
                           "k:10",
                           "top-p:0.5,1,8",
                           "top-p:0.9,2,12",
                           "entropy:1,8",
                           "mask:*:3",
                           "mask:*:0,5,9+mask:1:2",
                           "fail:1,6",
                           "capacity:3",
                           "top-p:0.7,1,6+fail:2+capacity:5"};
    for (const char* m : kModels)
      for (const char* s : specs) QTest::newRow(qPrintable(QString("%1 %2").arg(m, s))) << m << s;
  }
  void policy_matches_reference() {
    QFETCH(QString, model);
    QFETCH(QString, spec);
    const QString rel = rel_of(model);
    MOELAB_REQUIRE_SHARED(rel + ".gguf");
    const std::string path = test::shared_path(rel + ".gguf");
    const bool gptoss = model == "gptoss-moe";
    RefGating g = read_gating(path);
    RoutingPolicy p = RoutingPolicy::parse(spec.toStdString());
    // Expert ids past this model's expert_count are dropped from the spec's lists (gpt-oss has 8).
    for (auto& m : p.masked) QVERIFY(m.second < g.nx || gptoss);
    std::erase_if(p.masked, [&](auto& m) { return m.second >= g.nx; });
    std::erase_if(p.failed, [&](int e) { return e >= g.nx; });
    if (p.rule == RoutingRule::FixedK) p.k = std::min(p.k, g.nx);
    if (p.max_k > g.nx) p.max_k = g.nx;
    const QJsonObject o =
        test::read_json(QString::fromStdString(test::shared_path(rel)) + ".oracle.json").object();
    std::vector<int32_t> prompt;
    for (const auto& v : o["prompt_tokens"].toArray()) prompt.push_back(v.toInt());
    const int n = static_cast<int>(prompt.size());
    auto m = Model::load(path);
    const Run run = run_policy(m, p.describe(), prompt, gptoss);
    const QJsonObject moe = o["moe"].toObject();
    const int first_layer = moe["moe_layers"].toArray()[0].toInt();
    QVERIFY(!run.layers.empty());
    int compared = 0, skipped = 0;
    uint64_t failovers = 0, overflows = 0, active = 0;
    double worst_fixture = 0, worst_engine = 0;
    for (const auto& [layer, L] : run.layers) {
      std::vector<float> input = L.input;
      const bool from_fixture = layer == first_layer;
      if (from_fixture) {
        const auto ref_in = oracle_rows(
            moe[gptoss ? "ffn_moe_probs" : "ffn_moe_logits"].toArray()[layer].toArray(), n);
        QCOMPARE(ref_in.size(), input.size());
        double d = 0;
        for (size_t i = 0; i < input.size(); ++i)
          d = std::max(d, double(std::fabs(ref_in[i] - input[i])));
        QVERIFY2(d <= 1e-4, qPrintable(QString("router input vs fixture %1").arg(d)));
        input = ref_in;
      }
      const std::vector<float> bias =
          tensor_f32(path, "blk." + std::to_string(layer) + ".exp_probs_b.bias");
      QCOMPARE(bias.empty(), gptoss);
      std::vector<int> load(g.nx, 0);
      for (int t = 0; t < n; ++t) {
        const RefToken r = ref_route(g, p, layer, input.data() + t * g.nx,
                                     bias.empty() ? nullptr : bias.data(), load);
        std::vector<int> got;
        std::vector<float> got_w;
        for (int j = 0; j < L.width; ++j) {
          const int e = static_cast<int>(L.topk[t * L.width + j]);
          if (e < 0) continue;
          got.push_back(e);
          got_w.push_back(L.applied[t * L.width + j]);
        }
        for (int e : got) ++load[e];  // the engine's decisions carry the capacity state on
        failovers += r.failovers;
        overflows += r.overflow;
        active += got.size();
        if (r.margin < 1e-5) {
          ++skipped;
          continue;
        }
        ++compared;
        QVERIFY2(got == r.ids, qPrintable(QString("layer %1 token %2").arg(layer).arg(t)));
        for (size_t j = 0; j < got.size(); ++j) {
          const double d = std::fabs(got_w[j] - r.applied[j]);
          (from_fixture ? worst_fixture : worst_engine) =
              std::max(from_fixture ? worst_fixture : worst_engine, d);
        }
      }
    }
    qInfo(
        "%s %s: %d decisions compared, %d near-ties skipped, applied max|d| %.2g (fixture "
        "input) %.2g (engine input), avg experts %.2f",
        qPrintable(model), qPrintable(spec), compared, skipped, worst_fixture, worst_engine,
        run.stats.avg_active_experts());
    QVERIFY(compared >= static_cast<int>(run.layers.size()) * n - 4);
    QVERIFY(worst_fixture <= 1e-4);
    QVERIFY(worst_engine <= 1e-5);
    if (skipped == 0) {
      QCOMPARE(std::accumulate(run.stats.failovers.begin(), run.stats.failovers.end(), uint64_t{0}),
               failovers);
      QCOMPARE(std::accumulate(run.stats.overflows.begin(), run.stats.overflows.end(), uint64_t{0}),
               overflows);
    }
    QCOMPARE(run.stats.active, active);
    // The policy's visible effect.
    for (const auto& [layer, L] : run.layers)
      for (int t = 0; t < n; ++t) {
        int count = 0;
        for (int j = 0; j < L.width; ++j) {
          const int e = static_cast<int>(L.topk[t * L.width + j]);
          if (e < 0) continue;
          ++count;
          for (auto [ml, me] : p.masked)
            if (ml < 0 || ml == layer) QVERIFY(e != me);
          for (int fe : p.failed) QVERIFY(e != fe);
        }
        if (p.rule == RoutingRule::FixedK) QCOMPARE(count, p.k);
        if (p.rule == RoutingRule::Default && p.capacity == 0) QCOMPARE(count, g.k_model);
      }
    if (!p.failed.empty()) QVERIFY(failovers > 0);
    if (p.capacity > 0) {
      QVERIFY(overflows > 0);
      for (const auto& [layer, L] : run.layers) {
        std::vector<int> c(g.nx, 0);
        for (float e : L.topk)
          if (e >= 0) ++c[static_cast<int>(e)];
        QVERIFY(*std::max_element(c.begin(), c.end()) <= p.capacity);
      }
    }
  }

  // k:expert_used_count and top-p:1,K,K choose what the model chooses, with its weights: the
  // logits are bit-equal to a run without a policy, prompt and decode.
  void identity_policies_are_bit_equal_data() {
    QTest::addColumn<QString>("model");
    for (const char* m : kModels) QTest::newRow(m) << m;
  }
  void identity_policies_are_bit_equal() {
    QFETCH(QString, model);
    const QString rel = rel_of(model);
    MOELAB_REQUIRE_SHARED(rel + ".gguf");
    const std::string path = test::shared_path(rel + ".gguf");
    const bool gptoss = model == "gptoss-moe";
    auto m = Model::load(path);
    const int K = static_cast<int>(m->card().expert_used_count);
    std::vector<int32_t> prompt;
    for (int i = 0; i < 12; ++i) prompt.push_back((i * 37 + 11) % 512);
    const Run base = run_policy(m, "none", prompt, gptoss, 4);
    const std::string k = std::to_string(K);
    for (const std::string& spec : {"k:" + k, "top-p:1," + k + "," + k}) {
      const Run r = run_policy(m, spec, prompt, gptoss, 4);
      QCOMPARE(r.logits.size(), base.logits.size());
      for (size_t i = 0; i < r.logits.size(); ++i)
        QVERIFY2(std::memcmp(r.logits[i].data(), base.logits[i].data(),
                             r.logits[i].size() * sizeof(float)) == 0,
                 qPrintable(QString::fromStdString(spec) + " row " + QString::number(i)));
      for (const auto& [layer, L] : r.layers) {
        QCOMPARE(L.topk, base.layers.at(layer).topk);
        QCOMPARE(L.applied, base.layers.at(layer).applied);
      }
    }
  }

  // Through the CLI: the trace shows the policy's effect on each gated router.
  void cli_trace_shows_policy_data() {
    QTest::addColumn<QString>("model");
    for (const char* m : kModels) QTest::newRow(m) << m;
  }
  void cli_trace_shows_policy() {
    QFETCH(QString, model);
    const QString rel = rel_of(model);
    MOELAB_REQUIRE_SHARED(rel + ".gguf");
    const std::string path = test::shared_path(rel + ".gguf");
    for (const std::string spec : {"k:1", "mask:*:3"}) {
      const auto res = test::cli_run({"trace", "-m", path, "--tokens", "1,50,99,200,7", "-n", "3",
                                      "--json", "--routing-policy", spec, "--threads", "1"});
      QVERIFY2(res.code == 0, res.err.c_str());
      const auto j = nlohmann::json::parse(res.out);
      QCOMPARE(j["routing_policy"].get<std::string>(), RoutingPolicy::parse(spec).describe());
      // Positions 0..6 (5 prompt tokens, 2 generated ones fed back) in every MoE layer.
      const auto& recs = j["routing"];
      std::set<int> layers;
      for (const auto& r : recs) {
        layers.insert(r["layer"].get<int>());
        QVERIFY(r["pos"].get<int>() <= 6);
      }
      QVERIFY(!layers.empty());
      QCOMPARE(recs.size(), 7 * layers.size());
      for (const auto& r : recs) {
        std::vector<int> ex;
        for (int e : r["experts"].get<std::vector<int>>())
          if (e >= 0) ex.push_back(e);
        if (spec == "k:1") {
          QCOMPARE(ex.size(), size_t{1});
        } else {
          QVERIFY(std::find(ex.begin(), ex.end(), 3) == ex.end());
          QVERIFY(ex.size() >= 1);
        }
      }
      if (spec == "k:1") QCOMPARE(j["avg_active_experts"].get<double>(), 1.0);
    }
  }
};

QTEST_GUILESS_MAIN(TestRoutingGated)
#include "test_routing_gated.moc"
