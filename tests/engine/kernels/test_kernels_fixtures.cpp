// Kernels against shared data: the cases/quant blocks (bit layouts with known values) and the
// weights of the llama.cpp fixture models (each quantized file vs the F32 file of the model).
#include <QtTest>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/element/blocks.h"
#include "moelab/core/error.h"
#include "moelab/gguf/gguf.h"
#include "moelab/kernels/kernels.h"
#include "test_support.h"

using namespace moelab;
using namespace moelab::test;
using kernels::Simd;
namespace el = moelab::kernels::el;

namespace {

std::vector<Simd> levels() {
  std::vector<Simd> v;
  for (int s = 0; s <= static_cast<int>(kernels::detected_simd()); ++s)
    v.push_back(static_cast<Simd>(s));
  return v;
}

std::vector<float> expected_values(const char* block) {
  const auto doc =
      read_json(QString::fromStdString(shared_path("cases/quant/kquant_expected.json")));
  std::vector<float> v;
  for (const auto& e : doc.object().value(block).toObject().value("values").toArray())
    v.push_back(static_cast<float>(e.toDouble()));
  return v;
}

// Number of elements that differ (exactly) between two decodings.
int mismatches(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return -1;
  int n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

// A deliberately wrong Q4_K decoder: sub-blocks 4-7 take their scale/min from the low 6 bits
// of the same bytes as sub-blocks 0-3 (ignoring the packed high bits) - the known bug of
// kquant_expected.json's "wrong_if_subblocks4to7_use".
void wrong_q4k(const uint8_t* src, float* y, int64_t n) {
  for (int64_t i = 0; i < n / 256; ++i) {
    el::BlockQ4_K b;
    std::memcpy(&b, src + i * 144, 144);
    const float d = el::f16_to_f32(b.d), dmin = el::f16_to_f32(b.dmin);
    for (int sb = 0; sb < 8; ++sb) {
      const int sc = b.scales[sb % 4] & 63, m = b.scales[sb % 4 + 4] & 63;
      for (int l = 0; l < 32; ++l) {
        const uint8_t q = b.qs[32 * (sb / 2) + l];
        y[256 * i + 32 * sb + l] = d * sc * ((sb % 2) ? q >> 4 : q & 15) - dmin * m;
      }
    }
  }
}
// A Q6_K decoder that reads the scales as unsigned bytes (the other known bug).
void wrong_q6k(const uint8_t* src, float* y, int64_t n) {
  for (int64_t i = 0; i < n / 256; ++i) {
    el::BlockQ6_K b;
    std::memcpy(&b, src + i * 210, 210);
    for (int j = 0; j < 16; ++j)
      if (b.scales[j] < 0) b.scales[j] = static_cast<int8_t>(b.scales[j] & 0x7f);  // |s| wrongly
    el::dequant(b, y + 256 * i);
  }
}
// A Q4_0 decoder with interleaved nibbles (element 2j = low nibble of byte j): wrong layout.
void wrong_q4_0(const uint8_t* src, float* y, int64_t n) {
  for (int64_t i = 0; i < n / 32; ++i) {
    el::BlockQ4_0 b;
    std::memcpy(&b, src + i * 18, 18);
    const float d = el::f16_to_f32(b.d);
    for (int j = 0; j < 16; ++j) {
      y[32 * i + 2 * j] = ((b.qs[j] & 15) - 8) * d;
      y[32 * i + 2 * j + 1] = ((b.qs[j] >> 4) - 8) * d;
    }
  }
}
// MXFP4 decoders with a wrong nibble order (element 2j = low nibble of byte j, the order of the
// original gpt-oss checkpoints, which GGUF conversion rearranges) or the full E8M0 scale applied
// to the doubled integer values (a factor 2 off).
void wrong_mxfp4_order(const uint8_t* src, float* y, int64_t n) {
  for (int64_t i = 0; i < n / 32; ++i) {
    el::BlockMXFP4 b;
    std::memcpy(&b, src + i * 17, 17);
    const float d = el::e8m0_half(b.e);
    for (int j = 0; j < 16; ++j) {
      y[32 * i + 2 * j] = el::e2m1_x2(b.qs[j] & 15) * d;
      y[32 * i + 2 * j + 1] = el::e2m1_x2(b.qs[j] >> 4) * d;
    }
  }
}
void wrong_mxfp4_scale(const uint8_t* src, float* y, int64_t n) {
  for (int64_t i = 0; i < n / 32; ++i) {
    el::BlockMXFP4 b;
    std::memcpy(&b, src + i * 17, 17);
    for (int j = 0; j < 32; ++j)
      y[32 * i + j] = el::e2m1_x2(el::mxfp4_code(b, j)) * std::ldexp(1.0f, b.e - 127);
  }
}
// A Q8_0 decoder with a wrong scale (reads d as bfloat16 instead of binary16).
void wrong_q8_0(const uint8_t* src, float* y, int64_t n) {
  for (int64_t i = 0; i < n / 32; ++i) {
    el::BlockQ8_0 b;
    std::memcpy(&b, src + i * 34, 34);
    for (int j = 0; j < 32; ++j) y[32 * i + j] = b.qs[j] * el::bf16_to_f32(b.d);
  }
}

// Relative RMS error bounds per type for these Gaussian-weight fixtures (no imatrix), from
// each format's step size: uniform rounding error RMS = step / sqrt(12).
//   F16: relative step <= 2^-10 -> RMS <= 2^-10/sqrt(12) * (1 + margin) ~ 3e-4
//   Q8_0: step = amax/127, amax of 32 N(0,1) ~ 2.1 sigma -> 0.0048 (bound 0.0065)
//   Q6_K: step = amax/32 over 16 values (amax ~ 1.8 sigma) -> ~0.016 (bound 0.022)
//   Q5_K: 32 levels over an optimised [min, max] of 32 values -> ~0.03 (bound 0.045)
//   Q4_0: step = amax/8 -> ~0.075 plus clamping at the far end (bound 0.10)
//   Q4_K: 16 levels over an optimised range of 32 values -> ~0.07 (bound 0.085)
//   Q5_0: step = amax/16 -> ~0.04 (bound 0.05)
//   MXFP4: s = 2^(floor(log2 amax) - 2) = amax/8..amax/4; most of 32 N(0,1) values lie where
//     the E2M1 gap is s/2..s, RMS ~ gap/sqrt(12) ~ 0.1-0.15 sigma (synthetic N(0,1): 0.114,
//     test_kernels); bound 0.16. (Element by element the stronger check is mxfp4ExpertsVsF32.)
// Measured on the fixtures (test output): F16 2.1e-4, Q8_0 0.0054, Q6_K 0.0177, Q4_K 0.071,
// Q4_0 0.086. A wrong scale or block layout gives errors of 0.4-1.4 (measured below).
double rel_bound(TensorType t) {
  switch (t) {
    case TensorType::F16:
      return 3e-4;
    case TensorType::Q8_0:
      return 0.0065;
    case TensorType::Q6_K:
      return 0.022;
    case TensorType::Q5_K:
      return 0.045;
    case TensorType::Q4_0:
      return 0.10;
    case TensorType::Q4_K:
      return 0.085;
    case TensorType::Q5_0:
      return 0.05;
    case TensorType::MXFP4:
      return 0.16;
    default:
      return 0.10;
  }
}

struct Err {
  double se = 0, sx = 0;
  int64_t tensors = 0;
  double rel() const { return sx > 0 ? std::sqrt(se / sx) : 0; }
};

}  // namespace

class TestKernelsFixtures : public QObject {
  Q_OBJECT
 private slots:
  void q4kBlockExpected() {
    MOELAB_REQUIRE_SHARED("cases/quant/q4k_block.bin");
    const QByteArray raw =
        read_all(QString::fromStdString(shared_path("cases/quant/q4k_block.bin")));
    QCOMPARE(raw.size(), 144);
    const auto want = expected_values("q4k_block.bin");
    QCOMPARE(want.size(), size_t{256});
    // the 6-bit scales and mins as the case file lists them
    const auto obj =
        read_json(QString::fromStdString(shared_path("cases/quant/kquant_expected.json")))
            .object()
            .value("q4k_block.bin")
            .toObject();
    const auto* b = reinterpret_cast<const el::BlockQ4_K*>(raw.constData());
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      el::k4_scale_min(j, b->scales, &sc, &m);
      QCOMPARE(int(sc), obj.value("scales6").toArray().at(j).toInt());
      QCOMPARE(int(m), obj.value("mins6").toArray().at(j).toInt());
    }
    for (Simd s : levels()) {
      const auto got = dequant(TensorType::Q4_K, raw.constData(), 256, s);
      QVERIFY2(mismatches(got, want) == 0, kernels::simd_name(s));
    }
    const auto got = dequant(TensorType::Q4_K, raw.constData(), 256);
    QCOMPARE(got[0], 0.0f);
    QCOMPARE(got[255], -31.5f);
    QCOMPARE(got[128], -8.5f);
    QCOMPARE(got[200], 440.0f);
    // broken on purpose: the wrong scale-bit unpacking must fail the same comparison
    std::vector<float> bad(256);
    wrong_q4k(reinterpret_cast<const uint8_t*>(raw.constData()), bad.data(), 256);
    const int wrong = mismatches(bad, want);
    qInfo("Q4_K with sub-blocks 4-7 using the low scale bits: %d of 256 values wrong", wrong);
    QVERIFY(wrong >= 64);
  }

