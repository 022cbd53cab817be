// Token ids recorded from llama.cpp (llama-cpp-python) by make_expected_ids.py, in
// data/expected_ids.json: the SmolLM2-135M-Instruct GGUF (BPE, pre-tokenizer "smollm"; cached
// outside the repository, skipped when absent) and the shared fixture vocabularies, each with
// add_special and parse_special on and off, for strings chosen here.
#include <QJsonArray>
#include <QJsonObject>
#include <QtTest>

#include "demo_model_path.h"
#include "moelab/gguf/gguf.h"
#include "moelab/tokenizer/chat.h"
#include "moelab/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace moelab;

namespace {
QString smollm2_path() {
  return QString::fromStdString(smollm2_gguf_path());
}
QString resolve(const QString& name) {
  if (name == "smollm2") return smollm2_path();
  if (name.startsWith("shared:")) return QString::fromStdString(test::shared_path(name.mid(7)));
  return QString();
}
QString show(const std::vector<int32_t>& v) {
  QStringList s;
  for (int32_t x : v) s << QString::number(x);
  return "[" + s.join(",") + "]";
}
QJsonObject expected() {
  return test::read_json(QString::fromUtf8(MOELAB_SOURCE_DIR) +
                         "/tests/engine/tokenizer/data/expected_ids.json")
      .object();
}
}  // namespace

class TestTokenizerReference : public QObject {
  Q_OBJECT
 private slots:
  void ids_data() {
    QTest::addColumn<QString>("file");
    QTest::addColumn<int>("index");
    const QJsonArray vocabs = expected()["vocabs"].toArray();
    if (vocabs.isEmpty()) QTest::newRow("no-data") << QString() << -1;
    for (int i = 0; i < vocabs.size(); ++i) {
      const QString f = vocabs[i].toObject()["file"].toString();
      QTest::newRow(qPrintable(f)) << f << i;
    }
  }
  void ids() {
    QFETCH(QString, file);
    QFETCH(int, index);
    if (index < 0) QFAIL("tests/engine/tokenizer/data/expected_ids.json is missing or empty");
    const QString path = resolve(file);
    if (!QFileInfo::exists(path))
      QSKIP(qPrintable("skipped: model file not cached at " + path +
                       " (see tests/engine/tokenizer/make_expected_ids.py)"));
    const QJsonArray cases = expected()["vocabs"].toArray()[index].toObject()["cases"].toArray();
    QVERIFY(cases.size() >= 100);
    auto f = gguf::File::open(path.toStdString());
    auto tok = Tokenizer::from_gguf(*f);
    int failures = 0;
    for (const auto& c : cases) {
      const QJsonObject o = c.toObject();
      const QByteArray text = o["text"].toString().toUtf8();
      std::vector<int32_t> want;
      for (const auto& x : o["ids"].toArray()) want.push_back(x.toInt());
      const auto got = tok->encode(std::string_view(text.constData(), text.size()),
                                   o["add_special"].toBool(), o["parse_special"].toBool());
      if (got != want) {
        ++failures;
        qWarning("%s: text '%s' add_special=%d parse_special=%d: got %s want %s", qPrintable(file),
                 text.constData(), o["add_special"].toBool(), o["parse_special"].toBool(),
                 qPrintable(show(got)), qPrintable(show(want)));
      }
    }
    QCOMPARE(failures, 0);
  }

  void smollm2Metadata() {
    const QString path = smollm2_path();
    if (!QFileInfo::exists(path)) QSKIP(qPrintable("skipped: model file not cached at " + path));
    auto f = gguf::File::open(path.toStdString());
    auto tok = Tokenizer::from_gguf(*f);
    QCOMPARE(tok->kind(), VocabKind::Bpe);
    QCOMPARE(tok->pre(), std::string("smollm"));
    QVERIFY(!tok->pre_fallback());
    QCOMPARE(tok->n_vocab(), 49152);
    QCOMPARE(detect_chat_family(tok->chat_template()), ChatFamily::ChatML);
    const int32_t im_end = tok->find_token("<|im_end|>");
    QVERIFY(im_end >= 0);
    QVERIFY(tok->is_eog(im_end));
    // A rendered conversation tokenizes with the chat markers as single control tokens.
    const std::string prompt = render_chat(ChatFamily::ChatML, {{"user", "Hi"}}, true);
    const auto ids = tok->encode(prompt, false, true);
    QCOMPARE(ids.front(), tok->find_token("<|im_start|>"));
    DecodeOptions d;
    d.render_special = true;
    QCOMPARE(tok->decode(ids, d), prompt);
  }
};

QTEST_GUILESS_MAIN(TestTokenizerReference)
#include "test_tokenizer_reference.moc"
