// Ops and registry: the conventions of ../shared/cases (routing, attention) as tests, plus the
// architecture registry and the refusal of unsupported architectures.
#include <QJsonArray>
#include <QJsonObject>
#include <QtTest>
#include <algorithm>
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
std::vector<int32_t> ints(const QJsonValue& v) {
  std::vector<int32_t> out;
  for (const auto& x : v.toArray()) out.push_back(x.toInt());
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
    for (const char* a :
         {"llama", "qwen2moe", "olmoe", "gemma2", "qwen2", "qwen3", "qwen3moe", "gpt-oss"})
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
        // Sigmoid + selection-only bias, group-limited routing (DeepSeek-V3: deepseek2 files
        // with expert_gating_func 2), through the routing function both backends share.
        const auto logits = floats(c["logits"]);
        const auto bias = floats(c["e_score_correction_bias"]);
        const int n = static_cast<int>(logits.size()), k = c["k"].toInt();
        ops::element::RouteSpec r;
        r.sigmoid = true;
        r.renormalise = c["norm_topk_prob"].toBool(true);
        r.scale = static_cast<float>(c["routed_scaling_factor"].toDouble(0));
        r.n_group = c["n_group"].toInt(0);
        r.n_group_used = c["topk_group"].toInt(0);
        std::vector<float> probs(n), sel(n), weights(k), applied(k);
        std::vector<int32_t> ids(k), groups(std::max(1, r.n_group_used), -1);
        ops::element::route_token_gated(logits.data(), n, k, r, bias.data(), probs.data(),
                                        sel.data(), ids.data(), weights.data(), applied.data(),
                                        groups.data());
        const QJsonArray experts = c["experts"].toArray();
        for (int j = 0; j < k; ++j) QCOMPARE(ids[j], experts[j].toInt());
        if (c.contains("groups_kept")) {
          std::vector<int32_t> got(groups), want = ints(c["groups_kept"]);
          std::sort(got.begin(), got.end());
          std::sort(want.begin(), want.end());
          QCOMPARE(got, want);
        }
        if (c.contains("wrong_if_mask_is_zero")) QVERIFY(ids != ints(c["wrong_if_mask_is_zero"]));
        if (c.contains("wrong_if_no_bias")) QVERIFY(ids != ints(c["wrong_if_no_bias"]));
        for (const char* key : {"wrong_if_bias_in_weights", "wrong_if"})
          if (c.contains(key)) {
            const auto wrong = floats(c[key]);
            float d = 0;
            for (int j = 0; j < k; ++j) d = std::max(d, std::fabs(applied[j] - wrong[j]));
            QVERIFY2(d > 1e-3f, qPrintable(id));
          }
        if (c.contains("weights")) {
          const auto want = floats(c["weights"]);
          for (int j = 0; j < k; ++j)
            QVERIFY2(std::fabs(applied[j] - want[j]) < 1e-6f, qPrintable(id));
        }
        ++ran;
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

  // YaRN RoPE against the fixtures README formula ("Turn-2 architectures"), evaluated here in
  // double: theta_ext = p base^(-2i/n_rot), theta_int = theta_ext / factor, corr(b) = n_rot
  // ln(orig / (2 pi b)) / (2 ln base), low = max(0, floor(corr(32))), high = min(n_rot - 1,
  // ceil(corr(1))), mix = 1 - clamp((i - low) / max(0.001, high - low), 0, 1), theta =
  // theta_int (1 - mix) + theta_ext mix, cos / sin times m. gpt-oss: low 2, high 5,
  // m = 1 + 0.1 ln 32 = 1.346574.
  void rope_yarn_formula() {
    ops::RopeParams p;
    p.type = ops::RopeType::Neox;
    p.n_rot = 16;
    p.freq_base = 150000;
    p.freq_scale = 1.0f / 32;
    p.ext_factor = 1;
    p.n_ctx_orig = 4096;
    p.attn_factor = 1.0f + 0.1f * std::log(32.0f);
    QVERIFY(std::fabs(p.attn_factor - 1.346574f) < 1e-6f);
    float low = -1, high = -1;
    ops::rope_yarn_corr_dims(p, &low, &high);
    QCOMPARE(low, 2.0f);
    QCOMPARE(high, 5.0f);
    // deepseek2-lite (n_rot 8, base 1e4, x40): low 1, high 3; deepseek3-moe (n_rot 16): 2, 6.
    ops::RopeParams d = p;
    d.n_rot = 8;
    d.freq_base = 10000;
    ops::rope_yarn_corr_dims(d, &low, &high);
    QCOMPARE(low, 1.0f);
    QCOMPARE(high, 3.0f);
    d.n_rot = 16;
    ops::rope_yarn_corr_dims(d, &low, &high);
    QCOMPARE(low, 2.0f);
    QCOMPARE(high, 6.0f);
    // Without YaRN the ramp ends are (0, 0).
    ops::RopeParams plain;
    plain.n_rot = 16;
    ops::rope_yarn_corr_dims(plain, &low, &high);
    QCOMPARE(low, 0.0f);
    QCOMPARE(high, 0.0f);

    // Rotate unit vectors (1 in dim i, 0 in dim i + 8): NEOX gives (m cos theta_i, m sin theta_i).
    const double kPi = 3.14159265358979323846;
    const double corr_lo =
        std::max(0.0, std::floor(16 * std::log(4096 / (2 * kPi * 32)) / (2 * std::log(150000.0))));
    const double corr_hi =
        std::min(15.0, std::ceil(16 * std::log(4096 / (2 * kPi * 1)) / (2 * std::log(150000.0))));
    for (int32_t pos : {1, 9, 100, 4000}) {
      std::vector<float> x(16 * 8, 0.0f);
      for (int i = 0; i < 8; ++i) x[i * 16 + i] = 1.0f;  // head i: unit vector in dim i
      ops::rope(x.data(), 1, 8, 16, &pos, p);
      for (int i = 0; i < 8; ++i) {
        const double t_ext = pos * std::pow(150000.0, -2.0 * i / 16);
        const double t_int = t_ext / 32;
        const double mix =
            1 - std::clamp((i - corr_lo) / std::max(0.001, corr_hi - corr_lo), 0.0, 1.0);
        const double theta = t_int * (1 - mix) + t_ext * mix;
        const double m = 1 + 0.1 * std::log(32.0);
        // Float theta through an iterated power: a few ulps of theta (<= 4000 rad) in the angle.
        const double tol = 4e-6 * std::max(1.0, theta);
        QVERIFY2(std::fabs(x[i * 16 + i] - m * std::cos(theta)) < tol,
                 qPrintable(QString::number(i)));
        QVERIFY2(std::fabs(x[i * 16 + i + 8] - m * std::sin(theta)) < tol,
                 qPrintable(QString::number(i)));
      }
    }
    // ext_factor 0 is linear scaling exactly (same as freq_scale alone, magnitude 1).
    ops::RopeParams lin;
    lin.type = ops::RopeType::Neox;
    lin.n_rot = 16;
    lin.freq_base = 150000;
    lin.freq_scale = 1.0f / 32;
    ops::RopeParams lin2 = lin;
    lin2.n_ctx_orig = 4096;  // ignored without ext_factor
    auto a = std::vector<float>(16, 0.5f), b = a;
    const int32_t pos = 77;
    ops::rope(a.data(), 1, 1, 16, &pos, lin);
    ops::rope(b.data(), 1, 1, 16, &pos, lin2);
    QCOMPARE(a, b);
  }

  // rope_from_card reads rope.scaling.type "yarn": freq_scale 1/factor, the original context,
  // ggml's magnitude 1 + 0.1 ln(factor); a YaRN file without the original context is refused.
  void rope_from_card_yarn() {
    auto write = [](const QString& name, bool with_orig) {
      gguf::Writer w;
      w.set_string("general.architecture", "llama");
      w.set_u32("llama.block_count", 1);
      w.set_u32("llama.embedding_length", 32);
      w.set_u32("llama.attention.head_count", 2);
      w.set_f32("llama.rope.freq_base", 150000.0f);
      w.set_string("llama.rope.scaling.type", "yarn");
      w.set_f32("llama.rope.scaling.factor", 32.0f);
      if (with_orig) w.set_u32("llama.rope.scaling.original_context_length", 4096);
      w.set_array_string("tokenizer.ggml.tokens", {"a", "b"});
      std::vector<uint8_t> data(32 * 2 * 4, 0);
      w.add_tensor("token_embd.weight", gguf::TensorType::F32, {32, 2}, data);
      const std::string path = (test::temp_dir("test_model_ops") + "/" + name).toStdString();
      w.write(path);
      return gguf::File::open(path);
    };
    {
      auto f = write("yarn.gguf", true);
      const ModelCard card = make_model_card(*f);
      const ops::RopeParams p = models::rope_from_card(*f, card, ops::RopeType::Neox);
      QCOMPARE(p.freq_scale, 1.0f / 32);
      QCOMPARE(p.ext_factor, 1.0f);
      QCOMPARE(p.n_ctx_orig, 4096);
      QCOMPARE(p.beta_fast, 32.0f);
      QCOMPARE(p.beta_slow, 1.0f);
      QVERIFY(std::fabs(p.attn_factor - 1.346574f) < 1e-6f);
      QCOMPARE(p.n_rot, 16);
    }
    {
      auto f = write("yarn_no_orig.gguf", false);
      const ModelCard card = make_model_card(*f);
      try {
        models::rope_from_card(*f, card, ops::RopeType::Neox);
        QFAIL("YaRN without original_context_length was accepted");
      } catch (const Error& e) {
        QCOMPARE(e.kind(), ErrorKind::BadInput);
        const std::string m = e.what();
        QVERIFY2(m.find("llama.rope.scaling.original_context_length") != std::string::npos,
                 m.c_str());
      }
    }
  }

  // deepseek2 files the engine cannot run are refused at load with the metadata key named:
  // expert groups that do not divide the experts, too few kept groups for top-k, and a
  // conversion without the absorbed-MLA keys (key_length_mla / value_length_mla).
  void deepseek2_bad_metadata_is_refused() {
    const QString rel = "fixtures/models-0c1e570/deepseek3-moe/deepseek3-moe.F32.gguf";
    MOELAB_REQUIRE_SHARED(rel);
    auto src = gguf::File::open(test::shared_path(rel));
    struct Case {
      const char* name;
      const char* key;  // overridden (u32) or, with value < 0, dropped
      int64_t value;
      const char* expect;
    } cases[] = {
        {"groups3", "deepseek2.expert_group_count", 3, "deepseek2.expert_group_count"},
        {"used1", "deepseek2.expert_group_used_count", 0, "deepseek2.expert_group_used_count"},
        {"nomla", "deepseek2.attention.key_length_mla", -1, "deepseek2.attention.key_length_mla"},
    };
    for (const Case& c : cases) {
      gguf::Writer w;
      for (const auto& v : src->metadata()) {
        if (v.key() == c.key) {
          if (c.value >= 0) w.set_u32(c.key, static_cast<uint32_t>(c.value));
          continue;
        }
        if (v.key() == "general.alignment") continue;
        w.copy_value(v.key(), v);
      }
      for (const auto& t : src->tensors())
        w.add_tensor(t.name, static_cast<gguf::TensorType>(t.type),
                     std::vector<int64_t>(t.ne, t.ne + t.n_dims), {t.data, t.nbytes});
      const std::string path =
          (test::temp_dir("test_model_ops") + "/ds_" + c.name + ".gguf").toStdString();
      w.write(path);
      try {
        Model::load(path);
        QFAIL(qPrintable(QString("accepted: ") + c.name));
      } catch (const Error& e) {
        QCOMPARE(e.kind(), ErrorKind::BadInput);
        const std::string m = e.what();
        QVERIFY2(m.find(c.expect) != std::string::npos, m.c_str());
      }
    }
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

  // Attention sinks (gpt-oss, fixtures README): p_j = exp(s_j - M) / (sum_k exp(s_k - M) +
  // exp(sink - M)), M = max(max_k s_k, sink), per head; checked against that formula in double
  // with one head's sink below every score and one far above it. A sink changes nothing but the
  // denominator: out = sum_j p_j v_j with the smaller p_j.
  void attention_sinks() {
    const int hd = 2, n_kv = 4;
    std::vector<float> k(n_kv * hd), v(n_kv * hd);
    for (int i = 0; i < n_kv; ++i) {
      k[i * hd] = 0.5f * static_cast<float>(i);
      k[i * hd + 1] = 0;
      v[i * hd] = 1;
      v[i * hd + 1] = static_cast<float>(i);
    }
    const std::vector<float> q = {1, 0, 1, 0};  // one token, 2 heads, 1 KV head
    const std::vector<float> sinks = {-5.0f, 9.0f};
    const int32_t pos = 3;
    ops::AttentionParams p;
    p.n_head = 2;
    p.n_head_kv = 1;
    p.head_dim = p.head_dim_v = hd;
    p.scale = 1.0f;
    p.sinks = sinks.data();
    std::vector<float> out(2 * hd), probs(2 * n_kv);
    ops::attention(q.data(), &pos, 1, ops::KvLayer{k.data(), v.data(), false}, n_kv, p, out.data(),
                   probs.data(), nullptr);
    for (int h = 0; h < 2; ++h) {
      double m = sinks[h], z = 0;
      for (int i = 0; i < n_kv; ++i) m = std::max(m, 0.5 * i);
      for (int i = 0; i < n_kv; ++i) z += std::exp(0.5 * i - m);
      z += std::exp(sinks[h] - m);
      double sum = 0, o1 = 0;
      for (int i = 0; i < n_kv; ++i) {
        const double want = std::exp(0.5 * i - m) / z;
        QVERIFY2(std::fabs(probs[h * n_kv + i] - want) < 1e-6, qPrintable(QString::number(h)));
        sum += want;
        o1 += want * i;
      }
      QVERIFY(sum < 1.0);
      QVERIFY(std::fabs(out[h * hd] - sum) < 1e-6);  // v[0] = 1 everywhere: out = row sum
      QVERIFY(std::fabs(out[h * hd + 1] - o1) < 1e-6);
    }
    QVERIFY(probs[0] + probs[1] + probs[2] + probs[3] > 0.99);  // sink -5: almost no share
    QVERIFY(probs[4] + probs[5] + probs[6] + probs[7] < 0.01);  // sink 9 takes almost all
    // No sinks: rows sum to 1 again.
    p.sinks = nullptr;
    ops::attention(q.data(), &pos, 1, ops::KvLayer{k.data(), v.data(), false}, n_kv, p, out.data(),
                   probs.data(), nullptr);
    QVERIFY(std::fabs(probs[4] + probs[5] + probs[6] + probs[7] - 1.0f) < 1e-6f);
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
