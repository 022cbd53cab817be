// moelab-cli when things go wrong (issue: hardening, kinds 4-6), through the surfaces a person
// uses - the cli library with its exit codes and messages, and the moelab-cli executable
// (QProcess) for signals and another user's permissions:
//   - one validation: for every crafted hyper-parameter a forward pass cannot use, `inspect`
//     says "runnable: no", `inspect --check` and `run` exit 2 naming the same metadata key;
//     NaN/Inf weights stop `run` and `perplexity` with an error naming the tensor;
//   - store state on failure: a store write that fails marks the run failed with the cause at
//     once; a database this user cannot write is still read by the read commands;
//   - signals: SIGINT/SIGTERM end a stored `run` (and `sweep`, `eval`) as cancelled with the
//     tokens made so far and exit 128 + signal; an interrupted run's stored output is its text.
#include <QDir>
#include <QProcess>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <variant>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cli_run.h"
#include "moelab/gguf/gguf.h"
#include "moelab/gguf/writer.h"
#include "moelab/storage/store.h"
#include "moelab/storage/writer.h"
#include "test_support.h"

using namespace moelab;

namespace {
const QString kStories = QStringLiteral("fixtures/models/stories260K/stories260K.F32.gguf");

using moelab::test::cli_run;
using moelab::test::CliResult;

// A metadata override: a new value of the key's type, or std::monostate to drop the key.
using Override = std::variant<std::monostate, uint32_t, float, std::string>;

// Copies `src` to `dst` with metadata overrides (added when absent) and an optional edit of one
// F32 tensor's data: the crafted files a hostile or broken converter produces.
void write_variant(const std::string& src, const std::string& dst,
                   const std::map<std::string, Override>& over, const std::string& tensor = {},
                   const std::function<void(float*, int64_t)>& edit = {}) {
  auto f = gguf::File::open(src);
  gguf::Writer w;
  std::map<std::string, Override> left = over;
  auto put = [&](const std::string& key, const Override& o) {
    if (auto* u = std::get_if<uint32_t>(&o)) w.set_u32(key, *u);
    if (auto* x = std::get_if<float>(&o)) w.set_f32(key, *x);
    if (auto* s = std::get_if<std::string>(&o)) w.set_string(key, *s);
  };
  for (const auto& v : f->metadata()) {
    const std::string& k = v.key();
    if (k == "general.alignment") continue;
    if (auto it = left.find(k); it != left.end()) {
      put(k, it->second);
      left.erase(it);
      continue;
    }
    using T = gguf::ValueType;
    switch (v.type()) {
      case T::UINT8:
        w.set_u8(k, static_cast<uint8_t>(v.as_u64()));
        break;
      case T::UINT32:
      case T::UINT16:
        w.set_u32(k, static_cast<uint32_t>(v.as_u64()));
        break;
      case T::INT32:
      case T::INT16:
      case T::INT8:
        w.set_i32(k, static_cast<int32_t>(v.as_i64()));
        break;
      case T::UINT64:
      case T::INT64:
        w.set_u64(k, v.as_u64());
        break;
      case T::FLOAT32:
      case T::FLOAT64:
        w.set_f32(k, static_cast<float>(v.as_f64()));
        break;
      case T::BOOL:
        w.set_bool(k, v.as_bool());
        break;
      case T::STRING:
        w.set_string(k, v.as_string());
        break;
      case T::ARRAY: {
        if (v.elem_type() == T::STRING) {
          std::vector<std::string> s(v.strings().begin(), v.strings().end());
          w.set_array_string(k, s);
        } else if (v.elem_type() == T::FLOAT32) {
          std::vector<float> x(v.size());
          for (uint64_t i = 0; i < v.size(); ++i) x[i] = static_cast<float>(v.number_at(i));
          w.set_array_f32(k, x);
        } else {
          std::vector<int32_t> x(v.size());
          for (uint64_t i = 0; i < v.size(); ++i) x[i] = static_cast<int32_t>(v.int_at(i));
          w.set_array_i32(k, x);
        }
        break;
      }
    }
  }
  for (const auto& [k, o] : left) put(k, o);
  for (const auto& t : f->tensors()) {
    std::vector<int64_t> shape(t.ne, t.ne + t.n_dims);
    std::vector<uint8_t> data(t.data, t.data + t.nbytes);
    if (t.name == tensor && edit) {
      QCOMPARE_EQ(t.type, static_cast<uint32_t>(gguf::TensorType::F32));
      edit(reinterpret_cast<float*>(data.data()), t.n_elements());
    }
    w.add_tensor(t.name, static_cast<gguf::TensorType>(t.type), shape, data);
  }
  w.write(dst);
}

bool is_root() {
  return geteuid() == 0;
}
}  // namespace

