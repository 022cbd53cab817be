// write_report / build_json: selection -> data -> document -> files, with progress.
#include <QGuiApplication>
#include <QHashSeed>
#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "internal.h"
#include "moelab/core/error.h"
#include "moelab/core/files.h"
#include "moelab/storage/error.h"

namespace moelab::report {

namespace {

namespace fs = std::filesystem;
using detail::Report;

/// Figures need Qt's font database: a QGuiApplication. The CLI has none, so create an offscreen
/// one for the rest of the process.
void ensure_gui_application() {
  if (qobject_cast<QGuiApplication*>(QCoreApplication::instance())) return;
  if (QCoreApplication::instance())
    throw Error(ErrorKind::Internal,
                "reports draw figures and need a QGuiApplication, but this process created a "
                "QCoreApplication");
  static int argc = 1;
  static char arg0[] = "moelab-report";
  static char* argv[] = {arg0, nullptr};
  qputenv("QT_QPA_PLATFORM", "offscreen");
  // Qt randomises its hash seed per process, and QPdfWriter emits font objects in hash order:
  // the deterministic seed makes identical calls write identical PDFs. Set before Qt's first
  // hash table is built (the QGuiApplication is the first Qt object of a report-writing
  // process); putting QT_HASH_SEED=0 into the environment from here did not take effect.
  QHashSeed::setDeterministicGlobalSeed();
  static QGuiApplication* app = new QGuiApplication(argc, argv);
  (void)app;
}

int64_t now_ms(const Options& o) {
  if (o.generated_at_ms) return *o.generated_at_ms;
  if (const char* e = std::getenv("SOURCE_DATE_EPOCH"); e && *e)
    return std::strtoll(e, nullptr, 10) * 1000;
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void rethrow(const storage::StorageError& e) {
  using K = storage::StorageErrorKind;
  const ErrorKind k = e.kind() == K::Internal ? ErrorKind::Internal
                      : (e.kind() == K::Io || e.kind() == K::DiskFull || e.kind() == K::ReadOnly ||
                         e.kind() == K::Busy)
                          ? ErrorKind::Io
                          : ErrorKind::BadInput;
  throw Error(k, e.detail(), ErrorWhere{e.where().file, std::nullopt, e.where().subject});
}

struct Steps {
  const Options& o;
  int done = 0, total = 0;
  void operator()(const std::string& what) {
    if (o.progress && !o.progress(done, total, what))
      throw Error(ErrorKind::Cancelled, "report cancelled");
    if (done < total - 1) ++done;
  }
};

int count_steps(const Selection& s) {
  // loading each run, comparing, figures of each run, writing.
  switch (s.kind) {
    case Selection::Kind::Run:
      return 3;
    case Selection::Kind::Compare:
      return 6;
    case Selection::Kind::Session:
      return 12;  // refined once the runs are known
  }
  return 3;
}

Report load(const storage::Store& store, const Selection& sel, const Options& o, Steps& steps) {
  try {
    if (sel.kind == Selection::Kind::Session) {
      const auto s = store.session_by_name(sel.session);
      if (s) steps.total = static_cast<int>(2 * store.runs(s->id).size() + 1);
    }
    Report r = detail::load_report(store, sel, o, std::ref(steps));
    r.generated_at_ms = now_ms(o);
    r.machine = o.machine ? *o.machine : probe_machine();
    return r;
  } catch (const storage::StorageError& e) {
    rethrow(e);
  }
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  // Temporary file plus rename; refuses FIFOs, devices and folders (moelab/core/files.h).
  write_file_atomic(p.string(), bytes);
}

}  // namespace

nlohmann::json build_json(const storage::Store& store, const Selection& sel, const Options& o) {
  Steps steps{o, 0, count_steps(sel)};
  const Report r = load(store, sel, o, steps);
  return detail::to_json(r);
}

Written write_report(const storage::Store& store, const Selection& sel, const std::string& path,
                     const Options& o) {
  Steps steps{o, 0, count_steps(sel)};
  Report r = load(store, sel, o, steps);
  std::vector<std::pair<std::string, std::string>> files;  // path, bytes
  const fs::path out(path);
  const std::string stem = (out.parent_path() / out.stem()).string();
  if (o.format == Format::Json) {
    steps("writing JSON");
    // Stored token pieces are bytes and may be partial UTF-8 (storage/records.h): replace
    // invalid sequences with U+FFFD instead of failing the whole report.
    files.push_back(
        {path,
         detail::to_json(r).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"});
  } else if (o.format == Format::Csv) {
    steps("writing CSV");
    detail::write_csv(r, files, stem);
    files[0].first = path;
  } else {
    ensure_gui_application();
    const detail::Document doc = detail::build_document(r, std::ref(steps));
    steps(std::string("writing ") + format_name(o.format));
    if (o.format == Format::Html) {
      files.push_back({path, detail::write_html(doc)});
    } else if (o.format == Format::Pdf) {
      files.push_back({path, detail::write_pdf(doc, o.page, r.generated_at_ms)});
    } else {
      const std::string dir = out.stem().string() + "_files";
      files.push_back({path, detail::write_markdown(doc, dir)});
      for (const auto& f : doc.figures)
        files.push_back(
            {(out.parent_path() / dir / (f.id + ".png")).string(), detail::png_bytes(f.image)});
    }
  }
  Written w;
  try {
    for (const auto& [p, bytes] : files) {
      write_file(p, bytes);
      w.files.push_back(p);
      w.bytes += bytes.size();
    }
  } catch (...) {
    std::error_code ec;
    for (const auto& p : w.files) fs::remove(p, ec);
    throw;
  }
  if (o.progress) o.progress(steps.total, steps.total, "done");
  return w;
}

}  // namespace moelab::report
