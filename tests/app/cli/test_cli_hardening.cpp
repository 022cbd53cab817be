// moelab-cli against hostile input (issue 22, kinds 1, 2, 3 and 7), table-driven over the
// commands, through cli::run as a user's shell would call it (exit codes and message text):
//   1. writers (make-model, logits, report) never replace or write into a FIFO, device, folder or
//      dangling link, write through a symbolic link, leave no partial file when a write fails,
//      remove the temporaries of killed writers, and check the free space first;
//   2. text inputs and model paths: FIFOs, folders and devices are refused without blocking,
//      reads are bounded (64 MiB), read errors name the path, binary text is refused;
//   3. every numeric option has a readable range, nothing wraps, one memory preflight before the
//      KV cache with the bytes needed and available, a warning past the trained length;
//   7. duplicated run ids / seeds / configurations are refused, metadata bytes are escaped on the
//      terminal and replaced in JSON, --system needs --chat, messages do not guess "disk full",
//      and a PDF report is byte-identical between two processes.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <QProcess>
#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checks.h"
#include "cli.h"
#include "cli_run.h"
#include "moelab/core/files.h"
#include "moelab/gguf/gguf.h"
#include "moelab/gguf/writer.h"
#include "moelab/model/card.h"
#include "test_support.h"

using namespace moelab;
using moelab::cli::first_non_text_byte;
using moelab::cli::printable;

namespace {
const QString kStories = QStringLiteral("fixtures/models/stories260K/stories260K.F32.gguf");

using moelab::test::cli_run;
using moelab::test::CliResult;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::string describe(const std::vector<std::string>& args, const CliResult& r) {
  std::string s = "moelab-cli";
  for (const auto& a : args) s += " " + a;
  return s + "\n  exit " + std::to_string(r.code) + "\n  stderr: " + r.err;
}

// Runs `args`, expects exit 2 and `message` in stderr.
#define EXPECT_REFUSED(args, message)                                                      \
  do {                                                                                     \
    const std::vector<std::string> a_ = (args);                                            \
    const CliResult r_ = cli_run(a_);                                                      \
    QVERIFY2(r_.code == 2 && contains(r_.err, "error: ") && contains(r_.err, message),     \
             qPrintable(QString::fromStdString(describe(a_, r_) +                          \
                                               "\n  expected: " + std::string(message)))); \
  } while (0)

mode_t lmode(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 ? st.st_mode : 0;
}

// Temporaries "<name>.part*" in the folder of `path`.
QStringList parts_of(const std::string& path) {
  const QFileInfo fi(QString::fromStdString(path));
  return QDir(fi.absolutePath())
      .entryList({fi.fileName() + ".part*"}, QDir::Files | QDir::System | QDir::Hidden);
}

void write_file(const std::string& path, const std::string& bytes) {
  QFile f(QString::fromStdString(path));
  QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
  f.write(bytes.data(), static_cast<qint64>(bytes.size()));
}
std::string read_file(const std::string& path) {
  return moelab::test::read_all(QString::fromStdString(path)).toStdString();
}

struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const std::string& v) : name(n) { ::setenv(n, v.c_str(), 1); }
  ~ScopedEnv() { ::unsetenv(name.c_str()); }
};

// A pid that no process has: a child that already exited and was reaped.
pid_t dead_pid() {
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  ::waitpid(p, nullptr, 0);
  return p;
}
}  // namespace

class TestCliHardening : public QObject {
  Q_OBJECT
  std::string dir_, model_, text_, fifo_, folder_, binary_, big_, unreadable_, missing_;
  bool root_ = ::geteuid() == 0;

  std::string path(const char* name) const { return dir_ + "/" + name; }

 private slots:
  void initTestCase() {
    dir_ = moelab::test::temp_dir("test_cli_hardening").toStdString();
    model_ = path("tiny.gguf");
    // The default synthetic llama: n_embd 64, 2 layers, 4 heads, 2 KV heads (head_dim 16),
    // vocabulary 512, context_length 2048.
    const auto r = cli_run({"make-model", "-q", "-o", model_});
    QVERIFY2(r.code == 0, r.err.c_str());
    text_ = path("text.txt");
    write_file(text_, "Once upon a time there was a tiny model.\n");
    fifo_ = path("fifo");
    QCOMPARE(::mkfifo(fifo_.c_str(), 0644), 0);
    folder_ = path("folder");
    QVERIFY(QDir().mkpath(QString::fromStdString(folder_)));
    binary_ = path("binary.bin");
    write_file(binary_, std::string("text\0with a NUL", 15));
    big_ = path("big.txt");  // sparse: 65 MiB by its size, nothing on disk
    {
      QFile f(QString::fromStdString(big_));
      QVERIFY(f.open(QIODevice::WriteOnly));
      QVERIFY(f.resize(65ll << 20));
    }
    unreadable_ = path("unreadable.txt");
    write_file(unreadable_, "secret");
    ::chmod(unreadable_.c_str(), 0);
    missing_ = path("missing.txt");
  }

