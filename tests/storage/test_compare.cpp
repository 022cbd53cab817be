// A/B comparison maths: each function against values computed independently here (by hand or
// by a different, simpler algorithm), and compare_runs on two stored runs.
#include <cmath>
#include <random>

#include "moelab/compare/compare.h"
#include "test_support.h"

using namespace moelab::compare;
using moelab::storage::NextTokenDist;
using moelab::storage::RoutingRecord;
using moelab::storage::TokenRecord;

namespace {

bool close(double a, double b, double tol = 1e-12) {
  return std::fabs(a - b) <= tol;
}

// Length of the longest common subsequence by the textbook O(nm) table.
size_t lcs(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  std::vector<std::vector<size_t>> t(a.size() + 1, std::vector<size_t>(b.size() + 1, 0));
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j)
      t[i][j] = a[i - 1] == b[j - 1] ? t[i - 1][j - 1] + 1 : std::max(t[i - 1][j], t[i][j - 1]);
  return t[a.size()][b.size()];
}

// Applies an edit script to a; must give b, and must consume a and b in order.
std::vector<int32_t> apply(const std::vector<DiffOp>& ops, const std::vector<int32_t>& a,
                           const std::vector<int32_t>& b) {
  std::vector<int32_t> out;
  size_t ia = 0, ib = 0;
  for (const auto& op : ops) {
    if (op.kind == DiffOp::Kind::Equal) {
      if (op.a_pos != ia || op.b_pos != ib) return {-1};
      for (size_t i = 0; i < op.len; ++i) {
        if (a[ia + i] != b[ib + i]) return {-2};
        out.push_back(a[ia + i]);
      }
      ia += op.len, ib += op.len;
    } else if (op.kind == DiffOp::Kind::Delete) {
      if (op.a_pos != ia) return {-3};
      ia += op.len;
    } else {
      if (op.b_pos != ib) return {-4};
      for (size_t i = 0; i < op.len; ++i) out.push_back(b[ib + i]);
      ib += op.len;
    }
  }
  if (ia != a.size() || ib != b.size()) return {-5};
  return out;
}

// The bootstrap procedure as specified in compare.h, written out again.
std::pair<double, double> reference_bootstrap(const std::vector<double>& a,
                                              const std::vector<double>& b, int rounds,
                                              uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> d;
  for (int r = 0; r < rounds; ++r) {
    double sa = 0, sb = 0;
    for (size_t i = 0; i < a.size(); ++i) sa += a[rng() % a.size()];
    for (size_t i = 0; i < b.size(); ++i) sb += b[rng() % b.size()];
    d.push_back(sa / double(a.size()) - sb / double(b.size()));  // A - B
  }
  std::sort(d.begin(), d.end());
  auto q = [&](double p) {
    const double h = (double(d.size()) - 1) * p;
    const size_t lo = size_t(h);
    const size_t hi = std::min(lo + 1, d.size() - 1);
    return d[lo] + (h - double(lo)) * (d[hi] - d[lo]);
  };
  return {q(0.025), q(0.975)};
}

}  // namespace

