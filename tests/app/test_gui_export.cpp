// File -> Export report… of the desktop lab (offscreen): a finished run of the synthetic MoE demo
// model is exported as HTML through MainWindow::exportReport (the same path the menu takes after
// its questions); the file exists, is HTML and names the model. Unknown suffixes and "nothing to
// report yet" are refused with a message, writing nothing.
#include <QFile>
#include <QFileInfo>
#include <QProgressDialog>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTimer>
#include <QtTest>
#include <nlohmann/json.hpp>

#include "main_window.h"
#include "moelab/storage/store.h"
#include "report_export.h"
#include "test_support.h"

class TestGuiExport : public QObject {
  Q_OBJECT
  QString dir_;

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    dir_ = moelab::test::temp_dir("gui_export");
    qputenv("XDG_DATA_HOME", (dir_ + "/xdg").toUtf8());
    QCoreApplication::setOrganizationName("moelab-test");
    QCoreApplication::setApplicationName("moelab-test-export");
    QSettings().clear();
  }

  void formatFollowsSuffix() {
    using F = moelab::report::Format;
    QCOMPARE(moelab::lab::reportFormatForPath("a/b.html"), std::optional<F>(F::Html));
    QCOMPARE(moelab::lab::reportFormatForPath("B.HTM"), std::optional<F>(F::Html));
    QCOMPARE(moelab::lab::reportFormatForPath("r.pdf"), std::optional<F>(F::Pdf));
    QCOMPARE(moelab::lab::reportFormatForPath("r.md"), std::optional<F>(F::Markdown));
    QCOMPARE(moelab::lab::reportFormatForPath("r.csv"), std::optional<F>(F::Csv));
    QCOMPARE(moelab::lab::reportFormatForPath("r.json"), std::optional<F>(F::Json));
    QVERIFY(!moelab::lab::reportFormatForPath("r.docx"));
    QVERIFY(!moelab::lab::reportFormatForPath("report"));
  }

  void exportHtmlOfFinishedRun() {
    MainWindow::Options o;
    o.dbPath = dir_ + "/export.db";
    QFile::remove(o.dbPath);
    o.restoreLayout = false;
    o.session = "export session";
    MainWindow w(o);
    w.show();

    // Nothing run yet: refused, nothing written.
    const QString early = dir_ + "/early.html";
    QVERIFY(w.exportReport("run", early).isEmpty());
    QVERIFY2(w.lastMessage().contains("no run"), qPrintable(w.lastMessage()));
    QVERIFY(!QFile::exists(early));

    QSignalSpy ready(&w, &MainWindow::modelReady);
    w.openDemo("synthetic");
    QVERIFY2(ready.wait(60000) && w.modelLoaded(), qPrintable(w.lastMessage()));
    const QString modelName = QFileInfo(ready.at(0).at(0).toString()).fileName();
    QVERIFY(!modelName.isEmpty());

    w.runPanel()->promptEdit()->setPlainText("The experts");
    w.runPanel()->maxTokensBox()->setValue(8);
    w.runPanel()->temperatureBox()->setValue(0.0);
    w.runPanel()->fixedSeedBox()->setChecked(true);
    w.runPanel()->seedBox()->setValue(3);
    w.runPanel()->threadsBox()->setValue(1);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    w.startRun();
    QVERIFY(finished.wait(120000));
    const qint64 run = finished.at(0).at(0).toLongLong();
    QVERIFY(run > 0);
    QCOMPARE(w.lastRunId(), run);

    // Unknown suffix: refused with the reason.
    QVERIFY(w.exportReport("run", dir_ + "/r.docx").isEmpty());
    QVERIFY2(w.lastMessage().contains("docx"), qPrintable(w.lastMessage()));

    const QString out = dir_ + "/run.html";
    QFile::remove(out);
    const QStringList files = w.exportReport("run", out);
    QVERIFY2(!files.isEmpty(), qPrintable(w.lastMessage()));
    QCOMPARE(QFileInfo(files[0]).absoluteFilePath(), QFileInfo(out).absoluteFilePath());
    QVERIFY(QFile::exists(out));
    QFile f(out);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QString html = QString::fromUtf8(f.readAll());
    QVERIFY(html.size() > 1000);
    QVERIFY(html.startsWith("<!DOCTYPE html>", Qt::CaseInsensitive));
    // The model's name (general.name from its stored card) and its file name.
    const auto runRec = w.store()->run(run);
    QVERIFY(runRec && runRec->model_id > 0);
    const auto modelRec = w.store()->model(runRec->model_id);
    QVERIFY(modelRec.has_value());
    const auto card = nlohmann::json::parse(modelRec->card_json);
    const QString cardName = QString::fromStdString(card.value("name", std::string()));
    QCOMPARE(cardName, QString("synthetic-mixtral"));
    QVERIFY2(html.contains(cardName), qPrintable(cardName));
    QVERIFY2(html.contains(modelName), qPrintable(modelName));
    QVERIFY(html.contains(QString("run %1").arg(run)));
    QVERIFY2(w.lastMessage().contains("written"), qPrintable(w.lastMessage()));

    // Cancel from the progress dialog: nothing is left behind, the window says so.
    const QString cancelled = dir_ + "/cancelled.pdf";
    QFile::remove(cancelled);
    // The click is queued before the export starts, so the export sees it before its worker
    // begins (a timer-driven click raced with a quick report under parallel ctest).
    bool clicked = false;
    QMetaObject::invokeMethod(
        &w,
        [&w, &clicked] {
          auto* dlg = w.findChild<QProgressDialog*>("reportProgress");
          if (!dlg) return;
          dlg->cancel();
          clicked = true;
        },
        Qt::QueuedConnection);
    QVERIFY(w.exportReport("session", cancelled).isEmpty());
    QVERIFY(clicked);
    QCOMPARE(w.lastMessage(), QString("Report cancelled"));
    QVERIFY(!QFile::exists(cancelled));

    // The whole session as JSON names the same run.
    const QString js = dir_ + "/session.json";
    QVERIFY2(!w.exportReport("session", js).isEmpty(), qPrintable(w.lastMessage()));
    QFile j(js);
    QVERIFY(j.open(QIODevice::ReadOnly));
    QVERIFY(j.readAll().contains("export session"));
  }
};

QTEST_MAIN(TestGuiExport)
#include "test_gui_export.moc"
