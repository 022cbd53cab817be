// moelab: the desktop lab.
// Usage: moelab [FILE.gguf] [--demo [synthetic|moefied|smollm2]] [--db PATH] [--screenshot PNG]
//        moelab --headless-demo DIR [--db PATH]   (no display needed)
#include <QApplication>
#include <QCommandLineParser>
#include <QCoreApplication>
#include <QHashSeed>
#include <QSettings>
#include <QTimer>
#include <cstring>

#include "demo.h"
#include "main_window.h"
#include "moelab/core/backends.h"
#include "settings.h"

namespace {
void setNames() {
  QCoreApplication::setApplicationName("moelab");
  QCoreApplication::setOrganizationName("moelab");
  QCoreApplication::setApplicationVersion(MOELAB_VERSION);
}
}  // namespace

int main(int argc, char** argv) {
  // The headless demo needs no display: decide before a QApplication wants one.
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--headless-demo") == 0) {
      QCoreApplication core(argc, argv);
      setNames();
      QCommandLineParser cli;
      QCommandLineOption headless(
          "headless-demo", "Run both demo models into a session; write DIR/demo-summary.json.",
          "dir");
      QCommandLineOption db(
          "db", "Run database (default: settings, else ~/.local/share/moelab/moelab.db).", "path");
      cli.addOptions({headless, db});
      cli.process(core);
      const QString dbPath =
          cli.isSet(db) ? cli.value(db) : moelab::lab::AppSettings::load().effectiveDbPath();
      return moelab::lab::demo::runHeadless(cli.value(headless), dbPath);
    }
  }

  // Deterministic hashing before the first Qt object: PDF exports from the lab are then byte
  // for byte those of `moelab-cli report` for the same data (QPdfWriter emits font objects in
  // hash order).
  QHashSeed::setDeterministicGlobalSeed();
  QApplication app(argc, argv);
  setNames();
  QCommandLineParser cli;
  cli.setApplicationDescription("moelab - look inside Mixture-of-Experts language models");
  cli.addHelpOption();
  cli.addVersionOption();
  cli.addPositionalArgument("model", "GGUF model file to open");
  QCommandLineOption shot("screenshot",
                          "Save a PNG of the window once the model card is shown "
                          "(and hashed), then quit.",
                          "png");
  QCommandLineOption demo("demo",
                          "Open a demo model with a prompt ready: synthetic (random-weight MoE, "
                          "default), moefied (SmolLM2 converted to MoE) or smollm2.",
                          "which", "synthetic");
  QCommandLineOption db("db", "Run database for this start.", "path");
  QCommandLineOption headless(
      "headless-demo", "Run both demo models without a display; write DIR/demo-summary.json.",
      "dir");
  cli.addOptions({shot, demo, db, headless});
  cli.process(app);

  // A Vulkan surface is not part of QWidget::grab(): with --screenshot the views are drawn on
  // the CPU (same colours) so that they appear in the PNG.
  if (cli.isSet(shot)) qputenv("MOELAB_VIEWS_CPU", "1");
  const auto settings = moelab::lab::AppSettings::load();
  moelab::lab::applyTheme(settings.theme);
  moelab::resolve_backend("auto");  // logs one line when CUDA is built but unusable here
  MainWindow::Options opts;
  if (cli.isSet(db)) opts.dbPath = cli.value(db);
  MainWindow w(opts);
  w.show();
  const QStringList args = cli.positionalArguments();
  QSettings s;
  const bool firstStart = !s.value("demo/offered", false).toBool();
  s.setValue("demo/offered", true);
  if (!args.isEmpty())
    w.openModel(args.first());
  else if (cli.isSet(demo))
    w.openDemo(cli.value(demo));
  else if (firstStart)
    w.openDemo("synthetic");  // first start: the offline demo, prompt ready
  if (cli.isSet(shot)) {
    const QString out = cli.value(shot);
    auto save = [&w, out] {
      const bool ok = w.grab().save(out);
      fprintf(stderr, "moelab: %s %s\n", ok ? "saved screenshot" : "could not save",
              qPrintable(out));
      QApplication::exit(ok ? 0 : 1);
    };
    if (args.isEmpty() && !cli.isSet(demo))
      QTimer::singleShot(500, &w, save);
    else
      QObject::connect(&w, &MainWindow::idle, &w, [save] { QTimer::singleShot(200, save); });
  }
  return app.exec();
}