class TestCliFailures : public QObject {
  Q_OBJECT
  QString dir_;

  std::string path(const std::string& name) const { return dir_.toStdString() + "/" + name; }

  // Starts moelab-cli; returns the process once `ready` has appeared on its stdout.
  // Starts a long `moelab-cli run --db DB --session SESSION` on the slow model and returns it
  // once a few tokens have streamed (`out` holds them), still running; null if it could not.
  std::unique_ptr<QProcess> start_long_run(const std::string& model, const std::string& db,
                                           const QString& session, const QString& seed,
                                           QByteArray& out) {
    auto p = std::make_unique<QProcess>();
    p->setProgram(QStringLiteral(MOELAB_CLI_EXE));
    p->setArguments({"run", "--model", QString::fromStdString(model), "--prompt", "Once", "-n",
                     "100000", "--ignore-eos", "--ctx", "2048", "--seed", seed, "--threads", "1",
                     "--db", QString::fromStdString(db), "--session", session});
    p->start();
    if (!p->waitForStarted(10000)) return nullptr;
    while (out.size() < 8 && p->state() == QProcess::Running) {
      p->waitForReadyRead(200);
      out += p->readAllStandardOutput();
    }
    return p->state() == QProcess::Running ? std::move(p) : nullptr;
  }

 private slots:
  void initTestCase() { dir_ = moelab::test::temp_dir("test_cli_failures"); }

