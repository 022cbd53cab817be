// `moelab-cli inspect --json` on every fixture model agrees with ../shared/fixtures/README.md
// and summary.json (architecture, widths, experts, vocab, tensor types, size, sha256), and the
// CLI's exit codes and messages follow the contract.
#include <QFile>
#include <QJsonArray>
#include <QJsonObject>
#include <QtTest>
#include <algorithm>
#include <cstring>
#include <sstream>

#include "cli.h"
#include "moelab/gguf/gguf.h"
#include "moelab/gguf/writer.h"
#include "moelab/model/card.h"
#include "test_support.h"

using namespace moelab;

namespace {
struct CliResult {
  int rc;
  std::string out, err;
};
CliResult run_cli(std::vector<std::string> args) {
  std::ostringstream out, err;
  args.insert(args.begin(), "moelab-cli");
  const int rc = cli::run(args, {out, err});
  return {rc, out.str(), err.str()};
}

// Hyper-parameters from the table in fixtures/README.md.
struct Expected {
  const char* model;
  const char* arch;
  int n_vocab, n_embd, n_head, n_head_kv, n_layer, n_ff, expert_count, expert_used, sliding;
};
const Expected kExpected[] = {
    {"stories260K", "llama", 512, 64, 8, 4, 5, 172, 0, 0, 0},
    {"llama-dense-spm", "llama", 32000, 64, 4, 2, 2, 128, 0, 0, 0},
    {"llama-dense-k", "llama", 512, 256, 4, 2, 2, 512, 0, 0, 0},
    {"mixtral-moe", "llama", 512, 64, 4, 2, 2, 128, 8, 2, 0},
    {"mixtral-moe-k", "llama", 512, 256, 4, 2, 2, 256, 8, 2, 0},
    {"qwen2moe", "qwen2moe", 512, 64, 4, 2, 2, 64, 8, 4, 0},
    {"olmoe", "olmoe", 512, 64, 4, 4, 2, 64, 16, 4, 0},
    {"gemma2-swa", "gemma2", 512, 64, 4, 2, 26, 64, 0, 0, 8},
};
}  // namespace

