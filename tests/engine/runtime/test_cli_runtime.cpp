// moelab-cli run and perplexity, run in-process through cli::run on the stories260K fixture.
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "cli_run.h"
#include "moelab/model/model.h"
#include "moelab/runtime/perplexity.h"
#include "test_support.h"

using namespace moelab;

namespace {
const QString kStories = QStringLiteral("fixtures/models/stories260K/stories260K.F32.gguf");

using moelab::test::cli_run;
using moelab::test::CliResult;
}  // namespace

class TestCliRuntime : public QObject {
  Q_OBJECT
  std::string model_;
  QString dir_;

 private slots:
  void initTestCase() {
    dir_ = moelab::test::temp_dir("test_cli_runtime");
    model_ = moelab::test::shared_path(kStories);
  }

  void run_json_has_the_documented_keys() {
    MOELAB_REQUIRE_SHARED(kStories);
    const auto r = cli_run({"run", "--model", model_, "--prompt", "Once upon a time", "-n", "12",
                            "--temp", "0", "--threads", "1", "--ctx", "64", "--json"});
    QVERIFY2(r.code == 0, r.err.c_str());
    const auto j = nlohmann::json::parse(r.out);
    for (const char* k : {"tokens", "text", "seed", "ttft_ms", "tokens_per_s", "stop_reason"})
      QVERIFY2(j.contains(k), k);
    QCOMPARE(j["tokens"].size(), size_t(12));
    QCOMPARE(j["stop_reason"].get<std::string>(), std::string("max_tokens"));
    QVERIFY(j["ttft_ms"].get<double>() > 0);
    QVERIFY(j["tokens_per_s"].get<double>() > 0);
    QCOMPARE(j["text"].get<std::string>(),
             std::string(", there was a little girl named Lily. She"));

    // Streaming prints the same text, and a summary on stderr.
    const auto s = cli_run({"run", "--model", model_, "--prompt", "Once upon a time", "-n", "12",
                            "--temp", "0", "--threads", "1", "--ctx", "64"});
    QCOMPARE(s.code, 0);
    QCOMPARE(s.out, j["text"].get<std::string>() + "\n");
    QVERIFY2(s.err.find("stop: max_tokens") != std::string::npos, s.err.c_str());
    QVERIFY(s.err.find("seed ") != std::string::npos);
  }

  void run_reproduces_with_the_printed_seed() {
    MOELAB_REQUIRE_SHARED(kStories);
    const std::vector<std::string> base = {
        "run",    "--model", model_,    "--prompt", "Once upon a time", "-n",  "30",
        "--temp", "1.0",     "--top-k", "0",        "--top-p",          "0.9", "--ctx",
        "64",     "--json"};
    const auto a = cli_run(base);
    QCOMPARE(a.code, 0);
    const auto ja = nlohmann::json::parse(a.out);
    const uint64_t seed = ja["seed"].get<uint64_t>();
    auto args = base;
    args.insert(args.end(), {"--seed", std::to_string(seed)});
    const auto jb = nlohmann::json::parse(cli_run(args).out);
    QCOMPARE(jb["seed"].get<uint64_t>(), seed);
    QVERIFY(jb["tokens"] == ja["tokens"]);
    QVERIFY(jb["text"] == ja["text"]);
    // Threads do not change the result.
    args.insert(args.end(), {"--threads", "2"});
    QVERIFY(nlohmann::json::parse(cli_run(args).out)["tokens"] == ja["tokens"]);
  }

  void run_stop_string_and_errors() {
    MOELAB_REQUIRE_SHARED(kStories);
    auto r = cli_run({"run", "-m", model_, "-p", "Once upon a time", "-n", "40", "--temp", "0",
                      "--stop", "Lily", "--json"});
    QCOMPARE(r.code, 0);
    auto j = nlohmann::json::parse(r.out);
    QCOMPARE(j["stop_reason"].get<std::string>(), std::string("stop_string"));
    QCOMPARE(j["text"].get<std::string>(), std::string(", there was a little girl named "));

    r = cli_run({"run", "-m", model_, "-p", "Hi", "--chat"});
    QCOMPARE(r.code, 2);
    QVERIFY(r.err.find("chat template") != std::string::npos);
    r = cli_run({"run", "-m", model_, "-p", "Once upon a time", "--ctx", "3"});
    QCOMPARE(r.code, 2);
    QVERIFY(r.err.find("context") != std::string::npos);
    r = cli_run({"run", "-m", (dir_ + "/missing.gguf").toStdString(), "-p", "x"});
    QCOMPARE(r.code, 2);
    r = cli_run({"run", "-m", model_, "-p", "x", "--top-p", "2"});
    QCOMPARE(r.code, 2);
  }

  void perplexity_json_matches_the_library() {
    MOELAB_REQUIRE_SHARED(kStories);
    const QString text_path = dir_ + "/story.txt";
    const std::string text =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
        "park with her friends. One day, she saw a big red ball under a tree. She ran to the "
        "ball and picked it up. Her friend Tom came and said, \"Can I play too?\" Lily smiled.";
    {
      QFile f(text_path);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(text.data(), static_cast<qint64>(text.size()));
    }
    const auto r = cli_run({"perplexity", "--model", model_, "--file", text_path.toStdString(),
                            "--ctx", "16", "--threads", "1", "--json"});
    QVERIFY2(r.code == 0, r.err.c_str());
    const auto j = nlohmann::json::parse(r.out);
    const auto lib = perplexity(Model::load(model_), text, {.n_ctx = 16});
    QCOMPARE(j["ppl"].get<double>(), lib.ppl);
    QCOMPARE(j["n_chunks"].get<int>(), lib.n_chunks);
    QCOMPARE(j["n_scored"].get<uint64_t>(), lib.n_scored);
    QVERIFY(j["method"].get<std::string>().find("non-overlapping chunks of 16 tokens") !=
            std::string::npos);
    // Plain output reports the method and the value.
    const auto p = cli_run({"perplexity", "-m", model_, "-f", text_path.toStdString(), "-c", "16"});
    QCOMPARE(p.code, 0);
    QVERIFY(p.out.find("method: llama.cpp perplexity method") != std::string::npos);
    QVERIFY(p.out.find("perplexity: ") != std::string::npos);
    // A text shorter than one chunk is bad input.
    const auto s =
        cli_run({"perplexity", "-m", model_, "-f", text_path.toStdString(), "-c", "4096"});
    QCOMPARE(s.code, 2);
  }
};

QTEST_GUILESS_MAIN(TestCliRuntime)
#include "test_cli_runtime.moc"
