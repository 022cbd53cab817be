// moelab-cli consistency findings of a user trial (issue 16 item 3 / issue 22 kinds), through
// cli::run as a user's shell calls it (exit codes and message text):
//   1. run's generated text: control bytes as Unicode control pictures on a terminal (and with
//      --escape), the bytes as generated when piped;
//   2. --backend cuda without a CUDA device is refused (exit 2), auto falls back and says so;
//   3. the decode tokens/s run prints is the figure sessions show and compare give for the run;
//   4. compare warns when the runs' models, expert counts or prompts differ, and does not
//      compare per-expert routing loads across different expert counts;
//   5. report -o - writes to stdout; a missing database or one that is not a regular file is
//      exit 2 with the path for every command that reads one; run --db creates one;
//   6. an invalid --remote URL says what is wrong; a truncated GGUF says "truncated";
//   7. contradictory metadata is refused by inspect --check.
// Models are synthetic (make-model) with a vocabulary whose tokens hold escape sequences, so
// no shared fixture is needed.
#include <QFile>
#include <QProcess>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "cli_run.h"
#include "moelab/core/backends.h"
#include "moelab/gguf/writer.h"
#include "moelab/report/report.h"
#include "test_support.h"

using namespace moelab;
using moelab::test::cli_run;
using moelab::test::CliResult;
using Args = std::vector<std::string>;

namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::string describe(const Args& args, const CliResult& r) {
  std::string s = "moelab-cli";
  for (const auto& a : args) s += " " + a;
  return s + "\n  exit " + std::to_string(r.code) + "\n  stdout: " + r.out.substr(0, 2000) +
         "\n  stderr: " + r.err;
}

// Runs `args`, expects exit 2, "error: " and `message` in stderr.
#define EXPECT_REFUSED(args, message)                                                      \
  do {                                                                                     \
    const Args a_ = (args);                                                                \
    const CliResult r_ = cli_run(a_);                                                      \
    QVERIFY2(r_.code == 2 && contains(r_.err, "error: ") && contains(r_.err, message),     \
             qPrintable(QString::fromStdString(describe(a_, r_) +                          \
                                               "\n  expected: " + std::string(message)))); \
  } while (0)