class TestModelCard : public QObject {
  Q_OBJECT
 private slots:
  void fixtureCards_data() {
    QTest::addColumn<QString>("key");
    if (!moelab::test::have_shared("fixtures/summary.json")) {
      QTest::newRow("absent") << QString();
      return;
    }
    const auto files =
        moelab::test::read_json(moelab::test::shared_dir() + "/fixtures/summary.json")
            .object()["files"]
            .toObject();
    for (auto it = files.begin(); it != files.end(); ++it)
      if (it.value().toObject()["shipped"].toBool())
        QTest::newRow(qPrintable(it.key())) << it.key();
  }
  void fixtureCards() {
    MOELAB_REQUIRE_SHARED("fixtures/summary.json");
    QFETCH(QString, key);
    const auto s = moelab::test::read_json(moelab::test::shared_dir() + "/fixtures/summary.json")
                       .object()["files"]
                       .toObject()[key]
                       .toObject();
    const std::string path = moelab::test::shared_path("fixtures/" + s["path"].toString());
    const auto r = run_cli({"inspect", "--json", path});
    QVERIFY2(r.rc == 0, r.err.c_str());
    const auto j = QJsonDocument::fromJson(QByteArray::fromStdString(r.out)).object();
    QVERIFY(!j.isEmpty());

    const Expected* e = nullptr;
    for (const auto& x : kExpected)
      if (s["model"].toString() == x.model) e = &x;
    QVERIFY2(e, "model missing from the expectation table");
    QCOMPARE(j["architecture"].toString(), QString(e->arch));
    QCOMPARE(j["n_layer"].toInt(), e->n_layer);
    QCOMPARE(j["n_embd"].toInt(), e->n_embd);
    QCOMPARE(j["n_head"].toInt(), e->n_head);
    QCOMPARE(j["n_head_kv"].toInt(), e->n_head_kv);
    QCOMPARE(j["n_vocab"].toInt(), e->n_vocab);
    QCOMPARE(j["expert_count"].toInt(), e->expert_count);
    QCOMPARE(j["expert_used_count"].toInt(), e->expert_used);
    QCOMPARE(j["sliding_window"].toInt(), e->sliding);
    const int ff = j["n_ff_exp"].toInt() ? j["n_ff_exp"].toInt() : j["n_ff"].toInt();
    QCOMPARE(ff, e->n_ff);
    if (QString(e->model) == "qwen2moe") {
      QCOMPARE(j["expert_shared_count"].toInt(), 1);
      QCOMPARE(j["n_ff_shexp"].toInt(), 128);
    }
    QCOMPARE(j["tensor_types"].toObject().toVariantMap(),
             s["tensor_type_counts"].toObject().toVariantMap());
    QCOMPARE(j["file_size"].toInteger(), s["size_bytes"].toInteger());
    QCOMPARE(j["sha256"].toString(), s["sha256"].toString());
    QVERIFY2(j["runnable"].toBool(), qPrintable(QJsonDocument(j["problems"].toArray()).toJson()));
    QCOMPARE(j["context_length"].toInt(), s["model"].toString() == "stories260K" ? 2048 : 512);

    // Parameters: total = all elements; active = total minus the experts not chosen, computed
    // here independently from the tensor directory.
    auto f = gguf::File::open(path);
    int64_t total = 0, inactive = 0;
    for (const auto& t : f->tensors()) {
      total += t.n_elements();
      if (QString::fromStdString(t.name).endsWith("_exps.weight"))
        inactive += t.n_elements() / e->expert_count * (e->expert_count - e->expert_used);
    }
    QCOMPARE(j["params_total"].toInteger(), total);
    QCOMPARE(j["params_active"].toInteger(), total - inactive);
    if (e->expert_count) QVERIFY(inactive > 0);
  }

  void memoryEstimate() {
    MOELAB_REQUIRE_SHARED("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");
    auto f = gguf::File::open(
        moelab::test::shared_path("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf"));
    const ModelCard c = make_model_card(*f);
    // 2 layers × 2 KV heads × (16 + 16) dims × 512 tokens × 2 bytes.
    QCOMPARE(c.kv_cache_bytes(512, 2), uint64_t(2 * 2 * 32 * 512 * 2));
    QCOMPARE(c.memory_estimate(512, 4), c.weight_bytes + uint64_t(2 * 2 * 32 * 512 * 4));
    QCOMPARE(c.rope_type, std::string("norm"));
    QVERIFY(c.problems.empty());
    // Crafted sizes saturate instead of wrapping to a small number.
    ModelCard huge = c;
    huge.n_head_kv = huge.head_dim = huge.head_dim_v = huge.n_layer = UINT32_MAX;
    QCOMPARE(huge.kv_cache_bytes(1u << 20, 4), UINT64_MAX);
    QCOMPARE(huge.memory_estimate(1u << 20, 2), UINT64_MAX);
  }

