// Power in the desktop lab (offscreen): with a (fake) RAPL powercap tree the status bar and the
// Power page show watts over the run and its J/token (the session's, as stored); without a sensor
// they show the meter's reason and never a number.
#include <QFile>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QtTest>
#include <fstream>

#include "main_window.h"
#include "moelab/views/charts.h"
#include "moelab/views/views_panel.h"
#include "test_support.h"

namespace {
void write(const QString& path, const std::string& text) {
  QDir().mkpath(QFileInfo(path).path());
  std::ofstream(path.toStdString()) << text;
}
}  // namespace

class TestGuiPower : public QObject {
  Q_OBJECT
  QString dir_;

  MainWindow::Options opts(const QString& name, const QString& powercap) {
    MainWindow::Options o;
    o.dbPath = dir_ + "/" + name + ".db";
    QFile::remove(o.dbPath);
    o.restoreLayout = false;
    o.session = "power " + name;
    o.powercapRoot = powercap;
    return o;
  }
  // The options of `name`'s database as it is (a restart on the same database).
  MainWindow::Options reopen(const QString& name, const QString& powercap) {
    MainWindow::Options o;
    o.dbPath = dir_ + "/" + name + ".db";
    o.restoreLayout = false;
    o.session = "power " + name;
    o.powercapRoot = powercap;
    return o;
  }
  // Loads the synthetic demo model and runs `n` greedy tokens; returns the generated count.
  int run(MainWindow& w, int n, const std::function<void()>& onStarted = {}) {
    QSignalSpy ready(&w, &MainWindow::modelReady);
    w.openDemo("synthetic");
    if (!ready.wait(60000) || !w.modelLoaded()) return -1;
    w.runPanel()->promptEdit()->setPlainText("The experts");
    w.runPanel()->maxTokensBox()->setValue(n);
    w.runPanel()->temperatureBox()->setValue(0.0);
    w.runPanel()->fixedSeedBox()->setChecked(true);
    w.runPanel()->seedBox()->setValue(3);
    w.runPanel()->threadsBox()->setValue(1);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    if (onStarted) connect(&w, &MainWindow::runStarted, this, [onStarted](qint64) { onStarted(); });
    w.startRun();
    if (!finished.wait(120000)) return -1;
    const qint64 id = finished.at(0).at(0).toLongLong();
    const auto toks = w.store()->tokens(id);
    return int(toks.size());
  }
  moelab::views::PowerChart* chart(MainWindow& w) {
    auto* panel = qobject_cast<moelab::views::ViewsPanel*>(w.viewsArea());
    if (!panel) return nullptr;
    panel->setPage(moelab::views::ViewsPanel::Page::kPower);
    return panel->findChild<moelab::views::PowerChart*>();
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    dir_ = moelab::test::temp_dir("gui_power");
    qputenv("XDG_DATA_HOME", (dir_ + "/xdg").toUtf8());
    QCoreApplication::setOrganizationName("moelab-test");
    QCoreApplication::setApplicationName("moelab-test-power");
    QSettings().clear();
  }

  void fakeRaplWattsAndJoulesPerToken() {
    const QString root = dir_ + "/powercap";
    write(root + "/intel-rapl:0/max_energy_range_uj", "262143328850\n");
    write(root + "/intel-rapl:0/energy_uj", "1000000\n");
    MainWindow w(opts("rapl", root));
    w.show();
    QVERIFY2(w.powerMeter().available(), w.powerMeter().unavailable_reason().c_str());
    QCOMPARE(w.powerMeter().name(), std::string("rapl"));
    QCOMPARE(w.statusField("power")->text(), QString("power: – W"));
    // The counter advances by 2 J once the run has started (after the window read its start).
    const int n = run(w, 12, [&] { write(root + "/intel-rapl:0/energy_uj", "3000000\n"); });
    QVERIFY(n > 0);
    const auto& p = w.powerTrace();
    QCOMPARE(p.n_tokens, n);
    QVERIFY(!p.watts.empty());
    QCOMPARE(p.watts.size(), p.t_s.size());
    for (double x : p.watts) QVERIFY(x >= 0);
    // One figure under each label: the monitor's joules and J/token are the session's energy
    // accounting of the run, stored as energy_j and j_per_token (decode energy per decode
    // token), as Compare and the reports show them - not the whole run's joules / tokens.
    std::optional<double> stored, storedJ;
    for (const auto& m : w.store()->metrics(w.lastRunId())) {
      if (m.key == "j_per_token") stored = m.value;
      if (m.key == "energy_j") storedJ = m.value;
    }
    QVERIFY2(stored, "the run stored no j_per_token");
    QVERIFY2(storedJ, "the run stored no energy_j");
    QVERIFY(p.joules.has_value() && p.joules_per_token.has_value());
    QCOMPARE(*p.joules, *storedJ);
    QVERIFY(*p.joules <= 2.0);  // the counter advanced by 2 J during the run
    QCOMPARE(*p.joules_per_token, *stored);
    QCOMPARE(w.statusField("power")->text(), QString("power: %1 J/token").arg(*stored, 0, 'g', 3));
    auto* c = chart(w);
    QVERIFY(c);
    QTRY_VERIFY_WITH_TIMEOUT(c->has_sensor(), 5000);
    // The Power page's J/token is the same stored figure, labelled as decode-only; no second
    // number (the trace's joules over all tokens) appears under "J/token".
    const QString jt = QString("%1 J/token (decode)").arg(*stored, 0, 'f', 3);
    QVERIFY2(c->summary_text().contains(jt), qPrintable(c->summary_text() + " / " + jt));
    QCOMPARE(c->summary_text().count("J/token"), 1);
    QVERIFY2(c->summary_text().contains(QString("| %1 tokens").arg(n)),
             qPrintable(c->summary_text()));
    const qint64 id = w.lastRunId();
    // After a restart on the same database, the stored run opened in the views shows it too.
    MainWindow again(reopen("rapl", root));
    again.show();
    QVERIFY(again.sessionsPanel()->selectRun(id));
    auto* c2 = chart(again);
    QVERIFY(c2);
    QTRY_VERIFY2_WITH_TIMEOUT(c2->summary_text().contains(jt), qPrintable(c2->summary_text()),
                              5000);
    QCOMPARE(c2->summary_text().count("J/token"), 1);
  }

  void noSensorNoNumber() {
    MainWindow w(opts("none", dir_ + "/absent"));
    w.show();
    QVERIFY(!w.powerMeter().available());
    QCOMPARE(w.statusField("power")->text(), QString("power: no sensor"));
    QVERIFY2(w.statusField("power")->toolTip().contains("power unavailable, because RAPL"),
             qPrintable(w.statusField("power")->toolTip()));
    const int n = run(w, 6);
    QVERIFY(n > 0);
    const auto& p = w.powerTrace();
    QVERIFY(p.watts.empty());
    QVERIFY(!p.joules && !p.joules_per_token);
    QCOMPARE(w.statusField("power")->text(), QString("power: no sensor"));
    auto* c = chart(w);
    QVERIFY(c);
    QTRY_VERIFY_WITH_TIMEOUT(
        c->summary_text().startsWith("no sensor on this machine: power unavailable, because"),
        5000);
    QVERIFY(!c->has_sensor());
  }
};

QTEST_MAIN(TestGuiPower)
#include "test_gui_power.moc"