  // ---- kind 1: writers --------------------------------------------------------------------

  void writers_refuse_non_regular_targets() {
    const std::string dangling = path("dangling.gguf");
    QCOMPARE(::symlink("does-not-exist.gguf", dangling.c_str()), 0);
    struct Target {
      std::string path, message;
    };
    const std::vector<Target> targets = {
        {fifo_, "is a named pipe (FIFO), not a regular file; moelab writes only regular files"},
        {folder_, "is a folder, not a regular file"},
        {"/dev/null", "is a character device, not a regular file"},
        {dangling, "is a symbolic link to a missing or unreachable file"},
    };
    using Args = std::vector<std::string>;
    const std::vector<std::function<Args(const std::string&)>> writers = {
        [&](const std::string& t) {
          return Args{"make-model", "-q", "-o", t};
        },
        [&](const std::string& t) {
          return Args{"logits", "--model", model_, "--tokens", "1,2", "--out", t};
        },
    };
    for (const auto& w : writers)
      for (const auto& t : targets) {
        const mode_t before = lmode(t.path);
        EXPECT_REFUSED(w(t.path), "error: " + t.path + ": " + t.message);
        QCOMPARE(lmode(t.path), before);  // still the FIFO, folder, device, link
        QVERIFY2(parts_of(t.path).isEmpty(), t.path.c_str());
      }
    QVERIFY(QDir(QString::fromStdString(folder_)).isEmpty());
  }

  void writers_write_through_links_and_keep_modes() {
    const std::string real = path("real.gguf"), link = path("link.gguf");
    write_file(real, "old");
    ::chmod(real.c_str(), 0640);
    QCOMPARE(::symlink("real.gguf", link.c_str()), 0);
    const auto r = cli_run({"make-model", "-q", "-o", link});
    QVERIFY2(r.code == 0, r.err.c_str());
    QVERIFY(S_ISLNK(lmode(link)));         // the link stays a link
    QCOMPARE(lmode(real) & 07777, 0640u);  // the file keeps its mode
    QCOMPARE(gguf::File::open(real)->tensors().size(), gguf::File::open(model_)->tensors().size());
    QVERIFY(parts_of(real).isEmpty());

    // A file the user may not write is refused, not replaced (root may write anything).
    if (!root_) {
      const std::string ro = path("readonly.gguf");
      write_file(ro, "keep me");
      ::chmod(ro.c_str(), 0444);
      EXPECT_REFUSED((std::vector<std::string>{"make-model", "-q", "-o", ro}),
                     "error: " + ro + ": cannot write the file: Permission denied");
      QCOMPARE(read_file(ro), std::string("keep me"));
    }
    // A folder that does not exist is named.
    EXPECT_REFUSED(
        (std::vector<std::string>{"make-model", "-q", "-o", path("no/such/dir/m.gguf")}),
        "cannot write into the folder '" + path("no/such/dir") + "': No such file or directory");
  }

  void writers_remove_temporaries_of_killed_writers() {
    const std::string out = path("stale.gguf");
    const std::string dead = out + ".part." + std::to_string(dead_pid());
    const std::string dead2 = out + ".part." + std::to_string(dead_pid()) + "-2";
    const std::string alive = out + ".part." + std::to_string(::getppid());  // a running writer
    for (const auto& p : {dead, dead2, alive}) write_file(p, std::string(4096, 'x'));
    const auto r = cli_run({"make-model", "-q", "-o", out});
    QVERIFY2(r.code == 0, r.err.c_str());
    QVERIFY(!QFileInfo::exists(QString::fromStdString(dead)));
    QVERIFY(!QFileInfo::exists(QString::fromStdString(dead2)));
    QVERIFY(QFileInfo::exists(QString::fromStdString(alive)));
    QCOMPARE(parts_of(out).size(), 1);
    ::unlink(alive.c_str());
  }

