// Every *.tokens.json under ../shared/fixtures (vocab/ and models/): each test string must give
// exactly llama.cpp's ids, with BOS as the vocabulary says ("default_special") and without
// ("no_bos"). The fixtures were made with parse_special on.
#include <QDirIterator>
#include <QJsonArray>
#include <QJsonObject>
#include <QtTest>

#include "moelab/gguf/gguf.h"
#include "moelab/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace moelab;

namespace {
std::vector<int32_t> ids_of(const QJsonArray& a) {
  std::vector<int32_t> v;
  for (const auto& x : a) v.push_back(x.toInt());
  return v;
}
QString show(const std::vector<int32_t>& v) {
  QStringList s;
  for (int32_t x : v) s << QString::number(x);
  return "[" + s.join(", ") + "]";
}
}  // namespace

class TestTokenizerFixtures : public QObject {
  Q_OBJECT
 private slots:
  void fixtures_data() {
    QTest::addColumn<QString>("tokens_json");
    if (!test::have_shared("fixtures")) {
      QTest::newRow("absent") << QString();
      return;
    }
    QDirIterator it(test::shared_dir() + "/fixtures", {"*.tokens.json"}, QDir::Files,
                    QDirIterator::Subdirectories);
    QStringList files;
    while (it.hasNext()) files << it.next();
    files.sort();
    for (const QString& f : files) QTest::newRow(qPrintable(QFileInfo(f).fileName())) << f;
  }

  void fixtures() {
    MOELAB_REQUIRE_SHARED("fixtures");
    QFETCH(QString, tokens_json);
    QString gguf_path = tokens_json;
    gguf_path.replace(".tokens.json", ".gguf");
    if (!QFileInfo::exists(gguf_path)) {
      // Not shipped (mixtral-moe-k.F32): the vocabulary is the same in every file of a model,
      // so check the ids against a sibling file's tokenizer.
      const QStringList sib =
          QFileInfo(tokens_json).dir().entryList({"*.gguf"}, QDir::Files, QDir::Name);
      if (sib.isEmpty()) QSKIP(qPrintable("no model file next to " + tokens_json));
      gguf_path = QFileInfo(tokens_json).dir().filePath(sib.front());
    }
    const QJsonObject ref = test::read_json(tokens_json).object();
    const QJsonArray strings = ref["strings"].toArray();
    const QJsonArray with_bos = ref["default_special"].toArray();
    const QJsonArray no_bos = ref["no_bos"].toArray();
    QCOMPARE(strings.size(), 13);
    QCOMPARE(with_bos.size(), strings.size());
    QCOMPARE(no_bos.size(), strings.size());

    auto file = gguf::File::open(gguf_path.toStdString());
    auto tok = Tokenizer::from_gguf(*file);
    QVERIFY(!tok->pre_fallback());
    int checked = 0;
    for (int i = 0; i < strings.size(); ++i) {
      const QByteArray utf8 = strings[i].toString().toUtf8();
      const std::string_view text(utf8.constData(), utf8.size());
      const auto got_bos = tok->encode(text, true, true);
      const auto got_nobos = tok->encode(text, EncodeOptions{false, std::nullopt, true});
      const auto want_bos = ids_of(with_bos[i].toArray());
      const auto want_nobos = ids_of(no_bos[i].toArray());
      if (got_bos != want_bos)
        QFAIL(qPrintable(QString("string %1 (%2) with BOS: got %3, want %4")
                             .arg(i)
                             .arg(strings[i].toString(), show(got_bos), show(want_bos))));
      if (got_nobos != want_nobos)
        QFAIL(qPrintable(QString("string %1 (%2) without BOS: got %3, want %4")
                             .arg(i)
                             .arg(strings[i].toString(), show(got_nobos), show(want_nobos))));
      checked += 2;
    }
    QCOMPARE(checked, 26);
  }
};

QTEST_GUILESS_MAIN(TestTokenizerFixtures)
#include "test_tokenizer_fixtures.moc"
