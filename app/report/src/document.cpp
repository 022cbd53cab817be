// The report as a sequence of blocks (headings, tables, figures, text), in reading order. Every
// human-readable format (HTML, PDF, Markdown) is written from this one document.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "internal.h"

namespace moelab::report::detail {

namespace {

// What the server of a remote run reported (config.remote.reported, app/remote/remote_run.h),
// in one sentence; empty for other runs.
std::string remote_reported(const nlohmann::json& c) {
  const nlohmann::json* rep = nullptr;
  if (c.is_object() && c.contains("remote") && c["remote"].is_object() &&
      c["remote"].contains("reported") && c["remote"]["reported"].is_object())
    rep = &c["remote"]["reported"];
  if (!rep) return {};
  const auto str = [](const nlohmann::json& j, const char* k) {
    return j.is_object() && j.contains(k) && j[k].is_string() ? j[k].get<std::string>()
                                                              : std::string();
  };
  std::string t = "The server reported: served model " +
                  (str(*rep, "served_model").empty() ? "(not named)" : str(*rep, "served_model")) +
                  "; token ids " +
                  (rep->contains("token_ids") && (*rep)["token_ids"] == true ? "yes" : "no");
  const nlohmann::json u = rep->value("usage", nlohmann::json::object());
  const nlohmann::json sv = u.is_object() ? u.value("server", nlohmann::json()) : nlohmann::json();
  if (sv.is_object() && sv.contains("prompt_tokens") && sv.contains("completion_tokens"))
    t += "; usage " + sv["prompt_tokens"].dump() + " prompt + " + sv["completion_tokens"].dump() +
         " completion tokens";
  else
    t += "; usage not reported";
  const nlohmann::json cl = u.is_object() ? u.value("client", nlohmann::json()) : nlohmann::json();
  if (cl.is_object() && cl.contains("completion_tokens"))
    t += " (the client counted " + cl["completion_tokens"].dump() + ")";
  const nlohmann::json re = rep->value("routed_experts", nlohmann::json::object());
  const std::string fmt_name = str(re, "format");
  if (fmt_name.empty() || fmt_name == "none")
    t += "; routed experts: " + (str(re, "note").empty() ? "none" : str(re, "note"));
  else
    t += "; routed experts in " + fmt_name + "'s shape, " +
         re.value("prompt_rows_returned", nlohmann::json(0)).dump() +
         " prompt rows returned and not stored, weights not reported by this engine";
  return t + ".";
}

using nlohmann::json;

struct Builder {
  Document& d;
  void h1(std::string t) { d.blocks.push_back({Block::Kind::H1, std::move(t)}); }
  void h2(std::string t) { d.blocks.push_back({Block::Kind::H2, std::move(t)}); }
  void h3(std::string t) { d.blocks.push_back({Block::Kind::H3, std::move(t)}); }
  void para(std::string t) { d.blocks.push_back({Block::Kind::Para, std::move(t)}); }
  void note(std::string t) { d.blocks.push_back({Block::Kind::Note, std::move(t)}); }
  void pre(std::string t) { d.blocks.push_back({Block::Kind::Pre, std::move(t)}); }
  void table(std::vector<std::string> header, std::vector<std::vector<std::string>> rows,
             bool label_col = true) {
    Block b{Block::Kind::Table};
    b.header = std::move(header);
    b.rows = std::move(rows);
    b.first_column_is_label = label_col;
    d.blocks.push_back(std::move(b));
  }
  void figures(std::vector<Figure> figs) {
    for (auto& f : figs) {
      Block b{Block::Kind::Figure};
      b.figure = static_cast<int>(d.figures.size());
      d.figures.push_back(std::move(f));
      d.blocks.push_back(std::move(b));
    }
  }
};

std::string fmt(double v, int sig = 4) {
  return format_number(v, sig);
}
std::string fmt(const std::optional<double>& v, int sig = 4) {
  return v ? format_number(*v, sig) : std::string("-");
}
std::string pct(double rel) {
  if (!std::isfinite(rel)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f%%", 100 * rel);
  return buf;
}
std::string signed_fmt(double v) {
  if (!std::isfinite(v)) return "-";
  std::string s = format_number(v, 4);
  return (v > 0 ? "+" : "") + s;
}

std::string card_str(const json& card, const char* key) {
  if (!card.contains(key) || card[key].is_null()) return "-";
  const json& v = card[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_unsigned() || v.is_number_integer()) {
    const double x = v.get<double>();
    return x >= 1e6 ? format_number(x, 4) : v.dump();
  }
  if (v.is_number()) return format_number(v.get<double>(), 6);
  return v.dump();
}

void model_section(Builder& b, const RunData& d) {
  if (!d.model) {
    b.para(d.label + " has no model record (synthetic run or a run stored without a model).");
    return;
  }
  const json& c = d.card;
  std::vector<std::vector<std::string>> rows = {
      {"name", card_str(c, "name")},
      {"architecture",
       d.model->architecture.empty() ? card_str(c, "architecture") : d.model->architecture},
      {"sha256", d.model->sha256},
      {"file", d.model->path},
  };
  const std::pair<const char*, const char*> keys[] = {
      {"layers (n_layer)", "n_layer"},
      {"n_embd", "n_embd"},
      {"heads (n_head / n_head_kv)", ""},
      {"experts (expert_count)", "expert_count"},
      {"experts per token (expert_used_count, top-k)", "expert_used_count"},
      {"shared experts", "expert_shared_count"},
      {"vocabulary (n_vocab)", "n_vocab"},
      {"context length (tokens)", "context_length"},
      {"parameters (total)", "params_total"},
      {"parameters (active per token)", "params_active"},
      {"file size (bytes)", "file_size"},
  };
  for (const auto& [label, key] : keys) {
    if (std::string(key).empty()) {
      if (c.contains("n_head"))
        rows.push_back({label, card_str(c, "n_head") + " / " + card_str(c, "n_head_kv")});
      continue;
    }
    if (c.contains(key)) rows.push_back({label, card_str(c, key)});
  }
  if (c.contains("tensor_types") && c["tensor_types"].is_object()) {
    std::string t;
    for (const auto& [k, v] : c["tensor_types"].items())
      t += (t.empty() ? "" : ", ") + k + ": " + v.dump() + " tensors";
    rows.push_back({"tensor types", t});
  }
  b.table({"model card", "value"}, rows);
}

void metrics_table(Builder& b, const RunData& d) {
  const RunStats& s = d.stats;
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"generated tokens", std::to_string(s.n_tokens), "tokens", ""});
  rows.push_back({"TTFT (time to first token)", fmt(s.ttft_ms), "ms", s.ttft_source});
  if (s.tpot_n) {
    const std::string n = "over " + std::to_string(s.tpot_n) + " tokens after the first";
    rows.push_back({"TPOT mean (time per output token)", fmt(s.tpot_mean), "ms", n});
    rows.push_back({"TPOT p50", fmt(s.tpot_p50), "ms", "median"});
    rows.push_back({"TPOT p90", fmt(s.tpot_p90), "ms", ""});
    rows.push_back({"TPOT p99", fmt(s.tpot_p99), "ms", ""});
  } else {
    rows.push_back({"TPOT", "-", "ms", "fewer than two tokens"});
  }
  rows.push_back({"decode speed", fmt(s.tokens_per_s), "tokens/s", s.tokens_per_s_source});
  if (s.j_per_token && !s.j_per_token_source.empty()) {
    rows.push_back({"energy per token", fmt(s.j_per_token), "J/token", s.j_per_token_source});
  } else if (s.j_per_token) {
    rows.push_back({"energy per token", fmt(s.j_per_token), "J/token",
                    std::to_string(s.energy_tokens) + " tokens with energy readings"});
    rows.push_back({"mean power", fmt(s.mean_power_w), "W", "energy / time of those tokens"});
  } else {
    rows.push_back(
        {"energy per token", "no sensor", "J/token", "no energy reading was stored for this run"});
  }
  bool ppl = false;
  for (const auto& e : d.evals)
    if (e.metric == "perplexity") {
      rows.push_back({"perplexity", fmt(e.value), "",
                      e.method + " (" + std::to_string(e.n_tokens) + " tokens)"});
      ppl = true;
    }
  if (!ppl) rows.push_back({"perplexity", "not measured", "", "no perplexity evaluation stored"});
  static const std::set<std::string> kShown = {"ttft_ms", "tokens_per_s"};
  for (const auto& m : d.metrics)
    if (!kShown.count(m.key) && !compare::is_op_time_metric(m.key))
      rows.push_back({m.key, fmt(m.value), m.unit, "stored metric"});
  for (const auto& e : d.evals)
    if (e.metric != "perplexity") rows.push_back({e.metric, fmt(e.value), "", e.method});
  b.table({"metric", "value", "unit", "how it was measured"}, rows);
}

void run_section(Builder& b, const Report& r, const RunData& d, int& fig_counter,
                 const std::function<void(const std::string&)>& step) {
  const auto& run = d.run;
  b.h2(r.selection.kind == Selection::Kind::Compare ? "Run " + d.label
                                                    : "Run " + std::to_string(run.id));
  std::vector<std::vector<std::string>> rows = {
      {"status", std::string(storage::status_name(run.status)) +
                     (run.error.empty() ? "" : " (" + run.error + ")")},
      {"kind", run.kind},
      {"started", iso8601_utc(run.started_at)},
      {"finished", run.finished_at ? iso8601_utc(run.finished_at) : "-"},
      {"duration", run.finished_at ? fmt((run.finished_at - run.started_at) / 1000.0) + " s" : "-"},
      {"model",
       d.model ? card_str(d.card, "name") + " (" + d.model->sha256.substr(0, 12) + "...)" : "-"},
  };
  if (r.session) rows.push_back({"session", r.session->name});
  b.table({"run " + std::to_string(run.id), ""}, rows);
  if (r.selection.kind == Selection::Kind::Session) model_section(b, d);

  b.h3("Metrics");
  metrics_table(b, d);

  b.h3("Configuration");
  b.pre(d.config.is_string() ? d.config.get<std::string>() : d.config.dump(2));
  b.h3("Command line that reproduces this run");
  b.pre(d.command_line);
  if (!d.command_notes.empty()) {
    std::string n = "Settings recorded in the configuration that this command does not set: ";
    for (size_t i = 0; i < d.command_notes.size(); ++i) n += (i ? "; " : "") + d.command_notes[i];
    n += ".";
    b.note(n);
  }
  if (const std::string rep = remote_reported(d.config); !rep.empty()) b.note(rep);
  b.h3("Prompt");
  bool cut = false;
  {
    std::string t = run.prompt;
    cut = t.size() > 20000;
    b.pre(cut ? t.substr(0, 20000) + "\n[... cut]" : t);
  }
  b.h3("Output");
  {
    std::string t = run.output;
    cut = t.size() > 20000;
    b.pre(t.empty() ? "(empty)" : cut ? t.substr(0, 20000) + "\n[... cut]" : t);
  }
  step("drawing figures of " + d.label);
  auto figs = make_run_figures(r, d, fig_counter);
  if (!figs.empty()) {
    b.h3("Figures");
    b.figures(std::move(figs));
  }
  if (!d.stats.energy_tokens)
    b.note(d.stats.j_per_token
               ? "Power trace: not available (the run stored only its decode-phase J/token, no "
                 "per-token energy)."
               : "Power trace: no sensor (no energy readings stored).");
  if (d.routing.present) {
    b.h3("Routing summary");
    std::vector<std::vector<std::string>> rr;
    const size_t E = static_cast<size_t>(d.routing.expert_count);
    for (size_t l = 0; l < d.routing.layers.size(); ++l) {
      size_t top = 0;
      for (size_t e = 1; e < E; ++e)
        if (d.routing.selections[l * E + e] > d.routing.selections[l * E + top]) top = e;
      size_t unused = 0;
      for (size_t e = 0; e < E; ++e) unused += d.routing.selections[l * E + e] == 0;
      rr.push_back({std::to_string(d.routing.layers[l]), std::to_string(d.routing.tokens[l]),
                    "expert " + std::to_string(top) + " (" +
                        fmt(100 * d.routing.share(l, static_cast<int>(top)), 3) + "%)",
                    std::to_string(unused)});
    }
    b.table({"layer", "tokens routed", "busiest expert (share)", "unused experts"}, rr);
    b.para("Experts per token: min " + std::to_string(d.routing.k_min) + ", max " +
           std::to_string(d.routing.k_max) + ", mean " + fmt(d.routing.k_mean, 3) + ".");
    if (!d.routing.weights_reported)
      b.note("Mixing weights: weights not reported by this engine (expert ids only).");
  }
  if (!d.tokens.empty()) {
    const size_t cap = std::min<size_t>(
        {d.tokens.size(), static_cast<size_t>(std::max<int64_t>(r.options.max_detail_tokens, 0)),
         static_cast<size_t>(64)});
    b.h3("Tokens");
    std::vector<std::vector<std::string>> tr;
    for (size_t i = 0; i < cap; ++i) {
      const auto& t = d.tokens[i];
      std::string piece;
      for (char c : t.piece) piece += c == '\n' ? std::string("\\n") : std::string(1, c);
      tr.push_back({std::to_string(t.position), std::to_string(t.id), piece, fmt(t.logprob),
                    fmt(t.latency_us / 1000.0), t.energy_uj ? fmt(*t.energy_uj * 1e-6) : "-"});
    }
    b.table({"position", "token id", "text", "log p (nats)", "latency (ms)", "energy (J)"}, tr,
            false);
    if (cap < d.tokens.size())
      b.note("Showing the first " + std::to_string(cap) + " of " + std::to_string(d.tokens.size()) +
             " tokens; the CSV export has every token and the JSON export the first " +
             std::to_string(std::min<int64_t>(r.options.max_detail_tokens,
                                              static_cast<int64_t>(d.tokens.size()))) +
             ".");
  }
}

void compare_section(Builder& b, const Report& r, int& fig_counter) {
  const auto& c = *r.comparison;
  const RunData& A = r.runs[0];
  const RunData& B = r.runs[1];
  b.h2("A/B comparison");
  b.para("A = run " + std::to_string(A.run.id) + ", B = run " + std::to_string(B.run.id) +
         " (the baseline). Every delta is A - B; the relative delta is (A - B) / |B|.");
  for (const auto& w : c.warnings) b.note("Warning: " + w + ".");
  // Headline: what changed.
  b.h3("What differs between A and B (configuration)");
  if (c.config.empty()) {
    b.para("The two configurations are identical.");
  } else {
    std::vector<std::vector<std::string>> rows;
    for (const auto& ch : c.config)
      rows.push_back({ch.path, ch.a.is_null() ? "-" : ch.a.dump(),
                      ch.b.is_null() ? "-" : ch.b.dump(), compare::kind_name(ch.kind)});
    b.table({"setting (JSON pointer)", "A", "B", "change"}, rows);
  }
  b.h3("Metrics");
  std::vector<std::vector<std::string>> rows;
  for (const auto& m : c.metrics) {
    const bool both = m.a && m.b;
    rows.push_back({m.key, m.unit, fmt(m.a), fmt(m.b), both ? signed_fmt(m.delta.abs) : "-",
                    both ? pct(m.delta.rel) : "-"});
  }
  b.table({"metric", "unit", "A", "B", "A - B", "relative"}, rows);
  std::vector<std::vector<std::string>> ci_rows;
  std::string ci_level = "95%";
  auto ci_row = [&](const char* what, const char* unit, const compare::BootstrapCI& ci) {
    char lvl[16];
    std::snprintf(lvl, sizeof lvl, "%.0f%%", 100 * ci.level);
    const bool sig = ci.lo > 0 || ci.hi < 0;
    ci_rows.push_back({std::string(what) + " (" + unit + ")", fmt(ci.mean_a), fmt(ci.mean_b),
                       signed_fmt(ci.diff),
                       "[" + signed_fmt(ci.lo) + ", " + signed_fmt(ci.hi) + "]",
                       sig ? "yes: the CI excludes 0" : "no: the CI contains 0",
                       std::to_string(ci.n_a) + " / " + std::to_string(ci.n_b)});
    ci_level = lvl;
  };
  if (c.tpot_ms) ci_row("TPOT mean (decode tokens)", "ms", *c.tpot_ms);
  if (c.j_per_token) ci_row("energy per token", "J", *c.j_per_token);
  if (!ci_rows.empty()) {
    b.table({"per-token mean", "A", "B", "A - B", ci_level + " CI of A - B", "real difference?",
             "tokens A / B"},
            ci_rows);
    const auto& ci = c.tpot_ms ? *c.tpot_ms : *c.j_per_token;
    b.note("Confidence intervals: percentile bootstrap of the difference of the means, " +
           std::to_string(ci.resamples) + " resamples, seed " + std::to_string(ci.seed) +
           " (Efron & Tibshirani 1993). Per-token samples are not independent in time, so the "
           "interval is optimistic for bursty latencies.");
  } else {
    b.note("No confidence interval: a run has fewer than two per-token latency samples.");
  }
  if (!A.stats.j_per_token && !B.stats.j_per_token)
    b.note("Energy per token: no sensor (no energy readings stored in either run).");
  b.h3("Quality");
  if (c.perplexity.comparable)
    b.para("Perplexity (" + c.perplexity.method + "): A " + fmt(c.perplexity.value.a) + ", B " +
           fmt(c.perplexity.value.b) + " (" + signed_fmt(c.perplexity.value.abs) + ", " +
           pct(c.perplexity.value.rel) + ").");
  else
    b.para("Perplexity: not compared - " + c.perplexity.reason + ".");
  if (c.kl)
    b.para("KL(A || B) of the next-token distributions: mean " + fmt(c.kl->mean) + " nats, max " +
           fmt(c.kl->max) + " nats over " + std::to_string(c.kl->n_positions) + " positions.");
  else
    b.para(
        "KL divergence of next-token distributions: not compared - the distributions were "
        "not stored in both runs.");
  b.h3("Routing");
  if (c.per_expert_refused) {
    b.para(
        "Not compared: the runs' models have different expert counts, so expert i of A and "
        "expert i of B are unrelated experts.");
  } else if (c.routing.empty()) {
    b.para("No MoE layer was routed in both runs.");
  } else {
    std::vector<std::vector<std::string>> rr;
    for (const auto& l : c.routing) {
      size_t worst = 0;
      for (size_t e = 1; e < l.diff.size(); ++e)
        if (std::fabs(l.diff[e]) > std::fabs(l.diff[worst])) worst = e;
      rr.push_back({std::to_string(l.layer), fmt(l.js, 3),
                    l.diff.empty()
                        ? "-"
                        : "expert " + std::to_string(worst) + ": " + fmt(100 * l.load_a[worst], 3) +
                              "% -> " + fmt(100 * l.load_b[worst], 3) + "%",
                    std::to_string(l.tokens_a) + " / " + std::to_string(l.tokens_b)});
    }
    b.table({"layer", "JS divergence of expert load (0 = same, 1 = disjoint)",
             "largest load change (A -> B)", "tokens A / B"},
            rr);
  }
  std::vector<std::string> figure_notes;
  b.figures(make_compare_figures(r, fig_counter, figure_notes));
  for (const auto& n : figure_notes) b.note(n);
  b.h3("Output diff (token level)");
  const auto& s = c.diff_summary;
  b.para(std::to_string(s.equal) + " tokens equal, " + std::to_string(s.deleted) +
         " only in A (struck through, red), " + std::to_string(s.inserted) +
         " only in B (underlined, green); the outputs agree on the first " +
         std::to_string(s.common_prefix) + " tokens; similarity " + fmt(s.similarity, 3) +
         " (2 x equal / (n_A + n_B)).");
  Block diff{Block::Kind::Diff};
  auto piece = [](const RunData& d, size_t i) {
    return i < d.tokens.size() ? d.tokens[i].piece : "";
  };
  for (const auto& op : c.diff) {
    Span sp;
    sp.kind = op.kind == compare::DiffOp::Kind::Equal    ? Span::Kind::Plain
              : op.kind == compare::DiffOp::Kind::Delete ? Span::Kind::Deleted
                                                         : Span::Kind::Inserted;
    for (size_t i = 0; i < op.len; ++i)
      sp.text += op.kind == compare::DiffOp::Kind::Insert ? piece(B, op.b_pos + i)
                                                          : piece(A, op.a_pos + i);
    diff.spans.push_back(std::move(sp));
  }
  b.d.blocks.push_back(std::move(diff));
  for (const auto& n : r.diff_notes) b.note(n);
}

}  // namespace

