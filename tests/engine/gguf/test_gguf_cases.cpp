// Every file in ../shared/cases/gguf and ../shared/cases/quant gets the manifest's verdict:
// the valid ones load with the right values, the others are rejected with a specific message,
// in under 50 ms.
#include <QJsonArray>
#include <QJsonObject>
#include <QtTest>
#include <chrono>
#include <cstring>

#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"
#include "test_support.h"

using namespace moelab;

namespace {
struct Outcome {
  bool ok = false;
  std::string message;
  double ms = 0;
};
Outcome load(const std::string& path) {
  Outcome o;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    auto f = gguf::File::open(path);
    make_model_card(*f);
    o.ok = true;
  } catch (const Error& e) {
    o.message = e.what();
  }
  o.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return o;
}
std::vector<float> floats(const gguf::TensorInfo* t) {
  std::vector<float> v(t->n_elements());
  std::memcpy(v.data(), t->data, v.size() * 4);
  return v;
}
}  // namespace

class TestGgufCases : public QObject {
  Q_OBJECT
 private slots:
  void manifestVerdicts_data() {
    QTest::addColumn<QString>("file");
    QTest::addColumn<QString>("expect");
    QTest::addColumn<QString>("needle");
    if (!moelab::test::have_shared("cases/gguf/manifest.json")) {
      QTest::newRow("absent") << QString() << QString() << QString();
      return;
    }
    // The specific words each rejection must contain (the manifest states the kind).
    const QMap<QString, QString> needles = {
        {"g01_truncated_data.gguf", "past the end of the"},
        {"g02_bad_magic_html.gguf", "HTML page"},
        {"g03_huge_key_len.gguf", "cannot fit"},
        {"g04_huge_tensor_count.gguf", "tensors, which cannot fit"},
        {"g05_zero_dim.gguf", "dimension 1 is 0"},
        {"g06_ndims_9.gguf", "has 9 dimensions"},
        {"g07_unknown_type_200.gguf", "ggml type 200"},
        {"g08_duplicate_names.gguf", "duplicate tensor name"},
        {"g09_alignment_zero.gguf", "general.alignment is 0"},
        {"g10_dim_product_overflow.gguf", "overflows 64 bits"},
        {"g11_nested_array_depth_20000.gguf", "nested more than"},
        {"g12_scores_wrong_elem_type.gguf", "tokenizer.ggml.scores"},
    };
    const auto manifest =
        moelab::test::read_json(moelab::test::shared_dir() + "/cases/gguf/manifest.json");
    for (const auto& e : manifest.array()) {
      const QJsonObject o = e.toObject();
      const QString file = o["file"].toString();
      QTest::newRow(qPrintable(file)) << file << o["expect"].toString() << needles.value(file);
    }
  }
  void manifestVerdicts() {
    MOELAB_REQUIRE_SHARED("cases/gguf/manifest.json");
    QFETCH(QString, file);
    QFETCH(QString, expect);
    QFETCH(QString, needle);
    const auto o = load(moelab::test::shared_path("cases/gguf/" + file));
    if (expect.startsWith("accept")) {
      QVERIFY2(o.ok, o.message.c_str());
    } else {
      QVERIFY2(!o.ok, "accepted a file the manifest rejects");
      QVERIFY2(!needle.isEmpty(), "no expected message for this case");
      QVERIFY2(o.message.find(needle.toStdString()) != std::string::npos, o.message.c_str());
      // The message names the file.
      QVERIFY(o.message.find(file.toStdString()) != std::string::npos);
    }
    qInfo("%s: %.3f ms", qPrintable(file), o.ms);  // measured, not asserted (no time bounds)
  }

  void validTinyValues() {
    MOELAB_REQUIRE_SHARED("cases/gguf/g00_valid_tiny.gguf");
    auto f = gguf::File::open(moelab::test::shared_path("cases/gguf/g00_valid_tiny.gguf"));
    QCOMPARE(f->tensors().size(), size_t(1));
    const auto* t = f->find_tensor("t.weight");
    QVERIFY(t);
    QCOMPARE(t->type, 0u);
    QCOMPARE(t->ne[0], int64_t(4));
    QCOMPARE(t->ne[1], int64_t(2));
    const auto v = floats(t);
    for (int i = 0; i < 8; ++i) QCOMPARE(v[i], float(i));
  }

  void alignment16Values() {
    MOELAB_REQUIRE_SHARED("cases/gguf/g09d_alignment16_u32.gguf");
    auto f = gguf::File::open(moelab::test::shared_path("cases/gguf/g09d_alignment16_u32.gguf"));
    QCOMPARE(f->alignment(), 16u);
    QCOMPARE(f->data_offset() % 16, uint64_t(0));
    const std::pair<const char*, std::vector<float>> want[] = {
        {"a.weight", {1, 2, 3, 4}}, {"b.weight", {5, 6, 7, 8}}, {"c.weight", {9, 10, 11, 12}}};
    for (const auto& [name, values] : want) {
      const auto* t = f->find_tensor(name);
      QVERIFY2(t, name);
      QCOMPARE(floats(t), values);
    }
  }

  void quantCases() {
    MOELAB_REQUIRE_SHARED("cases/quant");
    for (const char* ok : {"q4k_ok_256.gguf", "q6k_ok_256.gguf", "q4k_2rows.gguf"}) {
      const auto o = load(moelab::test::shared_path(QString("cases/quant/") + ok));
      QVERIFY2(o.ok, (std::string(ok) + ": " + o.message).c_str());
    }
    const auto a = load(moelab::test::shared_path("cases/quant/q4k_row896_bad.gguf"));
    QVERIFY(!a.ok);
    QVERIFY2(a.message.find("896") != std::string::npos &&
                 a.message.find("Q4_K block size 256") != std::string::npos,
             a.message.c_str());
    const auto b = load(moelab::test::shared_path("cases/quant/q8_0_row48_bad.gguf"));
    QVERIFY(!b.ok);
    QVERIFY2(b.message.find("48") != std::string::npos &&
                 b.message.find("Q8_0 block size 32") != std::string::npos,
             b.message.c_str());
  }
};

QTEST_GUILESS_MAIN(TestGgufCases)
#include "test_gguf_cases.moc"
