// File -> Convert to Mixture-of-Experts… (offscreen): the menu opens the dialog on the current
// model; Convert on stories260K (../shared/fixtures) writes the same bytes as `moelab-cli
// moefy` with the same settings, the progress bar reaches 100 and the window opens the result;
// Cancel stops a running conversion without leaving a file; bad input (top-k > N) is reported in
// the dialog and writes nothing.
#include <QAction>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QMenuBar>
#include <QProgressBar>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardPaths>
#include <QtTest>
#include <sstream>

#include "cli.h"
#include "main_window.h"
#include "moefy_dialog.h"
#include "moelab/model/card.h"
#include "test_support.h"

using moelab::lab::MoefyDialog;

namespace {
const QString kDense = "fixtures/models/stories260K/stories260K.F32.gguf";
const QString kCalib = QStringLiteral(MOELAB_SOURCE_DIR) + "/resources/moefy/calib.txt";
}  // namespace

class TestGuiMoefy : public QObject {
  Q_OBJECT
  QString dir_;

  MoefyDialog* openFromMenu(MainWindow& w) {
    QAction* act = nullptr;
    for (QAction* m : w.menuBar()->actions())
      if (m->menu())
        for (QAction* a : m->menu()->actions())
          if (a->text().contains("Mixture-of-Experts")) act = a;
    if (!act) return nullptr;
    act->trigger();
    return w.findChild<MoefyDialog*>();
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    dir_ = moelab::test::temp_dir("gui_moefy");
    qputenv("XDG_DATA_HOME", (dir_ + "/xdg").toUtf8());
    QCoreApplication::setOrganizationName("moelab-test");
    QCoreApplication::setApplicationName("moelab-test-moefy");
    QSettings().clear();
  }

  void convertFromTheMenuAndOpen() {
    MOELAB_REQUIRE_SHARED(kDense);
    MainWindow::Options o;
    o.dbPath = dir_ + "/moefy.db";
    o.restoreLayout = false;
    MainWindow w(o);
    w.show();
    const QString dense = QString::fromStdString(moelab::test::shared_path(kDense));
    QSignalSpy ready(&w, &MainWindow::modelReady);
    w.openModel(dense);
    QVERIFY(ready.wait(60000));
    MoefyDialog* d = openFromMenu(w);
    QVERIFY(d);
    QCOMPARE(d->modelEdit()->text(), dense);
    const QString out = dir_ + "/gui-4x43.gguf";
    QFile::remove(out);
    d->calibEdit()->setText(kCalib);
    d->outputEdit()->setText(out);
    d->expertsBox()->setValue(4);
    d->sharedBox()->setValue(0);
    d->topKBox()->setValue(2);
    QSignalSpy fin(d, &MoefyDialog::finished);
    QSignalSpy progress(d, &MoefyDialog::progressed);
    QSignalSpy opened(&w, &MainWindow::modelReady);
    d->start();
    QVERIFY(fin.wait(120000));
    QCOMPARE(fin.at(0).at(0).toBool(), true);
    QCOMPARE(fin.at(0).at(1).toString(), out);
    QVERIFY(progress.count() > 3);
    // The same conversion through the CLI gives the same bytes.
    const std::string cli_out = (dir_ + "/cli-4x43.gguf").toStdString();
    std::ostringstream so, se;
    const int rc = moelab::cli::run(
        {"moelab-cli", "moefy", "--model", dense.toStdString(), "--calib", kCalib.toStdString(),
         "--experts", "4", "--shared", "0", "--top-k", "2", "-q", "-o", cli_out},
        {so, se});
    QVERIFY2(rc == 0, se.str().c_str());
    QCOMPARE(moelab::sha256_file(out.toStdString()), moelab::sha256_file(cli_out));
    // The window opens the converted model.
    QVERIFY(opened.count() > 0 || opened.wait(60000));
    QCOMPARE(opened.last().at(0).toString(), out);
    QVERIFY2(w.lastMessage().contains(".gguf"), qPrintable(w.lastMessage()));
  }

  void cancelStopsWithoutAFile() {
    MOELAB_REQUIRE_SHARED(kDense);
    MoefyDialog d(QString::fromStdString(moelab::test::shared_path(kDense)));
    const QString out = dir_ + "/cancelled.gguf";
    QFile::remove(out);
    d.calibEdit()->setText(kCalib);
    d.outputEdit()->setText(out);
    d.expertsBox()->setValue(4);
    d.sharedBox()->setValue(0);
    QSignalSpy fin(&d, &MoefyDialog::finished);
    d.start();
    QVERIFY(d.running());
    d.cancel();  // before the worker's first progress check: it stops there
    QVERIFY(fin.wait(120000));
    QCOMPARE(fin.at(0).at(0).toBool(), false);
    QCOMPARE(fin.at(0).at(1).toString(), QString("cancelled"));
    QVERIFY(!d.running());
    QVERIFY(!QFile::exists(out));
    QVERIFY2(d.statusLabel()->text().contains("Cancelled"), qPrintable(d.statusLabel()->text()));
  }

  void badInputIsShownInTheDialog() {
    MOELAB_REQUIRE_SHARED(kDense);
    MoefyDialog d(QString::fromStdString(moelab::test::shared_path(kDense)));
    const QString out = dir_ + "/bad.gguf";
    QFile::remove(out);
    d.calibEdit()->setText(kCalib);
    d.outputEdit()->setText(out);
    d.expertsBox()->setValue(4);
    d.topKBox()->setValue(5);
    QSignalSpy fin(&d, &MoefyDialog::finished);
    d.start();
    QVERIFY(fin.wait(60000));
    QCOMPARE(fin.at(0).at(0).toBool(), false);
    QVERIFY2(d.statusLabel()->text().contains("top-k 5 is outside 1..4"),
             qPrintable(d.statusLabel()->text()));
    QVERIFY(!QFile::exists(out));
  }
};

QTEST_MAIN(TestGuiMoefy)
#include "test_gui_moefy.moc"
