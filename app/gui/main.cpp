// moelab: the desktop lab. Usage: moelab [FILE.gguf] [--screenshot PNG]
#include <QApplication>
#include <QCommandLineParser>
#include <QScreen>
#include <QTimer>

#include "main_window.h"
#include "moelab/core/backends.h"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setApplicationName("moelab");
  QApplication::setOrganizationName("moelab");
  QApplication::setApplicationVersion(MOELAB_VERSION);

  QCommandLineParser cli;
  cli.setApplicationDescription("moelab - look inside Mixture-of-Experts language models");
  cli.addHelpOption();
  cli.addVersionOption();
  cli.addPositionalArgument("model", "GGUF model file to open");
  QCommandLineOption shot("screenshot", "Save a PNG of the window once the model card is shown "
                                        "(and hashed), then quit.", "png");
  cli.addOption(shot);
  cli.process(app);

  moelab::resolve_backend("auto");  // logs one line when CUDA is built but unusable here
  MainWindow w;
  w.show();
  const QStringList args = cli.positionalArguments();
  if (!args.isEmpty()) w.openModel(args.first());
  if (cli.isSet(shot)) {
    const QString out = cli.value(shot);
    auto save = [&w, out] {
      const bool ok = w.grab().save(out);
      fprintf(stderr, "moelab: %s %s\n", ok ? "saved screenshot" : "could not save", qPrintable(out));
      QApplication::exit(ok ? 0 : 1);
    };
    if (args.isEmpty()) QTimer::singleShot(500, &w, save);
    else QObject::connect(&w, &MainWindow::idle, &w, [save] { QTimer::singleShot(200, save); });
  }
  return app.exec();
}