class TestCompare : public QObject {
  Q_OBJECT
 private slots:
  void config_diff_nested() {
    const auto a = nlohmann::json::parse(R"({"seed": 1, "threads": 4,
      "sampling": {"top_p": 0.9, "top_k": 40}, "routing": {"policy": "top-k", "k": 2},
      "stop": ["a", "b"], "a/b": 1})");
    const auto b = nlohmann::json::parse(R"({"seed": 2, "threads": 4.0,
      "sampling": {"top_p": 0.9, "min_p": 0.05}, "routing": {"policy": "top-p", "p": 0.5},
      "stop": ["a", "c", "d"], "a/b": 1})");
    const auto d = config_diff(a, b);
    std::vector<std::string> got;
    for (const auto& c : d)
      got.push_back(std::string(kind_name(c.kind)) + " " + c.path + " " + c.a.dump() + " " +
                    c.b.dump());
    const std::vector<std::string> want = {"removed /routing/k 2 null",
                                           "added /routing/p null 0.5",
                                           "changed /routing/policy \"top-k\" \"top-p\"",
                                           "added /sampling/min_p null 0.05",
                                           "removed /sampling/top_k 40 null",
                                           "changed /seed 1 2",
                                           "changed /stop/1 \"b\" \"c\"",
                                           "added /stop/2 null \"d\""};
    QCOMPARE(got, want);  // threads 4 vs 4.0 and "a/b" (escaped a~1b) are equal
    QVERIFY(config_diff(a, a).empty());
  }

  void deltas() {
    // A - B relative to the baseline B.
    const auto d = delta(12, 10);
    QCOMPARE(d.abs, 2.0);
    QCOMPARE(d.rel, 0.2);
    QCOMPARE(delta(-2, -4).rel, 0.5);
    QVERIFY(std::isnan(delta(1, 0).rel));
    QCOMPARE(delta(1, 0).abs, 1.0);
    QCOMPARE(delta(10, 12).abs, -2.0);
    const std::vector<double> x{2, 4, 4, 4, 5, 5, 7, 9};
    QCOMPARE(mean(x), 5.0);
    QVERIFY(close(stddev(x), std::sqrt(32.0 / 7)));
    const std::vector<double> s{1, 2, 3, 4};
    QCOMPARE(quantile_sorted(s, 0.5), 2.5);    // type 7: h = 1.5
    QCOMPARE(quantile_sorted(s, 0.25), 1.75);  // h = 0.75
  }

  void bootstrap_reproducible_and_correct() {
    const std::vector<double> a{10.1, 9.8, 10.4, 10.0, 9.7, 10.3, 10.2, 9.9};
    const std::vector<double> b{11.0, 10.6, 11.3, 10.9, 11.4, 10.8};
    const auto ci = bootstrap_mean_diff(a, b, 4000, 1234);
    const auto again = bootstrap_mean_diff(a, b, 4000, 1234);
    QCOMPARE(ci.lo, again.lo);
    QCOMPARE(ci.hi, again.hi);
    const auto [lo, hi] = reference_bootstrap(a, b, 4000, 1234);
    QCOMPARE(ci.lo, lo);
    QCOMPARE(ci.hi, hi);
    QVERIFY(close(ci.diff, mean(a) - mean(b)));
    QVERIFY(ci.lo < ci.diff && ci.diff < ci.hi);
    const auto other = bootstrap_mean_diff(a, b, 4000, 99);
    QVERIFY(other.lo != ci.lo);
    QVERIFY(std::fabs(other.lo - ci.lo) < 0.05);

    // Large samples: the percentile interval approaches diff +- 1.96 standard errors.
    std::mt19937_64 g(7);
    std::normal_distribution<double> na(20.0, 2.0), nb(21.0, 3.0);
    std::vector<double> A, B;
    for (int i = 0; i < 2000; ++i) A.push_back(na(g));
    for (int i = 0; i < 1500; ++i) B.push_back(nb(g));
    const auto big = bootstrap_mean_diff(A, B, 2000, 5);
    const double se = std::sqrt(stddev(A) * stddev(A) / 2000 + stddev(B) * stddev(B) / 1500);
    const double half = (big.hi - big.lo) / 2;
    QVERIFY2(std::fabs(half / (1.96 * se) - 1) < 0.08,
             qPrintable(QString::number(half / (1.96 * se))));
    QVERIFY(std::fabs((big.lo + big.hi) / 2 - big.diff) < 0.2 * se);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, bootstrap_mean_diff({}, b));
  }

  void perplexity() {
    moelab::storage::EvalResult x, y, z;
    x.method = y.method = z.method = "ppl ctx=512";
    x.text_sha256 = y.text_sha256 = "t1";
    z.text_sha256 = "t2";
    x.value = 8.0;
    y.value = 7.0;
    const auto d = perplexity_delta({x}, {y});
    QVERIFY(d.comparable);
    QCOMPARE(d.value.abs, 1.0);  // A 8 - B 7
    QCOMPARE(d.value.rel, 1.0 / 7.0);
    const auto n = perplexity_delta({x}, {z});
    QVERIFY(!n.comparable);
    QVERIFY(n.reason.find("different texts") != std::string::npos);
    QVERIFY(!perplexity_delta({x}, {}).comparable);
  }

  void kl() {
    NextTokenDist p{0, 3, {}, {0.5f, 0.25f, 0.25f}}, q{0, 3, {}, {0.25f, 0.5f, 0.25f}};
    QVERIFY(close(kl_divergence(p, q), 0.25 * std::log(2.0), 1e-7));
    QVERIFY(close(kl_divergence(p, p), 0.0));
    // Sparse over 10 ids: expand by hand with the uniform-tail rule.
    NextTokenDist sp{1, 10, {1, 2}, {0.5f, 0.3f}}, sq{1, 10, {2, 3}, {0.4f, 0.4f}};
    std::vector<double> P(10, (1 - (double(0.5f) + double(0.3f))) / 8),
        Q(10, (1 - (double(0.4f) + double(0.4f))) / 8);
    P[1] = 0.5f, P[2] = 0.3f, Q[2] = 0.4f, Q[3] = 0.4f;
    double want = 0;
    for (int i = 0; i < 10; ++i) want += P[i] * std::log(P[i] / Q[i]);
    QVERIFY2(close(kl_divergence(sp, sq), want, 1e-9), qPrintable(QString::number(want)));
    // Dense against sparse.
    NextTokenDist dq{1, 10, {}, std::vector<float>(10, 0.1f)};
    double want2 = 0;
    for (int i = 0; i < 10; ++i) want2 += P[i] * std::log(P[i] / double(0.1f));
    QVERIFY(close(kl_divergence(sp, dq), want2, 1e-9));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, kl_divergence(p, sq));
    // Over positions present in both.
    NextTokenDist p2 = p, q2 = q;
    p2.position = q2.position = 5;
    NextTokenDist lone = p;
    lone.position = 9;
    const auto s = next_token_kl({p, p2, lone}, {q, p2});
    QVERIFY(s);
    QCOMPARE(s->n_positions, size_t{2});
    QVERIFY(close(s->mean, 0.125 * std::log(2.0), 1e-7));
    QVERIFY(close(s->max, 0.25 * std::log(2.0), 1e-7));
  }

  void jensen_shannon() {
    QVERIFY(close(js_divergence(std::vector<double>{1, 0}, std::vector<double>{0, 1}), 1.0));
    QVERIFY(close(js_divergence(std::vector<double>{3, 1}, std::vector<double>{6, 2}), 0.0));
    const double m0 = 0.75, m1 = 0.25;
    const double want = 0.5 * (0.5 * std::log2(0.5 / m0) + 0.5 * std::log2(0.5 / m1)) +
                        0.5 * (1.0 * std::log2(1.0 / m0));
    QVERIFY(close(js_divergence(std::vector<double>{0.5, 0.5}, std::vector<double>{1, 0}), want));
    QVERIFY(close(want, 0.31127812445913283, 1e-12));
  }

  void one_definition_of_each_figure() {
    // TPOT excludes token 0 (prefill + first sampling, the TTFT); decode t/s = 1000 / TPOT.
    std::vector<TokenRecord> t(4);
    const int64_t us[4] = {9000, 2000, 3000, 1000};
    for (int i = 0; i < 4; ++i) t[size_t(i)].position = i, t[size_t(i)].latency_us = us[i];
    const auto f = latency_figures(t);
    QCOMPARE(*f.ttft_ms, 9.0);
    QCOMPARE(f.tpot_ms, (std::vector<double>{2.0, 3.0, 1.0}));
    QCOMPARE(*f.tpot_ms_mean, 2.0);
    QCOMPARE(*f.decode_tokens_per_s, 500.0);
    QVERIFY(!latency_figures(std::span<const TokenRecord>(t.data(), 1)).tpot_ms_mean);
    QVERIFY(!latency_figures({}).ttft_ms);
    // Expert share: counts normalised per layer.
    const std::vector<double> counts{1, 3, 0, 4};
    QCOMPARE(expert_share(counts), (std::vector<double>{0.125, 0.375, 0, 0.5}));
    QCOMPARE(expert_share(std::vector<double>{0, 0}), (std::vector<double>{0, 0}));
    // Identical runs compare to exactly 0: a sparse distribution whose unlisted tail is below
    // the 1e-12 floor used to give a small negative KL.
    NextTokenDist p{0, 32000, {5, 9}, {0.6f, 0.4f - 1e-9f}};
    QCOMPARE(kl_divergence(p, p), 0.0);
    NextTokenDist dense{0, 3, {}, {0.5f, 0.5f, 0.f}};
    QCOMPARE(kl_divergence(dense, dense), 0.0);
    QVERIFY(kl_divergence(p, NextTokenDist{0, 32000, {5, 9}, {0.4f, 0.6f - 1e-9f}}) > 0);
    const std::vector<double> x{1, 2, 3};
    QCOMPARE(js_divergence(x, x), 0.0);
  }

  void routing_loads() {
    auto rec = [](int64_t pos, int32_t layer, std::vector<uint16_t> e) {
      RoutingRecord r;
      r.position = pos;
      r.layer = layer;
      r.experts = e;
      r.weights.assign(e.size(), 0.5f);
      return r;
    };
    // Layer 0: A picks {0,1},{0,2}; B picks {0,1},{0,1}. Layer 1 only in A.
    const std::vector<RoutingRecord> a{rec(0, 0, {0, 1}), rec(1, 0, {0, 2}), rec(0, 1, {3, 1})};
    const std::vector<RoutingRecord> b{rec(0, 0, {0, 1}), rec(1, 0, {1, 0})};
    const auto r = routing_divergence(a, b, 4);
    QCOMPARE(r.size(), size_t{1});
    QCOMPARE(r[0].layer, 0);
    QCOMPARE(r[0].load_a, (std::vector<double>{0.5, 0.25, 0.25, 0}));
    QCOMPARE(r[0].load_b, (std::vector<double>{0.5, 0.5, 0, 0}));
    QCOMPARE(r[0].diff, (std::vector<double>{0, -0.25, 0.25, 0}));  // A - B
    // JS by hand: M = {0.5, 0.375, 0.125, 0}.
    const double want = 0.5 * (0.25 * std::log2(0.25 / 0.375) + 0.25 * std::log2(0.25 / 0.125)) +
                        0.5 * (0.5 * std::log2(0.5 / 0.375));
    QVERIFY(close(r[0].js, want));
    QCOMPARE(r[0].tokens_a, size_t{2});
  }

  void token_diff_myers() {
    // The example of Myers' paper: ABCABBA -> CBABAC, D = 5.
    const std::vector<int32_t> a{'A', 'B', 'C', 'A', 'B', 'B', 'A'},
        b{'C', 'B', 'A', 'B', 'A', 'C'};
    const auto ops = token_diff(a, b);
    const auto s = summarize(ops, a.size(), b.size());
    QCOMPARE(s.equal, size_t{4});
    QCOMPARE(s.deleted + s.inserted, size_t{5});
    QCOMPARE(apply(ops, a, b), b);
    // Random sequences against the LCS table.
    std::mt19937 g(3);
    for (int t = 0; t < 300; ++t) {
      std::vector<int32_t> x(g() % 40), y(g() % 40);
      const int alphabet = 1 + static_cast<int>(g() % 5);
      for (auto& v : x) v = static_cast<int32_t>(g() % alphabet);
      for (auto& v : y) v = static_cast<int32_t>(g() % alphabet);
      const auto o = token_diff(x, y);
      const auto sm = summarize(o, x.size(), y.size());
      QCOMPARE(sm.equal, lcs(x, y));
      QCOMPARE(sm.deleted, x.size() - sm.equal);
      QCOMPARE(sm.inserted, y.size() - sm.equal);
      QCOMPARE(apply(o, x, y), y);
    }
    QVERIFY(token_diff({}, {}).empty());
    const std::vector<int32_t> same{1, 2, 3};
    const auto eq = token_diff(same, same);
    QCOMPARE(eq.size(), size_t{1});
    QCOMPARE(summarize(eq, 3, 3).common_prefix, size_t{3});
    QCOMPARE(summarize(eq, 3, 3).similarity, 1.0);
  }

  void seed_stability_summary() {
    using moelab::storage::MetricRecord;
    const std::vector<std::vector<int32_t>> out{{1, 2, 3}, {1, 2, 3}, {1, 2, 4}};
    const std::vector<std::vector<MetricRecord>> m{{{"tokens_per_s", 10, ""}, {"ttft_ms", 5, ""}},
                                                   {{"tokens_per_s", 12, ""}},
                                                   {{"tokens_per_s", 14, ""}, {"ttft_ms", 7, ""}}};
    const auto s = seed_stability(out, m);
    QCOMPARE(s.n_runs, size_t{3});
    QCOMPARE(s.distinct_outputs, size_t{2});
    QVERIFY(close(s.identical_pairs, 1.0 / 3));
    QVERIFY(close(s.mean_similarity, (1.0 + 4.0 / 6 + 4.0 / 6) / 3));
    QVERIFY(close(s.mean_common_prefix, (3.0 + 2 + 2) / 3));
    QCOMPARE(s.metrics.size(), size_t{1});  // ttft_ms is missing in one run
    QCOMPARE(QString::fromStdString(s.metrics[0].key), QString("tokens_per_s"));
    QCOMPARE(s.metrics[0].mean, 12.0);
    QCOMPARE(s.metrics[0].stddev, 2.0);
    QCOMPARE(s.metrics[0].min, 10.0);
    QCOMPARE(s.metrics[0].max, 14.0);
    QVERIFY(close(s.metrics[0].cv, 1.0 / 6));
    // One output (the other runs stored no tokens): nothing to compare, not "100 % identical";
    // the metrics still spread over every run.
    const auto one = seed_stability({{1, 2, 3}}, m);
    QCOMPARE(one.n_runs, size_t{1});
    QVERIFY(std::isnan(one.identical_pairs) && std::isnan(one.mean_similarity));
    QCOMPARE(one.metrics.size(), size_t{1});
  }

  void compare_two_stored_runs() {
    using namespace moelab::storage;
    const QString dir = moelab::test::temp_dir("test_compare");
    const std::string p = (dir + "/ab.db").toStdString();
    std::vector<double> lat_a, lat_b, e_a, e_b;
    int64_t ra, rb;
    {
      Store s(p);
      const int64_t sid = s.create_session("ab");
      ra = s.begin_run({sid, 0, R"({"routing": {"policy": "top-k", "k": 2}, "seed": 1})"});
      rb = s.begin_run({sid, 0, R"({"routing": {"policy": "top-p", "p": 0.5}, "seed": 1})"});
      const std::vector<int32_t> ids_a{5, 6, 7, 8, 9, 10}, ids_b{5, 6, 70, 8, 9, 10, 11};
      auto fill = [&](int64_t run, const std::vector<int32_t>& ids, int64_t base,
                      std::vector<double>& lat, std::vector<double>& e) {
        std::vector<TokenRecord> t;
        std::vector<RoutingRecord> r;
        for (size_t i = 0; i < ids.size(); ++i) {
          TokenRecord x;
          x.position = static_cast<int64_t>(i);
          x.id = ids[i];
          x.latency_us = base + static_cast<int64_t>(i * 37 % 11) * 100;
          x.energy_uj = 1000.0 + static_cast<double>(base / 10) + static_cast<double>(i);
          lat.push_back(double(x.latency_us) / 1000);
          e.push_back(*x.energy_uj * 1e-6);
          t.push_back(x);
          RoutingRecord rr;
          rr.position = x.position;
          rr.layer = 0;
          rr.experts = {uint16_t(i % 4), uint16_t(run == ra ? 4 : 5)};
          rr.weights = {0.5f, 0.5f};
          r.push_back(rr);
        }
        s.append_tokens(run, t);
        s.append_routing(run, r);
      };
      fill(ra, ids_a, 20000, lat_a, e_a);
      fill(rb, ids_b, 15000, lat_b, e_b);
      // The lab's per layer / op decode times (detail of one run, not compared).
      s.append_metrics(ra, std::vector<MetricRecord>{{"ttft_ms", 100, "ms"},
                                                     {"decode_op_us.L0.experts", 900, "µs"},
                                                     {"decode_op_us.steps", 5, "steps"}});
      s.append_metrics(rb, std::vector<MetricRecord>{{"ttft_ms", 80, "ms"},
                                                     {"decode_op_us.L0.experts", 700, "µs"},
                                                     {"decode_op_us.steps", 6, "steps"}});
      EvalResult ea, eb;
      ea.method = eb.method = "ppl";
      ea.text_sha256 = eb.text_sha256 = "h";
      ea.value = 9;
      eb.value = 9.9;
      s.add_eval_result(ra, ea);
      s.add_eval_result(rb, eb);
      s.append_next_token_dists(ra, std::vector<NextTokenDist>{{0, 3, {}, {0.5f, 0.25f, 0.25f}}});
      s.append_next_token_dists(rb, std::vector<NextTokenDist>{{0, 3, {}, {0.25f, 0.5f, 0.25f}}});
      s.finish_run(ra, RunStatus::Complete, "a");
      s.finish_run(rb, RunStatus::Complete, "b");
    }
    Store s(p);
    CompareOptions o;
    o.resamples = 2000;
    o.seed = 77;
    const auto c = compare_runs(s, ra, rb, o);
    QCOMPARE(c.config.size(), size_t{3});  // /routing/k removed, /routing/p added, policy changed
    auto row = [&](const std::string& k) {
      for (const auto& m : c.metrics)
        if (m.key == k) return m;
      return MetricRow{};
    };
    // TTFT: token 0's latency (latency_figures, as the views and reports), not the stored
    // ttft_ms metric (100 / 80 here); one row of that key.
    QCOMPARE(*row("ttft_ms").a, lat_a[0]);
    QCOMPARE(*row("ttft_ms").b, lat_b[0]);
    QCOMPARE(row("ttft_ms").delta.abs, lat_a[0] - lat_b[0]);
    QCOMPARE(std::count_if(c.metrics.begin(), c.metrics.end(),
                           [](const MetricRow& m) { return m.key == "ttft_ms"; }),
             std::ptrdiff_t{1});
    QCOMPARE(row("n_tokens").delta.abs, -1.0);
    for (const auto& m : c.metrics) QVERIFY2(!is_op_time_metric(m.key), m.key.c_str());
    QVERIFY(is_op_time_metric("decode_op_us.steps"));
    // TPOT and decode rate over the decode tokens only (the first token is the TTFT).
    const std::vector<double> da(lat_a.begin() + 1, lat_a.end()),
        db(lat_b.begin() + 1, lat_b.end());
    QVERIFY(close(*row("tpot_ms_mean").a, mean(da)));
    QVERIFY(close(*row("decode_tokens_per_s").b, 1000.0 / mean(db), 1e-9));
    QVERIFY(close(*row("j_per_token").b, mean(e_b), 1e-15));
    QVERIFY(c.tpot_ms);
    const auto [lo, hi] = reference_bootstrap(da, db, 2000, 77);
    QCOMPARE(c.tpot_ms->lo, lo);
    QCOMPARE(c.tpot_ms->hi, hi);
    QVERIFY(c.j_per_token);
    QVERIFY(c.perplexity.comparable);
    QVERIFY(close(c.perplexity.value.abs, -0.9, 1e-12));
    QVERIFY(c.kl);
    QVERIFY(close(c.kl->mean, 0.25 * std::log(2.0), 1e-7));
    QCOMPARE(c.routing.size(), size_t{1});
    // Loads: A experts {0,1,2,3,0,1} + six 4s; B {0,1,2,3,0,1,2} + seven 5s.
    std::vector<double> la{2, 2, 1, 1, 6, 0}, lb{2, 2, 2, 1, 0, 7};
    QVERIFY(close(c.routing[0].js, js_divergence(la, lb)));
    QCOMPARE(c.diff_summary.equal, size_t{5});
    QCOMPARE(c.diff_summary.deleted, size_t{1});
    QCOMPARE(c.diff_summary.inserted, size_t{2});
    QCOMPARE(c.diff_summary.common_prefix, size_t{2});
    const auto j = to_json(c);
    QCOMPARE(j["output_diff"]["ops"].size(), size_t{5});  // = 2, -1 +1, = 3, +1
    QCOMPARE(j["perplexity"]["abs_delta"].get<double>(), c.perplexity.value.abs);
    QCOMPARE(j["config_diff"].size(), size_t{3});
    QVERIFY_THROWS_EXCEPTION(StorageError, compare_runs(s, ra, 999));
  }
};

QTEST_GUILESS_MAIN(TestCompare)
#include "test_compare.moc"