  void failed_writes_leave_the_old_file_and_no_part() {
    // A write that fails half-way (file size limit: EFBIG) must keep the previous file intact and
    // leave no temporary; the message gives the system's reason and does not guess "disk full".
    const std::string out = path("limited.bin");
    write_file(out, "previous contents");
    struct rlimit old {};
    ::getrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = 4096;
    QCOMPARE(::setrlimit(RLIMIT_FSIZE, &small), 0);
    const std::vector<std::vector<std::string>> writers = {
        {"make-model", "-q", "-o", out},
        {"logits", "--model", model_, "--tokens", "1,2,3", "--out", out},
    };
    std::vector<CliResult> results;
    for (const auto& w : writers) results.push_back(cli_run(w));
    ::setrlimit(RLIMIT_FSIZE, &old);
    for (size_t i = 0; i < writers.size(); ++i) {
      const auto& r = results[i];
      QVERIFY2(r.code == 2, describe(writers[i], r).c_str());
      QVERIFY2(contains(r.err, "error: " + out + ": cannot write the file: File too large"),
               r.err.c_str());
      QVERIFY2(!contains(r.err, "disk"), r.err.c_str());
      QCOMPARE(read_file(out), std::string("previous contents"));
      QVERIFY(parts_of(out).isEmpty());
    }
    // "disk full" only for ENOSPC / EDQUOT.
    QVERIFY(contains(os_reason(ENOSPC), "(the disk is full)"));
    QVERIFY(!contains(os_reason(EACCES), "disk"));
    QVERIFY(!contains(os_reason(EFBIG), "disk"));
  }

  void writers_check_the_free_space_first() {
    struct statvfs vs {};
    QCOMPARE(::statvfs(dir_.c_str(), &vs), 0);
    const uint64_t avail = static_cast<uint64_t>(vs.f_bavail) * vs.f_frsize;
    if (avail >= (1ull << 40)) QSKIP("the test folder has 1 TiB free");
    // token_embd and output: 65536 x 4194304 F32 = 1 TiB each; attn_q/k/v/output 16 GiB each.
    const std::string out = path("huge.gguf");
    EXPECT_REFUSED((std::vector<std::string>{"make-model", "-q", "-o", out, "--n-embd", "65536",
                                             "--n-vocab", "4194304", "--n-layer", "1", "--n-head",
                                             "1", "--n-head-kv", "1", "--n-ff", "1"}),
                   "error: " + out +
                       ": not enough free space: writing needs 2112.00 GiB, the file system has ");
    QVERIFY(!QFileInfo::exists(QString::fromStdString(out)));
    QVERIFY(parts_of(out).isEmpty());
  }

  // ---- kind 2: inputs ---------------------------------------------------------------------

  void text_inputs_are_regular_bounded_files() {
    struct Input {
      std::string path, message;
    };
    std::vector<Input> inputs = {
        {fifo_, "is a named pipe (FIFO), not a regular file (give a text file)"},
        {folder_, "is a folder, not a regular file"},
        {"/dev/zero", "is a character device, not a regular file"},
        {big_, "the text file is 65.0 MiB, more than the 64.0 MiB moelab reads"},
        {missing_, "cannot open the text file: No such file or directory"},
    };
    if (!root_) inputs.push_back({unreadable_, "cannot open the text file: Permission denied"});
    const std::string db = path("inputs.sqlite");
    using Args = std::vector<std::string>;
    const std::vector<std::function<Args(const std::string&)>> commands = {
        [&](const std::string& f) {
          return Args{"tokenize", "-m", model_, "-f", f};
        },
        [&](const std::string& f) {
          return Args{"perplexity", "-m", model_, "-f", f};
        },
        [&](const std::string& f) { return Args{"eval", "-m", model_, "-f", f, "--db", db}; },
        [&](const std::string& f) {
          return Args{"sweep", "-m", model_, "-f", f, "--session", "s", "--db", db};
        },
    };
    for (const auto& c : commands)
      for (const auto& in : inputs)
        EXPECT_REFUSED(c(in.path), "error: " + in.path + ": " + in.message);
    // Nothing was stored for a text that could not be read.
    QVERIFY(!QFileInfo::exists(QString::fromStdString(db)));
  }