  // Kind 4: one validation for inspect, inspect --check and run.
  void checks_agree_with_load_data() {
    QTest::addColumn<QString>("key");
    QTest::addColumn<QString>("kind");  // u32 / f32 / str
    QTest::addColumn<QString>("value");
    QTest::addColumn<QString>("named");  // what every message must name
    QTest::newRow("zero KV heads") << "llama.attention.head_count_kv"
                                   << "u32"
                                   << "0"
                                   << "head_count_kv";
    QTest::newRow("odd rope dims") << "llama.rope.dimension_count"
                                   << "u32"
                                   << "7"
                                   << "rope.dimension_count";
    QTest::newRow("rope dims > head") << "llama.rope.dimension_count"
                                      << "u32"
                                      << "4096"
                                      << "rope.dimension_count";
    QTest::newRow("negative eps") << "llama.attention.layer_norm_rms_epsilon"
                                  << "f32"
                                  << "-1e-5"
                                  << "layer_norm_rms_epsilon";
    QTest::newRow("NaN eps") << "llama.attention.layer_norm_rms_epsilon"
                             << "f32"
                             << "nan"
                             << "layer_norm_rms_epsilon";
    QTest::newRow("zero freq_base") << "llama.rope.freq_base"
                                    << "f32"
                                    << "0"
                                    << "rope.freq_base";
    QTest::newRow("NaN freq_base") << "llama.rope.freq_base"
                                   << "f32"
                                   << "nan"
                                   << "rope.freq_base";
    QTest::newRow("negative freq_base") << "llama.rope.freq_base"
                                        << "f32"
                                        << "-10000"
                                        << "rope.freq_base";
    QTest::newRow("unknown tokenizer") << "tokenizer.ggml.model"
                                       << "str"
                                       << "wordpiece-x"
                                       << "tokenizer.ggml.model";
    QTest::newRow("BPE without merges") << "tokenizer.ggml.model"
                                        << "str"
                                        << "gpt2"
                                        << "tokenizer.ggml.merges";
    QTest::newRow("block_count too small") << "llama.block_count"
                                           << "u32"
                                           << "4"
                                           << "llama.block_count is 4";
  }
  void checks_agree_with_load() {
    MOELAB_REQUIRE_SHARED(kStories);
    QFETCH(QString, key);
    QFETCH(QString, kind);
    QFETCH(QString, value);
    QFETCH(QString, named);
    Override o;
    if (kind == "u32") o = static_cast<uint32_t>(value.toUInt());
    if (kind == "f32") o = value == "nan" ? std::nanf("") : value.toFloat();
    if (kind == "str") o = value.toStdString();
    const std::string file = path(std::string(QTest::currentDataTag()) + ".gguf");
    write_variant(moelab::test::shared_path(kStories), file, {{key.toStdString(), o}});

    const auto check = cli_run({"inspect", "--check", "--no-hash", file});
    QCOMPARE(check.code, 2);
    QVERIFY2(check.err.find(named.toStdString()) != std::string::npos, check.err.c_str());
    QVERIFY2(check.out.find("runnable           no:") != std::string::npos, check.out.c_str());
    QVERIFY2(check.out.find(named.toStdString()) != std::string::npos, check.out.c_str());

    const auto card = cli_run({"inspect", "--json", "--no-hash", file});
    QCOMPARE(card.code, 0);
    QCOMPARE(nlohmann::json::parse(card.out)["runnable"].get<bool>(), false);

    const auto run = cli_run({"run", "--model", file, "--prompt", "Once", "-n", "2"});
    QCOMPARE(run.code, 2);
    QVERIFY2(run.err.find(named.toStdString()) != std::string::npos, run.err.c_str());
    QVERIFY(run.out.empty());
  }

  // The unmodified file: every surface says runnable (the checks are not too strict).
  void valid_file_is_runnable_everywhere() {
    MOELAB_REQUIRE_SHARED(kStories);
    const std::string file = path("valid.gguf");
    write_variant(moelab::test::shared_path(kStories), file, {});
    const auto check = cli_run({"inspect", "--check", "--no-hash", file});
    QVERIFY2(check.code == 0, check.err.c_str());
    QVERIFY(check.out.find("runnable           yes") != std::string::npos);
    const auto run = cli_run(
        {"run", "--model", file, "--prompt", "Once", "-n", "2", "--seed", "1", "--threads", "1"});
    QVERIFY2(run.code == 0, run.err.c_str());
  }

  // Kind 4: non-finite weights stop generation and perplexity, naming the tensor.
  void non_finite_weights_are_named_data() {
    QTest::addColumn<QString>("tensor");
    QTest::addColumn<float>("value");
    QTest::addColumn<QString>("what");
    // (A NaN in attn_q would not do: a head whose every K·Q score is NaN gets all-zero
    // probabilities from the softmax - llama.cpp's arithmetic - and the logits stay finite.)
    QTest::newRow("NaN in a down projection")
        << "blk.1.ffn_down.weight" << std::nanf("") << "blk.1.ffn_down.weight' holds NaN";
    QTest::newRow("Inf in the output norm")
        << "output_norm.weight" << INFINITY << "output_norm.weight' holds +Inf";
  }
  void non_finite_weights_are_named() {
    MOELAB_REQUIRE_SHARED(kStories);
    QFETCH(QString, tensor);
    QFETCH(float, value);
    QFETCH(QString, what);
    const std::string file = path(tensor.toStdString() + ".nonfinite.gguf");
    write_variant(moelab::test::shared_path(kStories), file, {}, tensor.toStdString(),
                  [value](float* x, int64_t n) {
                    for (int64_t i = 0; i < n; i += 37) x[i] = value;
                  });
    // The file itself is valid: inspect --check accepts it (the values are data, not layout).
    QCOMPARE(cli_run({"inspect", "--check", "--no-hash", file}).code, 0);
    const auto run = cli_run({"run", "--model", file, "--prompt", "Once upon a time", "-n", "4",
                              "--seed", "1", "--threads", "1"});
    QCOMPARE(run.code, 2);
    QVERIFY2(run.err.find("are not finite") != std::string::npos, run.err.c_str());
    QVERIFY2(run.err.find(what.toStdString()) != std::string::npos, run.err.c_str());
    QVERIFY2(run.err.find("row 0, column 0") != std::string::npos, run.err.c_str());

    const std::string text = path("ppl.txt");
    {
      std::ofstream t(text);
      for (int i = 0; i < 20; ++i) t << "Once upon a time there was a little girl named Lily. ";
    }
    const auto ppl =
        cli_run({"perplexity", "--model", file, "--file", text, "--ctx", "64", "--threads", "1"});
    QCOMPARE(ppl.code, 2);
    QVERIFY2(ppl.err.find(what.toStdString()) != std::string::npos, ppl.err.c_str());
    QVERIFY2(ppl.out.find("nan") == std::string::npos, ppl.out.c_str());
  }