  void q6kBlockExpected() {
    MOELAB_REQUIRE_SHARED("cases/quant/q6k_block.bin");
    const QByteArray raw =
        read_all(QString::fromStdString(shared_path("cases/quant/q6k_block.bin")));
    QCOMPARE(raw.size(), 210);
    const auto want = expected_values("q6k_block.bin");
    const auto obj =
        read_json(QString::fromStdString(shared_path("cases/quant/kquant_expected.json")))
            .object()
            .value("q6k_block.bin")
            .toObject();
    const auto* b = reinterpret_cast<const el::BlockQ6_K*>(raw.constData());
    for (int j = 0; j < 16; ++j)
      QCOMPARE(int(b->scales[j]), obj.value("scales").toArray().at(j).toInt());
    QCOMPARE(el::f16_to_f32(b->d), 0.25f);
    for (Simd s : levels()) {
      const auto got = dequant(TensorType::Q6_K, raw.constData(), 256, s);
      QVERIFY2(mismatches(got, want) == 0, kernels::simd_name(s));
    }
    const auto got = dequant(TensorType::Q6_K, raw.constData(), 256);
    QCOMPARE(got[0], -128.0f);
    QCOMPARE(got[255], -50.0f);
    std::vector<float> bad(256);
    wrong_q6k(reinterpret_cast<const uint8_t*>(raw.constData()), bad.data(), 256);
    const int wrong = mismatches(bad, want);
    qInfo("Q6_K with unsigned scales: %d of 256 values wrong", wrong);
    QVERIFY(wrong >= 64);
  }

