// The llama.cpp-order reductions (kernels/element/reduce.h) and their dispatched SIMD forms:
// every SIMD level gives the element functions' bits, the exponential is accurate, the softmax
// and the dot products are right. (Bit-identity with llama.cpp itself is checked end to end by
// bench/engine/llamacpp_bitexact.py, which needs libllama.)
#include <QtTest>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/element/reduce.h"
#include "moelab/kernels/kernels.h"

using namespace moelab;
namespace el = moelab::kernels::el;

namespace {

std::vector<float> random_vec(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

bool same_bits(float a, float b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs(static_cast<int64_t>(ia) - ib);
}

std::vector<kernels::Simd> levels() {
  std::vector<kernels::Simd> v = {kernels::Simd::Scalar};
  if (kernels::detected_simd() >= kernels::Simd::Avx2) v.push_back(kernels::Simd::Avx2);
  if (kernels::detected_simd() >= kernels::Simd::Avx512) v.push_back(kernels::Simd::Avx512);
  return v;
}

}  // namespace

class TestReduce : public QObject {
  Q_OBJECT
 private slots:
  void cleanup() { kernels::set_simd(kernels::detected_simd()); }

  void expf_ggml_is_accurate() {
    QCOMPARE(el::expf_ggml(0.0f), 1.0f);
    QCOMPARE(el::expf_ggml(-INFINITY), 0.0f);
    QVERIFY(std::isinf(el::expf_ggml(100.0f)));
    QCOMPARE(el::expf_ggml(-110.0f), 0.0f);  // below the smallest subnormal
    int64_t worst = 0;
    for (int i = 0; i <= 200000; ++i) {
      const float x = -87.0f + 175.0f * static_cast<float>(i) / 200000.0f;
      const float ref = static_cast<float>(std::exp(static_cast<double>(x)));
      worst = std::max(worst, ulps(el::expf_ggml(x), ref));
    }
    qInfo("expf_ggml over [-87, 88]: worst %lld ulp from exp rounded to float",
          static_cast<long long>(worst));
    QVERIFY(worst <= 2);
  }

  void softmax_row_is_a_distribution() {
    auto x = random_vec(37, 7, 4.0f);
    x[3] = -INFINITY;
    x[20] = -INFINITY;
    std::vector<double> ref(x.size());
    double mx = -INFINITY, z = 0;
    for (float v : x) mx = std::max(mx, static_cast<double>(v));
    for (size_t i = 0; i < x.size(); ++i) z += ref[i] = std::isinf(x[i]) ? 0 : std::exp(x[i] - mx);
    el::softmax_row(x.data(), static_cast<int>(x.size()));
    double sum = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      QVERIFY(std::fabs(x[i] - ref[i] / z) <= 1e-6);
      sum += x[i];
    }
    QCOMPARE(x[3], 0.0f);
    QCOMPARE(x[20], 0.0f);
    QVERIFY(std::fabs(sum - 1.0) < 1e-6);
    std::vector<float> masked(9, -INFINITY);
    el::softmax_row(masked.data(), 9);
    for (float v : masked) QCOMPARE(v, 0.0f);
  }

  void dot_orders_are_dot_products() {
    for (int64_t n : {1, 7, 8, 16, 31, 32, 33, 64, 100, 576, 2816}) {
      const auto a = random_vec(n, 1 + n), b = random_vec(n, 2 + n);
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i)
        ref += static_cast<double>(a[i]) * b[i], mag += std::fabs(a[i] * b[i]);
      const double tol = 4 * std::numeric_limits<float>::epsilon() * (mag + 1);
      QVERIFY2(std::fabs(el::dot_f32_ggml(a.data(), b.data(), n) - ref) <= tol,
               qPrintable(QString::number(n)));
      QVERIFY2(std::fabs(el::dot_f32_tinyblas(a.data(), b.data(), n) - ref) <= tol,
               qPrintable(QString::number(n)));
    }
    // The orders differ from each other (otherwise the test above proves nothing about them).
    const auto a = random_vec(64, 11);
    int differ = 0;
    for (int s = 0; s < 32; ++s) {
      const auto c = random_vec(64, 100 + s);
      differ += !same_bits(el::dot_f32_ggml(a.data(), c.data(), 64),
                           el::dot_f32_tinyblas(a.data(), c.data(), 64));
    }
    QVERIFY(differ > 0);
  }

  // Every SIMD level computes the element functions' exact bits.
  void simd_levels_match_the_element_forms() {
    for (const auto level : levels()) {
      kernels::set_simd(level);
      QCOMPARE(kernels::active_simd(), level);
      for (int64_t n : {1, 5, 16, 31, 32, 33, 64, 96, 100, 576}) {
        const auto a = random_vec(n, 3 * n), b = random_vec(n, 3 * n + 1);
        QVERIFY2(same_bits(kernels::dot_f32(a.data(), b.data(), n),
                           el::dot_f32_ggml(a.data(), b.data(), n)),
                 qPrintable(QString("%1 n=%2").arg(kernels::simd_name(level)).arg(n)));
        auto acc = random_vec(n, 5 * n), ref = acc;
        kernels::axpy_fma(0.37f, a.data(), acc.data(), n);
        for (int64_t i = 0; i < n; ++i) ref[i] = std::fma(0.37f, a[i], ref[i]);
        QVERIFY(std::memcmp(acc.data(), ref.data(), n * 4) == 0);
        auto x = random_vec(n, 7 * n, 8.0f);
        x[0] = -INFINITY;
        std::vector<float> y(n);
        kernels::exp_shifted(x.data(), 3.0f, y.data(), n);
        QCOMPARE(y[0], 0.0f);
        for (int64_t i = 1; i < n; ++i) QVERIFY(same_bits(y[i], el::expf_ggml(x[i] - 3.0f)));
        auto g = random_vec(n, 9 * n, 3.0f), g_ref = g;
        const auto up = random_vec(n, 9 * n + 1);
        kernels::swiglu(g.data(), up.data(), n);
        el::swiglu_row(g_ref.data(), up.data(), n);
        QVERIFY(std::memcmp(g.data(), g_ref.data(), n * 4) == 0);
      }
      // Dense F32 products under Precision::Exact sum in tinyBLAS order.
      const int64_t n_in = 64, n_out = 5, n_tok = 3;
      const auto w = random_vec(n_in * n_out, 21), x = random_vec(n_in * n_tok, 22);
      std::vector<float> y(n_out * n_tok);
      kernels::matmul(gguf::TensorType::F32, w.data(), n_in, n_out, x.data(), n_tok, y.data(),
                      nullptr, kernels::Precision::Exact);
      for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t r = 0; r < n_out; ++r)
          QVERIFY(same_bits(y[t * n_out + r],
                            el::dot_f32_tinyblas(w.data() + r * n_in, x.data() + t * n_in, n_in)));
    }
  }
};

QTEST_GUILESS_MAIN(TestReduce)
#include "test_reduce.moc"
