// Ops and registry: the conventions of ../shared/cases (routing, attention) as tests, plus the
// architecture registry and the refusal of unsupported architectures.
#include <QJsonArray>
#include <QJsonObject>
#include <QtTest>
#include <cmath>

#include "models/arch.h"
#include "moelab/core/error.h"
#include "moelab/gguf/writer.h"
#include "moelab/model/card.h"
#include "moelab/model/model.h"
#include "moelab/ops/ops.h"
#include "ops/element/element.h"
#include "test_support.h"

using namespace moelab;

namespace {
std::vector<float> floats(const QJsonValue& v) {
  std::vector<float> out;
  for (const auto& x : v.toArray()) out.push_back(static_cast<float>(x.toDouble()));
  return out;
}
}  // namespace

class TestModelOps : public QObject {
  Q_OBJECT
 private slots:
  void registry_matches_supported_architectures() {
    std::vector<std::string> reg;
    for (const auto& a : models::architectures()) reg.emplace_back(a.name);
    QCOMPARE(reg, supported_architectures());
    for (const char* a : {"llama", "qwen2moe", "olmoe", "gemma2", "qwen2", "qwen3", "qwen3moe"})
      QVERIFY2(models::find_architecture(a), a);
  }

  void unsupported_architecture_is_refused_with_the_list() {
    gguf::Writer w;
    w.set_string("general.architecture", "gpt2");
    w.set_u32("gpt2.block_count", 1);
    w.set_u32("gpt2.embedding_length", 32);
    w.set_u32("gpt2.attention.head_count", 1);
    w.set_array_string("tokenizer.ggml.tokens", {"a", "b"});
    std::vector<uint8_t> data(32 * 2 * 4, 0);
    w.add_tensor("token_embd.weight", gguf::TensorType::F32, {32, 2}, data);
    const QString dir = test::temp_dir("test_model_ops");
    const std::string path = (dir + "/gpt2.gguf").toStdString();
    w.write(path);
    try {
      Model::load(path);
      QFAIL("a gpt2 file was accepted");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::BadInput);
      const std::string m = e.what();
      QVERIFY2(m.find("'gpt2'") != std::string::npos, m.c_str());
      for (const auto& a : supported_architectures())
        QVERIFY2(m.find(a) != std::string::npos, m.c_str());
    }
  }

  // ---- cases/routing/moe_routing_cases.json ------------------------------------------------
  void routing_cases() {
    MOELAB_REQUIRE_SHARED("cases/routing/moe_routing_cases.json");
    const QJsonArray cases =
        test::read_json(test::shared_dir() + "/cases/routing/moe_routing_cases.json").array();
    QVERIFY(!cases.isEmpty());
    int ran = 0;
    for (const auto& cv : cases) {
      const QJsonObject c = cv.toObject();
      const QString id = c["id"].toString();
      if (c.contains("e_score_correction_bias") || c.contains("n_group")) {
        // Sigmoid / group-limited routing (DeepSeek-V3): no supported architecture uses it.
        continue;
      }
      if (id == "qwen2moe_shared_expert_gate") {
        const float g =
            ops::element::sigmoid(static_cast<float>(c["shared_gate_logit"].toDouble()));
        const auto out = floats(c["shared_expert_out"]);
        const auto want = floats(c["shared_contribution"]);
        const auto wrong = floats(c["wrong_if_gate_ignored"]);
        for (size_t i = 0; i < out.size(); ++i) {
          QVERIFY(std::fabs(g * out[i] - want[i]) < 1e-6f);
          QVERIFY(std::fabs(g * out[i] - wrong[i]) > 1e-3f);
        }
        ++ran;
        continue;
      }
      const auto logits = floats(c["logits"]);
      const int n = static_cast<int>(logits.size()), k = c["k"].toInt();
      // Mixtral renormalises; the Qwen2-MoE / OLMoE cases and the "raw logits" case do not.
      const bool renorm = id.startsWith("mixtral") || id == "top_k_1_renorm";
      std::vector<float> probs(n), weights(k), applied(k);
      std::vector<int32_t> ids(k);
      ops::route_top_k(logits.data(), n, k, renorm, probs.data(), ids.data(), weights.data(),
                       applied.data());
      const QJsonArray experts = c["experts"].toArray();
      for (int j = 0; j < k; ++j) QCOMPARE(ids[j], experts[j].toInt());
      if (c.contains("weights")) {
        const auto want = floats(c["weights"]);
        for (int j = 0; j < k; ++j)
          QVERIFY2(std::fabs(applied[j] - want[j]) < 1e-6f, qPrintable(id));
      }
      if (c.contains("wrong_if")) {
        const auto wrong = floats(c["wrong_if"]);
        float d = 0;
        for (int j = 0; j < k; ++j) d = std::max(d, std::fabs(applied[j] - wrong[j]));
        QVERIFY2(d > 1e-3f, qPrintable(id));
      }
      ++ran;
    }
    QVERIFY(ran >= 6);
  }

  // ---- cases/attention/attention_cases.json ------------------------------------------------
  void rope_reference_vectors() {
    MOELAB_REQUIRE_SHARED("cases/attention/attention_cases.json");
    const QJsonObject r =
        test::read_json(test::shared_dir() + "/cases/attention/attention_cases.json")
            .object()["rope"]
            .toObject();
    const auto x = floats(r["x"]);
    const int hd = r["head_dim"].toInt();
    const int32_t pos = r["pos"].toInt();
    struct V {
      const char* key;
      ops::RopeType type;
      float base;
    } variants[] = {{"norm_base1e4", ops::RopeType::Norm, 1e4f},
                    {"neox_base1e4", ops::RopeType::Neox, 1e4f},
                    {"norm_base1e6", ops::RopeType::Norm, 1e6f}};
    for (const auto& v : variants) {
      std::vector<float> y = x;
      ops::RopeParams p{v.type, hd, v.base, 1.0f};
      ops::rope(y.data(), 1, 1, hd, &pos, p);
      const auto want = floats(r[v.key]);
      for (int i = 0; i < hd; ++i) QVERIFY2(std::fabs(y[i] - want[i]) < 1e-5f, v.key);
    }
    // NORM and NEOX differ, and position 0 is the identity.
    for (auto type : {ops::RopeType::Norm, ops::RopeType::Neox}) {
      std::vector<float> y = x;
      const int32_t p0 = 0;
      ops::rope(y.data(), 1, 1, hd, &p0, ops::RopeParams{type, hd, 1e4f, 1.0f});
      QCOMPARE(y, x);
    }
    // Partial rotary dimensions: dims >= n_rot pass through.
    std::vector<float> y = x;
    ops::rope(y.data(), 1, 1, hd, &pos, ops::RopeParams{ops::RopeType::Neox, 4, 1e4f, 1.0f});
    for (int i = 4; i < hd; ++i) QCOMPARE(y[i], x[i]);
    QVERIFY(y[0] != x[0]);
  }

  void sliding_window_and_gqa() {
    MOELAB_REQUIRE_SHARED("cases/attention/attention_cases.json");
    const QJsonObject all =
        test::read_json(test::shared_dir() + "/cases/attention/attention_cases.json").object();
    const QJsonObject sw = all["sliding_window"].toObject();
    const uint32_t window = static_cast<uint32_t>(sw["window"].toInt());
    const int seq = sw["seq"].toInt();
    const QJsonArray counts = sw["keys_per_query"].toArray();
    const QJsonArray mask = sw["mask"].toArray();
    for (int q = 0; q < seq; ++q) {
      int n = 0;
      for (int k = 0; k < seq; ++k) {
        const bool vis = ops::key_visible(q, k, window);
        QCOMPARE(vis ? 1 : 0, mask[q].toArray()[k].toInt());
        n += vis;
      }
      QCOMPARE(n, counts[q].toInt());
    }
    const QJsonObject g = all["gqa"].toObject();
    const int nh = g["n_head"].toInt(), nkv = g["n_head_kv"].toInt();
    const QJsonArray map = g["kv_head_for_q_head"].toArray();
    for (int h = 0; h < nh; ++h) QCOMPARE(ops::kv_head_for(h, nh, nkv), map[h].toInt());
  }

  // Attention over a hand-made cache: GQA reads the right KV head, the window and causality
  // mask keys, soft-capping bounds the scores.
  void attention_masks_and_heads() {
    const int hd = 2, n_kv_cells = 6;
    // 2 query heads, 1 KV head; keys are (i, 0) so scores grow with the position.
    std::vector<float> k(n_kv_cells * hd), v(n_kv_cells * hd);
    for (int i = 0; i < n_kv_cells; ++i) {
      k[i * hd] = static_cast<float>(i);
      k[i * hd + 1] = 0;
      v[i * hd] = static_cast<float>(i);
      v[i * hd + 1] = 1;
    }
    std::vector<float> q = {1, 0, 1, 0};  // one token, 2 heads
    const int32_t pos = 5;
    ops::AttentionParams p;
    p.n_head = 2;
    p.n_head_kv = 1;
    p.head_dim = hd;
    p.head_dim_v = hd;
    p.scale = 1.0f;
    p.window = 3;
    std::vector<float> out(2 * hd), probs(2 * n_kv_cells);
    ops::attention(q.data(), &pos, 1, ops::KvLayer{k.data(), v.data(), false}, n_kv_cells, p,
                   out.data(), probs.data(), nullptr);
    for (int i = 0; i < 3; ++i) QCOMPARE(probs[i], 0.0f);  // outside the window of 3
    double sum = 0;
    for (int i = 3; i < 6; ++i) sum += probs[i];
    QVERIFY(std::fabs(sum - 1.0) < 1e-6);
    QCOMPARE(out[1], 1.0f);
    QCOMPARE(out[0], out[2]);  // both heads read the same KV head
    // Soft-capping at 1 squeezes scores into (-1, 1): the distribution gets flatter.
    p.softcap = 1.0f;
    std::vector<float> probs2(2 * n_kv_cells);
    ops::attention(q.data(), &pos, 1, ops::KvLayer{k.data(), v.data(), false}, n_kv_cells, p,
                   out.data(), probs2.data(), nullptr);
    QVERIFY(probs2[5] < probs[5]);
  }

  void element_functions() {
    namespace el = ops::element;
    // ggml's table GELU: input and output rounded to binary16, clamped outside (-10, 10).
    QCOMPARE(el::gelu_ggml(-11.0f), 0.0f);
    QCOMPARE(el::gelu_ggml(12.5f), 12.5f);
    QVERIFY(std::fabs(el::gelu_ggml(1.0f) - 0.8411920f) < 1e-3f);
    QCOMPARE(el::gelu_ggml(1.0f), el::round_f16(el::gelu_ggml(1.0f)));
    QVERIFY(std::fabs(el::silu(1.0f) - 0.7310586f) < 1e-6f);
    QVERIFY(std::fabs(el::softcap(100.0f, 30.0f) - 30.0f * std::tanh(100.0f / 30.0f)) < 1e-5f);
    float row[4] = {1, 2, -INFINITY, 3};
    el::softmax_row(row, 4);
    QCOMPARE(row[2], 0.0f);
    QVERIFY(std::fabs(row[0] + row[1] + row[3] - 1.0f) < 1e-6f);
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 1}, y[4];
    el::rms_norm_row(x, w, y, 4, 1e-5f);
    const float s = 1.0f / std::sqrt(7.5f + 1e-5f);
    QVERIFY(std::fabs(y[2] - 3 * s * 2) < 1e-6f);
  }
};

QTEST_GUILESS_MAIN(TestModelOps)
#include "test_model_ops.moc"