  // Runs of models with different vocabularies compare (config, metrics, output); only KL is
  // marked not comparable - no "internal failure" for data the store legitimately holds. The
  // stored model path is absolute even when the run was given a relative one.
  void runs_of_different_models_compare() {
    MOELAB_REQUIRE_SHARED(kStories);
    const QString other =  // 32000 tokens against stories260K's 512
        QStringLiteral("fixtures/models/llama-dense-spm/llama-dense-spm.F32.gguf");
    MOELAB_REQUIRE_SHARED(other);
    const std::string db = path("two-models.db");
    const std::string stories = moelab::test::shared_path(kStories);
    const QString old_cwd = QDir::currentPath();
    QVERIFY(QDir::setCurrent(
        QString::fromStdString(std::filesystem::path(stories).parent_path().string())));
    const auto a = cli_run({"run", "--model", "stories260K.F32.gguf", "--prompt", "Once", "-n", "4",
                            "--seed", "1", "--threads", "1", "--db", db, "--json"});
    QDir::setCurrent(old_cwd);
    QVERIFY2(a.code == 0, a.err.c_str());
    const auto b = cli_run({"run", "--model", moelab::test::shared_path(other), "--prompt", "Once",
                            "-n", "4", "--seed", "1", "--threads", "1", "--db", db, "--json"});
    QVERIFY2(b.code == 0, b.err.c_str());
    const int64_t ia = nlohmann::json::parse(a.out)["run_id"].get<int64_t>();
    const int64_t ib = nlohmann::json::parse(b.out)["run_id"].get<int64_t>();
    {
      storage::Store s(db);
      const auto model = s.model(s.run(ia)->model_id);
      QVERIFY(model.has_value());
      QVERIFY2(std::filesystem::path(model->path).is_absolute(), model->path.c_str());
      QVERIFY(std::filesystem::equivalent(model->path, stories));
    }
    const auto c =
        cli_run({"compare", std::to_string(ia), std::to_string(ib), "--db", db, "--json"});
    QVERIFY2(c.code == 0, c.err.c_str());
    const auto j = nlohmann::json::parse(c.out);
    QVERIFY2(j["kl_next_token"].is_object(), c.out.c_str());
    QCOMPARE(j["kl_next_token"]["comparable"].get<bool>(), false);
    QVERIFY(j["kl_next_token"]["reason"].get<std::string>().find("vocabularies") !=
            std::string::npos);
    const auto t = cli_run({"compare", std::to_string(ia), std::to_string(ib), "--db", db});
    QVERIFY2(t.code == 0, t.err.c_str());
    QVERIFY2(t.out.find("KL is not comparable") != std::string::npos, t.out.c_str());
  }

