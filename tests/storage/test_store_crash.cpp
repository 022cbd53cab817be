// Crash test: a child process streams a long run (tokens + routing) through the AsyncWriter and
// is SIGKILLed at random moments. After every kill: PRAGMA integrity_check is ok, every token the
// child reported as committed ("ack POS") before the kill is present together with its routing,
// and opening the file marks the run interrupted.
// MOELAB_CRASH_KILLS sets the number of kills (default 5; the slow label runs 60).
#include <random>

#include "child_process.h"
#include "moelab/storage/store.h"
#include "test_support.h"

using namespace moelab::storage;
using moelab::test::Child;

class TestStoreCrash : public QObject {
  Q_OBJECT
 private slots:
  void sigkill_at_random_moments() {
    const QString dir = moelab::test::temp_dir(QString("test_store_crash_%1").arg(getpid()));
    const std::string p = (dir + "/crash.db").toStdString();
    const int kills = qEnvironmentVariableIntValue("MOELAB_CRASH_KILLS") > 0
                          ? qEnvironmentVariableIntValue("MOELAB_CRASH_KILLS")
                          : 5;
    const int layers = 16;
    const uint32_t seed = 20261129;
    std::mt19937 rng(seed);
    int64_t total_acked = 0;
    int with_run = 0;
    for (int k = 0; k < kills; ++k) {
      Child c({MOELAB_STORAGE_CHILD, "stream", p, std::to_string(layers)});
      QVERIFY(c.started());
      // Mostly mid-stream, sometimes during open / migration / begin_run.
      const int delay_ms =
          (k % 5 == 0) ? static_cast<int>(rng() % 15) : 20 + static_cast<int>(rng() % 130);
      QTest::qSleep(delay_ms);
      c.kill_now();
      c.wait();
      c.drain();
      const std::string out = c.output();
      int64_t run = -1, acked = -1;
      size_t pos = 0;
      while (pos < out.size()) {
        const size_t nl = out.find('\n', pos);
        if (nl == std::string::npos) break;  // a partial line: not reported
        const std::string line = out.substr(pos, nl - pos);
        if (line.rfind("run ", 0) == 0) run = std::stoll(line.substr(4));
        if (line.rfind("ack ", 0) == 0)
          acked = std::max<int64_t>(acked, std::stoll(line.substr(4)));
        pos = nl + 1;
      }
      Store s(p);
      const QString where = QString("kill %1 after %2 ms (seed %3)").arg(k).arg(delay_ms).arg(seed);
      QVERIFY2(s.integrity_check() == "ok", qPrintable(where));
      // No run of a dead process stays running.
      for (const auto& sess : s.sessions())
        for (const auto& r : s.runs(sess.id))
          QVERIFY2(r.status != RunStatus::Running, qPrintable(where));
      if (run < 0) continue;  // killed before it began its run
      ++with_run;
      const auto r = s.run(run);
      QVERIFY2(r, qPrintable(where));
      QVERIFY2(r->status == RunStatus::Interrupted, qPrintable(where));
      const auto toks = s.tokens(run);
      QVERIFY2(static_cast<int64_t>(toks.size()) >= acked + 1,
               qPrintable(
                   where +
                   QString(": %1 tokens stored, %2 acknowledged").arg(toks.size()).arg(acked + 1)));
      for (size_t i = 0; i < toks.size(); ++i) {
        QCOMPARE(toks[i].position, static_cast<int64_t>(i));  // no holes
        QCOMPARE(toks[i].piece, "tok" + std::to_string(i));
      }
      QCOMPARE(r->n_tokens, static_cast<int64_t>(toks.size()));
      const auto routing = s.routing(run);
      QVERIFY2(static_cast<int64_t>(routing.size()) >= (acked + 1) * layers, qPrintable(where));
      total_acked += acked + 1;
    }
    qInfo("%d kills, %d with a run, %lld acknowledged tokens verified", kills, with_run,
          static_cast<long long>(total_acked));
    QVERIFY(with_run >= kills / 2);
    QVERIFY(total_acked > 0);
  }
};

QTEST_GUILESS_MAIN(TestStoreCrash)
#include "test_store_crash.moc"