  void kquantGgufCases() {
    MOELAB_REQUIRE_SHARED("cases/quant/q4k_ok_256.gguf");
    for (const char* name : {"q4k_ok_256.gguf", "q6k_ok_256.gguf", "q4k_2rows.gguf"}) {
      const auto f = gguf::File::open(shared_path(QString("cases/quant/") + name));
      QVERIFY(!f->tensors().empty());
      for (const auto& t : f->tensors()) {
        const auto type = static_cast<TensorType>(t.type);
        QVERIFY2(kernels::supports(type), name);
        QCOMPARE(kernels::row_bytes(type, t.ne[0]) * t.n_rows(), t.nbytes);
        std::vector<float> v(t.n_elements());
        for (int64_t r = 0; r < t.n_rows(); ++r)
          kernels::dequantize_row(type, t.data + r * t.row_bytes(), v.data() + r * t.ne[0],
                                  t.ne[0]);
        for (float x : v) QVERIFY2(std::isfinite(x), name);
        // a file holding the reference block must decode to the reference values
        const char* bin = type == TensorType::Q4_K ? "q4k_block.bin" : "q6k_block.bin";
        const QByteArray ref =
            read_all(QString::fromStdString(shared_path(QString("cases/quant/") + bin)));
        if (std::memcmp(t.data, ref.constData(), std::min<size_t>(ref.size(), t.nbytes)) == 0) {
          const auto want = expected_values(bin);
          QVERIFY(mismatches(std::vector<float>(v.begin(), v.begin() + 256), want) == 0);
          qInfo("%s: tensor '%s' holds %s and decodes to its expected values", name, t.name.c_str(),
                bin);
        }
        qInfo("%s: '%s' %s %s decoded, %lld values", name, t.name.c_str(),
              gguf::type_name(t.type).c_str(), t.shape_string().c_str(),
              static_cast<long long>(v.size()));
      }
    }
    // rows that are not a multiple of the block are refused (by the reader or the kernels)
    for (const char* name : {"q4k_row896_bad.gguf", "q8_0_row48_bad.gguf"}) {
      bool refused = false;
      try {
        const auto f = gguf::File::open(shared_path(QString("cases/quant/") + name));
        for (const auto& t : f->tensors())
          kernels::row_bytes(static_cast<TensorType>(t.type), t.ne[0]);
      } catch (const Error& e) {
        refused = true;
        qInfo("%s refused: %s", name, e.what());
      }
      QVERIFY2(refused, name);
    }
  }

