// Session reports: turn stored runs (one run, a whole session, or an A/B pair) into a document a
// colleague can open anywhere - self-contained HTML, PDF, Markdown with images beside it, CSV
// tables, or JSON with everything (schema: app/report/report.schema.json).
//
// Contents: title, generation time, the machine that generated the report (CPU model, cores,
// GPU, RAM, OS), moelab version and build, the model card with sha256, each run's full
// configuration with a command line that reproduces it, prompt and output, metrics (TTFT, TPOT
// mean/p50/p90/p99, decode tokens/s, J/token or "no sensor", perplexity), figures (routing grid,
// expert load, attention snapshots, latency timeline and histogram, power trace) and, for A/B,
// the comparison (config diff, metric deltas with bootstrap CIs, routing/attention diff figures,
// token-level output diff). The maths of A/B is storage/compare's.
//
// Bounded size: per-token detail (token tables, the routing grid, the output diff, the JSON
// token list) covers the first Options::max_detail_tokens tokens of a run; aggregates (expert
// load, latency percentiles, histogram, energy) always use every token; the latency timeline
// and power trace are averaged into at most Options::max_series_points bins. Every cut is
// stated in the report as a note.
//
// Determinism: the same store content and options give the same bytes, except the generation
// timestamp (Options::generated_at_ms, or SOURCE_DATE_EPOCH, makes that fixed too).
//
// Figures are drawn with the views' CPU heatmap renderer (same colours as the live GPU views)
// and QPainter, so a QGuiApplication must exist; write_report creates an offscreen one when the
// process has no Qt application (the CLI case).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moelab/storage/store.h"

namespace moelab::report {

enum class Format { Html, Pdf, Markdown, Csv, Json };
/// "html", "pdf", "md" (also "markdown"), "csv", "json"; nullopt otherwise.
std::optional<Format> parse_format(std::string_view name);
const char* format_name(Format f) noexcept;

enum class PageSize { A4, Letter };

/// What the report covers.
struct Selection {
  enum class Kind { Run, Session, Compare };
  Kind kind = Kind::Run;
  int64_t run = 0;       // Kind::Run
  std::string session;   // Kind::Session: the session's name
  int64_t a = 0, b = 0;  // Kind::Compare: run A and the baseline B (deltas are A - B)
  static Selection one_run(int64_t id) { return {Kind::Run, id, {}, 0, 0}; }
  static Selection whole_session(std::string name) {
    return {Kind::Session, 0, std::move(name), 0, 0};
  }
  static Selection compare(int64_t a, int64_t b) { return {Kind::Compare, 0, {}, a, b}; }
};

/// The machine the report is generated on.
struct MachineInfo {
  std::string cpu_model;   // /proc/cpuinfo "model name"
  int cores = 0;           // logical CPUs
  std::string gpu;         // from moelab::probe_backends(); "none" when no GPU backend is usable
  uint64_t ram_bytes = 0;  // MemTotal
  std::string os;          // PRETTY_NAME of /etc/os-release and the kernel release
};
MachineInfo probe_machine();

/// Progress of a report: `done` of `total` steps, `what` names the current one. Return false
/// to cancel (write_report then throws moelab::Error with kind Cancelled and removes nothing
/// it has not written; partial output files are deleted).
using Progress = std::function<bool(int done, int total, const std::string& what)>;

struct Options {
  Format format = Format::Html;
  PageSize page = PageSize::A4;  // PDF only
  /// Generation time, Unix ms. Unset: SOURCE_DATE_EPOCH (seconds) when set, else now.
  std::optional<int64_t> generated_at_ms;
  /// Machine section. Unset: probe_machine().
  std::optional<MachineInfo> machine;
  std::string title;  // empty: derived from the selection
  /// Tokens per run shown in detail (tables, routing grid, output diff, JSON token list).
  int64_t max_detail_tokens = 512;
  /// Points of the latency timeline / power trace; longer runs are averaged into bins.
  int max_series_points = 1000;
  /// Attention snapshots drawn per run (the first ones by position, layer, head).
  int max_attention_figures = 3;
  /// Bootstrap of the A/B confidence intervals (storage/compare).
  int bootstrap_resamples = 10000;
  uint64_t bootstrap_seed = 0x6d6f656c6162ull;
  Progress progress;
};

/// Files written; files[0] is the document (Markdown: images follow; CSV: the tokens and
/// routing tables follow the metrics table).
struct Written {
  std::vector<std::string> files;
  uint64_t bytes = 0;
};

/// Writes the report to `path` (Markdown images go to "<stem>_files/" beside it; CSV writes
/// PATH (metrics), <stem>.tokens.csv and <stem>.routing.csv). Throws moelab::Error: BadInput
/// (unknown run or session, empty session), Io (cannot write), Cancelled; storage errors are
/// rethrown as moelab::Error too.
Written write_report(const storage::Store& store, const Selection& selection,
                     const std::string& path, const Options& options = {});

/// The JSON document (what Format::Json writes), without writing anything.
nlohmann::json build_json(const storage::Store& store, const Selection& selection,
                          const Options& options = {});

/// How every report writes a number: "-" when not finite, integers without decimals,
/// `significant` significant digits otherwise (%e below 1e-4 and from 1e7). Tests use it to find
/// the figures of a report in its text.
std::string format_number(double v, int significant = 4);

/// `s` as every report writes text from a model or a file: invalid UTF-8 (RFC 3629) becomes
/// U+FFFD; C0 control bytes other than tab, LF and CR, and DEL, become their Unicode control
/// pictures (U+2400..U+241F, U+2421: ESC shows as "\u241B"), so no escape sequence reaches a
/// terminal. Also what `moelab-cli run` prints on a terminal.
std::string visible_text(const std::string& s);

/// The JSON Schema (draft 2020-12) the JSON document follows, as committed in
/// app/report/report.schema.json.
const std::string& json_schema();
inline constexpr int kSchemaVersion = 1;

}  // namespace moelab::report