#define EXPECT_OK(args, result)                    \
  const Args args_##result = (args);               \
  const CliResult result = cli_run(args_##result); \
  QVERIFY2(result.code == 0, qPrintable(QString::fromStdString(describe(args_##result, result))))

}  // namespace

class TestCliConsistency : public QObject {
  Q_OBJECT
  QString dir_;
  std::string vocab_, m4_, m8_;

  std::string path(const std::string& name) const {
    return (dir_ + "/" + QString::fromStdString(name)).toStdString();
  }

  // `run` on `model`, greedy and deterministic (one thread), `n` tokens, `extra` appended.
  static Args run_args(const std::string& model, const std::string& prompt, Args extra = {},
                       const std::string& n = "24") {
    Args a = {"run",    "-m", model,          "-p",        prompt, "-n",    n,
              "--temp", "0",  "--ignore-eos", "--threads", "1",    "--ctx", "64"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // The run id "run id: N" on stderr of a stored text-mode run.
  static int64_t run_id_of(const CliResult& r) {
    const size_t at = r.err.find("run id: ");
    return at == std::string::npos ? 0 : std::stoll(r.err.substr(at + 8));
  }

  // The runs of session `name` in `db` (sessions show --json).
  static nlohmann::json session_runs(const std::string& db, const std::string& name) {
    const auto r = cli_run({"sessions", "show", name, "--json", "--db", db});
    if (r.code != 0) return nlohmann::json::array();
    return nlohmann::json::parse(r.out)["runs"];
  }

 private slots:
  void initTestCase() {
    dir_ = moelab::test::temp_dir("test_cli_consistency");
    // A vocabulary whose ordinary tokens are escape sequences and bell characters: whatever a
    // model samples, its text holds control bytes.
    vocab_ = path("esc-vocab.gguf");
    {
      gguf::Writer w;
      w.set_string("general.architecture", "llama");
      w.set_string("tokenizer.ggml.model", "llama");
      w.set_array_string("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>",
                                                   "\xe2\x96\x81"
                                                   "a",
                                                   "a", "\x1b[31m", "\x07", "\x1b]0;x\x07",
                                                   "x\x1b[0m", "\x1b[2J", "b\x07", "\x1b(B"});
      const std::vector<float> scores(12, 0.0f);
      w.set_array_f32("tokenizer.ggml.scores", scores);
      const std::vector<int32_t> types = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
      w.set_array_i32("tokenizer.ggml.token_type", types);
      w.set_u32("tokenizer.ggml.bos_token_id", 1);
      w.set_u32("tokenizer.ggml.eos_token_id", 2);
      w.write(vocab_);
    }
    m4_ = path("moe4.gguf");
    m8_ = path("moe8.gguf");
    for (const auto& [out, experts] : {std::pair{m4_, "4"}, std::pair{m8_, "8"}}) {
      EXPECT_OK((Args{"make-model", "-q", "--arch", "mixtral", "--experts", experts, "--top-k", "2",
                      "--vocab-from", vocab_, "-o", out}),
                made);
    }
  }

  // 1. On a terminal the text shows its control bytes as control pictures (the reports'
  // visible_text); piped it is the generated bytes; --escape escapes when piped too.
  void run_text_is_escaped_on_a_terminal_and_raw_when_piped() {
    const Args a = run_args(m4_, "a");
    const CliResult piped = cli_run(a);
    QVERIFY2(piped.code == 0, qPrintable(QString::fromStdString(describe(a, piped))));
    QVERIFY2(contains(piped.out, "\x1b") || contains(piped.out, "\x07"), piped.out.c_str());
    const CliResult tty = cli_run(a, true);
    QVERIFY2(tty.code == 0, tty.err.c_str());
    QVERIFY2(!contains(tty.out, "\x1b") && !contains(tty.out, "\x07"), tty.out.c_str());
    // ESC -> U+241B, BEL -> U+2407; everything else as generated (greedy: the same tokens).
    QVERIFY2(contains(tty.out, "\xe2\x90\x9b") || contains(tty.out, "\xe2\x90\x87"),
             tty.out.c_str());
    QCOMPARE(tty.out, report::visible_text(piped.out));
    Args e = a;
    e.push_back("--escape");
    const CliResult escaped = cli_run(e);
    QVERIFY2(escaped.code == 0, escaped.err.c_str());
    QCOMPARE(escaped.out, tty.out);
    // --json is JSON (control characters as \u001b), never raw bytes.
    Args j = a;
    j.push_back("--json");
    const CliResult json = cli_run(j);
    QVERIFY2(json.code == 0, json.err.c_str());
    QVERIFY(!contains(json.out, "\x1b"));
    QCOMPARE(nlohmann::json::parse(json.out)["text"].get<std::string>() + "\n", piped.out);
  }

  // 2. An explicit --backend cuda never falls back silently.
  void backend_cuda_without_a_device_is_refused() {
    for (const auto& b : probe_backends())
      if (b.name == "cuda" && b.available) QSKIP("a CUDA device is present on this machine");
    EXPECT_REFUSED(run_args(m4_, "a", {"--backend", "cuda"}), "--backend cuda: no CUDA device (");
    EXPECT_REFUSED((Args{"logits", "--model", m4_, "--tokens", "1,3", "--out", path("l.bin"),
                         "--backend", "cuda"}),
                   "--backend cuda: no CUDA device (");
    QVERIFY(!QFile::exists(QString::fromStdString(path("l.bin"))));
    // auto runs on the CPU and says why on stderr.
    const CliResult r = cli_run(run_args(m4_, "a", {"--backend", "auto", "--json"}));
    QVERIFY2(r.code == 0, r.err.c_str());
    QVERIFY2(contains(r.err, "CUDA unavailable (") && contains(r.err, "running on the CPU"),
             r.err.c_str());
    QCOMPARE(nlohmann::json::parse(r.out)["backend"].get<std::string>(), std::string("cpu"));
  }

  // 3. One decode tokens/s (compare::latency_figures) in run, sessions show, the stored metric
  // and compare.
  void decode_tokens_per_s_is_the_stored_figure() {
    const std::string db = path("tps.db");
    const CliResult j = cli_run(run_args(m4_, "a", {"--json", "--db", db, "--session", "tps"}));
    QVERIFY2(j.code == 0, j.err.c_str());
    const auto rj = nlohmann::json::parse(j.out);
    const double printed = rj["tokens_per_s"].get<double>();
    QVERIFY(printed > 0);
    const CliResult t = cli_run(run_args(m4_, "a", {"--db", db, "--session", "tps"}));
    QVERIFY2(t.code == 0, t.err.c_str());
    const int64_t text_id = run_id_of(t);
    QVERIFY2(text_id > 0, t.err.c_str());

    const auto runs = session_runs(db, "tps");
    QCOMPARE(runs.size(), size_t{2});
    for (const auto& run : runs) {
      const double stored = run["decode_tokens_per_s"].get<double>();
      QCOMPARE(run["metrics"]["tokens_per_s"].get<double>(), stored);
      if (run["id"] == rj["run_id"]) {
        QCOMPARE(printed, stored);
      } else {
        QCOMPARE(run["id"].get<int64_t>(), text_id);
        char want[64];
        std::snprintf(want, sizeof want, "; decode %.1f tok/s;", stored);
        QVERIFY2(contains(t.err, want), qPrintable(QString::fromStdString(t.err + " / " + want)));
      }
    }
    const CliResult c = cli_run({"compare", std::to_string(rj["run_id"].get<int64_t>()),
                                 std::to_string(text_id), "--json", "--db", db});
    QVERIFY2(c.code == 0, c.err.c_str());
    bool seen = false;
    const auto cj = nlohmann::json::parse(c.out);
    for (const auto& m : cj["metrics"])
      if (m["key"] == "decode_tokens_per_s") {
        QCOMPARE(m["a"].get<double>(), printed);
        seen = true;
      }
    QVERIFY(seen);
  }

  // 4. Different models, expert counts and prompts are said; per-expert loads are not compared
  // across different expert counts.
  void compare_warns_about_different_models_and_prompts() {
    const std::string db = path("cmp.db");
    auto stored = [&](const std::string& model, const std::string& prompt) {
      const CliResult r = cli_run(run_args(model, prompt, {"--db", db}, "8"));
      if (r.code != 0) qWarning("%s", r.err.c_str());
      return std::to_string(run_id_of(r));
    };
    const std::string a4 = stored(m4_, "a"), b4 = stored(m4_, "a"), c8 = stored(m8_, "a a");
    QVERIFY(a4 != "0" && b4 != "0" && c8 != "0");

    // The same model and prompt, greedy: one experiment, nothing to warn about.
    const CliResult same = cli_run({"compare", a4, b4, "--json", "--db", db});
    QVERIFY2(same.code == 0, same.err.c_str());
    QVERIFY2(!contains(same.err, "warning"), same.err.c_str());
    const auto sj = nlohmann::json::parse(same.out);
    QCOMPARE(sj["warnings"].size(), size_t{0});
    QVERIFY(!sj["routing"].empty());

    const CliResult text = cli_run({"compare", c8, a4, "--db", db});
    QVERIFY2(text.code == 0, text.err.c_str());
    QVERIFY2(contains(text.err, "warning: A and B are runs of different models (A: moe8.gguf ("),
             text.err.c_str());
    QVERIFY2(contains(text.err,
                      "warning: A and B have different expert counts (A 8, B 4): "
                      "per-expert routing loads are not compared"),
             text.err.c_str());
    QVERIFY2(contains(text.err, "warning: A and B have different prompts"), text.err.c_str());
    QVERIFY2(contains(text.out, "not compared: the models have different expert counts"),
             text.out.c_str());
    QVERIFY2(!contains(text.out, "largest load change"), text.out.c_str());

    const CliResult json = cli_run({"compare", c8, a4, "--json", "--db", db});
    QVERIFY2(json.code == 0, json.err.c_str());
    const auto j = nlohmann::json::parse(json.out);
    QCOMPARE(j["warnings"].size(), size_t{3});
    QVERIFY(contains(j["warnings"][1].get<std::string>(), "different expert counts (A 8, B 4)"));
    QCOMPARE(j["routing"].size(), size_t{0});

    // Groups: each run against the first run of A.
    const CliResult g = cli_run({"compare", "--a", a4, "--b", b4 + "," + c8, "--json", "--db", db});
    QVERIFY2(g.code == 0, g.err.c_str());
    const auto gj = nlohmann::json::parse(g.out);
    QCOMPARE(gj["warnings"].size(), size_t{3});
    QVERIFY2(
        contains(g.err, "warning: run " + a4 + " and run " + c8 + " are runs of different models"),
        g.err.c_str());
    QCOMPARE(gj["routing"].size(), size_t{0});

    // The reports say the same (compare::check_comparable): warnings as notes, no per-expert
    // figures across different expert counts; and nothing for one experiment.
    const CliResult rj =
        cli_run({"report", "--db", db, "--compare", c8, a4, "--format", "json", "-o", "-"});
    QVERIFY2(rj.code == 0, rj.err.c_str());
    const auto rc = nlohmann::json::parse(rj.out)["comparison"];
    QCOMPARE(rc["warnings"], j["warnings"]);
    QCOMPARE(rc["per_expert_refused"].get<bool>(), true);
    QCOMPARE(rc["routing"].size(), size_t{0});
    {
      // HTML draws figures (a QGuiApplication): the executable, its stdout as a pipe.
      QProcess p;
      p.start(QStringLiteral(MOELAB_CLI_EXE),
              {"report", "--db", QString::fromStdString(db), "--compare",
               QString::fromStdString(c8), QString::fromStdString(a4), "-o", "-", "-q"});
      QVERIFY(p.waitForFinished(120000));
      QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
      const std::string html = p.readAllStandardOutput().toStdString();
      QVERIFY2(contains(html, "Warning: A and B have different expert counts (A 8, B 4)"),
               html.substr(0, 400).c_str());
      QVERIFY(contains(html, "Not compared: the runs&#39; models have different expert counts") ||
              contains(html, "Not compared: the runs' models have different expert counts"));
      QVERIFY(!contains(html, "Expert load difference A - B"));
    }
    const CliResult rs =
        cli_run({"report", "--db", db, "--compare", a4, b4, "--format", "json", "-o", "-"});
    QVERIFY2(rs.code == 0, rs.err.c_str());
    const auto rsc = nlohmann::json::parse(rs.out)["comparison"];
    QCOMPARE(rsc["warnings"].size(), size_t{0});
    QVERIFY(!rsc["routing"].empty());
  }

  // 5. "-" is stdout for report; missing and non-regular databases are exit 2 with the path.
  void report_to_stdout_and_database_paths() {
    const std::string db = path("rep.db");
    const CliResult r = cli_run(run_args(m4_, "a", {"--db", db}, "6"));
    QVERIFY2(r.code == 0, r.err.c_str());
    QVERIFY(QFile::exists(QString::fromStdString(db)));  // run --db creates the database
    const std::string id = std::to_string(run_id_of(r));
    QFile::remove("-");
    const CliResult rep =
        cli_run({"report", "--db", db, "--run", id, "-f", "json", "-o", "-", "-q"});
    QVERIFY2(rep.code == 0, rep.err.c_str());
    const auto doc = nlohmann::json::parse(rep.out);
    QVERIFY(doc.is_object());
    QVERIFY2(contains(rep.out, "\"run_id\": " + id) || contains(rep.out, "\"id\": " + id),
             rep.out.substr(0, 400).c_str());
    QVERIFY(!QFile::exists("-"));
    {
      // HTML draws figures (a QGuiApplication): the executable, its stdout as a pipe.
      QProcess p;
      p.start(QStringLiteral(MOELAB_CLI_EXE),
              {"report", "--db", QString::fromStdString(db), "--run", QString::fromStdString(id),
               "-f", "html", "-o", "-", "-q"});
      QVERIFY(p.waitForFinished(120000));
      QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
      const QByteArray html = p.readAllStandardOutput();
      QVERIFY2(html.startsWith("<!DOCTYPE html>"), html.left(100).constData());
      QVERIFY(html.trimmed().endsWith("</html>"));
    }
    EXPECT_REFUSED((Args{"report", "--db", db, "--run", id, "-f", "md", "-o", "-"}),
                   "-o -: a md report is several files");
    const CliResult help = cli_run({"report", "--help"});
    QVERIFY(contains(help.out, "'-' writes the document to stdout"));

    const std::string missing = path("missing.db");
    const std::string no_db = missing + ": no database here";
    EXPECT_REFUSED((Args{"sessions", "list", "--db", missing}), no_db);
    EXPECT_REFUSED((Args{"sessions", "list", "--json", "--db", missing}), no_db);
    EXPECT_REFUSED((Args{"sessions", "show", "x", "--db", missing}), no_db);
    EXPECT_REFUSED((Args{"compare", "1", "2", "--db", missing}), no_db);
    EXPECT_REFUSED((Args{"report", "--db", missing, "--run", "1", "-o", path("r.html")}), no_db);
    QVERIFY(!QFile::exists(QString::fromStdString(missing)));  // nothing was created

    EXPECT_REFUSED((Args{"sessions", "list", "--db", "/dev/null"}),
                   "/dev/null: not a regular file (a character device); --db needs a database");
    EXPECT_REFUSED(run_args(m4_, "a", {"--db", "/dev/null"}),
                   "/dev/null: not a regular file (a character device)");
    EXPECT_REFUSED(run_args(m4_, "a", {"--db", dir_.toStdString()}),
                   "not a regular file (a folder)");
  }

  // 6. URLs and truncated files say what is wrong.
  void invalid_urls_and_truncated_files_say_what_is_wrong() {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"htp://x", "invalid URL 'htp://x': the scheme 'htp' is not http or https"},
        {"localhost:8080", "invalid URL 'localhost:8080': it must start with http:// or https://"},
        {"http://", "invalid URL 'http://': there is no host"},
        {"http://host:99999",
         "invalid URL 'http://host:99999': the port '99999' is not a number "
         "from 1 to 65535"},
        {"http://host:0/v1", "the port '0' is not a number from 1 to 65535"},
        {"http://host:/v1", "the port '' is not a number"},
        {"http://[::1", "invalid URL 'http://[::1': the IPv6 address has no closing ']'"},
        {"http://ho st:80", "the host 'ho st' has the character ' '"},
    };
    for (const auto& [url, message] : cases)
      EXPECT_REFUSED((Args{"run", "--remote", url, "--remote-model", "m", "-p", "hi"}), message);

    QFile f(QString::fromStdString(m4_));
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QByteArray whole = f.readAll();
    for (const qsizetype n : {qsizetype{30}, qsizetype{300}, whole.size() / 2}) {
      const std::string t = path("trunc" + std::to_string(n) + ".gguf");
      QFile o(QString::fromStdString(t));
      QVERIFY(o.open(QIODevice::WriteOnly | QIODevice::Truncate));
      o.write(whole.left(n));
      o.close();
      const CliResult r = cli_run({"inspect", t});
      QVERIFY2(r.code == 2 && contains(r.err, "truncated") && contains(r.err, "(byte "),
               qPrintable(QString::fromStdString(describe({"inspect", t}, r))));
    }
  }

  // 7. Contradictory metadata is refused (inspect --check, exit 2), naming the key.
  void contradictory_metadata_is_refused() {
    struct Case {
      const char* name;
      uint32_t embd, heads, rope, experts, used;
      const char* message;
    };
    const Case cases[] = {
        {"rope.gguf", 64, 4, 32, 0, 0, "rope.dimension_count' is 32"},
        {"heads.gguf", 64, 3, 0, 0, 0, "embedding_length 64 is not divisible by head_count 3"},
        {"experts.gguf", 64, 4, 0, 2, 4, "expert_used_count 4 exceeds expert_count 2"},
    };
    for (const Case& c : cases) {
      const std::string p = path(c.name);
      gguf::Writer w;
      w.set_string("general.architecture", "llama");
      w.set_u32("llama.block_count", 1);
      w.set_u32("llama.embedding_length", c.embd);
      w.set_u32("llama.attention.head_count", c.heads);
      w.set_u32("llama.feed_forward_length", 128);
      w.set_u32("llama.context_length", 64);
      if (c.rope) w.set_u32("llama.rope.dimension_count", c.rope);
      if (c.experts) {
        w.set_u32("llama.expert_count", c.experts);
        w.set_u32("llama.expert_used_count", c.used);
      }
      w.write(p);
      const CliResult r = cli_run({"inspect", "--check", "--no-hash", p});
      QVERIFY2(r.code == 2 && contains(r.out + r.err, c.message),
               qPrintable(QString::fromStdString(describe({"inspect", "--check", p}, r))));
    }
  }

  // 8. Every subcommand that reads a model takes -m as --model (logits did not): same logits.
  void model_short_option_everywhere() {
    const CliResult a = cli_run({"logits", "-m", m4_, "--tokens", "1,3", "--out", path("m1.bin")});
    QVERIFY2(a.code == 0, a.err.c_str());
    const CliResult b =
        cli_run({"logits", "--model", m4_, "--tokens", "1,3", "--out", path("m2.bin")});
    QVERIFY2(b.code == 0, b.err.c_str());
    QFile fa(QString::fromStdString(path("m1.bin"))), fb(QString::fromStdString(path("m2.bin")));
    QVERIFY(fa.open(QIODevice::ReadOnly) && fb.open(QIODevice::ReadOnly));
    const QByteArray da = fa.readAll();
    QVERIFY(da.size() > 0);
    QCOMPARE(da, fb.readAll());
  }
};

QTEST_GUILESS_MAIN(TestCliConsistency)
#include "test_cli_consistency.moc"
