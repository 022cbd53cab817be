// File -> Export report…: writes a session report (app/report) of one run, a whole session or an
// A/B pair from the lab's store. The format follows the file suffix (.html .pdf .md .csv .json).
// The report is built on a worker thread with its own read-only connection to the database
// (storage::Store is one connection per thread); a QProgressDialog shows write_report's steps
// and its Cancel button cancels the report (partial files are deleted by write_report).
#pragma once

#include <QString>
#include <QStringList>
#include <optional>

#include "moelab/report/report.h"

class QWidget;

namespace moelab::lab {

/// The report format for a file name by its suffix (case-insensitive): html/htm, pdf, md/markdown,
/// csv, json; nullopt otherwise.
std::optional<moelab::report::Format> reportFormatForPath(const QString& path);
/// The file dialog filter of the supported formats.
QString reportFileFilter();

struct ExportResult {
  bool ok = false;
  bool cancelled = false;
  QString error;      // why it failed (empty when ok or cancelled)
  QStringList files;  // written files, document first
};

/// Writes the report of `selection` from the database at `dbPath` to `path`, showing a modal
/// QProgressDialog under `parent` (null: none) while a worker thread builds it. Blocks (in a local
/// event loop) until the report is written, failed or cancelled. `options.format` and
/// `options.progress` are set here.
ExportResult exportReport(QWidget* parent, const QString& dbPath,
                          const moelab::report::Selection& selection, const QString& path,
                          moelab::report::Options options = {});

}  // namespace moelab::lab