  void binary_text_is_refused_where_text_is_evaluated() {
    const std::string db = path("binary.sqlite");
    const std::string message =
        "error: " + binary_ + ", byte 4: is not UTF-8 text: a NUL byte; give a text file";
    EXPECT_REFUSED((std::vector<std::string>{"perplexity", "-m", model_, "-f", binary_}), message);
    EXPECT_REFUSED((std::vector<std::string>{"eval", "-m", model_, "-f", binary_, "--db", db}),
                   message);
    EXPECT_REFUSED((std::vector<std::string>{"sweep", "-m", model_, "-f", binary_, "--session", "s",
                                             "--db", db}),
                   message);
    const std::string latin1 = path("latin1.txt");
    write_file(latin1, "caf\xe9\n");
    EXPECT_REFUSED((std::vector<std::string>{"perplexity", "-m", model_, "-f", latin1}),
                   ", byte 3: is not UTF-8 text: 0xE9 does not start valid UTF-8");
    QVERIFY(!QFileInfo::exists(QString::fromStdString(db)));
    QCOMPARE(first_non_text_byte("plain \xe2\x82\xac text"), std::string_view::npos);
    QCOMPARE(first_non_text_byte("\xc0\xaf"), size_t(0));        // overlong
    QCOMPARE(first_non_text_byte("ab\xed\xa0\x80"), size_t(2));  // surrogate
    QCOMPARE(first_non_text_byte("abc\xe2\x82"), size_t(3));     // cut short
  }

  void model_paths_never_block_on_special_files() {
    // Each of these would block forever in open() on the FIFO before the fix.
    const std::string msg = "error: " + fifo_ + ": is a named pipe (FIFO), not a regular file";
    const std::string db = path("fifo.sqlite");
    const std::vector<std::vector<std::string>> commands = {
        {"inspect", fifo_},
        {"inspect", "--json", fifo_},
        {"run", "-m", fifo_, "-p", "x"},
        {"tokenize", "-m", fifo_, "-t", "x"},
        {"detokenize", "-m", fifo_, "--ids", "1"},
        {"perplexity", "-m", fifo_, "-f", text_},
        {"logits", "--model", fifo_, "--tokens", "1", "--out", path("l.bin")},
        {"trace", "-m", fifo_, "--tokens", "1"},
        {"eval", "-m", fifo_, "-f", text_, "--db", db},
        {"sweep", "-m", fifo_, "-p", "x", "--session", "s", "--db", db},
        {"make-model", "-q", "--vocab-from", fifo_, "-o", path("v.gguf")},
    };
    for (const auto& c : commands) EXPECT_REFUSED(c, msg);
    EXPECT_REFUSED((std::vector<std::string>{"inspect", "/dev/zero"}),
                   "error: /dev/zero: is a character device, not a regular file");
    EXPECT_REFUSED((std::vector<std::string>{"inspect", folder_}),
                   "error: " + folder_ + ": is a folder, not a regular file");
  }

  // ---- kind 3: arguments ------------------------------------------------------------------

