// The tiled ("flash") attention kernel of issue #19 (kernels/cpu/attention_tile.h) through
// ops::attention, which runs it for queries at positions >= 128 when the fast kernels are on:
// against a float64 evaluation of the attention formula on long contexts (up to 2048 cells),
// grouped-query heads, F32 and F16 caches, sliding windows, sinks, soft-capping and an MLA-style
// cache (V inside the K rows); every SIMD level gives the scalar reference's bits; one thread and
// two give the same bits; and the llama.cpp-order kernel (the path with probabilities) agrees
// within the same bound.
#include <QtTest>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "moelab/core/thread_pool.h"
#include "moelab/kernels/kernels.h"
#include "moelab/ops/ops.h"
#include "ops/element/element.h"

using namespace moelab;

namespace {

struct Case {
  const char* name;
  int n_head, n_head_kv, head_dim, head_dim_v;
  int64_t n_past, n_tokens;  // queries at positions n_past .. n_past + n_tokens - 1
  bool f16 = false;
  uint32_t window = 0;
  float softcap = 0;
  bool sinks = false;
  bool mla = false;  // V = the first head_dim_v values of each K row (n_head_kv 1)
};

struct Data {
  std::vector<float> q, kf, vf;  // F32 values (for F16 caches: the F16 values)
  std::vector<uint16_t> kh, vh;  // F16 cache bits
  std::vector<int32_t> pos;
  std::vector<float> sinks;
  int64_t n_kv = 0, k_row = 0, v_row = 0;
  ops::AttentionParams p;
  ops::KvLayer kv() const {
    ops::KvLayer l;
    l.f16 = !kh.empty();
    l.k = l.f16 ? static_cast<const void*>(kh.data()) : kf.data();
    l.v = l.f16 ? static_cast<const void*>(vh.data()) : vf.data();
    if (v_row == k_row && p.head_dim != p.head_dim_v) {  // MLA
      l.v = l.k;
      l.v_row = k_row;
    }
    return l;
  }
};

Data make(const Case& c, uint32_t seed) {
  namespace el = ops::element;
  Data d;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  d.n_kv = c.n_past + c.n_tokens;
  d.k_row = static_cast<int64_t>(c.n_head_kv) * c.head_dim;
  d.v_row = c.mla ? d.k_row : static_cast<int64_t>(c.n_head_kv) * c.head_dim_v;
  d.q.resize(static_cast<size_t>(c.n_tokens * c.n_head * c.head_dim));
  for (auto& x : d.q) x = 2.0f * u(rng);  // scores of a few units: a peaked softmax
  d.kf.resize(static_cast<size_t>(d.n_kv * d.k_row));
  for (auto& x : d.kf) x = u(rng);
  if (!c.mla) {
    d.vf.resize(static_cast<size_t>(d.n_kv * d.v_row));
    for (auto& x : d.vf) x = u(rng);
  }
  if (c.f16) {
    for (auto& x : d.kf) x = el::round_f16(x);
    for (auto& x : d.vf) x = el::round_f16(x);
    d.kh.resize(d.kf.size());
    d.vh.resize(d.vf.size());
    for (size_t i = 0; i < d.kf.size(); ++i) d.kh[i] = el::f32_to_f16(d.kf[i]);
    for (size_t i = 0; i < d.vf.size(); ++i) d.vh[i] = el::f32_to_f16(d.vf[i]);
  }
  if (c.mla) {
    d.vf = d.kf;
    d.vh = d.kh;
  }
  for (int64_t t = 0; t < c.n_tokens; ++t) d.pos.push_back(static_cast<int32_t>(c.n_past + t));
  d.p.n_head = c.n_head;
  d.p.n_head_kv = c.n_head_kv;
  d.p.head_dim = c.head_dim;
  d.p.head_dim_v = c.head_dim_v;
  d.p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  d.p.softcap = c.softcap;
  d.p.window = c.window;
  if (c.sinks) {
    for (int h = 0; h < c.n_head; ++h) d.sinks.push_back(u(rng) * 4.0f);
    d.p.sinks = d.sinks.data();
  }
  return d;
}

// The attention formula in float64 (ops.h): the query rounded to F16 for an F16 cache.
std::vector<double> reference(const Data& d, int64_t n_tokens) {
  namespace el = ops::element;
  const auto& p = d.p;
  std::vector<double> out(static_cast<size_t>(n_tokens * p.n_head * p.head_dim_v), 0.0);
  std::vector<double> s(static_cast<size_t>(d.n_kv));
  const bool f16 = !d.kh.empty();
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int h = 0; h < p.n_head; ++h) {
      const int hk = ops::kv_head_for(h, p.n_head, p.n_head_kv);
      const float* qv = d.q.data() + (t * p.n_head + h) * p.head_dim;
      double m = p.sinks ? static_cast<double>(p.sinks[h]) : -INFINITY;
      for (int64_t i = 0; i < d.n_kv; ++i) {
        if (!ops::key_visible(d.pos[t], i, p.window)) {
          s[i] = -INFINITY;
          continue;
        }
        double dot = 0;
        for (int e = 0; e < p.head_dim; ++e) {
          const double qe = f16 ? el::round_f16(qv[e]) : qv[e];
          dot += qe * d.kf[i * d.k_row + static_cast<int64_t>(hk) * p.head_dim + e];
        }
        double x = dot * p.scale;
        if (p.softcap > 0) x = p.softcap * std::tanh(x / p.softcap);
        s[i] = x;
        m = std::max(m, x);
      }
      double z = p.sinks ? std::exp(p.sinks[h] - m) : 0.0;
      for (int64_t i = 0; i < d.n_kv; ++i) z += s[i] == -INFINITY ? 0.0 : std::exp(s[i] - m);
      double* o = out.data() + (t * p.n_head + h) * p.head_dim_v;
      for (int64_t i = 0; i < d.n_kv; ++i) {
        if (s[i] == -INFINITY) continue;
        const double w = std::exp(s[i] - m) / z;
        for (int e = 0; e < p.head_dim_v; ++e)
          o[e] += w * d.vf[i * d.v_row + static_cast<int64_t>(hk) * p.head_dim_v + e];
      }
    }
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

const Case kCases[] = {
    {"gqa4-f32-prefill-700", 8, 2, 64, 64, 0, 700},
    {"gqa3-f16-prefill-300-after-1500", 9, 3, 64, 64, 1500, 300, true},
    {"gqa3-f16-decode-at-2047", 9, 3, 64, 64, 2047, 1, true},
    {"gqa4-f32-decode-at-2047", 16, 4, 64, 64, 2047, 1},
    {"mha-f16-hd128-prefill-200", 4, 4, 128, 128, 0, 200, true},
    {"window-100-f32", 4, 2, 32, 32, 50, 250, false, 100},
    {"window-37-f16-decode", 4, 2, 32, 32, 400, 3, true, 37},
    {"softcap-sinks-hd24", 6, 2, 24, 24, 90, 70, false, 0, 30.0f, true},
    {"sinks-f16", 8, 1, 64, 64, 600, 5, true, 0, 0.0f, true},
    {"mla-hd40-v32", 4, 1, 40, 32, 300, 33, false, 0, 0.0f, false, true},
    {"tiny-hd8", 8, 8, 8, 8, 200, 17},
    {"prefill-from-0-180", 6, 3, 64, 64, 0, 180, true},
};

}  // namespace

