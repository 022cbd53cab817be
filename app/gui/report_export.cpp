#include "report_export.h"

#include <QCoreApplication>

#include <QEventLoop>
#include <QFileInfo>
#include <QPointer>
#include <QProgressDialog>
#include <QWidget>
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "moelab/core/error.h"
#include "moelab/storage/store.h"

namespace moelab::lab {

namespace rp = moelab::report;

std::optional<rp::Format> reportFormatForPath(const QString& path) {
  QString suffix = QFileInfo(path).suffix().toLower();
  if (suffix == "htm") suffix = "html";
  if (suffix.isEmpty()) return std::nullopt;
  return rp::parse_format(suffix.toStdString());
}

QString reportFileFilter() {
  return QObject::tr(
      "HTML report (*.html);;PDF report (*.pdf);;Markdown report (*.md);;CSV tables (*.csv);;"
      "JSON report (*.json)");
}

namespace {
// State shared by the GUI thread and the worker.
struct Shared {
  std::atomic<bool> cancel{false};
  std::mutex mu;
  int done = 0, total = 0;
  std::string what;
  bool finished = false;
  ExportResult result;
};
}  // namespace

ExportResult exportReport(QWidget* parent, const QString& dbPath, const rp::Selection& selection,
                          const QString& path, rp::Options options) {
  ExportResult out;
  const auto format = reportFormatForPath(path);
  if (!format) {
    out.error = QObject::tr("Unknown report format \"%1\": use .html, .pdf, .md, .csv or .json")
                    .arg(QFileInfo(path).suffix());
    return out;
  }
  options.format = *format;
  auto sh = std::make_shared<Shared>();
  options.progress = [sh](int done, int total, const std::string& what) {
    std::lock_guard<std::mutex> lock(sh->mu);
    sh->done = done;
    sh->total = total;
    sh->what = what;
    return !sh->cancel.load();
  };

  QPointer<QProgressDialog> dlg;
  if (parent) {
    dlg = new QProgressDialog(QObject::tr("Writing the report…"), QObject::tr("Cancel"), 0, 0,
                              parent);
    dlg->setObjectName("reportProgress");
    dlg->setWindowTitle(QObject::tr("Export report"));
    dlg->setWindowModality(Qt::WindowModal);
    dlg->setMinimumDuration(300);
    dlg->setAutoClose(false);
    dlg->setAutoReset(false);
    QObject::connect(dlg, &QProgressDialog::canceled, dlg, [sh] { sh->cancel = true; });
  }

  // A cancel that is already on its way (a queued click, Esc) cancels before any work starts:
  // deliver what is pending once, then look. Without this a quick report could finish on the
  // worker before the GUI thread ever saw the click (test_gui_export failed that way under load).
  QCoreApplication::processEvents(QEventLoop::AllEvents, 20);
  if (dlg && dlg->wasCanceled()) {
    delete dlg.data();
    out.cancelled = true;
    return out;
  }

  const std::string db = dbPath.toStdString();
  const std::string file = path.toStdString();
  std::thread worker([sh, db, file, selection, options] {
    ExportResult r;
    try {
      storage::OpenOptions oo;
      oo.read_only = true;
      storage::Store store(db, oo);
      const auto w = rp::write_report(store, selection, file, options);
      r.ok = true;
      for (const auto& f : w.files) r.files << QString::fromStdString(f);
    } catch (const moelab::Error& e) {
      r.cancelled = e.kind() == moelab::ErrorKind::Cancelled;
      if (!r.cancelled) r.error = QString::fromStdString(e.what());
    } catch (const std::exception& e) {
      r.error = QString::fromStdString(e.what());
    }
    std::lock_guard<std::mutex> lock(sh->mu);
    sh->result = std::move(r);
    sh->finished = true;
  });

  // Local event loop: poll the worker's progress (keeps the GUI responsive and the dialog live).
  QEventLoop loop;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(sh->mu);
      if (sh->finished) break;
      if (dlg && dlg->wasCanceled()) sh->cancel = true;
      if (dlg && sh->total > 0) {
        dlg->setMaximum(sh->total);
        dlg->setValue(sh->done);
        dlg->setLabelText(
            QObject::tr("Writing the report: %1").arg(QString::fromStdString(sh->what)));
      }
    }
    loop.processEvents(QEventLoop::AllEvents, 20);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  worker.join();
  delete dlg.data();  // now, not later: the next export must not find this one
  std::lock_guard<std::mutex> lock(sh->mu);
  out = sh->result;
  if (out.cancelled) out.error.clear();
  return out;
}

}  // namespace moelab::lab