  void numeric_options_have_readable_ranges() {
    using Args = std::vector<std::string>;
    const std::string db = path("ranges.sqlite");
    const Args run = {"run", "-m", model_, "-p", "x"};
    const Args trace = {"trace", "-m", model_, "--tokens", "1"};
    const Args ppl = {"perplexity", "-m", model_, "-f", text_};
    const Args eval = {"eval", "-m", model_, "-f", text_, "--db", db};
    const Args sweep = {"sweep", "-m", model_, "-p", "x", "--session", "s", "--db", db};
    const Args logits = {"logits", "--model", model_, "--tokens", "1", "--out", path("o.bin")};
    const Args make = {"make-model", "-q", "-o", path("r.gguf")};
    const Args inspect = {"inspect", model_};
    const Args compare = {"compare", "--db", db};
    const Args report = {"report", "--db", db, "-o", path("r.html")};
    struct Case {
      Args base;
      std::string option, value, range;
    };
    const std::string ctx = "1 to 1048576", u64 = "0 to 18446744073709551615";
    const std::vector<Case> cases = {
        {run, "--ctx", "0", ctx},
        {run, "--ctx", "100000000", ctx},
        {run, "--ctx", "-1", ctx},
        {run, "--ctx", "0x10", ctx},
        {run, "--ctx", "1e9", ctx},
        {trace, "--ctx", "100000000", ctx},
        {ppl, "--ctx", "100000000", "4 to 1048576"},
        {ppl, "--ctx", "2", "4 to 1048576"},
        {eval, "--ctx", "99999999999999999999", ctx},
        {sweep, "--ctx", "0", ctx},
        {inspect, "--ctx", "1000000000000", ctx},
        {run, "--n-predict", "0", "1 to 1048576"},
        {run, "--n-predict", "99999999999999999999999999", "1 to 1048576"},
        {sweep, "--n-predict", "0", "1 to 1048576"},
        {trace, "--n-predict", "-1", "0 to 1048576"},
        {run, "--seed", "-1", u64},
        {run, "--seed", "18446744073709551616", u64},
        {make, "--seed", "-5", u64},
        {compare, "--seed", "abc", u64},
        {sweep, "--seeds", "-2", u64},
        {run, "--top-k", "-1", "0 to 1048576"},
        {sweep, "--top-k", "4294967296", "0 to 1048576"},
        {run, "--threads", "0", "1 to 1024"},
        {run, "--threads", "5000", "1 to 1024"},
        {trace, "--threads", "-3", "1 to 1024"},
        {ppl, "--threads", "0", "1 to 1024"},
        {eval, "--threads", "100000", "1 to 1024"},
        {logits, "--threads", "0", "1 to 1024"},
        {ppl, "--chunks", "-1", "0 to 1073741824"},
        {run, "--repeat-last-n", "-2", "-1 to 1048576"},
        {trace, "--max-row-keys", "0", ctx},
        {trace, "--attention-layers", "-1", "0 to 1048576"},
        {make, "--n-embd", "0", "1 to 65536"},
        {make, "--n-vocab", "99999999999", "1 to 4194304"},
        {make, "--n-layer", "4294967297", "1 to 1024"},
        {make, "--ctx", "0", "1 to 16777216"},
        {report, "--run", "0", "1 to 9223372036854775807"},
        {report, "--max-detail-tokens", "0", "1 to 16777216"},
        {report, "--timestamp", "-1", "0 to 253402300799"},
        {compare, "--a", "0", "1 to 9223372036854775807"},
        {compare, "--resamples", "5", "100 to 1000000"},
    };
    for (const auto& c : cases) {
      Args a = c.base;
      a.push_back(c.option + "=" + c.value);  // "=": a leading '-' is the value, not an option
      EXPECT_REFUSED(a, "error: " + c.option + ": must be an integer from " + c.range + ", not '" +
                            c.value.substr(0, 40) + (c.value.size() > 40 ? "..." : "") + "'");
    }
    // Real-valued options: finite and inside their range.
    const std::vector<Case> reals = {
        {run, "--temp", "nan", "0 to 100"},
        {run, "--temp", "-1", "0 to 100"},
        {sweep, "--temp", "inf", "0 to 100"},
        {run, "--top-p", "1.5", "0 to 1"},
        {run, "--min-p", "-0.1", "0 to 1"},
        {sweep, "--min-p", "2", "0 to 1"},
        {run, "--repeat-penalty", "0", "0.01 to 100"},
        {run, "--frequency-penalty", "1e300", "-100 to 100"},
    };
    for (const auto& c : reals) {
      Args a = c.base;
      a.push_back(c.option + "=" + c.value);
      EXPECT_REFUSED(a, "error: " + c.option + ": must be a number from " + c.range + ", not '" +
                            c.value + "'");
    }
    // Positional run ids.
    EXPECT_REFUSED((Args{"compare", "--db", db, "0", "2"}),
                   "must be an integer from 1 to 9223372036854775807, not '0'");
    // Values inside the ranges still parse to themselves (no octal, no wrap).
    const auto r = cli_run({"make-model", "-q", "-o", path("seed.gguf"), "--seed",
                            "18446744073709551615", "--ctx", "0100"});
    QVERIFY2(r.code == 0, r.err.c_str());
    QCOMPARE(make_model_card(*gguf::File::open(path("seed.gguf"))).context_length, uint64_t(100));
    QVERIFY(!QFileInfo::exists(QString::fromStdString(db)));
  }

