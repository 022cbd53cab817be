// Two processes on one database file: concurrent writers both succeed (one waits for the other's
// lock), a writer that waits longer than its busy timeout gets a clear Busy error, and a run of
// another LIVE process is never marked interrupted (only once that process is gone).
#include <sqlite3.h>

#include "child_process.h"
#include "moelab/storage/store.h"
#include "store_test_access.h"
#include "test_support.h"

using namespace moelab::storage;
using moelab::test::Child;

class TestStoreProcesses : public QObject {
  Q_OBJECT
  QString dir_;
  std::string db(const char* n) { return (dir_ + "/" + n).toStdString(); }

 private slots:
  void initTestCase() { dir_ = moelab::test::temp_dir("test_store_processes"); }

  void two_writers_on_one_file() {
    const auto p = db("two.db");
    { Store init(p); }  // both children open an existing file
    Child a({MOELAB_STORAGE_CHILD, "writer", p, "A", "20", "200", "10000"});
    Child b({MOELAB_STORAGE_CHILD, "writer", p, "B", "20", "200", "10000"});
    QVERIFY(a.started() && b.started());
    a.drain();
    b.drain();
    QCOMPARE(a.wait(), 0);
    QCOMPARE(b.wait(), 0);
    QCOMPARE(QString::fromStdString(a.output()), QString("ok\n"));
    QCOMPARE(QString::fromStdString(b.output()), QString("ok\n"));
    Store s(p);
    QCOMPARE(QString::fromStdString(s.integrity_check()), QString("ok"));
    for (const char* name : {"A", "B"}) {
      const auto sess = s.session_by_name(name);
      QVERIFY(sess);
      const auto runs = s.runs(sess->id);
      QCOMPARE(runs.size(), size_t{20});
      for (const auto& r : runs) {
        QCOMPARE(r.status, RunStatus::Complete);
        QCOMPARE(r.n_tokens, int64_t{200});
        QCOMPARE(s.token_count(r.id), int64_t{200});
      }
    }
  }

  void waiting_writer_and_busy_timeout() {
    const auto p = db("busy.db");
    Store holder(p);
    // Hold the write lock for 1.5 s.
    QCOMPARE(sqlite3_exec(moelab::storage::detail::StoreTestAccess::handle(holder),
                          "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
             SQLITE_OK);
    Child patient({MOELAB_STORAGE_CHILD, "writer", p, "patient", "1", "10", "20000"});
    Child hasty({MOELAB_STORAGE_CHILD, "writer", p, "hasty", "1", "10", "200"});
    QVERIFY(hasty.wait_for("\n", 10000));
    QTest::qWait(1300);
    QCOMPARE(sqlite3_exec(moelab::storage::detail::StoreTestAccess::handle(holder), "COMMIT",
                          nullptr, nullptr, nullptr),
             SQLITE_OK);
    patient.drain();
    hasty.drain();
    QCOMPARE(patient.wait(), 0);
    QCOMPARE(QString::fromStdString(patient.output()), QString("ok\n"));
    QCOMPARE(hasty.wait() != 0, true);
    const QString msg = QString::fromStdString(hasty.output());
    QVERIFY2(msg.startsWith("error: busy: ") && msg.contains("busy timeout") &&
                 msg.contains(QString::fromStdString(p)),
             qPrintable(msg));
    QCOMPARE(holder.runs(holder.session_by_name("patient")->id).at(0).n_tokens, int64_t{10});
    QCOMPARE(QString::fromStdString(holder.integrity_check()), QString("ok"));
  }

  void live_owner_is_not_interrupted() {
    const auto p = db("live.db");
    Child c({MOELAB_STORAGE_CHILD, "hold", p});
    QVERIFY2(c.wait_for("\n", 10000), c.output().c_str());
    const int64_t run = std::stoll(c.output().substr(4));
    {
      Store s(p);  // the owner is alive: its run stays running
      QVERIFY(s.interrupted_on_open().empty());
      QCOMPARE(s.run(run)->status, RunStatus::Running);
    }
    c.kill_now();
    c.wait();
    Store s(p);  // the owner is gone: interrupted, its token kept
    QCOMPARE(s.interrupted_on_open(), std::vector<int64_t>{run});
    QCOMPARE(s.run(run)->status, RunStatus::Interrupted);
    QCOMPARE(s.run(run)->n_tokens, int64_t{1});
  }
};

QTEST_GUILESS_MAIN(TestStoreProcesses)
#include "test_store_processes.moc"
