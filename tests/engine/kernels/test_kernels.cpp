// Kernel unit tests on synthetic data: SIMD paths vs the scalar reference, F16/BF16 rounding,
// quantizer round trips, matmul vs matvec, thread-count independence, GgmlCompatible vs Exact.
#include <QtTest>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/element/blocks.h"
#include "moelab/core/error.h"
#include "moelab/core/thread_pool.h"
#include "moelab/kernels/kernels.h"

using namespace moelab;
using namespace moelab::test;
using kernels::Precision;
using kernels::Simd;
namespace el = moelab::kernels::el;

namespace {

std::vector<Simd> levels() {
  std::vector<Simd> v;
  for (int s = 0; s <= static_cast<int>(kernels::detected_simd()); ++s)
    v.push_back(static_cast<Simd>(s));
  return v;
}

// sum_i |w_i| |x_i| with w dequantized: the scale against which float rounding is measured.
double abs_dot(TensorType t, const void* w, const float* x, int64_t n) {
  const auto wd = dequant(t, w, n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::fabs(static_cast<double>(wd[i]) * x[i]);
  return s;
}

// The activation as the GgmlCompatible kernels see it (vec_dot_type decoded back to F32).
std::vector<float> activation_as_seen(TensorType wt, const float* x, int64_t n) {
  std::vector<uint8_t> q(kernels::activation_row_bytes(wt, n));
  kernels::quantize_activation(wt, x, q.data(), n);
  std::vector<float> out(n);
  switch (kernels::vec_dot_type(wt)) {
    case TensorType::F32:
      std::memcpy(out.data(), x, n * 4);
      break;
    case TensorType::F16:
      kernels::f16_to_f32_row(reinterpret_cast<uint16_t*>(q.data()), out.data(), n);
      break;
    case TensorType::BF16:
      kernels::bf16_to_f32_row(reinterpret_cast<uint16_t*>(q.data()), out.data(), n);
      break;
    case TensorType::Q8_0: {
      auto* b = reinterpret_cast<el::BlockQ8_0*>(q.data());
      for (int64_t i = 0; i < n / 32; ++i) el::dequant(b[i], out.data() + 32 * i);
      break;
    }
    case TensorType::Q8_1: {
      auto* b = reinterpret_cast<el::BlockQ8_1*>(q.data());
      for (int64_t i = 0; i < n / 32; ++i)
        for (int j = 0; j < 32; ++j) out[32 * i + j] = b[i].qs[j] * el::f16_to_f32(b[i].d);
      break;
    }
    case TensorType::Q8_K: {
      auto* b = reinterpret_cast<el::BlockQ8_K*>(q.data());
      for (int64_t i = 0; i < n / 256; ++i)
        for (int j = 0; j < 256; ++j) out[256 * i + j] = b[i].qs[j] * b[i].d;
      break;
    }
    default:
      break;
  }
  return out;
}

}  // namespace

class TestKernels : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    qInfo("detected SIMD level: %s, active: %s", kernels::simd_name(kernels::detected_simd()),
          kernels::simd_level());
    // MOELAB_SIMD lowers the level (never raises it above what the CPU has)
    const QByteArray env = qgetenv("MOELAB_SIMD");
    const Simd want = env == "scalar" ? Simd::Scalar : env == "avx2" ? Simd::Avx2 : Simd::Avx512;
    if (!env.isEmpty())
      QCOMPARE(kernels::active_simd(), std::min(want, kernels::detected_simd()));
    else
      QCOMPARE(kernels::active_simd(), kernels::detected_simd());
  }

  void supportedTypes() {
    for (auto t : all_weight_types()) QVERIFY2(kernels::supports(t), tname(t));
    QVERIFY(!kernels::supports(TensorType::IQ2_XXS));
    QVERIFY_THROWS_EXCEPTION(Error, kernels::row_bytes(TensorType::Q4_K, 896));
    QVERIFY_THROWS_EXCEPTION(Error, kernels::row_bytes(TensorType::Q8_0, 48));
    QCOMPARE(kernels::row_bytes(TensorType::Q4_K, 512), uint64_t{288});
    QCOMPARE(kernels::row_bytes(TensorType::Q8_0, 64), uint64_t{68});
    std::vector<float> x(32, 1.f);
    std::vector<uint8_t> buf(1024);
    QVERIFY_THROWS_EXCEPTION(Error,
                             kernels::quantize_row(TensorType::Q4_K, x.data(), buf.data(), 256));
  }

  void f16Conversion() {
    QCOMPARE(el::f32_to_f16(1.0f), uint16_t{0x3c00});
    QCOMPARE(el::f32_to_f16(-2.0f), uint16_t{0xc000});
    QCOMPARE(el::f32_to_f16(65504.f), uint16_t{0x7bff});
    QCOMPARE(el::f32_to_f16(65519.f), uint16_t{0x7bff});
    QCOMPARE(el::f32_to_f16(65520.f), uint16_t{0x7c00});  // tie -> even -> infinity
    QCOMPARE(el::f32_to_f16(1e10f), uint16_t{0x7c00});
    QCOMPARE(el::f32_to_f16(-0.0f), uint16_t{0x8000});
    QCOMPARE(el::f32_to_f16(1.0f + 0x1p-11f), uint16_t{0x3c00});      // tie -> even
    QCOMPARE(el::f32_to_f16(1.0f + 3 * 0x1p-11f), uint16_t{0x3c02});  // tie -> even (up)
    QCOMPARE(el::f32_to_f16(0x1p-24f), uint16_t{0x0001});             // smallest subnormal
    QCOMPARE(el::f32_to_f16(0x1p-25f), uint16_t{0x0000});             // tie -> even (zero)
    QCOMPARE(el::f32_to_f16(0x1.8p-25f), uint16_t{0x0001});
    QVERIFY(std::isnan(el::f16_to_f32(el::f32_to_f16(std::nanf("")))));
    QCOMPARE(el::f16_to_f32(0x0001), 0x1p-24f);
    QVERIFY(std::isinf(el::f16_to_f32(0xfc00)) && el::f16_to_f32(0xfc00) < 0);
    // Every finite half survives the round trip, and every midpoint between neighbours rounds
    // to the one with an even mantissa.
    for (uint32_t h = 0; h < 0x10000; ++h) {
      const uint16_t hh = static_cast<uint16_t>(h);
      if ((h & 0x7c00) == 0x7c00) continue;
      const float f = el::f16_to_f32(hh);
      QCOMPARE(el::f32_to_f16(f), hh);
      if ((h & 0x7fff) == 0x7bff) continue;
      const double mid =
          (static_cast<double>(f) + el::f16_to_f32(static_cast<uint16_t>(h + 1))) / 2;
      const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : hh;
      QCOMPARE(el::f32_to_f16(static_cast<float>(mid)), even);
    }
  }

  void bf16Conversion() {
    QCOMPARE(el::f32_to_bf16(1.0f), uint16_t{0x3f80});
    QCOMPARE(el::f32_to_bf16(el::bits_f32(0x3f808000u)), uint16_t{0x3f80});  // tie -> even
    QCOMPARE(el::f32_to_bf16(el::bits_f32(0x3f818000u)), uint16_t{0x3f82});  // tie -> even
    QCOMPARE(el::f32_to_bf16(el::bits_f32(0x3f808001u)), uint16_t{0x3f81});
    QVERIFY(std::isnan(el::bf16_to_f32(el::f32_to_bf16(std::nanf("")))));
    QCOMPARE(el::bf16_to_f32(0x4049), el::bits_f32(0x40490000u));
  }

  void dequantSimdIsExact() {
    const int64_t n = 1024, rows = 4;
    for (auto t : all_weight_types()) {
      const auto w = random_rows(t, n, rows, 11 + static_cast<uint32_t>(t));
      const auto ref = dequant(t, w.data(), n * rows, Simd::Scalar);
      for (float v : ref) QVERIFY2(std::isfinite(v), tname(t));
      for (Simd s : levels()) {
        const auto got = dequant(t, w.data(), n * rows, s);
        QVERIFY2(std::memcmp(got.data(), ref.data(), ref.size() * 4) == 0,
                 qPrintable(QString("%1 dequant at %2 differs from scalar")
                                .arg(tname(t), kernels::simd_name(s))));
      }
    }
  }

  // The activation quantizers (Q8_0 for Q4_0/Q8_0/..., Q8_1 for Q4_1/Q5_1) give the scalar
  // reference's bytes (el::quantize_act) at every SIMD level: random blocks of several scales,
  // exact ties (amax 127, so x * id = x: half-way values round to even), an all-zero block, a
  // block so small that 127 / amax overflows, and blocks with an infinity and a NaN.
  void activationQuantizerSimdIsExact() {
    const int64_t n = 32 * 24;
    std::vector<float> x = random_floats(n, 77);
    for (int64_t i = 32; i < 64; ++i) x[i] *= 1e-3f;
    for (int64_t i = 64; i < 96; ++i) x[i] *= 1e4f;
    const float ties[8] = {127.0f, 0.5f, 1.5f, -2.5f, 126.5f, -0.5f, 3.5f, -0.0f};
    for (int j = 0; j < 32; ++j) x[96 + j] = ties[j % 8] * (j < 8 ? 1.0f : 0.25f);
    std::fill(x.begin() + 128, x.begin() + 160, 0.0f);
    for (int j = 0; j < 32; ++j) x[160 + j] = el::bits_f32(0x00000100u + j) * (j % 2 ? -1 : 1);
    x[192 + 5] = INFINITY;
    x[224 + 9] = std::nanf("");
    const Simd saved = kernels::active_simd();
    for (TensorType wt : {TensorType::Q4_0, TensorType::Q4_1}) {
      const bool q81 = kernels::vec_dot_type(wt) == TensorType::Q8_1;
      const size_t bytes = kernels::activation_row_bytes(wt, n);
      std::vector<uint8_t> ref(bytes);
      for (int64_t i = 0; i < n / 32; ++i) {
        if (q81)
          el::quantize_act(x.data() + 32 * i, reinterpret_cast<el::BlockQ8_1*>(ref.data())[i]);
        else
          el::quantize_act(x.data() + 32 * i, reinterpret_cast<el::BlockQ8_0*>(ref.data())[i]);
      }
      if (!q81) {  // the ties block: d = 1, quants round half to even
        const auto& b = reinterpret_cast<const el::BlockQ8_0*>(ref.data())[3];
        QCOMPARE(el::h2f(b.d), 1.0f);
        const int want[8] = {127, 0, 2, -2, 126, 0, 4, 0};
        for (int j = 0; j < 8; ++j) QCOMPARE(static_cast<int>(b.qs[j]), want[j]);
      }
      for (Simd s : levels()) {
        kernels::set_simd(s);
        std::vector<uint8_t> got(bytes, 0xAB);
        kernels::quantize_activation(wt, x.data(), got.data(), n);
        kernels::set_simd(saved);
        QVERIFY2(std::memcmp(got.data(), ref.data(), bytes) == 0,
                 qPrintable(QString("%1 activation at %2 differs from scalar")
                                .arg(tname(kernels::vec_dot_type(wt)), kernels::simd_name(s))));
      }
    }
  }

  void dotSimdMatchesScalar() {
    const int64_t n = 2048, rows = 8;
    for (auto t : all_weight_types()) {
      const auto w = random_rows(t, n, rows, 100 + static_cast<uint32_t>(t));
      const uint64_t rb = kernels::row_bytes(t, n);
      for (int r = 0; r < rows; ++r) {
        const auto x = random_floats(n, 1000 + r, r == 0 ? 1e-3f : 1.f);
        std::vector<uint8_t> xq(kernels::activation_row_bytes(t, n));
        kernels::quantize_activation(t, x.data(), xq.data(), n);
        const void* wr = w.data() + r * rb;
        const double scale = abs_dot(t, wr, x.data(), n);
        const float ref = kernels::dot_row(t, wr, xq.data(), n, Simd::Scalar);
        const float ref_exact =
            kernels::dot_row(t, wr, x.data(), n, Simd::Scalar, Precision::Exact);
        // float rounding: one rounding per block accumulation plus the lane reductions
        const double tol = 2e-5 * scale * 1.05 + 1e-30;
        for (Simd s : levels()) {
          const float got = kernels::dot_row(t, wr, xq.data(), n, s);
          const float got_exact = kernels::dot_row(t, wr, x.data(), n, s, Precision::Exact);
          QVERIFY2(std::fabs(got - ref) <= tol,
                   qPrintable(QString("%1 %2 row %3: %4 vs scalar %5 (tol %6)")
                                  .arg(tname(t), kernels::simd_name(s))
                                  .arg(r)
                                  .arg(got, 0, 'g', 9)
                                  .arg(ref, 0, 'g', 9)
                                  .arg(tol)));
          QVERIFY2(std::fabs(got_exact - ref_exact) <= tol,
                   qPrintable(QString("%1 %2 exact row %3: %4 vs %5")
                                  .arg(tname(t), kernels::simd_name(s))
                                  .arg(r)
                                  .arg(got_exact, 0, 'g', 9)
                                  .arg(ref_exact, 0, 'g', 9)));
        }
      }
    }
  }

  // Q8_0: d = amax/127 is stored as binary16, so an element's error is at most half a step
  // plus |q| <= 127 times the binary16 rounding of d (2^-11 relative): 0.5 d + 127 d 2^-11.
  void roundTripQ8_0() {
    const int64_t n = 8192;
    auto x = random_floats(n, 7);
    x[5] = 0;  // an all-zero block must survive too
    for (int j = 32; j < 64; ++j) x[j] = 0;
    std::vector<uint8_t> q(kernels::row_bytes(TensorType::Q8_0, n));
    kernels::quantize_row(TensorType::Q8_0, x.data(), q.data(), n);
    const auto y = dequant(TensorType::Q8_0, q.data(), n);
    double se = 0, sx = 0, worst = 0;
    for (int64_t b = 0; b < n / 32; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
      const double d = amax / 127.0;
      for (int j = 0; j < 32; ++j) {
        const double e = std::fabs(y[32 * b + j] - x[32 * b + j]);
        QVERIFY(e <= d * (0.5 + 127 * 0x1p-11) + 1e-12);
        worst = std::max(worst, d > 0 ? e / d : 0);
        se += e * e;
        sx += double(x[32 * b + j]) * x[32 * b + j];
      }
    }
    const double rel = std::sqrt(se / sx);
    qInfo("Q8_0 round trip: relative RMS error %.5f, worst |err| = %.3f steps", rel, worst);
    QVERIFY(rel < 0.006);  // uniform rounding: step/sqrt(12) with step ~ 2.2 sigma / 127
    for (int j = 32; j < 64; ++j) QCOMPARE(y[j], 0.0f);
  }

  // Q4_0: d = m / -8 with m the largest-magnitude value; the step is |d| = amax/8. Values map
  // to q in [0, 15]; on the side opposite m the range ends at 7|d| < amax, so clamped values
  // may be off by up to one step; all others by at most half a step (+ binary16 of d).
  void roundTripQ4_0() {
    const int64_t n = 8192;
    const auto x = random_floats(n, 9);
    std::vector<uint8_t> q(kernels::row_bytes(TensorType::Q4_0, n));
    kernels::quantize_row(TensorType::Q4_0, x.data(), q.data(), n);
    const auto y = dequant(TensorType::Q4_0, q.data(), n);
    double se = 0, sx = 0;
    int clamped = 0;
    for (int64_t b = 0; b < n / 32; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
      const double step = amax / 8.0;
      for (int j = 0; j < 32; ++j) {
        const double e = std::fabs(y[32 * b + j] - x[32 * b + j]);
        const double half = step * (0.5 + 8 * 0x1p-11) + 1e-12;
        if (e > half) {
          ++clamped;
          QVERIFY(std::fabs(x[32 * b + j]) > 7 * step * (1 - 0x1p-10));  // only at the far end
          QVERIFY(e <= step * (1 + 8 * 0x1p-11) + 1e-12);
        }
        se += e * e;
        sx += double(x[32 * b + j]) * x[32 * b + j];
      }
    }
    const double rel = std::sqrt(se / sx);
    qInfo("Q4_0 round trip: relative RMS error %.4f, %d clamped of %lld", rel, clamped,
          static_cast<long long>(n));
    QVERIFY(rel < 0.10);  // step ~ 2.2 sigma / 8 -> RMS ~ 0.08 sigma
  }

  // MXFP4 known answers on hand-built blocks (OCP MX v1.0, 5.3.3 / 5.4.1): element j < 16 is
  // the low nibble of qs[j], element j >= 16 the high nibble of qs[j - 16]; E2M1 codes 0..15
  // are {0, .5, 1, 1.5, 2, 3, 4, 6, -0, -.5, ..., -6}; the E8M0 byte e scales by 2^(e - 127)
  // (e = 0: 2^-127, an F32 subnormal; e = 254: 2^127; e = 255: NaN). Every code appears in
  // both nibble positions; values beyond F32 (6 * 2^127) are +-inf.
  void mxfp4KnownAnswers() {
    const double fp4[16] = {0, .5, 1, 1.5, 2, 3, 4, 6, -0.0, -.5, -1, -1.5, -2, -3, -4, -6};
    int codes[32];
    for (int j = 0; j < 16; ++j) codes[j] = j, codes[16 + j] = 15 - j;
    auto make = [&](uint8_t e) {
      el::BlockMXFP4 b;
      b.e = e;
      for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(codes[j] | (codes[16 + j] << 4));
      return b;
    };
    for (int e : {0, 1, 2, 100, 126, 127, 128, 200, 253, 254, 255}) {
      const el::BlockMXFP4 b = make(static_cast<uint8_t>(e));
      for (Simd s : levels()) {
        const auto got = dequant(TensorType::MXFP4, &b, 32, s);
        for (int j = 0; j < 32; ++j) {
          const QString where = QString("e %1 element %2 code %3 at %4")
                                    .arg(e)
                                    .arg(j)
                                    .arg(codes[j])
                                    .arg(kernels::simd_name(s));
          if (e == 255) {
            QVERIFY2(std::isnan(got[j]), qPrintable(where));
            continue;
          }
          // exact in double; the cast to float rounds only where F32 overflows (-> inf)
          const float want = static_cast<float>(std::ldexp(fp4[codes[j]], e - 127));
          QVERIFY2(got[j] == want && std::signbit(got[j]) == std::signbit(want),
                   qPrintable(where + QString(": %1, want %2").arg(got[j]).arg(want)));
        }
      }
    }
    // a few values spelled out
    auto at = [&](int e, int j) {
      const el::BlockMXFP4 blk = make(static_cast<uint8_t>(e));
      return dequant(TensorType::MXFP4, &blk, 32)[j];
    };
    QCOMPARE(at(127, 7), 6.0f);
    QCOMPARE(at(127, 16), -6.0f);                // element 16 = high nibble of qs[0] = code 15
    QCOMPARE(at(127, 31), 0.0f);                 // element 31 = high nibble of qs[15] = code 0
    QCOMPARE(at(128, 1), 1.0f);                  // 0.5 * 2
    QCOMPARE(at(0, 1), std::ldexp(1.0f, -128));  // 0.5 * 2^-127: a subnormal, exact
    QCOMPARE(at(0, 15), -6 * std::ldexp(1.0f, -127));
    QCOMPARE(at(254, 1), std::ldexp(1.0f, 126));
    QCOMPARE(at(254, 3), 1.5f * std::ldexp(1.0f, 127));  // the largest finite value of e = 254
    QVERIFY(std::isinf(at(254, 4)) && at(254, 4) > 0);   // 2 * 2^127 = 2^128 > FLT_MAX
    QVERIFY(std::isinf(at(254, 12)) && at(254, 12) < 0);
    const float nz = at(127, 8);  // code 8: the format's negative zero
    QVERIFY(nz == 0.0f && std::signbit(nz));
    // the half-scale convention of the integer path: 2^(e - 128) with doubled values
    QCOMPARE(el::e8m0_half(127), 0.5f);
    QCOMPARE(el::e8m0_half(0), std::ldexp(1.0f, -128));
    QCOMPARE(el::e8m0_half(1), std::ldexp(1.0f, -127));
    QCOMPARE(el::e8m0_half(254), std::ldexp(1.0f, 126));
    for (int c = 0; c < 16; ++c) QCOMPARE(double(el::e2m1_x2(c)), 2 * fp4[c]);

    // dot products against a hand-built Q8_0 activation: exact integer sum times the scales
    el::BlockQ8_0 x;
    x.d = el::f32_to_f16(0.25f);
    for (int j = 0; j < 32; ++j) x.qs[j] = static_cast<int8_t>(3 * j - 50);
    for (int e : {100, 120, 127, 130}) {
      const el::BlockMXFP4 b = make(static_cast<uint8_t>(e));
      double want = 0;
      for (int j = 0; j < 32; ++j) want += fp4[codes[j]] * x.qs[j];
      want = std::ldexp(want, e - 127) * 0.25;
      for (Simd s : levels()) {
        const float got = kernels::dot_row(TensorType::MXFP4, &b, &x, 32, s);
        QVERIFY2(got == static_cast<float>(want), qPrintable(QString("dot e %1 at %2: %3, want %4")
                                                                 .arg(e)
                                                                 .arg(kernels::simd_name(s))
                                                                 .arg(got, 0, 'g', 9)
                                                                 .arg(want, 0, 'g', 9)));
      }
    }
    QCOMPARE(kernels::vec_dot_type(TensorType::MXFP4), TensorType::Q8_0);
    QCOMPARE(kernels::row_bytes(TensorType::MXFP4, 64), uint64_t{34});
    QVERIFY_THROWS_EXCEPTION(Error, kernels::row_bytes(TensorType::MXFP4, 48));
  }

  // MXFP4 quantizer (OCP MX v1.0, 6.3): per block e = floor(log2 amax) - 2 + 127, so with
  // s = 2^(e - 127) the block's values lie in |x| / s < 8; each element becomes the nearest of
  // s * {0, .5, 1, 1.5, 2, 3, 4, 6} (ties to the even code), saturating at 6 s. Hence the error
  // of an element is at most half the gap around it - s/4 below 2 s, s/2 below 4 s, s up to
  // 6 s - and |x| - 6 s above (< 2 s): in all cases <= 2 s <= amax / 2, and <= s for all but
  // the saturated elements. Checked element by element, plus the ties and the saturation.
  void mxfp4QuantizerNearest() {
    const int64_t n = 8192;
    auto x = random_floats(n, 17);
    for (int j = 0; j < 32; ++j) x[64 + j] = 0;        // an all-zero block
    for (int j = 0; j < 32; ++j) x[96 + j] *= 1e-20f;  // tiny and
    for (int j = 0; j < 32; ++j) x[128 + j] *= 1e20f;  // huge magnitudes
    std::vector<uint8_t> q(kernels::row_bytes(TensorType::MXFP4, n));
    kernels::quantize_row(TensorType::MXFP4, x.data(), q.data(), n);
    const auto y = dequant(TensorType::MXFP4, q.data(), n);
    const auto* b = reinterpret_cast<const el::BlockMXFP4*>(q.data());
    const double grid[8] = {0, .5, 1, 1.5, 2, 3, 4, 6};
    double se = 0, sx = 0;
    int saturated = 0;
    for (int64_t i = 0; i < n / 32; ++i) {
      double amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(double(x[32 * i + j])));
      if (amax == 0) {
        QCOMPARE(int(b[i].e), 0);
      } else {
        QCOMPARE(int(b[i].e), int(std::floor(std::log2(amax))) - 2 + 127);
      }
      const double s = std::ldexp(1.0, int(b[i].e) - 127);
      if (amax > 0) QVERIFY(amax / s >= 4 && amax / s < 8);
      for (int j = 0; j < 32; ++j) {
        const double v = x[32 * i + j], a = std::fabs(v), got = y[32 * i + j];
        double best = 1e300;
        for (double g : grid) best = std::min(best, std::fabs(g * s - a));
        const double err = std::fabs(got - v);
        QVERIFY2(err == best,
                 qPrintable(QString("block %1 element %2: %3 -> %4, nearest is %5 away")
                                .arg(i)
                                .arg(j)
                                .arg(v)
                                .arg(got)
                                .arg(best)));
        QVERIFY(got == 0 || std::signbit(got) == std::signbit(v));
        QVERIFY(err <= 2 * s && err <= amax / 2);
        if (err > s) {
          ++saturated;
          QVERIFY(a > 6 * s);
        }
        if (i == 2 || i == 3 || i == 4) continue;  // keep the RMS to the N(0, 1) blocks
        se += err * err;
        sx += v * v;
      }
    }
    const double rel = std::sqrt(se / sx);
    qInfo("MXFP4 round trip: relative RMS error %.4f, %d saturated of %lld", rel, saturated,
          static_cast<long long>(n));
    // s = amax / 4..8 ~ 0.26..0.52 sigma for 32 N(0, 1) values; most elements sit where the gap
    // is s/2..s, so the RMS error is ~ gap / sqrt(12) ~ 0.1..0.15 sigma
    QVERIFY(rel < 0.16);

    // ties go to the even code; beyond 6 s the value saturates
    std::vector<float> t(32, 0.0f);
    t[0] = 7.9f;   // amax: e = 2 - 2 + 127 = 127, s = 1
    t[1] = 0.25f;  // 0 | 0.5 -> 0
    t[2] = 0.75f;  // 0.5 | 1 -> 1
    t[3] = 1.25f;  // 1 | 1.5 -> 1
    t[4] = 1.75f;  // 1.5 | 2 -> 2
    t[5] = 2.5f;   // 2 | 3 -> 2
    t[6] = 3.5f;   // 3 | 4 -> 4
    t[7] = 5.0f;   // 4 | 6 -> 4
    t[8] = -5.0f;
    t[9] = -7.0f;  // saturates to -6
    t[10] = -0.1f;
    const float want[11] = {6, 0, 1, 1, 2, 2, 4, 4, -4, -6, -0.0f};
    el::BlockMXFP4 tb;
    kernels::quantize_row(TensorType::MXFP4, t.data(), &tb, 32);
    QCOMPARE(int(tb.e), 127);
    const auto ty = dequant(TensorType::MXFP4, &tb, 32);
    for (int j = 0; j < 11; ++j) QCOMPARE(ty[j], want[j]);
  }

  void otherQuantizersRoundTrip() {
    const int64_t n = 4096;
    const auto x = random_floats(n, 13);
    // relative RMS bounds: step/sqrt(12) over the range (max-min)/15 or /31 (Q4_1, Q5_1) or
    // amax/16 (Q5_0), plus margin; F16 / BF16 are 2^-11 / 2^-8 relative at worst.
    const std::pair<TensorType, double> cases[] = {{TensorType::Q4_1, 0.10},
                                                   {TensorType::Q5_0, 0.05},
                                                   {TensorType::Q5_1, 0.05},
                                                   {TensorType::F16, 0x1p-11},
                                                   {TensorType::BF16, 0x1p-8}};
    for (auto [t, bound] : cases) {
      std::vector<uint8_t> q(kernels::row_bytes(t, n));
      kernels::quantize_row(t, x.data(), q.data(), n);
      const auto y = dequant(t, q.data(), n);
      double se = 0, sx = 0;
      for (int64_t i = 0; i < n; ++i) {
        se += double(y[i] - x[i]) * (y[i] - x[i]);
        sx += double(x[i]) * x[i];
      }
      qInfo("%s round trip: relative RMS error %.5f", tname(t), std::sqrt(se / sx));
      QVERIFY2(std::sqrt(se / sx) < bound, tname(t));
    }
  }

  // Prefill (matmul, multi-token kernels) == decode (matvec) bit for bit, at every SIMD level,
  // for token counts around the multi-token group size (4) and the token block (32).
  void matmulEqualsMatvec() {
    const int64_t n_in = 512, n_out = 37;
    ThreadPool pool(2);
    const Simd saved = kernels::active_simd();
    for (Simd s : levels()) {
      kernels::set_simd(s);
      for (int64_t n_tok : {2, 3, 4, 5, 7, 9, 33}) {
        for (auto t : all_weight_types()) {
          const auto w = random_rows(t, n_in, n_out, 200 + static_cast<uint32_t>(t));
          const auto x = random_floats(n_in * n_tok, 300);
          for (auto p : {Precision::GgmlCompatible, Precision::Exact}) {
            std::vector<float> y(n_out * n_tok), yv(n_out);
            kernels::matmul(t, w.data(), n_in, n_out, x.data(), n_tok, y.data(), &pool, p);
            for (int64_t tk = 0; tk < n_tok; ++tk) {
              kernels::matvec(t, w.data(), n_in, n_out, x.data() + tk * n_in, yv.data(), &pool, p);
              QVERIFY2(std::memcmp(yv.data(), y.data() + tk * n_out, n_out * 4) == 0,
                       qPrintable(QString("%1 %2 n_tok %3 token %4")
                                      .arg(tname(t), kernels::simd_name(s))
                                      .arg(n_tok)
                                      .arg(tk)));
              // and each entry is the row's dot product
              std::vector<uint8_t> xq(kernels::activation_row_bytes(t, n_in, p));
              if (p == Precision::Exact)
                std::memcpy(xq.data(), x.data() + tk * n_in, n_in * 4);
              else
                kernels::quantize_activation(t, x.data() + tk * n_in, xq.data(), n_in);
              const float d = kernels::dot_row(t, w.data() + 5 * kernels::row_bytes(t, n_in),
                                               xq.data(), n_in, s, p);
              QCOMPARE(y[tk * n_out + 5], d);
            }
          }
        }
      }
    }
    kernels::set_simd(saved);
  }

  // Regression (qwen2moe.Q4_0 logits 0.06 off llama.cpp with the AVX-512 kernels only): the
  // x86 kernels of the 32-element formats must sum exactly like ggml's x86 kernels - eight F32
  // lanes, lane l holding the int32 sum of elements 4l..4l+3 of each block, fma'd block after
  // block with d_w * d_x, then a fixed horizontal reduction. The old AVX-512 kernel put two
  // blocks in one 16-lane register (a different order, ~1 ulp apart); the ulp moved activations
  // across Q8 rounding steps in the next layer. A tolerance test cannot see that, so this one
  // compares bit for bit with an emulation of ggml's order, for odd and even block counts.
  void x86BlockFormatsSumInGgmlOrder() {
    if (kernels::detected_simd() == Simd::Scalar) QSKIP("no x86 SIMD level on this CPU/build");
    auto wq = [](TensorType t, const uint8_t* blk, int j) -> int {
      switch (t) {
        case TensorType::Q8_0:
          return reinterpret_cast<const el::BlockQ8_0*>(blk)->qs[j];
        case TensorType::Q4_0:
        case TensorType::Q4_1: {
          const uint8_t* qs = t == TensorType::Q4_0
                                  ? reinterpret_cast<const el::BlockQ4_0*>(blk)->qs
                                  : reinterpret_cast<const el::BlockQ4_1*>(blk)->qs;
          const int v = j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4);
          return t == TensorType::Q4_0 ? v - 8 : v;
        }
        case TensorType::Q5_0: {
          const auto* b = reinterpret_cast<const el::BlockQ5_0*>(blk);
          return el::q5_value(b->qs, el::load_u32(b->qh), j) - 16;
        }
        case TensorType::MXFP4:
          return el::e2m1_x2(el::mxfp4_code(*reinterpret_cast<const el::BlockMXFP4*>(blk), j));
        default: {
          const auto* b = reinterpret_cast<const el::BlockQ5_1*>(blk);
          return el::q5_value(b->qs, el::load_u32(b->qh), j);
        }
      }
    };
    const TensorType types[] = {TensorType::Q8_0, TensorType::Q4_0, TensorType::Q5_0,
                                TensorType::Q4_1, TensorType::Q5_1, TensorType::MXFP4};
    for (auto t : types) {
      const bool with_min = t == TensorType::Q4_1 || t == TensorType::Q5_1;
      const uint64_t wbs = kernels::row_bytes(t, 32);
      for (int64_t n : {32, 64, 96, 160, 2048}) {
        const int rows = 16;
        const auto w = random_rows(t, n, rows, 900 + static_cast<uint32_t>(n));
        const auto x = random_floats(n, 901 + static_cast<uint32_t>(n));
        std::vector<uint8_t> xq(kernels::activation_row_bytes(t, n));
        kernels::quantize_activation(t, x.data(), xq.data(), n);
        const uint64_t xbs = kernels::activation_row_bytes(t, 32);
        for (int r = 0; r < rows; ++r) {
          const uint8_t* wr = w.data() + r * kernels::row_bytes(t, n);
          float acc[8] = {}, ms = 0;
          for (int64_t i = 0; i < n / 32; ++i) {
            const uint8_t* wb = wr + i * wbs;
            const uint8_t* xb = xq.data() + i * xbs;
            uint16_t wd, xd;
            std::memcpy(&wd, wb, 2);
            std::memcpy(&xd, xb, 2);
            const int8_t* xqs = reinterpret_cast<const int8_t*>(xb + (with_min ? 4 : 2));
            // MXFP4: half its E8M0 scale (the weights are doubled E2M1 values)
            const float dw =
                t == TensorType::MXFP4 ? std::ldexp(1.0f, int(wb[0]) - 128) : el::f16_to_f32(wd);
            const float d = dw * el::f16_to_f32(xd);
            for (int l = 0; l < 8; ++l) {
              int p = 0;
              for (int j = 4 * l; j < 4 * l + 4; ++j) p += wq(t, wb, j) * xqs[j];
              acc[l] = std::fma(d, static_cast<float>(p), acc[l]);
            }
            if (with_min) {
              uint16_t wm, xs;
              std::memcpy(&wm, wb + 2, 2);
              std::memcpy(&xs, xb + 2, 2);
              ms += el::f16_to_f32(wm) * el::f16_to_f32(xs);
            }
          }
          float h[4];
          for (int l = 0; l < 4; ++l) h[l] = acc[l] + acc[l + 4];
          float want = (h[0] + h[2]) + (h[1] + h[3]);
          if (with_min) want += ms;
          for (Simd s : levels()) {
            if (s == Simd::Scalar) continue;
            const float got = kernels::dot_row(t, wr, xq.data(), n, s);
            QVERIFY2(std::memcmp(&got, &want, 4) == 0,
                     qPrintable(QString("%1 %2 n %3 row %4: %5, ggml order gives %6")
                                    .arg(tname(t), kernels::simd_name(s))
                                    .arg(n)
                                    .arg(r)
                                    .arg(got, 0, 'g', 9)
                                    .arg(want, 0, 'g', 9)));
          }
        }
      }
    }
  }

  void threadsGiveIdenticalResults() {
    const int64_t n_in = 1024, n_out = 301, n_tok = 40;  // > one token block, odd row count
    ThreadPool one(1), two(2);
    for (auto t : all_weight_types()) {
      const auto w = random_rows(t, n_in, n_out, 400 + static_cast<uint32_t>(t));
      const auto x = random_floats(n_in * n_tok, 500);
      std::vector<float> a(n_out * n_tok), b(n_out * n_tok), c(n_out * n_tok);
      kernels::matmul(t, w.data(), n_in, n_out, x.data(), n_tok, a.data(), &one);
      kernels::matmul(t, w.data(), n_in, n_out, x.data(), n_tok, b.data(), &two);
      kernels::matmul(t, w.data(), n_in, n_out, x.data(), n_tok, c.data(), nullptr);
      QVERIFY2(std::memcmp(a.data(), b.data(), a.size() * 4) == 0, tname(t));
      QVERIFY2(std::memcmp(a.data(), c.data(), a.size() * 4) == 0, tname(t));
    }
  }

  // Repacked Q4_0 / Q8_0 / MXFP4 (kernels.h: repack_rows, matmul_repacked): every SIMD level gives
  // the scalar reference's bits, for 1 and 2 threads, 1 and 3 tokens (prefill == decode), and
  // through matvec_batch; each result is the exact dot product of the weights and the Q8_0
  // activation up to float summation error, as the plain-layout kernels' are.
  void repackedMatchesReferenceAndPlain() {
    ThreadPool one(1), two(2);
    const Simd saved = kernels::active_simd();
    const std::pair<int64_t, int64_t> shapes[] = {{64, 8}, {1024, 40}, {2816, 16}, {192, 96}};
    for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::MXFP4}) {
      for (auto [n_in, n_out] : shapes) {
        QVERIFY(kernels::can_repack(t, n_in, n_out));
        const auto w = random_rows(t, n_in, n_out, 40 + static_cast<uint32_t>(n_in + n_out));
        std::vector<uint8_t> packed(w.size(), 0xAB);
        kernels::repack_rows(t, w.data(), packed.data(), n_in, n_out);
        const int64_t n_tok = 3;
        const auto x = random_floats(n_in * n_tok, 41 + static_cast<uint32_t>(n_in));
        std::vector<float> ref(n_out * n_tok + 1, -7.0f);
        kernels::matmul_repacked(t, packed.data(), n_in, n_out, x.data(), n_tok, ref.data(), &one,
                                 Simd::Scalar);
        QCOMPARE(ref.back(), -7.0f);
        const uint64_t rb = kernels::row_bytes(t, n_in);
        for (int64_t tk = 0; tk < n_tok; ++tk) {
          const auto xs = activation_as_seen(t, x.data() + tk * n_in, n_in);
          std::vector<float> plain(n_out);
          kernels::matvec(t, w.data(), n_in, n_out, x.data() + tk * n_in, plain.data(), &one);
          for (int64_t r = 0; r < n_out; ++r) {
            const auto wd = dequant(t, w.data() + r * rb, n_in);
            double exact = 0, scale = 0;
            for (int64_t i = 0; i < n_in; ++i) {
              exact += static_cast<double>(wd[i]) * xs[i];
              scale += std::fabs(static_cast<double>(wd[i]) * xs[i]);
            }
            // n_in / 32 block terms summed in float (two sums of half as many, for repacked)
            const double bound = (n_in / 32 + 4) * 0x1p-24 * scale + 1e-30;
            const float got = ref[tk * n_out + r];
            QVERIFY2(std::fabs(got - exact) <= bound,
                     qPrintable(QString("%1 %2x%3 row %4: repacked %5, exact %6, bound %7")
                                    .arg(tname(t))
                                    .arg(n_out)
                                    .arg(n_in)
                                    .arg(r)
                                    .arg(got)
                                    .arg(exact)
                                    .arg(bound)));
            QVERIFY(std::fabs(plain[r] - exact) <= bound);
          }
        }
        for (Simd s : levels()) {
          for (ThreadPool* pool : {&one, &two}) {
            std::vector<float> y(n_out * n_tok + 1, -7.0f);
            kernels::matmul_repacked(t, packed.data(), n_in, n_out, x.data(), n_tok, y.data(), pool,
                                     s);
            QVERIFY2(std::memcmp(y.data(), ref.data(), y.size() * 4) == 0,
                     qPrintable(QString("%1 %2x%3 %4")
                                    .arg(tname(t))
                                    .arg(n_out)
                                    .arg(n_in)
                                    .arg(kernels::simd_name(s))));
            kernels::set_simd(s);
            std::vector<float> d(n_out + 1, -7.0f);  // decode, one token
            kernels::matmul_repacked(t, packed.data(), n_in, n_out, x.data() + n_in, 1, d.data(),
                                     pool);
            QVERIFY(std::memcmp(d.data(), ref.data() + n_out, n_out * 4) == 0);
            QCOMPARE(d.back(), -7.0f);
            // matvec_batch: two repacked jobs sharing x and a plain one
            std::vector<float> b0(n_out, -7.0f), b1(n_out, -7.0f), b2(n_out, -7.0f), p2(n_out);
            const kernels::MatvecJob jobs[3] = {
                {t, packed.data(), n_in, n_out, x.data(), b0.data(), true},
                {t, w.data(), n_in, n_out, x.data(), b2.data(), false},
                {t, packed.data(), n_in, n_out, x.data() + 2 * n_in, b1.data(), true}};
            kernels::matvec_batch(jobs, 3, pool);
            kernels::matvec(t, w.data(), n_in, n_out, x.data(), p2.data(), pool);
            QVERIFY(std::memcmp(b0.data(), ref.data(), n_out * 4) == 0);
            QVERIFY(std::memcmp(b1.data(), ref.data() + 2 * n_out, n_out * 4) == 0);
            QVERIFY(std::memcmp(b2.data(), p2.data(), n_out * 4) == 0);
            kernels::set_simd(saved);
          }
        }
      }
    }
    // Extreme sums: every nibble 15 / every quant -128 against an activation of all +-127 (the
    // largest int16 pair products the maddubs and unsigned-offset paths see); each level still
    // gives the scalar reference's bits.
    for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0}) {
      const int64_t n_in = 256, n_out = 16;
      auto w = random_rows(t, n_in, n_out, 77);
      const int bb = t == TensorType::Q4_0 ? 18 : 34;  // block bytes: FP16 d, then quants
      for (size_t i = 0; i < w.size(); ++i)
        if (i % bb >= 2) w[i] = t == TensorType::Q4_0 ? 0xFF : 0x80;
      std::vector<uint8_t> packed(w.size());
      kernels::repack_rows(t, w.data(), packed.data(), n_in, n_out);
      for (float sign : {1.0f, -1.0f}) {
        const std::vector<float> x(n_in, sign);
        std::vector<float> ref(n_out);
        kernels::matmul_repacked(t, packed.data(), n_in, n_out, x.data(), 1, ref.data(), &one,
                                 Simd::Scalar);
        std::vector<float> plain(n_out);
        kernels::matvec(t, w.data(), n_in, n_out, x.data(), plain.data(), &one);
        for (int64_t r = 0; r < n_out; ++r)
          QVERIFY(std::fabs(ref[r] - plain[r]) <= 1e-5f * std::fabs(plain[r]));
        for (Simd s : levels()) {
          std::vector<float> y(n_out);
          kernels::matmul_repacked(t, packed.data(), n_in, n_out, x.data(), 1, y.data(), &one, s);
          QVERIFY2(std::memcmp(y.data(), ref.data(), y.size() * 4) == 0,
                   qPrintable(QString("%1 extremes %2").arg(tname(t)).arg(kernels::simd_name(s))));
        }
      }
    }
    // What cannot be repacked is refused with a message naming the shape.
    QVERIFY(!kernels::can_repack(TensorType::Q4_1, 64, 8));
    QVERIFY(!kernels::can_repack(TensorType::Q4_0, 96, 8));
    QVERIFY(!kernels::can_repack(TensorType::Q8_0, 64, 12));
    std::vector<uint8_t> src(kernels::row_bytes(TensorType::Q4_0, 64) * 12), dst(src.size());
    try {
      kernels::repack_rows(TensorType::Q4_0, src.data(), dst.data(), 64, 12);
      QFAIL("expected an error");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::BadInput);
      QVERIFY(QString(e.what()).contains("12 rows of 64"));
    }
  }

  // Repacked MXFP4 at the edges of its E8M0 scale (OCP MX v1.0 5.4.1): e = 0, 1 (halves 2^-128,
  // 2^-127: F32 subnormals), 2, 120, 127, 200, 254 (products past F32) and 255 (NaN), with every
  // E2M1 code (negative zero included): every SIMD level gives the scalar reference's bits; rows
  // with finite scales are the exact product within float rounding (an absolute term for the
  // subnormal d = 2^(e - 128) * d_x), rows with an e = 255 block are NaN.
  void repackedMxfp4ScaleEdges() {
    const TensorType t = TensorType::MXFP4;
    const int64_t n_in = 256, n_out = 16, n_blocks = n_in / 32;
    auto w = random_rows(t, n_in, n_out, 77);
    const uint8_t scales[] = {0, 1, 2, 127, 200, 120, 3};
    const uint64_t rb = kernels::row_bytes(t, n_in);
    auto block = [&](int64_t r, int64_t b) {
      return reinterpret_cast<kernels::el::BlockMXFP4*>(w.data() + r * rb) + b;
    };
    for (int64_t r = 0; r < n_out; ++r)
      for (int64_t b = 0; b < n_blocks; ++b) {
        block(r, b)->e = scales[(r + b) % 7];
        if (r == 3)  // every code in both nibbles
          for (int j = 0; j < 16; ++j) block(r, b)->qs[j] = static_cast<uint8_t>(j | (15 - j) << 4);
      }
    block(5, 2)->e = block(12, 7)->e = 255;
    block(6, 1)->e = block(13, 0)->e = 254;
    std::vector<uint8_t> packed(w.size());
    kernels::repack_rows(t, w.data(), packed.data(), n_in, n_out);
    const auto x = random_floats(n_in, 78);
    ThreadPool one(1);
    std::vector<float> ref(n_out);
    kernels::matmul_repacked(t, packed.data(), n_in, n_out, x.data(), 1, ref.data(), &one,
                             Simd::Scalar);
    const auto xs = activation_as_seen(t, x.data(), n_in);
    for (int64_t r = 0; r < n_out; ++r) {
      if (r == 5 || r == 12) {
        QVERIFY2(std::isnan(ref[r]), qPrintable(QString("row %1: %2").arg(r).arg(ref[r])));
        continue;
      }
      if (r == 6 || r == 13) continue;  // 2^126 * d_x * sum: past F32 or not, bits checked below
      double exact = 0, scale = 0;
      for (int64_t b = 0; b < n_blocks; ++b)
        for (int j = 0; j < 32; ++j) {
          const double v = kernels::el::e2m1_x2(kernels::el::mxfp4_code(*block(r, b), j)) *
                           std::ldexp(1.0, block(r, b)->e - 128) * xs[32 * b + j];
          exact += v;
          scale += std::fabs(v);
        }
      // per block, d rounds to an F32 subnormal step (2^-149) at worst, times |sum| <= 24 * 128 *
      // 32
      const double bound = (n_blocks + 4) * 0x1p-24 * scale + n_blocks * 0x1p-149 * 98304;
      QVERIFY2(std::fabs(ref[r] - exact) <= bound,
               qPrintable(QString("row %1: repacked %2, exact %3").arg(r).arg(ref[r]).arg(exact)));
    }
    for (Simd s : levels()) {
      std::vector<float> y(n_out);
      kernels::matmul_repacked(t, packed.data(), n_in, n_out, x.data(), 1, y.data(), &one, s);
      QVERIFY2(std::memcmp(y.data(), ref.data(), y.size() * 4) == 0, kernels::simd_name(s));
    }
  }

  // Repacked Q4_K / Q6_K (kernels/cpu/kquant.h): every SIMD level gives the scalar reference's
  // bits (1 and 2 threads, 1 and 3 tokens, matvec_batch with a plain job and a second repacked
  // type sharing x); each result is the exact dot product of the weights and the Q8_K activation
  // up to float rounding. Bound: the kernels round a few times per 256-element super-block; for
  // Q4_K the scale part and the min part are rounded apart, so the bound is measured against
  // sum_i (|d sc_j q_i| + |dmin m_j|) |x_i| (cancellation between the two parts is exact in
  // the integers but not in float), for Q6_K against sum_i |w_i x_i|.
  void repackedKQuantsMatchReferenceAndPlain() {
    ThreadPool one(1), two(2);
    const Simd saved = kernels::active_simd();
    const std::pair<int64_t, int64_t> shapes[] = {{256, 8}, {1024, 40}, {2816, 16}, {512, 96}};
    for (TensorType t : {TensorType::Q4_K, TensorType::Q6_K}) {
      for (auto [n_in, n_out] : shapes) {
        QVERIFY(kernels::can_repack(t, n_in, n_out));
        const auto w = random_rows(t, n_in, n_out, 60 + static_cast<uint32_t>(n_in + n_out));
        std::vector<uint8_t> packed(w.size(), 0xAB);
        kernels::repack_rows(t, w.data(), packed.data(), n_in, n_out);
        QVERIFY(std::memcmp(packed.data(), w.data(), w.size()) != 0);
        const int64_t n_tok = 3;
        const auto x = random_floats(n_in * n_tok, 61 + static_cast<uint32_t>(n_in));
        std::vector<float> ref(n_out * n_tok + 1, -7.0f);
        kernels::matmul_repacked(t, packed.data(), n_in, n_out, x.data(), n_tok, ref.data(), &one,
                                 Simd::Scalar);
        QCOMPARE(ref.back(), -7.0f);
        const uint64_t rb = kernels::row_bytes(t, n_in);
        for (int64_t tk = 0; tk < n_tok; ++tk) {
          const auto xs = activation_as_seen(t, x.data() + tk * n_in, n_in);
          std::vector<float> plain(n_out);
          kernels::matvec(t, w.data(), n_in, n_out, x.data() + tk * n_in, plain.data(), &one);
          for (int64_t r = 0; r < n_out; ++r) {
            const auto wd = dequant(t, w.data() + r * rb, n_in);
            double exact = 0, scale = 0;
            for (int64_t i = 0; i < n_in; ++i) {
              exact += static_cast<double>(wd[i]) * xs[i];
              scale += std::fabs(static_cast<double>(wd[i]) * xs[i]);
            }
            if (t == TensorType::Q4_K) {
              scale = 0;
              const auto* blocks = reinterpret_cast<const el::BlockQ4_K*>(w.data() + r * rb);
              for (int64_t i = 0; i < n_in; ++i) {
                const el::BlockQ4_K& b = blocks[i / 256];
                const int e = static_cast<int>(i % 256), j = e / 32;
                uint8_t sc, m;
                el::k4_scale_min(j, b.scales, &sc, &m);
                const int q =
                    (j % 2 ? b.qs[32 * (j / 2) + e % 32] >> 4 : b.qs[32 * (j / 2) + e % 32] & 15);
                scale += (std::fabs(static_cast<double>(el::h2f(b.d)) * sc * q) +
                          std::fabs(static_cast<double>(el::h2f(b.dmin)) * m)) *
                         std::fabs(xs[i]);
              }
            }
            const double bound = (n_in / 32 + 4) * 0x1p-24 * scale + 1e-30;
            const float got = ref[tk * n_out + r];
            QVERIFY2(std::fabs(got - exact) <= bound,
                     qPrintable(QString("%1 %2x%3 row %4: repacked %5, exact %6, bound %7")
                                    .arg(tname(t))
                                    .arg(n_out)
                                    .arg(n_in)
                                    .arg(r)
                                    .arg(got)
                                    .arg(exact)
                                    .arg(bound)));
            QVERIFY2(std::fabs(plain[r] - got) <= 2 * bound,
                     qPrintable(QString("%1 row %2: repacked %3, plain %4")
                                    .arg(tname(t))
                                    .arg(r)
                                    .arg(got)
                                    .arg(plain[r])));
          }
        }
        // The other repacked K type over the same x (its own expanded activation in the batch).
        const TensorType t2 = t == TensorType::Q4_K ? TensorType::Q6_K : TensorType::Q4_K;
        const auto w2 = random_rows(t2, n_in, n_out, 62 + static_cast<uint32_t>(n_in));
        std::vector<uint8_t> packed2(w2.size());
        kernels::repack_rows(t2, w2.data(), packed2.data(), n_in, n_out);
        std::vector<float> ref2(n_out);
        kernels::matmul_repacked(t2, packed2.data(), n_in, n_out, x.data(), 1, ref2.data(), &one,
                                 Simd::Scalar);
        for (Simd s : levels()) {
          for (ThreadPool* pool : {&one, &two}) {
            std::vector<float> y(n_out * n_tok + 1, -7.0f);
            kernels::matmul_repacked(t, packed.data(), n_in, n_out, x.data(), n_tok, y.data(), pool,
                                     s);
            QVERIFY2(std::memcmp(y.data(), ref.data(), y.size() * 4) == 0,
                     qPrintable(QString("%1 %2x%3 %4")
                                    .arg(tname(t))
                                    .arg(n_out)
                                    .arg(n_in)
                                    .arg(kernels::simd_name(s))));
            kernels::set_simd(s);
            std::vector<float> d(n_out + 1, -7.0f);  // decode, one token
            kernels::matmul_repacked(t, packed.data(), n_in, n_out, x.data() + n_in, 1, d.data(),
                                     pool);
            QVERIFY(std::memcmp(d.data(), ref.data() + n_out, n_out * 4) == 0);
            QCOMPARE(d.back(), -7.0f);
            std::vector<float> b0(n_out, -7.0f), b1(n_out, -7.0f), b2(n_out, -7.0f), b3(n_out),
                p2(n_out);
            const kernels::MatvecJob jobs[4] = {
                {t, packed.data(), n_in, n_out, x.data(), b0.data(), true},
                {t, w.data(), n_in, n_out, x.data(), b2.data(), false},
                {t2, packed2.data(), n_in, n_out, x.data(), b3.data(), true},
                {t, packed.data(), n_in, n_out, x.data() + 2 * n_in, b1.data(), true}};
            kernels::matvec_batch(jobs, 4, pool);
            kernels::matvec(t, w.data(), n_in, n_out, x.data(), p2.data(), pool);
            QVERIFY(std::memcmp(b0.data(), ref.data(), n_out * 4) == 0);
            QVERIFY(std::memcmp(b1.data(), ref.data() + 2 * n_out, n_out * 4) == 0);
            QVERIFY(std::memcmp(b2.data(), p2.data(), n_out * 4) == 0);
            QVERIFY2(std::memcmp(b3.data(), ref2.data(), n_out * 4) == 0,
                     qPrintable(QString("%1 batch %2").arg(tname(t2), kernels::simd_name(s))));
            kernels::set_simd(saved);
          }
        }
      }
    }
    // Models repack K-quants only where a SIMD kernel exists (the scalar reference is slower
    // than the plain per-row kernels); Q4_0 / Q8_0 always.
    kernels::set_simd(Simd::Scalar);
    QVERIFY(!kernels::repack_pays(TensorType::Q4_K));
    QVERIFY(!kernels::repack_pays(TensorType::Q6_K));
    QVERIFY(kernels::repack_pays(TensorType::Q4_0));
    QVERIFY(!kernels::repack_pays(TensorType::Q5_K));
    kernels::set_simd(saved);
    QCOMPARE(kernels::repack_pays(TensorType::Q4_K), kernels::active_simd() != Simd::Scalar);
    QCOMPARE(kernels::repack_pays(TensorType::Q6_K), kernels::active_simd() != Simd::Scalar);
    // Shapes the K-quant layout cannot hold are refused (super-blocks of 256, groups of 8 rows).
    QVERIFY(!kernels::can_repack(TensorType::Q4_K, 256, 12));
    QVERIFY(!kernels::can_repack(TensorType::Q6_K, 0, 8));
    QVERIFY(!kernels::can_repack(TensorType::Q5_K, 256, 8));
    std::vector<uint8_t> src(kernels::row_bytes(TensorType::Q6_K, 256) * 12), dst(src.size());
    try {
      kernels::repack_rows(TensorType::Q6_K, src.data(), dst.data(), 256, 12);
      QFAIL("expected an error");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::BadInput);
      QVERIFY(QString(e.what()).contains("12 rows of 256"));
    }
  }

  // matvec_batch (decode through experts: several products, shared activations, threads over
  // the rows of all jobs) equals one matvec per job bit for bit, at every SIMD level, for 1 and
  // 2 threads and both precisions; jobs mix weight types, shapes and shared / distinct x.
  void matvecBatchEqualsMatvec() {
    ThreadPool one(1), two(2);
    const Simd saved = kernels::active_simd();
    const auto types = all_weight_types();
    for (Simd s : levels()) {
      kernels::set_simd(s);
      for (size_t ti = 0; ti < types.size(); ++ti) {
        const TensorType ta = types[ti], tb = types[(ti + 3) % types.size()];
        const int64_t n_a = 512, n_b = 256;
        const int64_t outs[4] = {37, 8, 0, 61};  // odd, one row group, empty, > 2 groups
        const auto xa = random_floats(n_a, 700), xb = random_floats(n_b, 701);
        std::vector<std::vector<uint8_t>> w;
        std::vector<kernels::MatvecJob> jobs;
        std::vector<std::vector<float>> y(4), ref(4);
        for (int j = 0; j < 4; ++j) {
          const bool a = j != 3;  // jobs 0-2 share xa; job 3 has its own x, type and n_in
          const TensorType t = a ? ta : tb;
          const int64_t n_in = a ? n_a : n_b;
          w.push_back(random_rows(t, n_in, std::max<int64_t>(outs[j], 1), 800 + j));
          y[j].assign(outs[j] + 1, -7.0f);
          ref[j].assign(outs[j] + 1, -7.0f);
          jobs.push_back({t, w[j].data(), n_in, outs[j], a ? xa.data() : xb.data(), y[j].data()});
        }
        for (auto p : {Precision::GgmlCompatible, Precision::Exact}) {
          for (ThreadPool* pool : {&one, &two}) {
            for (int j = 0; j < 4; ++j) {
              std::fill(y[j].begin(), y[j].end(), -7.0f);
              kernels::matvec(jobs[j].type, jobs[j].w, jobs[j].n_in, jobs[j].n_out, jobs[j].x,
                              ref[j].data(), pool, p);
            }
            kernels::matvec_batch(jobs.data(), 4, pool, p);
            for (int j = 0; j < 4; ++j) {
              QVERIFY2(std::memcmp(y[j].data(), ref[j].data(), y[j].size() * 4) == 0,
                       qPrintable(QString("%1/%2 %3 job %4")
                                      .arg(tname(ta), tname(tb), kernels::simd_name(s))
                                      .arg(j)));
              QCOMPARE(y[j].back(), -7.0f);  // nothing written past n_out
            }
          }
        }
      }
    }
    kernels::set_simd(saved);
  }

  // GgmlCompatible computes w . x' where x' is the activation rounded to vec_dot_type; Exact
  // computes w . x. So |ggml - exact| <= sum_i |w_i| |x'_i - x_i| (+ float rounding), and
  // |x'_i - x_i| itself is bounded by the format: Q8_0/Q8_1 half a step of amax/127 plus the
  // binary16 rounding of d (<= 127 * d * 2^-11), Q8_K half a step (d is F32), F16 2^-11 |x|,
  // BF16 2^-8 |x|. Q8_1 adds m * s where s = fp16(d * sum q): another |m| |s| 2^-11.
  void ggmlVsExactBounded() {
    const int64_t n = 2048;
    for (auto t : all_weight_types()) {
      const auto w = random_rows(t, n, 4, 600 + static_cast<uint32_t>(t));
      const auto wd = dequant(t, w.data(), n * 4);
      for (int r = 0; r < 4; ++r) {
        const auto x = random_floats(n, 700 + r);
        const auto xs = activation_as_seen(t, x.data(), n);
        const TensorType vt = kernels::vec_dot_type(t);
        double bound_x = 0, scale = 0, diff_seen = 0;
        for (int64_t i = 0; i < n; ++i) {
          const double e = std::fabs(double(xs[i]) - x[i]);
          // per-element activation error bound for this format
          double eb = 0;
          if (vt == TensorType::F16)
            eb = std::fabs(x[i]) * 0x1p-11 + 0x1p-25;  // + subnormal step
          else if (vt == TensorType::BF16)
            eb = std::fabs(x[i]) * 0x1p-8;
          else if (vt != TensorType::F32) {
            const int64_t bs = vt == TensorType::Q8_K ? 256 : 32;
            float amax = 0;
            for (int64_t j = i / bs * bs; j < i / bs * bs + bs; ++j)
              amax = std::max(amax, std::fabs(x[j]));
            const double d = amax / 127.0;
            eb = vt == TensorType::Q8_K ? d * (0.5 + 1e-6) : d * (0.5 + 127 * 0x1p-11);
          }
          QVERIFY2(e <= eb + 1e-12,
                   qPrintable(QString("%1 activation element %2").arg(tname(t)).arg(i)));
          bound_x += std::fabs(double(wd[r * n + i])) * e;
          scale += std::fabs(double(wd[r * n + i]) * x[i]);
          diff_seen += double(wd[r * n + i]) * xs[i];
        }
        std::vector<uint8_t> xq(kernels::activation_row_bytes(t, n));
        kernels::quantize_activation(t, x.data(), xq.data(), n);
        const void* wr = w.data() + r * kernels::row_bytes(t, n);
        const double g = kernels::dot_row(t, wr, xq.data(), n, kernels::active_simd());
        const double ex =
            kernels::dot_row(t, wr, x.data(), n, kernels::active_simd(), Precision::Exact);
        double extra = 2e-5 * scale;  // float rounding of both results
        if (vt == TensorType::Q8_1) {
          const auto* xb = reinterpret_cast<const el::BlockQ8_1*>(xq.data());
          for (int64_t b = 0; b < n / 32; ++b) {
            const float m = el::f16_to_f32(reinterpret_cast<const uint16_t*>(
                static_cast<const uint8_t*>(wr) + b * (t == TensorType::Q4_1 ? 20 : 24))[1]);
            extra += std::fabs(m) * std::fabs(el::f16_to_f32(xb[b].s)) * 0x1p-11 +
                     std::fabs(m) * 32 * 127 * el::f16_to_f32(xb[b].d) * 0x1p-11;
          }
        }
        // the ggml-compatible result is the dot with the rounded activation
        QVERIFY2(std::fabs(g - diff_seen) <= extra,
                 qPrintable(QString("%1: %2 vs w.x' %3").arg(tname(t)).arg(g).arg(diff_seen)));
        QVERIFY2(std::fabs(g - ex) <= bound_x + extra,
                 qPrintable(QString("%1: |ggml - exact| = %2 > bound %3")
                                .arg(tname(t))
                                .arg(std::fabs(g - ex))
                                .arg(bound_x + extra)));
        if (vt != TensorType::F32) QVERIFY2(g != ex, tname(t));  // rounding really happens
        if (r == 0)
          qInfo("%-5s |ggml - exact| = %.3g, bound %.3g, scale sum|w x| = %.3g", tname(t),
                std::fabs(g - ex), bound_x + extra, scale);
      }
    }
  }

  // A wrong block layout must not slip through the SIMD-vs-scalar comparison: decode Q4_0 as
  // if nibbles were interleaved (element 2j = low nibble of byte j) and compare with the
  // kernel's dequantization under the same criterion the tests use (exact equality).
  void brokenLayoutIsCaught() {
    const int64_t n = 256;
    const auto w = random_rows(TensorType::Q4_0, n, 1, 5);
    const auto good = dequant(TensorType::Q4_0, w.data(), n);
    std::vector<float> bad(n);
    const auto* b = reinterpret_cast<const el::BlockQ4_0*>(w.data());
    for (int64_t i = 0; i < n / 32; ++i)
      for (int j = 0; j < 16; ++j) {
        const float d = el::f16_to_f32(b[i].d);
        bad[32 * i + 2 * j] = ((b[i].qs[j] & 15) - 8) * d;
        bad[32 * i + 2 * j + 1] = ((b[i].qs[j] >> 4) - 8) * d;
      }
    QVERIFY(std::memcmp(good.data(), bad.data(), n * 4) != 0);
    // and a wrong scale (d read from the wrong half of the block) changes the dot product by
    // far more than the SIMD tolerance
    auto w2 = w;
    for (int64_t i = 0; i < n / 32; ++i) std::swap(w2[18 * i], w2[18 * i + 2]);
    const auto x = random_floats(n, 3);
    std::vector<uint8_t> xq(kernels::activation_row_bytes(TensorType::Q4_0, n));
    kernels::quantize_activation(TensorType::Q4_0, x.data(), xq.data(), n);
    const float a = kernels::dot_row(TensorType::Q4_0, w.data(), xq.data(), n, Simd::Scalar);
    const float c = kernels::dot_row(TensorType::Q4_0, w2.data(), xq.data(), n, Simd::Scalar);
    QVERIFY(std::fabs(a - c) > 2e-5 * abs_dot(TensorType::Q4_0, w.data(), x.data(), n) * 100);
  }
};

QTEST_APPLESS_MAIN(TestKernels)
#include "test_kernels.moc"