  void one_memory_preflight_before_the_kv_cache() {
    // The tiny model's KV cache: 2 layers x 2 KV heads x (16 + 16) values x 4 bytes = 512 B per
    // token; 1048576 tokens = 512 MiB. Logits (perplexity): 512 x 4 B per token = 2 GiB more.
    const ScopedEnv env("MOELAB_MEMORY_AVAILABLE", std::to_string(1 << 20));
    const std::string db = path("preflight.sqlite");
    using Args = std::vector<std::string>;
    const std::string kv =
        ": the context needs 512.0 MiB (KV cache), but only 1.0 MiB of memory is available; use a "
        "smaller --ctx or --kv-f16";
    const std::string with_logits =
        ": the context needs 2.50 GiB (KV cache and logits), but only 1.0 MiB of memory is "
        "available; use a smaller --ctx";
    EXPECT_REFUSED((Args{"run", "-m", model_, "-p", "x", "--backend", "cpu", "--ctx", "1048576"}),
                   "error: --ctx 1048576" + kv);
    // trace has no --kv-f16 to suggest.
    EXPECT_REFUSED((Args{"trace", "-m", model_, "--tokens", "1", "--ctx", "1048576"}),
                   "error: --ctx 1048576: the context needs 512.0 MiB (KV cache), but only 1.0 MiB "
                   "of memory is available; use a smaller --ctx\n");
    EXPECT_REFUSED(
        (Args{"sweep", "-m", model_, "-p", "x", "--session", "s", "--db", db, "--ctx", "1048576"}),
        "error: --ctx 1048576" + kv);
    EXPECT_REFUSED(
        (Args{"perplexity", "-m", model_, "-f", text_, "--backend", "cpu", "--ctx", "1048576"}),
        "error: --ctx 1048576" + with_logits + "\n");
    EXPECT_REFUSED((Args{"eval", "-m", model_, "-f", text_, "--db", db, "--backend", "cpu", "--ctx",
                         "1048576"}),
                   "error: --ctx 1048576" + with_logits + " or --kv-f16\n");
    EXPECT_REFUSED((Args{"eval", "-m", model_, "-f", text_, "--db", db, "--backend", "cpu", "--ctx",
                         "1048576", "--kv-f16"}),
                   "error: --ctx 1048576: the context needs 2.25 GiB (KV cache and logits)");
    EXPECT_REFUSED(
        (Args{"run", "-m", model_, "-p", "x", "--backend", "cpu", "--ctx", "1048576", "--kv-f16"}),
        "error: --ctx 1048576: the context needs 256.0 MiB (KV cache), but only 1.0 "
        "MiB of memory is available; use a smaller --ctx\n");
    // trace's default context (prompt + n) has the same cap as --ctx.
    EXPECT_REFUSED((Args{"trace", "-m", model_, "--tokens", "1", "-n", "1048576"}),
                   "need a context of 1048577 tokens, more than the 1048576 moelab allows");
    QVERIFY(!QFileInfo::exists(QString::fromStdString(db)));
  }

  void a_context_past_the_trained_length_is_a_warning() {
    const auto r =
        cli_run({"trace", "-m", model_, "--tokens", "1,2,3", "-n", "2", "--ctx", "4096"});
    QVERIFY2(r.code == 0, r.err.c_str());
    QVERIFY2(contains(r.err,
                      "warning: --ctx 4096 is beyond the model's trained context length "
                      "(2048 tokens)"),
             r.err.c_str());
    const auto ok =
        cli_run({"trace", "-m", model_, "--tokens", "1,2,3", "-n", "2", "--ctx", "2048"});
    QCOMPARE(ok.code, 0);
    QVERIFY2(!contains(ok.err, "warning"), ok.err.c_str());
  }

  void token_ids_never_wrap() {
    using Args = std::vector<std::string>;
    const std::string range =
        "is not a token id (an integer from 0 to 511, the model's vocabulary)";
    EXPECT_REFUSED((Args{"trace", "-m", model_, "--tokens", "4294967297"}),
                   "error: --tokens: '4294967297' " + range);
    EXPECT_REFUSED((Args{"trace", "-m", model_, "--tokens", "1,0x10"}), "'0x10' " + range);
    EXPECT_REFUSED((Args{"logits", "--model", model_, "--tokens", "1,-1", "--out", path("t.bin")}),
                   "error: --tokens: '-1' " + range);
    EXPECT_REFUSED((Args{"logits", "--model", model_, "--tokens", "512", "--out", path("t.bin")}),
                   "error: --tokens: '512' " + range);
    EXPECT_REFUSED((Args{"trace", "-m", model_, "--tokens", ","}), "error: --tokens: no token ids");
  }

  // ---- kind 7: determinism and honesty -----------------------------------------------------

