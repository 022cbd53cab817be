// moelab-cli report --db PATH (--run ID | --session NAME | --compare A B)
//                   --format {html,pdf,md,csv,json} -o PATH [--page a4|letter] [--title T]
// Writes a session report (app/report) and prints the path(s) written.
#include <stdlib.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <ostream>

#include "checks.h"
#include "cli.h"
#include "moelab/core/error.h"
#include "moelab/core/files.h"
#include "moelab/report/report.h"
#include "store_cli.h"

namespace moelab::cli {

namespace {

struct ReportCliOptions {
  std::string db;
  int64_t run = 0;
  std::string session;
  std::vector<int64_t> compare;
  std::string format = "html";
  std::string out;
  std::string page = "a4";
  std::string title;
  int64_t max_detail = 512;
  int64_t timestamp = -1;
  bool quiet = false;
};

int run_report(const ReportCliOptions& o, Io io) {
  report::Selection sel;
  const int chosen = (o.run ? 1 : 0) + (o.session.empty() ? 0 : 1) + (o.compare.empty() ? 0 : 1);
  if (chosen != 1)
    throw Error(ErrorKind::BadInput, "give exactly one of --run ID, --session NAME, --compare A B");
  if (o.run)
    sel = report::Selection::one_run(o.run);
  else if (!o.session.empty())
    sel = report::Selection::whole_session(o.session);
  else if (o.compare.at(0) == o.compare.at(1))
    throw Error(
        ErrorKind::BadInput,
        "A and B are the same run (" + std::to_string(o.compare[0]) + "); give two different runs",
        {.subject = "--compare"});
  else
    sel = report::Selection::compare(o.compare.at(0), o.compare.at(1));
  report::Options ro;
  ro.format = *report::parse_format(o.format);
  ro.page = o.page == "letter" ? report::PageSize::Letter : report::PageSize::A4;
  ro.title = o.title;
  ro.max_detail_tokens = o.max_detail;
  if (o.timestamp >= 0) ro.generated_at_ms = o.timestamp * 1000;
  if (!o.quiet)
    ro.progress = [&io](int done, int total, const std::string& what) {
      io.err << "[" << done << "/" << total << "] " << what << '\n';
      return true;
    };
  // "-o -": the document goes to stdout. It is written to a private temporary folder first (the
  // writers stream into files) and copied; Markdown and CSV are several files and need a path.
  if (o.out == "-") {
    if (ro.format == report::Format::Markdown || ro.format == report::Format::Csv)
      throw Error(ErrorKind::BadInput,
                  std::string("-o -: a ") + report::format_name(ro.format) +
                      " report is several files (" +
                      (ro.format == report::Format::Csv ? "metrics, tokens and routing tables"
                                                        : "the document and its images") +
                      "); give a file path, or use html, pdf or json for stdout",
                  {.subject = "report"});
    const auto store = open_existing_store(db_or_default(o.db));
    std::string tmpl = (std::filesystem::temp_directory_path() / "moelab-report-XXXXXX").string();
    if (!::mkdtemp(tmpl.data()))
      throw Error(ErrorKind::Io, "cannot create a temporary folder: " + os_reason(errno),
                  {.file = tmpl});
    struct RemoveDir {
      std::string dir;
      ~RemoveDir() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }
    } cleanup{tmpl};
    const std::string file = tmpl + "/report." + report::format_name(ro.format);
    report::write_report(*store, sel, file, ro);
    io.out << read_text_file(file, "report", uint64_t{1} << 32) << std::flush;
    return kOk;
  }
  // A FIFO, device or folder is refused before the work; a missing folder is created by
  // write_report (the file is checked again when it is written).
  const std::filesystem::path parent = std::filesystem::path(o.out).parent_path();
  if (parent.empty() || std::filesystem::exists(parent)) check_output_target(o.out);
  const auto store = open_existing_store(db_or_default(o.db));
  const report::Written w = report::write_report(*store, sel, o.out, ro);
  for (const auto& f : w.files) io.out << f << '\n';
  return kOk;
}

}  // namespace

void add_report(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<ReportCliOptions>();
  auto* sub = app.add_subcommand(
      "report",
      "Write a report of a run, a session or an A/B comparison (HTML, PDF, Markdown, "
      "CSV, JSON)");
  add_db_option(sub, o->db);
  auto* run =
      sub->add_option("--run", o->run, "Report one run (id)")->transform(int_range(1, kMaxId));
  auto* ses = sub->add_option("--session", o->session, "Report every run of a session (name)");
  auto* cmp = sub->add_option("--compare", o->compare,
                              "A/B report of runs A and B (B is the baseline: deltas are A - B)")
                  ->expected(2)
                  ->transform(int_range(1, kMaxId));
  run->excludes(ses)->excludes(cmp);
  ses->excludes(cmp);
  sub->add_option("-f,--format", o->format, "html, pdf, md, csv or json")
      ->check(CLI::IsMember({"html", "pdf", "md", "markdown", "csv", "json"}))
      ->capture_default_str();
  sub->add_option("-o,--output", o->out,
                  "Output file (md: images go to <stem>_files/; csv: also writes "
                  "<stem>.tokens.csv and <stem>.routing.csv); '-' writes the document to stdout "
                  "(html, pdf, json)")
      ->required();
  sub->add_option("--page", o->page, "PDF page size: a4 or letter")
      ->check(CLI::IsMember({"a4", "letter"}))
      ->capture_default_str();
  sub->add_option("--title", o->title, "Title (default: derived from the selection)");
  sub->add_option("--max-detail-tokens", o->max_detail,
                  "Tokens per run shown in detail; aggregates always use every token")
      ->transform(int_range(1, 1 << 24))
      ->capture_default_str();
  sub->add_option("--timestamp", o->timestamp,
                  "Generation time to print, Unix seconds (default: SOURCE_DATE_EPOCH or now); "
                  "fixes the only varying bytes")
      ->transform(int_range(0, 253402300799));  // up to 9999-12-31
  sub->add_flag("-q,--quiet", o->quiet, "No progress lines on stderr");
  sub->callback([o, io, &action] {
    action = [o, io] { return with_store_errors([&] { return run_report(*o, io); }); };
  });
}

}  // namespace moelab::cli