  // An MXFP4 file (gptoss-moe.MXFP4_MOE, fixtures README "Quantized variants": F32 49, MXFP4 12,
  // Q8_0 18): the card counts MXFP4 like any type, with 17 bytes per 32 weights, and the memory
  // estimate holds the file's weight bytes. (Whether the architecture runs is not asserted here.)
  void mxfp4FileCard() {
    const QString rel = "fixtures/models-0c1e570/gptoss-moe/gptoss-moe.MXFP4_MOE.gguf";
    MOELAB_REQUIRE_SHARED(rel);
    const std::string path = moelab::test::shared_path(rel);
    const auto r = run_cli({"inspect", "--json", "--no-hash", path});
    QVERIFY2(r.rc == 0, r.err.c_str());
    const auto j = QJsonDocument::fromJson(QByteArray::fromStdString(r.out)).object();
    QCOMPARE(j["tensor_types"].toObject()["MXFP4"].toInt(), 12);
    QCOMPARE(j["tensor_types"].toObject()["Q8_0"].toInt(), 18);
    QCOMPARE(j["tensor_types"].toObject()["F32"].toInt(), 49);
    auto f = gguf::File::open(path);
    int64_t mx_params = 0;
    uint64_t all_bytes = 0;
    for (const auto& t : f->tensors()) {
      all_bytes += t.nbytes;
      if (t.type == static_cast<uint32_t>(gguf::TensorType::MXFP4)) mx_params += t.n_elements();
    }
    QVERIFY(mx_params > 0);
    QCOMPARE(j["tensor_bytes"].toObject()["MXFP4"].toInteger(), mx_params / 32 * 17);
    QCOMPARE(j["weight_bytes"].toInteger(), static_cast<qint64>(all_bytes));
    const ModelCard c = make_model_card(*f);
    QCOMPARE(c.memory_estimate(512, 2), c.weight_bytes + c.kv_cache_bytes(512, 2));
    const auto text = run_cli({"inspect", "--no-hash", path});
    QVERIFY2(text.out.find("MXFP4: 12 tensors") != std::string::npos, text.out.c_str());
  }