  void duplicated_ids_are_refused() {
    using Args = std::vector<std::string>;
    const std::string db = path("dups.sqlite");
    EXPECT_REFUSED((Args{"compare", "--db", db, "--a", "1,2,1", "--b", "3"}),
                   "error: --a: run 1 is given twice");
    EXPECT_REFUSED((Args{"compare", "--db", db, "--a", "1", "--b", "3,3"}),
                   "error: --b: run 3 is given twice");
    EXPECT_REFUSED((Args{"compare", "--db", db, "--a", "1,2", "--b", "2,3"}),
                   "error: --a/--b: run 2 is in both groups");
    EXPECT_REFUSED((Args{"compare", "--db", db, "5", "5"}),
                   "error: compare: A and B are the same run (5)");
    EXPECT_REFUSED((Args{"report", "--db", db, "--compare", "4", "4", "-o", path("d.html")}),
                   "error: --compare: A and B are the same run (4)");
    EXPECT_REFUSED(
        (Args{"sweep", "-m", model_, "-p", "x", "--session", "s", "--db", db, "--seeds", "1,2,1"}),
        "error: --seeds: seed 1 is given twice");
    EXPECT_REFUSED((Args{"sweep", "-m", model_, "-p", "x", "--session", "s", "--db", db,
                         "--routing-policy", "k:1,k:2,k:1"}),
                   "is given twice; each must appear once");
    QVERIFY(!QFileInfo::exists(QString::fromStdString(db)));
  }