Document build_document(const Report& r, const std::function<void(const std::string&)>& step) {
  Document doc;
  Builder b{doc};
  doc.title = r.title;
  doc.subtitle = "Generated " + iso8601_utc(r.generated_at_ms) + " by moelab " + version_string() +
                 " (" + build_string() + ")";
  if (!r.notes.empty()) {
    b.h2("About this report");
    for (const auto& n : r.notes) b.note(n);
  }
  int fig_counter = 0;
  // Overview.
  if (r.selection.kind == Selection::Kind::Session) {
    b.h2("Session " + r.session->name);
    if (!r.session->notes.empty()) b.para(r.session->notes);
    std::string tags;
    for (const auto& t : r.session->tags) tags += (tags.empty() ? "" : ", ") + t;
    b.para("Created " + iso8601_utc(r.session->created_at) + "; " + std::to_string(r.runs.size()) +
           " runs" + (tags.empty() ? "" : "; tags: " + tags) + ".");
    std::vector<std::vector<std::string>> rows;
    for (const auto& d : r.runs)
      rows.push_back({std::to_string(d.run.id), storage::status_name(d.run.status), d.run.kind,
                      std::to_string(d.stats.n_tokens), fmt(d.stats.ttft_ms),
                      d.stats.tpot_n ? fmt(d.stats.tpot_p50) : "-", fmt(d.stats.tokens_per_s),
                      d.stats.j_per_token ? fmt(d.stats.j_per_token) : "no sensor"});
    b.table(
        {"run", "status", "kind", "tokens", "TTFT (ms)", "TPOT p50 (ms)", "tokens/s", "J/token"},
        rows, false);
    const auto quality = quality_points(r);
    if (quality.size() >= 2) {
      b.h3("Quality vs active parameters");
      const bool any_kl =
          std::any_of(quality.begin(), quality.end(), [](const auto& q) { return q.kl >= 0; });
      std::vector<std::vector<std::string>> qrows;
      for (const auto& q : quality) {
        qrows.push_back({std::to_string(q.run_id), q.model, q.routing,
                         q.avg_active_experts > 0 ? fmt(q.avg_active_experts) : "dense",
                         fmt(q.active_params / 1e6), fmt(q.ppl)});
        if (any_kl) qrows.back().push_back(q.kl >= 0 ? fmt(q.kl) : "-");
      }
      std::vector<std::string> header = {
          "run", "model", "routing", "experts/token", "active params (M)", "perplexity"};
      if (any_kl) header.push_back("KL vs reference (nats/token)");
      b.table(header, qrows, false);
      b.figures(make_session_figures(r, fig_counter));
    }
  }
  b.h2("Machine and software");
  b.table({"report generated on", ""},
          {{"CPU", r.machine.cpu_model},
           {"cores (logical)", std::to_string(r.machine.cores)},
           {"GPU", r.machine.gpu},
           {"RAM", format_bytes(r.machine.ram_bytes)},
           {"OS", r.machine.os},
           {"moelab", version_string() + " (" + build_string() + ")"}});
  b.note(
      "This is the machine that generated the report. The runs' own machine and build are in "
      "each run's configuration when the recorder stored them.");
  if (r.selection.kind != Selection::Kind::Session) {
    std::set<int64_t> seen, distinct;
    for (const auto& d : r.runs) distinct.insert(d.model ? d.model->id : 0);
    for (const auto& d : r.runs) {
      if (!seen.insert(d.model ? d.model->id : 0).second) continue;
      b.h2(distinct.size() > 1 ? "Model of " + d.label
           : r.runs.size() > 1 ? "Model (both runs)"
                               : "Model");
      model_section(b, d);
    }
  }
  if (r.comparison) compare_section(b, r, fig_counter);
  for (const auto& d : r.runs) run_section(b, r, d, fig_counter, step);
  return doc;
}

}  // namespace moelab::report::detail