  // Kind 5: a failing store write records the failure and its cause on the run at once.
  void store_failure_is_recorded_on_the_run() {
    const std::string db = path("full.db");
    int64_t run = 0;
    {
      storage::WriterOptions wo;
      wo.open.max_page_count = 64;  // 256 KiB: the token stream below does not fit
      storage::AsyncWriter w(db, wo);
      storage::RunWriter r(w, "s", std::nullopt, "{}", "prompt");
      run = r.id();
      bool failed = false;
      try {
        for (int i = 0; i < 20000 && !failed; ++i) {
          storage::TokenRecord t;
          t.position = i;
          t.id = i % 100;
          t.piece = std::string(200, static_cast<char>('a' + i % 26));
          r.token(std::move(t));
          if (i % 500 == 499) w.flush();
        }
      } catch (const storage::StorageError& e) {
        failed = true;
        QCOMPARE(e.kind(), storage::StorageErrorKind::DiskFull);
      }
      QVERIFY(failed);
    }
    storage::OpenOptions ro;
    ro.recover_interrupted = false;  // what the failing process itself wrote
    storage::Store s(db, ro);
    const auto rec = s.run(run);
    QVERIFY(rec.has_value());
    QCOMPARE(rec->status, storage::RunStatus::Failed);
    QVERIFY2(rec->error.find("store failed") != std::string::npos, rec->error.c_str());
    QVERIFY2(rec->error.find("full") != std::string::npos, rec->error.c_str());
    // The committed prefix is kept and the output is its text.
    QVERIFY(rec->n_tokens > 0);
    QCOMPARE(static_cast<int64_t>(rec->output.size()), rec->n_tokens * 200);
  }

  // Kind 5: read commands read a database this user cannot write.
  void read_only_database_is_readable() {
    MOELAB_REQUIRE_SHARED(kStories);
    const std::string ro_dir = path("ro");
    std::filesystem::create_directories(ro_dir);
    const std::string db = ro_dir + "/lab.db";
    const auto r = cli_run({"run", "--model", moelab::test::shared_path(kStories), "--prompt",
                            "Once", "-n", "3", "--seed", "2", "--threads", "1", "--db", db,
                            "--session", "ro-session", "--json"});
    QVERIFY2(r.code == 0, r.err.c_str());
    const int64_t id = nlohmann::json::parse(r.out)["run_id"].get<int64_t>();
    QCOMPARE(chmod(dir_.toStdString().c_str(), 0755), 0);
    QCOMPARE(chmod(ro_dir.c_str(), 0555), 0);
    QCOMPARE(chmod(db.c_str(), 0444), 0);
    // As root the file modes do not bind: run the executable as 'nobody' instead.
    QStringList pre;
    if (is_root())
      pre << "--reuid=65534"
          << "--regid=65534"
          << "--clear-groups";
    auto cli = [&](const QStringList& args) {
      QProcess p;
      if (is_root()) {
        p.setProgram("setpriv");
        p.setArguments(pre + QStringList{QStringLiteral(MOELAB_CLI_EXE)} + args);
      } else {
        p.setProgram(QStringLiteral(MOELAB_CLI_EXE));
        p.setArguments(args);
      }
      p.start();
      p.waitForFinished(60000);
      return std::make_tuple(p.exitCode(), p.readAllStandardOutput().toStdString(),
                             p.readAllStandardError().toStdString());
    };
    const QString qdb = QString::fromStdString(db);
    auto [c1, o1, e1] = cli({"sessions", "list", "--db", qdb});
    QVERIFY2(c1 == 0, e1.c_str());
    QVERIFY2(o1.find("ro-session") != std::string::npos, o1.c_str());
    auto [c2, o2, e2] = cli({"sessions", "show", "ro-session", "--db", qdb, "--json"});
    QVERIFY2(c2 == 0, e2.c_str());
    QCOMPARE(nlohmann::json::parse(o2)["runs"][0]["id"].get<int64_t>(), id);
    // Nothing was created next to the database.
    QVERIFY(!std::filesystem::exists(db + "-shm") || !is_root());
    chmod(ro_dir.c_str(), 0755);
    chmod(db.c_str(), 0644);
  }