  // An MXFP4 tensor whose rows (48 elements) are not whole 32-element blocks: inspect exits 2
  // and the message names the tensor and the block size.
  void mxfp4BadRowLengthIsRefused() {
    gguf::Writer w;
    w.set_string("general.architecture", "llama");
    std::vector<uint8_t> data(48 * 2 * 4, 0);
    w.add_tensor("blk.0.ffn_down_exps.weight", gguf::TensorType::F32, {48, 2}, data);
    auto bytes = w.to_bytes();
    const std::string name = "blk.0.ffn_down_exps.weight";
    const auto at = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
    QVERIFY(at != bytes.end());
    const size_t type_at = static_cast<size_t>(at - bytes.begin()) + name.size() + 4 + 2 * 8;
    const uint32_t mxfp4 = static_cast<uint32_t>(gguf::TensorType::MXFP4);
    std::memcpy(bytes.data() + type_at, &mxfp4, 4);  // n_dims u32, ne u64 x2, then the type
    const QString path = moelab::test::temp_dir("test_model_card") + "/mxfp4_row48.gguf";
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<qint64>(bytes.size()));
    f.close();
    const auto r = run_cli({"inspect", "--no-hash", path.toStdString()});
    QCOMPARE(r.rc, 2);
    QVERIFY2(r.err.find("blk.0.ffn_down_exps.weight") != std::string::npos, r.err.c_str());
    QVERIFY2(r.err.find("not a multiple of the MXFP4 block size 32") != std::string::npos,
             r.err.c_str());
  }

  void textCard() {
    MOELAB_REQUIRE_SHARED("fixtures/models/qwen2moe/qwen2moe.Q8_0.gguf");
    const auto r =
        run_cli({"inspect", "--no-hash", "--tensors",
                 moelab::test::shared_path("fixtures/models/qwen2moe/qwen2moe.Q8_0.gguf")});
    QCOMPARE(r.rc, 0);
    QVERIFY(r.out.find("8 experts, top-4") != std::string::npos);
    QVERIFY(r.out.find("1 shared expert") != std::string::npos);
    QVERIFY(r.out.find("Q8_0: 22 tensors") != std::string::npos);
    QVERIFY(r.out.find("blk.1.ffn_down_exps.weight") != std::string::npos);
    QVERIFY(r.out.find("runnable           yes") != std::string::npos);
  }

  // granitemoe's multipliers (fixtures README "Turn-2 architectures": embedding_scale 12,
  // residual_scale 0.22, attention.scale 0.0625, logit_scale 6) as JSON and as card rows.
  void graniteMultipliers() {
    const QString rel = "fixtures/models-0c1e570/granite-moe/granite-moe.F32.gguf";
    MOELAB_REQUIRE_SHARED(rel);
    const std::string path = moelab::test::shared_path(rel);
    const auto r = run_cli({"inspect", "--json", "--no-hash", path});
    QVERIFY2(r.rc == 0, r.err.c_str());
    const auto j = QJsonDocument::fromJson(QByteArray::fromStdString(r.out)).object();
    QCOMPARE(j["architecture"].toString(), QString("granitemoe"));
    QVERIFY2(j["runnable"].toBool(), qPrintable(QJsonDocument(j["problems"].toArray()).toJson()));
    const auto m = j["multipliers"].toObject();
    QCOMPARE(m["embedding_scale"].toDouble(), 12.0);
    QCOMPARE(static_cast<float>(m["residual_scale"].toDouble()), 0.22f);
    QCOMPARE(m["attention_scale"].toDouble(), 0.0625);
    QCOMPARE(m["logit_scale"].toDouble(), 6.0);
    const auto t = run_cli({"inspect", "--no-hash", path});
    QCOMPARE(t.rc, 0);
    QVERIFY2(t.out.find("multipliers        embeddings x12, residual branches x0.22, logits /6") !=
                 std::string::npos,
             t.out.c_str());
    QVERIFY2(t.out.find("attention scale    0.0625 (instead of 1/sqrt(head_dim) = 0.25)") !=
                 std::string::npos,
             t.out.c_str());
    // A multiplier of 0 (here logit_scale, patched in a copy) keeps the file from running, named.
    QByteArray bytes = moelab::test::read_all(QString::fromStdString(path));
    const QByteArray key = "granitemoe.logit_scale";
    const qsizetype at = bytes.indexOf(key);
    QVERIFY(at > 0);
    const qsizetype value_at = at + key.size() + 4;  // after the u32 value type (6 = F32)
    float six = 0;
    std::memcpy(&six, bytes.constData() + value_at, 4);
    QCOMPARE(six, 6.f);
    const float zero = 0;
    std::memcpy(bytes.data() + value_at, &zero, 4);
    const QString bad = moelab::test::temp_dir("test_model_card") + "/granite-logit0.gguf";
    QFile out(bad);
    QVERIFY(out.open(QIODevice::WriteOnly));
    out.write(bytes);
    out.close();
    const auto c = run_cli({"inspect", "--check", "--no-hash", bad.toStdString()});
    QCOMPARE(c.rc, 2);
    QVERIFY2(c.err.find("'granitemoe.logit_scale' is 0: a multiplier must be a positive finite "
                        "number") != std::string::npos,
             c.err.c_str());
    // A model without them reports zeros and no rows.
    MOELAB_REQUIRE_SHARED("fixtures/models/olmoe/olmoe.F32.gguf");
    const auto o = run_cli({"inspect", "--no-hash",
                            moelab::test::shared_path("fixtures/models/olmoe/olmoe.F32.gguf")});
    QCOMPARE(o.rc, 0);
    QVERIFY(o.out.find("multipliers") == std::string::npos);
    QVERIFY(o.out.find("attention scale") == std::string::npos);
  }

  // glm4moe's router (fixtures README: sigmoid gating, expert_weights_norm, scale 2.5, one
  // leading dense layer, one shared expert of width 32) as JSON and as card rows.
  void glmRouter() {
    const QString rel = "fixtures/models-0c1e570/glm4-moe/glm4-moe.F32.gguf";
    MOELAB_REQUIRE_SHARED(rel);
    const std::string path = moelab::test::shared_path(rel);
    const auto r = run_cli({"inspect", "--json", "--no-hash", path});
    QVERIFY2(r.rc == 0, r.err.c_str());
    const auto j = QJsonDocument::fromJson(QByteArray::fromStdString(r.out)).object();
    QCOMPARE(j["architecture"].toString(), QString("glm4moe"));
    QVERIFY2(j["runnable"].toBool(), qPrintable(QJsonDocument(j["problems"].toArray()).toJson()));
    const auto g = j["router"].toObject();
    QCOMPARE(g["gating"].toString(), QString("sigmoid"));
    QCOMPARE(g["weights_norm"].toBool(), true);
    QCOMPARE(g["weights_scale"].toDouble(), 2.5);
    QCOMPARE(g["leading_dense_layers"].toInt(), 1);
    QCOMPARE(j["expert_shared_count"].toInt(), 1);
    const auto t = run_cli({"inspect", "--no-hash", path});
    QCOMPARE(t.rc, 0);
    for (const char* row :
         {"experts            16 experts, top-4, expert n_ff 32; 1 shared expert (n_ff 32)",
          "gating             sigmoid scores (not probabilities), top-k weights normalised, x2.5",
          "dense layers       the first 1 (dense FFN, n_ff 128)"})
      QVERIFY2(t.out.find(row) != std::string::npos,
               qPrintable(QString(row) + "\n" + t.out.c_str()));
  }

  // granitemoe's file names no gating: the card shows the router the engine runs (softmax,
  // top-k renormalised, no routed scale), in the rows and the JSON, and the expert width.
  void granitemoeGating() {
    const QString rel = "fixtures/models-0c1e570/granite-moe/granite-moe.F32.gguf";
    MOELAB_REQUIRE_SHARED(rel);
    const std::string path = moelab::test::shared_path(rel);
    const auto r = run_cli({"inspect", "--json", "--no-hash", path});
    QVERIFY2(r.rc == 0, r.err.c_str());
    const auto j = QJsonDocument::fromJson(QByteArray::fromStdString(r.out)).object();
    const auto g = j["router"].toObject();
    QCOMPARE(g["gating"].toString(), QString("softmax"));
    QCOMPARE(g["weights_norm"].toBool(), true);
    QCOMPARE(g["weights_scale"].toDouble(), 1.0);
    QCOMPARE(j["n_ff_exp"].toInt(), 64);
    const auto t = run_cli({"inspect", "--no-hash", path});
    QCOMPARE(t.rc, 0);
    QVERIFY2(t.out.find("gating             softmax probabilities, top-k weights normalised\n") !=
                 std::string::npos,
             t.out.c_str());
  }

  // gpt-oss (fixtures README): YaRN x32 from 4096, a window of 8 on even layers, attention
  // sinks, softmax over the top-4 of 8, as JSON and as card rows.
  void gptossCard() {
    const QString rel = "fixtures/models-0c1e570/gptoss-moe/gptoss-moe.F32.gguf";
    MOELAB_REQUIRE_SHARED(rel);
    const std::string path = moelab::test::shared_path(rel);
    const auto r = run_cli({"inspect", "--json", "--no-hash", path});
    QVERIFY2(r.rc == 0, r.err.c_str());
    const auto j = QJsonDocument::fromJson(QByteArray::fromStdString(r.out)).object();
    QCOMPARE(j["architecture"].toString(), QString("gpt-oss"));
    QVERIFY2(j["runnable"].toBool(), qPrintable(QJsonDocument(j["problems"].toArray()).toJson()));
    QCOMPARE(j["router"].toObject()["gating"].toString(), QString("softmax_over_topk"));
    // No routed scale: 1; a GQA model's own cache is its GQA figure (8 heads, 2 KV heads of 16,
    // 4 layers: 4 x 2 x (16 + 16) x 2 bytes); the window does not size the cache.
    QCOMPARE(j["router"].toObject()["weights_scale"].toDouble(), 1.0);
    QCOMPARE(j["router"].toObject()["weights_norm"].toBool(), false);
    const auto kvj = j["kv_bytes_per_token"].toObject();
    QCOMPARE(kvj["f16"].toInteger(), 4 * 2 * 32 * 2);
    QCOMPARE(kvj["gqa_equivalent_f16"].toInteger(), 4 * 2 * 32 * 2);
    QVERIFY(kvj["sliding_window_layers"].toString().startsWith("full cache"));
    QCOMPARE(j["attention_sinks"].toBool(), true);
    QCOMPARE(j["sliding_window"].toInt(), 8);
    QCOMPARE(j["swa_period"].toInt(), 2);
    const auto rope = j["rope"].toObject();
    QCOMPARE(rope["scaling"].toString(), QString("yarn"));
    QCOMPARE(rope["scaling_factor"].toDouble(), 32.0);
    QCOMPARE(rope["original_context_length"].toInt(), 4096);
    const auto t = run_cli({"inspect", "--no-hash", path});
    QCOMPARE(t.rc, 0);
    for (const char* row :
         {"experts            8 experts, top-4, expert n_ff 64",
          "gating             softmax over the top-k (selected on router logits + bias: scores, "
          "not probabilities)",
          "RoPE               neox, freq_base 150000, 16 dims, scaling yarn (YaRN x32, original "
          "context 4096)",
          "sliding window     8 tokens on even layers (0, 2, ...); odd layers full",
          "attention sinks    learned, one logit per head (softmax denominator)",
          "KV bytes/token     512 B F16 / 1.0 KiB F32, all layers; sliding-window layers keep the "
          "full cache (not sized to the window)"})
      QVERIFY2(t.out.find(row) != std::string::npos,
               qPrintable(QString(row) + "\n" + t.out.c_str()));
  }

  // deepseek2 (fixtures README "Turn-2 architectures"): MLA ranks and head sizes, the KV bytes
  // per token as the absorbed cache stores them (one row c_kv | k_pe plus V = c_kv, per layer)
  // beside the MHA figure for the same heads, groups, shared experts and dense layers.
  void deepseekRows() {
    const QString lite = "fixtures/models-0c1e570/deepseek2-lite/deepseek2-lite.F32.gguf";
    const QString v3 = "fixtures/models-0c1e570/deepseek3-moe/deepseek3-moe.F32.gguf";
    MOELAB_REQUIRE_SHARED(lite);
    MOELAB_REQUIRE_SHARED(v3);
    {
      const auto r = run_cli({"inspect", "--json", "--no-hash", moelab::test::shared_path(lite)});
      QVERIFY2(r.rc == 0, r.err.c_str());
      const auto j = QJsonDocument::fromJson(QByteArray::fromStdString(r.out)).object();
      QVERIFY2(j["runnable"].toBool(), qPrintable(QJsonDocument(j["problems"].toArray()).toJson()));
      const auto m = j["mla"].toObject();
      QCOMPARE(m["q_lora_rank"].toInt(), 0);
      QCOMPARE(m["kv_lora_rank"].toInt(), 32);
      QCOMPARE(m["qk_nope"].toInt(), 16);
      QCOMPARE(m["qk_rope"].toInt(), 8);
      QCOMPARE(m["v_head"].toInt(), 16);
      const auto kv = j["kv_bytes_per_token"].toObject();
      // 3 layers x one row (c_kv 32 + k_pe 8; V = its first 32) x 2 bytes; MHA: 3 x 4 heads x
      // (24 + 16) x 2.
      QCOMPARE(kv["f16"].toInteger(), 3 * 40 * 2);
      QCOMPARE(kv["f32"].toInteger(), 3 * 40 * 4);
      QCOMPARE(kv["gqa_equivalent_f16"].toInteger(), 3 * 4 * (24 + 16) * 2);
      QCOMPARE(j["router"].toObject()["shared_experts"].toInt(), 2);
      QCOMPARE(j["router"].toObject()["expert_groups"].toInt(), 1);
      const auto t = run_cli({"inspect", "--no-hash", moelab::test::shared_path(lite)});
      QCOMPARE(t.rc, 0);
      for (const char* row :
           {"attention kind     MLA: 4 heads, q_lora 0 (plain Q), kv_lora 32, qk_nope 16 + qk_rope "
            "8, v 16; cached per token and layer: one row c_kv | k_pe (40), V = its first 32",
            "KV bytes/token     240 B F16 / 480 B F32, all layers as MLA stores it; the same heads "
            "as MHA would cache 960 B F16 (MLA: 0.25x of that)",
            "experts            8 experts, top-3, expert n_ff 32; 2 shared experts, always on (one "
            "FFN of n_ff 64)",
            "gating             softmax probabilities, x1.5",
            "dense layers       the first 1 (dense FFN, n_ff 128)"})
        QVERIFY2(t.out.find(row) != std::string::npos,
                 qPrintable(QString(row) + "\n" + t.out.c_str()));
    }
    {
      const auto t = run_cli({"inspect", "--no-hash", moelab::test::shared_path(v3)});
      QCOMPARE(t.rc, 0);
      for (const char* row :
           {"attention kind     MLA: 4 heads, q_lora 256, kv_lora 256, qk_nope 32 + qk_rope 16, v "
            "64; cached per token and layer: one row c_kv | k_pe (272), V = its first 256",
            "expert groups      4 groups of 4, the best 2 kept per token (group-limited top-k)",
            "gating             sigmoid scores (not probabilities), top-k weights normalised, "
            "x2.5"})
        QVERIFY2(t.out.find(row) != std::string::npos,
                 qPrintable(QString(row) + "\n" + t.out.c_str()));
    }
  }

  void exitCodes() {
    auto h = run_cli({"--help"});
    QCOMPARE(h.rc, 0);
    QVERIFY(h.out.find("inspect") != std::string::npos);
    auto v = run_cli({"--version"});
    QCOMPARE(v.rc, 0);
    QVERIFY(v.out.find("moelab-cli 0.") == 0);
    auto bad = run_cli({"inspect"});
    QCOMPARE(bad.rc, 2);
    QVERIFY(bad.err.rfind("error:", 0) == 0);
    auto missing = run_cli({"inspect", "/nonexistent.gguf"});
    QCOMPARE(missing.rc, 2);
    QVERIFY(missing.err.rfind("error: /nonexistent.gguf: cannot open", 0) == 0);
    auto unknown = run_cli({"frobnicate"});
    QCOMPARE(unknown.rc, 2);
  }

  void invalidFileExitsTwo() {
    MOELAB_REQUIRE_SHARED("cases/gguf/g02_bad_magic_html.gguf");
    const auto r =
        run_cli({"inspect", moelab::test::shared_path("cases/gguf/g02_bad_magic_html.gguf")});
    QCOMPARE(r.rc, 2);
    QVERIFY(r.err.rfind("error: ", 0) == 0);
    QVERIFY(r.err.find("HTML page") != std::string::npos);
    QVERIFY(r.out.empty());
  }

  void notRunnableIsReported() {
    MOELAB_REQUIRE_SHARED("cases/gguf/g00_valid_tiny.gguf");
    const std::string p = moelab::test::shared_path("cases/gguf/g00_valid_tiny.gguf");
    const auto r = run_cli({"inspect", "--json", "--no-hash", p});
    QCOMPARE(r.rc, 0);  // a valid GGUF, even if not a runnable model
    const auto j = QJsonDocument::fromJson(QByteArray::fromStdString(r.out)).object();
    QCOMPARE(j["runnable"].toBool(), false);
    QVERIFY(j["sha256"].isNull());
    const auto c = run_cli({"inspect", "--check", "--no-hash", p});
    QCOMPARE(c.rc, 2);
    QVERIFY(c.err.find("cannot be run") != std::string::npos);
  }
};

QTEST_GUILESS_MAIN(TestModelCard)
#include "test_model_card.moc"