  // Dequantize every quantized tensor of a fixture file and compare with the same tensor of the
  // model's F32 file: relative RMS error per ggml type within the format's bound, and the
  // deliberately broken decoders far outside it.
  void fixtureWeightsVsF32_data() {
    QTest::addColumn<QString>("folder");
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("variant");
    const QString m1 = "fixtures/models", m2 = "fixtures/models-0c1e570";
    for (const char* v : {"F16", "Q8_0", "Q4_0", "Q4_K_M", "Q6_K"})
      QTest::newRow(qPrintable(QString("llama-dense-k.") + v)) << m1 << "llama-dense-k" << v;
    for (const char* v : {"Q8_0", "Q4_0"})
      QTest::newRow(qPrintable(QString("llama-dense-spm.") + v)) << m1 << "llama-dense-spm" << v;
    for (const char* v : {"F16", "Q8_0", "Q4_0"})
      QTest::newRow(qPrintable(QString("mixtral-moe.") + v)) << m1 << "mixtral-moe" << v;
    QTest::newRow("stories260K.F16") << m1 << "stories260K"
                                     << "F16";
    for (const char* v : {"MXFP4_MOE", "Q8_0"})
      QTest::newRow(qPrintable(QString("gptoss-moe.") + v)) << m2 << "gptoss-moe" << v;
  }
  void fixtureWeightsVsF32() {
    QFETCH(QString, folder);
    QFETCH(QString, model);
    QFETCH(QString, variant);
    const QString dir = folder + "/" + model + "/" + model;
    MOELAB_REQUIRE_SHARED(dir + ".F32.gguf");
    MOELAB_REQUIRE_SHARED(dir + "." + variant + ".gguf");
    const auto ref = gguf::File::open(shared_path(dir + ".F32.gguf"));
    const auto q = gguf::File::open(shared_path(dir + "." + variant + ".gguf"));
    std::map<TensorType, Err> err, broken;
    for (const auto& t : q->tensors()) {
      const auto type = static_cast<TensorType>(t.type);
      if (type == TensorType::F32) continue;
      const auto* r = ref->find_tensor(t.name);
      QVERIFY2(r && r->n_elements() == t.n_elements(), t.name.c_str());
      const auto* rv = reinterpret_cast<const float*>(r->data);
      std::vector<float> v(t.n_elements());
      for (int64_t row = 0; row < t.n_rows(); ++row)
        kernels::dequantize_row(type, t.data + row * t.row_bytes(), v.data() + row * t.ne[0],
                                t.ne[0]);
      Err& e = err[type];
      for (int64_t i = 0; i < t.n_elements(); ++i) {
        e.se += double(v[i] - rv[i]) * (v[i] - rv[i]);
        e.sx += double(rv[i]) * rv[i];
      }
      ++e.tensors;
      void (*bad)(const uint8_t*, float*, int64_t) = nullptr;
      if (type == TensorType::Q4_K) bad = wrong_q4k;
      if (type == TensorType::Q6_K) bad = wrong_q6k;
      if (type == TensorType::Q4_0) bad = wrong_q4_0;
      if (type == TensorType::Q8_0) bad = wrong_q8_0;
      if (type == TensorType::MXFP4) bad = wrong_mxfp4_order;
      if (bad) {
        bad(t.data, v.data(), t.n_elements());
        Err& b = broken[type];
        for (int64_t i = 0; i < t.n_elements(); ++i) {
          b.se += double(v[i] - rv[i]) * (v[i] - rv[i]);
          b.sx += double(rv[i]) * rv[i];
        }
      }
    }
    QVERIFY(!err.empty());
    for (const auto& [type, e] : err) {
      const double bound = model == "stories260K" ? 3e-4 : rel_bound(type);
      qInfo("%s.%s: %-5s %lld tensors, relative RMS error %.5f (bound %.4f)%s", qPrintable(model),
            qPrintable(variant), gguf::type_name(uint32_t(type)).c_str(),
            static_cast<long long>(e.tensors), e.rel(), bound,
            broken.count(type)
                ? qPrintable(QString(", broken decoder %1").arg(broken.at(type).rel(), 0, 'f', 3))
                : "");
      QVERIFY2(e.rel() <= bound, gguf::type_name(uint32_t(type)).c_str());
      if (broken.count(type)) QVERIFY(broken.at(type).rel() > 3 * bound);
    }
  }

