// The GUI shell: a dropped .gguf shows its model card; an invalid file shows the reader's
// message and the window stays usable; file URLs from a desktop drop decode to local paths.
#include <QDropEvent>
#include <QJsonArray>
#include <QJsonObject>
#include <QMimeData>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QtTest>

#include "gui_test_support.h"
#include "main_window.h"
#include "test_support.h"

namespace {
// Delivers a drop of `urls` onto `target` the way a desktop does.
void drop(QWidget* target, const QList<QUrl>& urls) {
  QVERIFY(moelab::test::drop_urls(target, urls));
}
}  // namespace

class TestGuiShell : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    // Keep the windows' settings and run database away from the user's.
    QStandardPaths::setTestModeEnabled(true);
    qputenv("XDG_DATA_HOME", (moelab::test::temp_dir("gui_shell") + "/xdg").toUtf8());
    QCoreApplication::setOrganizationName("moelab-test");
    QCoreApplication::setApplicationName("moelab-test-shell");
  }

  void dropShowsModelCard() {
    MOELAB_REQUIRE_SHARED("fixtures/models/qwen2moe/qwen2moe.Q8_0.gguf");
    MainWindow w;
    w.show();
    QSignalSpy idle(&w, &MainWindow::idle);
    drop(w.dropZone(), {QUrl::fromLocalFile(QString::fromStdString(moelab::test::shared_path(
                           "fixtures/models/qwen2moe/qwen2moe.Q8_0.gguf")))});
    QVERIFY(idle.wait(10000));
    QCOMPARE(w.page(), QString("card"));
    const QString text = w.cardView()->text();
    QVERIFY2(text.contains("architecture: qwen2moe"), qPrintable(text));
    QVERIFY(text.contains("8 experts, top-4"));
    QVERIFY(text.contains("active per token"));
    QVERIFY(text.contains("runnable: yes"));
    // The hash matches summary.json.
    const auto s = moelab::test::read_json(moelab::test::shared_dir() + "/fixtures/summary.json")
                       .object()["files"]
                       .toObject()["qwen2moe.Q8_0"]
                       .toObject();
    QVERIFY(text.contains("sha256: " + s["sha256"].toString()));
  }

  void invalidFileShowsMessageAndStaysUsable() {
    MOELAB_REQUIRE_SHARED("cases/gguf/g02_bad_magic_html.gguf");
    MainWindow w;
    w.show();
    QSignalSpy idle(&w, &MainWindow::idle);
    drop(&w, {QUrl::fromLocalFile(QString::fromStdString(
                 moelab::test::shared_path("cases/gguf/g02_bad_magic_html.gguf")))});
    QVERIFY(idle.wait(10000));
    QCOMPARE(w.page(), QString("drop"));
    QVERIFY2(w.dropZone()->errorText().contains("HTML page"),
             qPrintable(w.dropZone()->errorText()));
    // Next, a good file still loads.
    drop(&w, {QUrl::fromLocalFile(QString::fromStdString(
                 moelab::test::shared_path("cases/gguf/g00_valid_tiny.gguf")))});
    QVERIFY(idle.wait(10000));
    QCOMPARE(w.page(), QString("card"));
    QVERIFY(w.cardView()->text().contains("runnable: no"));
  }

  void truncatedFileNamesTheProblem() {
    MOELAB_REQUIRE_SHARED("cases/gguf/g01_truncated_data.gguf");
    MainWindow w;
    QSignalSpy idle(&w, &MainWindow::idle);
    w.openModel(
        QString::fromStdString(moelab::test::shared_path("cases/gguf/g01_truncated_data.gguf")));
    QVERIFY(idle.wait(10000));
    QVERIFY(w.dropZone()->errorText().contains("truncated"));
  }

  void severalFilesOpenTheFirstLocalOne() {
    int n = 0;
    const QString p = DropZone::localFileFromUrls(
        {QUrl("https://example.org/x.gguf"), QUrl::fromLocalFile("/tmp/a b.gguf"),
         QUrl::fromLocalFile("/tmp/c.gguf")},
        &n);
    QCOMPARE(p, QString("/tmp/a b.gguf"));
    QCOMPARE(n, 3);
  }

  void desktopFileUrlsDecode() {
    MOELAB_REQUIRE_SHARED("cases/ui/dragdrop_uri_cases.json");
    const auto doc =
        moelab::test::read_json(moelab::test::shared_dir() + "/cases/ui/dragdrop_uri_cases.json");
    const QJsonArray cases = doc.isArray() ? doc.array() : doc.object()["cases"].toArray();
    QVERIFY(!cases.isEmpty());
    int checked = 0;
    for (const auto& v : cases) {
      const auto c = v.toObject();
      const QString uri = c["uri"].toString();
      const QString want = c.contains("path") ? c["path"].toString() : c["expected"].toString();
      if (uri.isEmpty() || want.isEmpty()) continue;
      if (want.size() > 1 && want[1] == ':') continue;  // Windows drive letters: not this platform
      QCOMPARE(DropZone::localFileFromUrls({QUrl(uri)}), want);
      ++checked;
    }
    QVERIFY(checked > 0);
  }
};

QTEST_MAIN(TestGuiShell)
#include "test_gui_shell.moc"