  void file_metadata_is_escaped_for_terminals_and_json() {
    // A GGUF whose metadata carries an escape sequence, a bell, a NUL and invalid UTF-8.
    const std::string evil = path("evil.gguf");
    {
      gguf::Writer w;
      w.set_string("general.architecture", "llama");
      w.set_string("general.name", std::string("caf\xe9 \x1b]0;owned\x07 \x1b[2J n\0ul", 25));
      w.write(evil);
    }
    const auto text = cli_run({"inspect", "--no-hash", evil});
    QVERIFY2(text.code == 0, text.err.c_str());
    for (const std::string& s : {text.out, text.err})
      for (char c : {'\x1b', '\x07', '\0'}) QVERIFY2(!contains(s, std::string(1, c)), s.c_str());
    QVERIFY2(contains(text.out, "caf\\xE9 \\x1B]0;owned\\x07 \\x1B[2J n\\x00ul"), text.out.c_str());

    const auto json = cli_run({"inspect", "--json", "--no-hash", evil});
    QVERIFY2(json.code == 0, json.err.c_str());
    const auto j = nlohmann::json::parse(json.out);  // valid JSON, no exception
    QVERIFY(!contains(json.out, "\x1b"));
    QVERIFY2(contains(json.out, "caf\xef\xbf\xbd \\u001b]0;owned\\u0007"), json.out.c_str());
    QVERIFY(j.is_object());

    // Error messages quote metadata too.
    const std::string arch = path("arch.gguf");
    {
      gguf::Writer w;
      w.set_string("general.architecture", "\x1b[31mred\x1b[0m");
      w.write(arch);
    }
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"inspect", "--check", "--no-hash", arch}, {"run", "-m", arch, "-p", "x"}}) {
      const auto r = cli_run(args);
      QVERIFY2(r.code == 2, describe(args, r).c_str());
      QVERIFY2(!contains(r.out + r.err, "\x1b"), r.err.c_str());
      QVERIFY2(contains(r.err, "\\x1B[31mred\\x1B[0m"), r.err.c_str());
    }
    QCOMPARE(printable("a\tb\nc\x7f\xc2\x85\xe2\x82\xac\xff"),
             std::string("a\tb\nc\\x7F\\xC2\\x85\xe2\x82\xac\\xFF"));
  }

  void token_text_is_escaped_on_the_terminal() {
    // A vocabulary whose control token is an escape sequence.
    const std::string vocab = path("esc-vocab.gguf");
    {
      gguf::Writer w;
      w.set_string("general.architecture", "llama");
      w.set_string("tokenizer.ggml.model", "llama");
      w.set_array_string("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\x1b[31m", "a"});
      const std::vector<float> scores = {0, 0, 0, 0, -1};
      w.set_array_f32("tokenizer.ggml.scores", scores);
      const std::vector<int32_t> types = {2, 3, 3, 3, 1};
      w.set_array_i32("tokenizer.ggml.token_type", types);
      w.set_u32("tokenizer.ggml.bos_token_id", 1);
      w.set_u32("tokenizer.ggml.eos_token_id", 2);
      w.write(vocab);
    }
    const auto r = cli_run({"tokenize", "-m", vocab, "--special", "--no-bos", "-t", "\x1b[31ma"});
    QVERIFY2(r.code == 0, r.err.c_str());
    QVERIFY2(!contains(r.out, "\x1b"), r.out.c_str());
    // display_piece writes control bytes as <0xNN>; nothing raw reaches the terminal.
    QVERIFY2(contains(r.out, "       3 -> '<0x1B>[31m'\n"), r.out.c_str());
  }

  void system_needs_chat() {
    EXPECT_REFUSED(
        (std::vector<std::string>{"run", "-m", model_, "-p", "x", "--system", "be brief"}),
        "error: run: --system needs --chat");
  }

  void top_k_beyond_the_vocabulary_is_said_not_clamped() {
    MOELAB_REQUIRE_SHARED(kStories);
    const std::string stories = moelab::test::shared_path(kStories);
    const auto r = cli_run({"run", "-m", stories, "-p", "Once", "-n", "2", "--temp", "1", "--top-k",
                            "100000", "--seed", "1", "--threads", "1", "--ctx", "32"});
    QVERIFY2(r.code == 0, r.err.c_str());
    QVERIFY2(contains(r.err,
                      "warning: --top-k 100000 is not below the vocabulary (512 tokens): "
                      "it keeps every token, as --top-k 0"),
             r.err.c_str());
    const auto k0 = cli_run({"run", "-m", stories, "-p", "Once", "-n", "2", "--temp", "1",
                             "--top-k", "0", "--seed", "1", "--threads", "1", "--ctx", "32"});
    QCOMPARE(k0.code, 0);
    QVERIFY(!contains(k0.err, "warning"));
    QCOMPARE(k0.out, r.out);  // the same tokens as top-k off
  }

  void reports_are_deterministic_and_never_replace_special_files() {
    MOELAB_REQUIRE_SHARED(kStories);
    const std::string stories = moelab::test::shared_path(kStories);
    const std::string db = path("report.sqlite");
    const auto run = cli_run({"run", "-m", stories, "-p", "Once", "-n", "4", "--temp", "0",
                              "--threads", "1", "--ctx", "32", "--db", db});
    QVERIFY2(run.code == 0, run.err.c_str());
    // Report writers refuse what make-model and logits refuse.
    for (const char* fmt : {"html", "pdf", "md", "csv", "json"}) {
      const mode_t before = lmode(fifo_);
      EXPECT_REFUSED((std::vector<std::string>{"report", "--db", db, "--run", "1", "-q", "--format",
                                               fmt, "-o", fifo_}),
                     "error: " + fifo_ + ": is a named pipe (FIFO), not a regular file");
      QCOMPARE(lmode(fifo_), before);
    }
    // A missing folder of the output is still created.
    const std::string nested = path("new/sub/r.json");
    const auto made =
        cli_run({"report", "--db", db, "--run", "1", "-q", "--format", "json", "-o", nested});
    QVERIFY2(made.code == 0, made.err.c_str());
    QCOMPARE(made.out, nested + "\n");
    QVERIFY(nlohmann::json::parse(read_file(nested)).is_object());
    QVERIFY(parts_of(nested).isEmpty());
    // Two processes (each with its own Qt hash seed) write the same PDF bytes.
    std::vector<QByteArray> pdfs;
    for (const char* name : {"a.pdf", "b.pdf"}) {
      QProcess p;
      QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
      env.remove("QT_HASH_SEED");
      p.setProcessEnvironment(env);
      p.start(QStringLiteral(MOELAB_CLI_EXE),
              {"report", "--db", QString::fromStdString(db), "--run", "1", "-q", "--format", "pdf",
               "--timestamp", "1700000000", "-o", QString::fromStdString(path(name))});
      QVERIFY(p.waitForFinished(120000));
      QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
      pdfs.push_back(moelab::test::read_all(QString::fromStdString(path(name))));
    }
    QVERIFY(pdfs[0].startsWith("%PDF"));
    QVERIFY2(pdfs[0] == pdfs[1], "two identical report calls wrote different PDF bytes");
  }

  void cleanupTestCase() { ::chmod(unreadable_.c_str(), 0600); }
};

QTEST_GUILESS_MAIN(TestCliHardening)
#include "test_cli_hardening.moc"