class TestAttentionTiled : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QVERIFY2(!kernels::exact_kernels(),
             "run without MOELAB_EXACT_KERNELS: this tests the fast path");
  }

  void against_float64_data() {
    QTest::addColumn<int>("index");
    for (int i = 0; i < static_cast<int>(std::size(kCases)); ++i)
      QTest::newRow(kCases[i].name) << i;
  }
  // Bound: every value is a float32 evaluation (scores: dot products of <= 128 terms of
  // magnitude <= 2; softmax sums and probabilities · V over <= 2048 cells) of a result of
  // magnitude <= 1; float32 rounding (2^-24 = 6e-8 relative per operation) over such sums:
  // 1e-6 (observed <= 2.1e-7). A wrong mask, a missing rescale or a dropped block gives 1e-2..1.
  // The llama.cpp-order kernel rounds each probability to binary16 before · V with an F16 cache
  // (as ggml does): 2^-11 relative per weight, so |d| <= 2^-11 * sum p |v| < 1e-3 there.
  void against_float64() {
    QFETCH(int, index);
    const Case& c = kCases[index];
    const Data d = make(c, 7u + static_cast<uint32_t>(index));
    const std::vector<double> want = reference(d, c.n_tokens);
    std::vector<float> out(want.size(), NAN);
    ThreadPool pool(2);
    ops::attention(d.q.data(), d.pos.data(), c.n_tokens, d.kv(), d.n_kv, d.p, out.data(), nullptr,
                   &pool);
    const double err = max_abs_diff(out, want);
    qInfo("%s: tiled max |d| %.3g vs float64", c.name, err);
    QVERIFY2(err < 1e-6, qPrintable(QString::number(err)));
    // the llama.cpp-order kernel (with probabilities) within the same bound
    std::vector<float> out_ref(want.size(), NAN);
    std::vector<float> probs(static_cast<size_t>(c.n_head * c.n_tokens * d.n_kv));
    ops::attention(d.q.data(), d.pos.data(), c.n_tokens, d.kv(), d.n_kv, d.p, out_ref.data(),
                   probs.data(), &pool);
    const double err_ref = max_abs_diff(out_ref, want);
    QVERIFY2(err_ref < (c.f16 ? 1e-3 : 1e-6), qPrintable(QString::number(err_ref)));
  }

  // Each SIMD level's kernel is the same chain of IEEE operations per output: the bits equal the
  // scalar reference's; the split over threads changes nothing either.
  void simd_levels_and_threads_agree_bit_for_bit() {
    const kernels::Simd saved = kernels::active_simd();
    for (const Case& c : kCases) {
      const Data d = make(c, 99u);
      std::vector<std::vector<float>> outs;
      for (kernels::Simd s : {kernels::Simd::Scalar, kernels::Simd::Avx2, kernels::Simd::Avx512}) {
        if (static_cast<int>(s) > static_cast<int>(kernels::detected_simd())) continue;
        kernels::set_simd(s);
        for (int threads : {1, 2}) {
          ThreadPool pool(threads);
          std::vector<float> out(static_cast<size_t>(c.n_tokens * c.n_head * c.head_dim_v));
          ops::attention(d.q.data(), d.pos.data(), c.n_tokens, d.kv(), d.n_kv, d.p, out.data(),
                         nullptr, &pool);
          outs.push_back(std::move(out));
        }
      }
      kernels::set_simd(saved);
      for (size_t i = 1; i < outs.size(); ++i)
        QVERIFY2(std::memcmp(outs[i].data(), outs[0].data(), outs[0].size() * sizeof(float)) == 0,
                 qPrintable(QString("%1: run %2 differs from the scalar one").arg(c.name).arg(i)));
    }
  }

  // A query that sees nothing (a window of 1 at a position beyond the one cache cell): all
  // cells invisible -> output 0, no NaN.
  void nothing_visible_gives_zero() {
    const Case c{"empty", 4, 2, 16, 16, 0, 1};
    Data d = make(c, 5u);
    d.p.window = 1;
    d.pos[0] = 300;  // sees only position 300, beyond the one cell
    std::vector<float> out(static_cast<size_t>(c.n_head * c.head_dim_v), NAN);
    ops::attention(d.q.data(), d.pos.data(), 1, d.kv(), d.n_kv, d.p, out.data(), nullptr, nullptr);
    for (float x : out) QCOMPARE(x, 0.0f);
  }
};

QTEST_GUILESS_MAIN(TestAttentionTiled)
#include "test_attention_tiled.moc"