  // The MXFP4 expert tensors of gptoss-moe.MXFP4_MOE (llama-quantize from the F32 file, no
  // imatrix) against the F32 file, block by block, with the bounds the format gives
  // (OCP MX v1.0, 6.3; kernels/element/blocks.h): the E8M0 byte is floor(log2 amax) - 2 + 127,
  // so with s = 2^(e - 127) the block's amax / s lies in [4, 8); every element decodes to the
  // nearest of s * {0, .5, 1, 1.5, 2, 3, 4, 6} with its sign (saturating at 6 s), so its error
  // is at most half the E2M1 gap at |x| (s/4, s/2, s) or |x| - 6 s when saturated - at most
  // 2 s <= amax / 2 always. llama.cpp picks the nearest value in float arithmetic, so a
  // near-tie may go either way: the nearest check allows 2^-20 s. Both deliberately wrong
  // decoders (nibble order, full scale) must fail these checks.
  void mxfp4ExpertsVsF32() {
    const QString dir = "fixtures/models-0c1e570/gptoss-moe/gptoss-moe";
    MOELAB_REQUIRE_SHARED(dir + ".F32.gguf");
    MOELAB_REQUIRE_SHARED(dir + ".MXFP4_MOE.gguf");
    const auto ref = gguf::File::open(shared_path(dir + ".F32.gguf"));
    const auto q = gguf::File::open(shared_path(dir + ".MXFP4_MOE.gguf"));
    const double grid[8] = {0, .5, 1, 1.5, 2, 3, 4, 6};
    int tensors = 0;
    int64_t blocks = 0, elements = 0, saturated = 0;
    double se = 0, sx = 0, worst_rel_amax = 0;
    int64_t wrong_order_fail = 0, wrong_scale_fail = 0;
    for (const auto& t : q->tensors()) {
      if (static_cast<TensorType>(t.type) != TensorType::MXFP4) continue;
      ++tensors;
      QVERIFY2(t.name.find("_exps.weight") != std::string::npos, t.name.c_str());
      QCOMPARE(t.n_dims, 3);
      const auto* r = ref->find_tensor(t.name);
      QVERIFY2(r && static_cast<TensorType>(r->type) == TensorType::F32, t.name.c_str());
      QCOMPARE(r->n_elements(), t.n_elements());
      QCOMPARE(t.nbytes, uint64_t(t.n_elements() / 32 * 17));
      const auto* rv = reinterpret_cast<const float*>(r->data);
      std::vector<float> v(t.n_elements()), bo(t.n_elements()), bs(t.n_elements());
      for (Simd s : levels()) {  // every level decodes the file identically
        for (int64_t row = 0; row < t.n_rows(); ++row)
          kernels::dequantize_row(TensorType::MXFP4, t.data + row * t.row_bytes(),
                                  v.data() + row * t.ne[0], t.ne[0], s);
        if (s == Simd::Scalar) {
          bo = v;
          continue;
        }
        QVERIFY2(std::memcmp(v.data(), bo.data(), v.size() * 4) == 0, kernels::simd_name(s));
      }
      wrong_mxfp4_order(t.data, bo.data(), t.n_elements());
      wrong_mxfp4_scale(t.data, bs.data(), t.n_elements());
      const auto* b = reinterpret_cast<const el::BlockMXFP4*>(t.data);
      for (int64_t i = 0; i < t.n_elements() / 32; ++i, ++blocks) {
        double amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(double(rv[32 * i + j])));
        QVERIFY(amax > 0);
        const double s = std::ldexp(1.0, int(b[i].e) - 127);
        QVERIFY2(amax / s >= 4 && amax / s < 8, qPrintable(QString("%1 block %2: e %3, amax %4")
                                                               .arg(t.name.c_str())
                                                               .arg(i)
                                                               .arg(b[i].e)
                                                               .arg(amax)));
        bool order_ok = true, scale_ok = true;
        for (int j = 0; j < 32; ++j, ++elements) {
          const double x = rv[32 * i + j], a = std::fabs(x);
          double best = 1e300;
          for (double g : grid) best = std::min(best, std::fabs(g * s - a));
          const double err = std::fabs(double(v[32 * i + j]) - x);
          QVERIFY2(
              err <= best + 0x1p-20 * s,
              qPrintable(QString("%1 block %2 element %3: %4 decodes to %5, nearest is %6 away")
                             .arg(t.name.c_str())
                             .arg(i)
                             .arg(j)
                             .arg(x)
                             .arg(v[32 * i + j])
                             .arg(best)));
          QVERIFY(err <= 2 * s && err <= amax / 2);
          if (err > s) ++saturated;
          worst_rel_amax = std::max(worst_rel_amax, err / amax);
          se += err * err;
          sx += x * x;
          order_ok &= std::fabs(double(bo[32 * i + j]) - x) <= best + 0x1p-20 * s;
          scale_ok &= std::fabs(double(bs[32 * i + j]) - x) <= best + 0x1p-20 * s;
        }
        wrong_order_fail += !order_ok;
        wrong_scale_fail += !scale_ok;
      }
    }
    QCOMPARE(tensors, 12);  // ffn_{gate,up,down}_exps of the 4 layers (fixtures README)
    const double rel = std::sqrt(se / sx);
    qInfo(
        "gptoss-moe.MXFP4_MOE: %d expert tensors, %lld blocks: every element the nearest "
        "E2M1 value (%lld of %lld saturated), worst |err| = %.3f amax, relative RMS %.4f; "
        "wrong nibble order fails %lld blocks, full scale %lld",
        tensors, static_cast<long long>(blocks), static_cast<long long>(saturated),
        static_cast<long long>(elements), worst_rel_amax, rel,
        static_cast<long long>(wrong_order_fail), static_cast<long long>(wrong_scale_fail));
    QVERIFY(rel <= rel_bound(TensorType::MXFP4));
    QVERIFY(wrong_order_fail > blocks / 2);
    QVERIFY(wrong_scale_fail > blocks / 2);
  }
};

QTEST_APPLESS_MAIN(TestKernelsFixtures)
#include "test_kernels_fixtures.moc"
