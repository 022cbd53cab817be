// Internal model of a report: the data loaded from the store, the figures, and the document
// blocks every output format is written from.
#pragma once

#include <QImage>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moelab/compare/compare.h"
#include "moelab/report/report.h"

namespace moelab::report::detail {

/// Summary statistics of one run's tokens.
struct RunStats {
  int64_t n_tokens = 0;
  std::optional<double> ttft_ms;  // stored metric "ttft_ms", else token 0's latency
  std::string ttft_source;        // "metric ttft_ms" / "latency of token 0"
  size_t tpot_n = 0;              // TPOT samples (tokens after the first)
  double tpot_mean = 0, tpot_p50 = 0, tpot_p90 = 0, tpot_p99 = 0, tpot_min = 0, tpot_max = 0;
  std::optional<double> tokens_per_s;  // stored "tokens_per_s", else (n - 1) / sum(TPOT)
  std::string tokens_per_s_source;
  std::optional<double> j_per_token;  // mean energy of tokens with a value, J
  std::string j_per_token_source;     // how j_per_token was obtained (empty: per-token energy)
  size_t energy_tokens = 0;
  std::optional<double> mean_power_w;
};

/// Routing aggregates of one run.
struct RunRouting {
  bool present = false;
  int expert_count = 0;
  std::vector<int32_t> layers;      // routed layers, ascending
  std::vector<int64_t> selections;  // [layers, expert_count] times expert e was in top-k
  std::vector<double> weight_sum;   // [layers, expert_count] sum of mixing weights
  bool weights_reported = true;     // false: no finite weight stored (remote engines report
                                    // expert ids only; weights NaN); grid_top is then the
                                    // first listed expert, mean weights null
  std::vector<int64_t> tokens;      // [layers] tokens routed
  int k_min = 0, k_max = 0;
  double k_mean = 0;
  // Detail: top expert (largest weight) per (layer, position) of the first positions.
  std::vector<int64_t> grid_positions;  // columns
  std::vector<int32_t> grid_top;        // [layers, grid_positions]; -1 = not routed
  int64_t positions_total = 0;
  /// Fraction of layer li's (token, slot) selections that went to expert e (0..1):
  /// compare::expert_share, the definition every surface uses.
  double share(size_t li, int e) const {
    std::vector<double> c(static_cast<size_t>(expert_count));
    for (int x = 0; x < expert_count; ++x)
      c[static_cast<size_t>(x)] = static_cast<double>(selections[li * expert_count + x]);
    return compare::expert_share(c)[static_cast<size_t>(e)];
  }
};

struct RunData {
  storage::RunRecord run;
  std::optional<storage::ModelRecord> model;
  nlohmann::json config;  // parsed config_json (a string when it was not JSON)
  nlohmann::json card;    // parsed model card ({} when none)
  std::string command_line;
  std::vector<std::string> command_notes;    // config keys the command cannot express
  std::vector<storage::TokenRecord> tokens;  // all of them (aggregates); detail is cut later
  std::vector<storage::MetricRecord> metrics;
  std::vector<storage::EvalResult> evals;
  std::vector<storage::AttentionSnapshot> attention;
  RunStats stats;
  RunRouting routing;
  std::string label;  // "run 12" or "A (run 12)"
};

struct Figure {
  std::string id;       // file-name friendly, unique: "fig-03-latency-run12"
  std::string title;    // what it shows
  std::string caption;  // how to read it
  QImage image;
};

/// Text with an optional style, for the output diff.
struct Span {
  enum class Kind { Plain, Deleted, Inserted };
  Kind kind = Kind::Plain;
  std::string text;
};

/// One element of the document, in reading order.
struct Block {
  enum class Kind { H1, H2, H3, Para, Note, Table, Figure, Pre, Diff };
  Kind kind = Kind::Para;
  std::string text;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  bool first_column_is_label = false;
  int figure = -1;
  std::vector<Span> spans;
};

struct Document {
  std::string title;
  std::string subtitle;
  std::vector<Block> blocks;
  std::vector<Figure> figures;
};

struct Report {
  Selection selection;
  Options options;
  int64_t generated_at_ms = 0;
  MachineInfo machine;
  std::optional<storage::SessionRecord> session;
  std::vector<RunData> runs;
  std::optional<compare::RunComparison> comparison;
  std::vector<std::string> diff_notes;
  std::vector<std::string> notes;  // what was sampled or cut
  std::string title;
};

// loading (model.cpp)
Report load_report(const storage::Store& store, const Selection& sel, const Options& o,
                   const std::function<void(const std::string&)>& step);
nlohmann::json to_json(const Report& r);
std::string iso8601_utc(int64_t unix_ms);
std::string version_string();
std::string build_string();
std::string format_number(double v, int significant = 4);  // report.h documents it
std::string format_bytes(uint64_t b);

// figures (figures.cpp)
std::vector<Figure> make_run_figures(const Report& r, const RunData& run, int& counter);
/// `notes`: what is not drawn and why (e.g. identical attention maps).
std::vector<Figure> make_compare_figures(const Report& r, int& counter,
                                         std::vector<std::string>& notes);

/// One evaluation run of a session on the quality-vs-active-parameters curve.
struct QualityPoint {
  int64_t run_id = 0;
  std::string model;              // card name
  std::string routing;            // the run's routing policy ("default" when none stored)
  double avg_active_experts = 0;  // 0 for a dense model
  double active_params = 0;       // per token: the card's params_active, moved by the measured
                                  // experts per token (avg - expert_used_count) * 3 n_embd n_ff_exp
                                  // n_layer for MoE models
  double ppl = 0;
  double kl = -1;  // stored kl_vs_reference (nats/token), -1 when none
};
/// The session's runs with a stored perplexity, in run order.
std::vector<QualityPoint> quality_points(const Report& r);
/// Perplexity vs active parameters per token, one series per model (empty unless two or more
/// runs have a perplexity).
std::vector<Figure> make_session_figures(const Report& r, int& counter);

// document (document.cpp)
Document build_document(const Report& r, const std::function<void(const std::string&)>& step);

// writers (writers.cpp)
std::string write_html(const Document& d);
std::string write_markdown(const Document& d, const std::string& image_dir_name);
std::string write_pdf(const Document& d, PageSize page, int64_t generated_at_ms);
std::string png_bytes(const QImage& img);
void write_csv(const Report& r, std::vector<std::pair<std::string, std::string>>& files,
               const std::string& stem);

}  // namespace moelab::report::detail
