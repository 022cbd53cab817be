// Element math shared by the CPU reference and the CUDA kernels (MOELAB_HD functions in
// engine/ops/element/element.h added for the CUDA backend), checked on the CPU: the device
// runs this very code per element, so these tests cover its arithmetic without a GPU.
// Also: the backend selection paths that need no device (Model::load / Context::create with
// "cpu", "auto", "cuda" and unknown names) - on a machine without a usable GPU.
#include <QtTest>
#include <cmath>
#include <random>
#include <vector>

#include "moelab/core/backends.h"
#include "moelab/core/error.h"
#include "moelab/model/model.h"
#include "moelab/ops/ops.h"
#include "moelab/runtime/synthetic_model.h"
#include "ops/element/element.h"
#include "test_support.h"

using namespace moelab;
namespace el = moelab::ops::element;

class TestCudaElement : public QObject {
  Q_OBJECT
 private slots:
  // el::route_token is the routing of ops::route_top_k (which now calls it): softmax over the
  // experts, top-k in descending order with ties to the lower id, renormalised or not.
  void route_token_values() {
    const float logits[6] = {0.5f, 2.0f, 2.0f, -1.0f, 2.0f, 0.0f};
    float probs[6], w[3], ap[3];
    int32_t ids[3];
    el::route_token(logits, 6, 3, true, probs, ids, w, ap);
    QCOMPARE(ids[0], 1);
    QCOMPARE(ids[1], 2);
    QCOMPARE(ids[2], 4);
    double sum = 0, z = 0;
    for (float l : logits) z += std::exp(static_cast<double>(l) - 2.0);
    for (int e = 0; e < 6; ++e) {
      QVERIFY(std::fabs(probs[e] - std::exp(static_cast<double>(logits[e]) - 2.0) / z) < 1e-7);
      sum += probs[e];
    }
    QVERIFY(std::fabs(sum - 1.0) < 1e-6);
    for (int j = 0; j < 3; ++j) {
      QCOMPARE(w[j], probs[ids[j]]);
      QVERIFY(std::fabs(ap[j] - 1.0f / 3.0f) < 1e-7);  // three equal weights renormalised
    }
    el::route_token(logits, 6, 2, false, probs, ids, w, ap);
    QCOMPARE(ap[0], w[0]);
    QCOMPARE(ap[1], w[1]);
  }

  void route_token_is_route_top_k() {
    std::mt19937 rng(5);
    std::normal_distribution<float> d(0.0f, 3.0f);
    for (int trial = 0; trial < 200; ++trial) {
      const int n = 2 + trial % 63, k = 1 + trial % std::min(n, 8);
      std::vector<float> logits(n);
      for (auto& x : logits) x = d(rng);
      if (trial % 3 == 0) logits[n - 1] = logits[0];  // a tie
      std::vector<float> p1(n), p2(n), w1(k), w2(k), a1(k), a2(k);
      std::vector<int32_t> i1(k), i2(k);
      const bool renorm = trial % 2 == 0;
      ops::route_top_k(logits.data(), n, k, renorm, p1.data(), i1.data(), w1.data(), a1.data());
      el::route_token(logits.data(), n, k, renorm, p2.data(), i2.data(), w2.data(), a2.data());
      QCOMPARE(i1, i2);
      QCOMPARE(p1, p2);
      QCOMPARE(a1, a2);
      for (int j = 1; j < k; ++j) QVERIFY(p1[i1[j - 1]] >= p1[i1[j]]);
    }
  }

  void key_visible_is_ops_key_visible() {
    for (int64_t q = 0; q < 40; ++q)
      for (int64_t k = 0; k < 45; ++k)
        for (uint32_t w : {0u, 1u, 4u, 8u, 4096u})
          QCOMPARE(el::key_visible(q, k, w), ops::key_visible(q, k, w));
    QVERIFY(el::key_visible(10, 10, 1));  // a window of 1 sees only itself
    QVERIFY(!el::key_visible(10, 9, 1));
    QVERIFY(el::key_visible(10, 3, 8));  // 10 - 3 = 7 < 8
    QVERIFY(!el::key_visible(10, 2, 8));
    QVERIFY(!el::key_visible(3, 4, 0));  // causal
  }

  // Backend names are parsed in one place (parse_backend): the three names round-trip, anything
  // else is refused naming the input and the choices.
  void backend_names_parse_once() {
    QCOMPARE(backend_names(), (std::vector<std::string>{"cpu", "cuda", "auto"}));
    for (const auto& n : backend_names()) QCOMPARE(backend_name(parse_backend(n)), n);
    QCOMPARE(parse_backend("cuda"), Backend::Cuda);
    try {
      parse_backend("CPU");
      QFAIL("parse_backend accepted 'CPU'");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::BadInput);
      QCOMPARE(std::string(e.detail()),
               std::string("unknown backend 'CPU' (expected cpu, cuda or auto)"));
    }
    QCOMPARE(resolve_backend(Backend::Cpu), Backend::Cpu);
  }

  // Backend selection without a device: "auto" falls back to the CPU, "cuda" is refused for a
  // CPU model at context creation, unknown names are refused with the list.
  void backend_selection_without_device() {
    bool cuda_available = false;
    for (const auto& b : probe_backends())
      if (b.name == "cuda") cuda_available = b.available;
    if (cuda_available) QSKIP("a CUDA device is present: covered by test_cuda_parity");
    QCOMPARE(resolve_backend("auto"), std::string("cpu"));
    QCOMPARE(resolve_backend("cuda"), std::string("cpu"));
    const QString dir = test::temp_dir("cuda_element");
    const std::string path = (dir + "/tiny.gguf").toStdString();
    SyntheticModelSpec spec;
    spec.arch = "mixtral";
    spec.n_layer = 1;
    spec.expert_count = 4;
    spec.n_vocab = 64;
    write_synthetic_model(spec, path);
    LoadOptions lo;
    lo.backend = Backend::Auto;
    auto model = Model::load(path, lo);
    QCOMPARE(model_backend(*model), std::string("cpu"));
    lo.backend = Backend::Cuda;
    QCOMPARE(model_backend(*Model::load(path, lo)), std::string("cpu"));
    QVERIFY_THROWS_EXCEPTION(Error, parse_backend("tpu"));
    ContextParams cp;
    cp.backend = Backend::Auto;
    auto ctx = Context::create(model, cp);
    const std::vector<int32_t> toks = {1, 2, 3};
    ctx->eval(toks);
    cp.backend = Backend::Cpu;
    auto ref = Context::create(model, cp);
    ref->eval(toks);
    QCOMPARE(std::vector<float>(ctx->logits().begin(), ctx->logits().end()),
             std::vector<float>(ref->logits().begin(), ref->logits().end()));
    cp.backend = Backend::Cuda;
    QVERIFY_THROWS_EXCEPTION(Error, Context::create(model, cp));
    QVERIFY_THROWS_EXCEPTION(Error, parse_backend("vulkan"));
  }
};

QTEST_GUILESS_MAIN(TestCudaElement)
#include "test_cuda_element.moc"