  // Kind 6: SIGINT / SIGTERM end a stored run as cancelled with its tokens, exit 128 + signal.
  void signal_cancels_a_stored_run_data() {
    QTest::addColumn<int>("sig");
    QTest::newRow("SIGINT") << static_cast<int>(SIGINT);
    QTest::newRow("SIGTERM") << static_cast<int>(SIGTERM);
  }
  void signal_cancels_a_stored_run() {
    MOELAB_REQUIRE_SHARED(kStories);
    QFETCH(int, sig);
    // A model slow enough to be interrupted mid-run (random weights, about 60 MB of Q8_0).
    const std::string model = path("slow.gguf");
    if (!std::filesystem::exists(model)) {
      const auto m = cli_run({"make-model", "--arch", "llama", "--n-embd", "768", "--n-layer", "12",
                              "--n-head", "12", "--n-ff", "2048", "--type", "Q8_0", "--vocab-from",
                              moelab::test::shared_path(kStories), "-q", "-o", model});
      QVERIFY2(m.code == 0, m.err.c_str());
    }
    const std::string db = path("signals.db");
    QByteArray out;  // a few streamed tokens, then the signal
    auto p = start_long_run(model, db, "signals", "5", out);
    QVERIFY2(p, "the run ended before it could be interrupted");
    ::kill(static_cast<pid_t>(p->processId()), sig);
    QVERIFY(p->waitForFinished(60000));
    out += p->readAllStandardOutput();
    const std::string err = p->readAllStandardError().toStdString();
    QCOMPARE(p->exitStatus(), QProcess::NormalExit);
    QCOMPARE(p->exitCode(), 128 + sig);
    QVERIFY2(err.find(sig == SIGINT ? "SIGINT" : "SIGTERM") != std::string::npos, err.c_str());
    QVERIFY2(err.find("run id:") != std::string::npos, err.c_str());

    storage::Store s(db);
    const auto runs = s.runs(s.session_by_name("signals")->id);
    QVERIFY(!runs.empty());
    const auto& r = runs.back();
    QCOMPARE(r.status, storage::RunStatus::Cancelled);
    QVERIFY(r.n_tokens > 0);
    QVERIFY(r.n_tokens < 2000);
    // The stored text is what was streamed (the trailing newline is the CLI's own).
    std::string streamed = out.toStdString();
    while (!streamed.empty() && streamed.back() == '\n') streamed.pop_back();
    std::string stored = r.output;
    while (!stored.empty() && stored.back() == '\n') stored.pop_back();
    QCOMPARE(stored, streamed);
  }

  // A run killed outright (SIGKILL: nothing can be saved) is relabelled interrupted by the next
  // open, and its stored output is the text of the tokens it committed - not empty.
  void killed_run_output_is_its_tokens() {
    const std::string model = path("slow.gguf");
    if (!std::filesystem::exists(model)) QSKIP("needs the model of signal_cancels_a_stored_run");
    const std::string db = path("killed.db");
    QByteArray out;
    auto p = start_long_run(model, db, "k", "6", out);
    QVERIFY(p);
    QTest::qWait(1500);  // let the writer thread commit a few batches
    ::kill(static_cast<pid_t>(p->processId()), SIGKILL);
    QVERIFY(p->waitForFinished(30000));
    storage::Store s(db);  // recovery marks the run interrupted
    const auto runs = s.runs(s.session_by_name("k")->id);
    QCOMPARE(runs.back().status, storage::RunStatus::Interrupted);
    const auto toks = s.tokens(runs.back().id);
    QVERIFY(!toks.empty());
    std::string text;
    for (const auto& t : toks) text += t.piece;
    QCOMPARE(runs.back().output, text);
  }
};

QTEST_GUILESS_MAIN(TestCliFailures)
#include "test_cli_failures.moc"
