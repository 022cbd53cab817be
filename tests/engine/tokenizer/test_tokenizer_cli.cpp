// moelab-cli tokenize / detokenize through cli::run with captured streams.
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QtTest>
#include <sstream>

#include "cli.h"
#include "test_support.h"

using namespace moelab;

namespace {
struct Result {
  int rc;
  std::string out, err;
};
Result run(std::vector<std::string> args) {
  std::ostringstream out, err;
  args.insert(args.begin(), "moelab-cli");
  const int rc = cli::run(args, {out, err});
  return {rc, out.str(), err.str()};
}
}  // namespace

class TestTokenizerCli : public QObject {
  Q_OBJECT
 private slots:
  void tokenizeJson() {
    MOELAB_REQUIRE_SHARED("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    const std::string m = test::shared_path("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    Result r = run({"tokenize", "--model", m, "--text", "Hello world", "--json"});
    QCOMPARE(r.rc, 0);
    const QJsonObject j = QJsonDocument::fromJson(QByteArray::fromStdString(r.out)).object();
    QCOMPARE(j["ids"].toArray(), (QJsonArray{1, 15043, 3186}));
    QCOMPARE(j["pieces"].toArray(), (QJsonArray{"<s>", " Hello", " world"}));
    r = run({"tokenize", "--model", m, "--text", "<s>Hi", "--no-bos", "--special", "--json"});
    QCOMPARE(r.rc, 0);
    const QJsonArray ids =
        QJsonDocument::fromJson(QByteArray::fromStdString(r.out)).object()["ids"].toArray();
    QCOMPARE(ids.first().toInt(), 1);  // the parsed <s>, not an added BOS
    QCOMPARE(ids.size(), 2);
  }

  void tokenizeFileAndText() {
    MOELAB_REQUIRE_SHARED("fixtures/vocab/ggml-vocab-gpt-2.gguf");
    const std::string m = test::shared_path("fixtures/vocab/ggml-vocab-gpt-2.gguf");
    const QString dir = test::temp_dir("tokenizer_cli");
    const std::string path = (dir + "/text.txt").toStdString();
    {
      QFile f(QString::fromStdString(path));
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write("Hello world");
    }
    Result r = run({"tokenize", "--model", m, "--file", path, "--json"});
    QCOMPARE(r.rc, 0);
    QCOMPARE(QJsonDocument::fromJson(QByteArray::fromStdString(r.out)).object()["ids"].toArray(),
             (QJsonArray{15496, 995}));
    // Neither --text nor --file, or both: bad input.
    QCOMPARE(run({"tokenize", "--model", m}).rc, 2);
    QCOMPARE(run({"tokenize", "--model", m, "--text", "a", "--file", path}).rc, 2);
  }

  void detokenize() {
    MOELAB_REQUIRE_SHARED("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    const std::string m = test::shared_path("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    Result r = run({"detokenize", "--model", m, "--ids", "1,15043,3186"});
    QCOMPARE(r.rc, 0);
    QCOMPARE(r.out, std::string("Hello world\n"));
    r = run({"detokenize", "--model", m, "--ids", "1,15043", "--special"});
    QCOMPARE(r.out, std::string("<s> Hello\n"));
    r = run({"detokenize", "--model", m, "--ids", "1,99999"});
    QCOMPARE(r.rc, 2);
    QVERIFY(r.err.find("99999") != std::string::npos);
    QCOMPARE(run({"detokenize", "--model", m, "--ids", "1,x"}).rc, 2);
  }
};

QTEST_GUILESS_MAIN(TestTokenizerCli)
#include "test_tokenizer_cli.moc"
