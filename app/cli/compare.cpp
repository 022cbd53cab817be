// moelab-cli compare A B [--json] [--db PATH] [--resamples N] [--seed S]: A/B comparison of two
// stored runs (config diff, metrics with deltas and bootstrap CIs, perplexity, KL, routing
// divergence per layer, token-level output diff). The maths is in storage/compare.
// moelab-cli compare --a ID,ID,.. --b ID,ID,.. [--json]: the same for two GROUPS of runs (e.g.
// one config over several seeds): pooled per-token bootstrap CIs, metric means and spreads,
// perplexity, pooled routing divergence and the seed stability of each group
// (app/session/group_compare.h).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "checks.h"
#include "cli.h"
#include "moelab/compare/compare.h"
#include "moelab/session/group_compare.h"
#include "store_cli.h"

namespace moelab::cli {

namespace {

using compare::comparison_warnings;
using compare::Side;
using compare::side_of;

struct CompareCliOptions {
  std::string db;
  int64_t a = 0, b = 0;
  std::vector<int64_t> group_a, group_b;  // --a / --b
  bool json = false;
  int resamples = 10000;
  uint64_t seed = compare::kDefaultSeed;
};

std::string fmt(double v, const char* spec = "%.4g") {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, spec, v);
  return buf;
}

std::string pct(double rel) {
  return std::isfinite(rel) ? fmt(100 * rel, "%+.1f%%") : "-";
}

void print_ci(std::ostream& out, const char* what, const char* unit,
              const compare::BootstrapCI& ci) {
  out << "  " << what << ": A " << fmt(ci.mean_a) << ' ' << unit << ", B " << fmt(ci.mean_b) << ' '
      << unit << ", A - B " << fmt(ci.diff, "%+.4g") << ' ' << unit << ", "
      << fmt(100 * ci.level, "%.0f") << "% CI [" << fmt(ci.lo, "%+.4g") << ", "
      << fmt(ci.hi, "%+.4g") << "]" << ((ci.lo > 0 || ci.hi < 0) ? " (significant)" : "") << "  (n "
      << ci.n_a << " / " << ci.n_b << ", " << ci.resamples << " resamples, seed " << ci.seed
      << ")\n";
}

void print_stability(std::ostream& out, const char* which, const std::vector<int64_t>& ids,
                     const compare::SeedStability& s) {
  out << "  " << which << " (" << ids.size() << " runs): ";
  if (s.n_runs < 2)
    out << s.n_runs << " of them stored output tokens: no outputs to compare\n";
  else
    out << s.distinct_outputs << " distinct outputs"
        << (s.n_runs < ids.size() ? " among the " + std::to_string(s.n_runs) + " with tokens" : "")
        << ", identical pairs " << fmt(100 * s.identical_pairs, "%.0f") << "%, mean similarity "
        << fmt(s.mean_similarity, "%.3f") << ", mean common prefix "
        << fmt(s.mean_common_prefix, "%.1f") << " tokens\n";
  for (const auto& m : s.metrics)
    out << "    " << m.key << ": mean " << fmt(m.mean) << ", sd " << fmt(m.stddev) << ", range ["
        << fmt(m.min) << ", " << fmt(m.max) << "], CV " << pct(m.cv) << '\n';
}

void print_warnings(const std::vector<std::string>& w, Io io) {
  for (const auto& m : w) io.err << "warning: " << printable(m) << '\n';
}

int run_group_compare(const CompareCliOptions& o, const compare::CompareOptions& co,
                      const storage::Store& store, Io io) {
  auto c = session::compare_groups(store, o.group_a, o.group_b, co);
  // Every run of both groups against the first run of A: one model, one prompt expected.
  bool per_expert_refused = false;
  std::vector<std::string> warnings;
  const Side first = side_of(store, "run " + std::to_string(o.group_a.front()), o.group_a.front());
  for (const auto* g : {&o.group_a, &o.group_b})
    for (int64_t id : *g) {
      if (id == first.run_id) continue;
      bool refused = false;
      for (const auto& m :
           comparison_warnings(first, side_of(store, "run " + std::to_string(id), id), &refused))
        warnings.push_back(m);
      per_expert_refused |= refused;
    }
  if (per_expert_refused) c.routing.clear();
  print_warnings(warnings, io);
  if (o.json) {
    nlohmann::json j = session::to_json(c);
    j["warnings"] = warnings;
    io.out << json_text(j) << '\n';
    return kOk;
  }
  auto& out = io.out;
  auto ids = [](const std::vector<int64_t>& v) {
    std::string s;
    for (int64_t id : v) {
      if (!s.empty()) s += ',';
      s += std::to_string(id);
    }
    return s;
  };
  out << "A: runs " << ids(c.a_ids) << "   B: runs " << ids(c.b_ids) << '\n';
  out << "\nconfig (first run of each group):\n";
  if (c.config.empty()) out << "  identical\n";
  for (const auto& ch : c.config)
    out << "  " << compare::kind_name(ch.kind) << ' ' << ch.path << ": "
        << "A " << (ch.a.is_null() ? "-" : printable(json_text(ch.a, -1))) << ", B "
        << (ch.b.is_null() ? "-" : printable(json_text(ch.b, -1))) << '\n';
  auto varying = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& k : v) s += (s.empty() ? "" : ", ") + k;
    return s.empty() ? std::string("nothing") : s;
  };
  out << "  varies inside A: " << varying(c.varying_a) << "; inside B: " << varying(c.varying_b)
      << '\n';
  out << "\nmetrics (mean over the runs of each group, sd in brackets):\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-30s %20s %20s %12s %9s\n", "", "A", "B", "A - B", "rel");
  out << line;
  for (const auto& m : c.metrics) {
    const std::string key = m.unit.empty() ? m.key : m.key + " (" + m.unit + ")";
    auto side = [](const compare::MetricSpread& s) {
      return s.n ? fmt(s.mean) + " (" + fmt(s.stddev, "%.2g") + ")" : std::string("-");
    };
    const bool both = m.a.n && m.b.n;
    std::snprintf(line, sizeof line, "  %-30s %20s %20s %12s %9s\n", key.c_str(), side(m.a).c_str(),
                  side(m.b).c_str(), both ? fmt(m.delta.abs, "%+.4g").c_str() : "-",
                  both ? pct(m.delta.rel).c_str() : "-");
    out << line;
  }
  if (c.tpot_ms || c.j_per_token)
    out << "\npooled per-token samples (bootstrap of the mean difference):\n";
  if (c.tpot_ms) print_ci(out, "TPOT", "ms", *c.tpot_ms);
  if (c.j_per_token) print_ci(out, "energy", "J/token", *c.j_per_token);
  out << "\nquality:\n";
  if (c.perplexity_mean)
    out << "  perplexity (group means): A " << fmt(c.perplexity_mean->a) << ", B "
        << fmt(c.perplexity_mean->b) << " (A - B " << fmt(c.perplexity_mean->abs, "%+.4g") << ", "
        << pct(c.perplexity_mean->rel) << ") [" << c.perplexity.method << "]\n";
  else
    out << "  perplexity: not compared: " << c.perplexity.reason << '\n';
  out << "\nrouting (Jensen-Shannon divergence of pooled expert load per layer, base 2):\n";
  if (per_expert_refused)
    out << "  not compared: the runs' models have different expert counts\n";
  else if (c.routing.empty())
    out << "  no layer was routed in both groups\n";
  for (const auto& l : c.routing)
    out << "  layer " << l.layer << ": JS " << fmt(l.js, "%.4f") << " (" << l.tokens_a << " / "
        << l.tokens_b << " tokens)\n";
  out << "\nseed stability:\n";
  print_stability(out, "A", c.a_ids, c.stability_a);
  print_stability(out, "B", c.b_ids, c.stability_b);
  return kOk;
}

int run_compare(const CompareCliOptions& o, Io io) {
  const bool groups = !o.group_a.empty() || !o.group_b.empty();
  if (groups && (o.group_a.empty() || o.group_b.empty()))
    throw Error(ErrorKind::BadInput, "give both --a and --b (run ids, comma-separated)",
                {.subject = "compare"});
  if (!groups && (o.a == 0 || o.b == 0))
    throw Error(ErrorKind::BadInput, "give two run ids A B, or two groups with --a and --b",
                {.subject = "compare"});
  // A run compared with itself, or counted twice in a group, fakes "no difference" and seed
  // stability.
  if (!groups && o.a == o.b)
    throw Error(ErrorKind::BadInput,
                "A and B are the same run (" + std::to_string(o.a) + "); give two different runs",
                {.subject = "compare"});
  if (groups) {
    require_unique(o.group_a, "--a");
    require_unique(o.group_b, "--b");
    for (int64_t id : o.group_a)
      if (std::find(o.group_b.begin(), o.group_b.end(), id) != o.group_b.end())
        throw Error(ErrorKind::BadInput,
                    "run " + std::to_string(id) + " is in both groups; a run belongs to one",
                    {.subject = "--a/--b"});
  }
  const auto store = open_existing_store(db_or_default(o.db));
  compare::CompareOptions co;
  co.resamples = o.resamples;
  co.seed = o.seed;
  if (groups) return run_group_compare(o, co, *store, io);
  auto c = compare::compare_runs(*store, o.a, o.b, co);
  const bool per_expert_refused = c.per_expert_refused;
  const std::vector<std::string>& warnings = c.warnings;
  print_warnings(warnings, io);
  if (o.json) {
    nlohmann::json j = compare::to_json(c);
    j["warnings"] = warnings;
    io.out << json_text(j) << '\n';
    return kOk;
  }
  auto& out = io.out;
  out << "A: run " << c.a.id << " (" << storage::status_name(c.a.status) << ", " << c.a.n_tokens
      << " tokens)   B: run " << c.b.id << " (" << storage::status_name(c.b.status) << ", "
      << c.b.n_tokens << " tokens)\n";
  out << "\nconfig:\n";
  if (c.config.empty()) out << "  identical\n";
  for (const auto& ch : c.config)
    out << "  " << compare::kind_name(ch.kind) << ' ' << ch.path << ": "
        << "A " << (ch.a.is_null() ? "-" : printable(json_text(ch.a, -1))) << ", B "
        << (ch.b.is_null() ? "-" : printable(json_text(ch.b, -1))) << '\n';
  out << "\nmetrics:\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-30s %12s %12s %12s %9s\n", "", "A", "B", "A - B", "rel");
  out << line;
  for (const auto& m : c.metrics) {
    const std::string key = m.unit.empty() ? m.key : m.key + " (" + m.unit + ")";
    const bool both = m.a && m.b;
    std::snprintf(line, sizeof line, "  %-30s %12s %12s %12s %9s\n", key.c_str(),
                  m.a ? fmt(*m.a).c_str() : "-", m.b ? fmt(*m.b).c_str() : "-",
                  both ? fmt(m.delta.abs, "%+.4g").c_str() : "-",
                  both ? pct(m.delta.rel).c_str() : "-");
    out << line;
  }
  if (c.tpot_ms || c.j_per_token)
    out << "\nper-token samples (bootstrap of the mean difference):\n";
  if (c.tpot_ms) print_ci(out, "TPOT", "ms", *c.tpot_ms);
  if (c.j_per_token) print_ci(out, "energy", "J/token", *c.j_per_token);
  out << "\nquality:\n";
  if (c.perplexity.comparable)
    out << "  perplexity: A " << fmt(c.perplexity.value.a) << ", B " << fmt(c.perplexity.value.b)
        << " (A - B " << fmt(c.perplexity.value.abs, "%+.4g") << ", " << pct(c.perplexity.value.rel)
        << ") [" << c.perplexity.method << "]\n";
  else
    out << "  perplexity: not compared: " << c.perplexity.reason << '\n';
  if (c.kl)
    out << "  KL(A||B) of next-token distributions: mean " << fmt(c.kl->mean) << " nats, max "
        << fmt(c.kl->max) << " over " << c.kl->n_positions << " positions\n";
  else if (!c.kl_reason.empty())
    out << "  KL(A||B): " << c.kl_reason << '\n';
  else
    out << "  KL: not compared: next-token distributions were not stored in both runs\n";
  out << "\nrouting (Jensen-Shannon divergence of expert load per layer, base 2, 0..1):\n";
  if (per_expert_refused)
    out << "  not compared: the models have different expert counts\n";
  else if (c.routing.empty())
    out << "  no layer was routed in both runs\n";
  for (const auto& l : c.routing) {
    size_t worst = 0;
    for (size_t e = 1; e < l.diff.size(); ++e)
      if (std::fabs(l.diff[e]) > std::fabs(l.diff[worst])) worst = e;
    out << "  layer " << l.layer << ": JS " << fmt(l.js, "%.4f");
    if (!l.diff.empty())
      out << ", largest load change: expert " << worst << " A "
          << fmt(100 * l.load_a[worst], "%.1f") << "%, B " << fmt(100 * l.load_b[worst], "%.1f")
          << '%';
    out << '\n';
  }
  const auto& d = c.diff_summary;
  out << "\noutput (token ids): " << d.equal << " equal, " << d.deleted << " only in A, "
      << d.inserted << " only in B; first difference at token " << d.common_prefix
      << "; similarity " << fmt(d.similarity, "%.3f") << '\n';
  size_t shown = 0;
  for (const auto& op : c.diff) {
    if (op.kind == compare::DiffOp::Kind::Equal) continue;
    if (++shown > 20) {
      out << "  ...\n";
      break;
    }
    if (op.kind == compare::DiffOp::Kind::Delete)
      out << "  - A[" << op.a_pos << ".." << op.a_pos + op.len << ")\n";
    else
      out << "  + B[" << op.b_pos << ".." << op.b_pos + op.len << ")\n";
  }
  return kOk;
}

}  // namespace

void add_compare(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<CompareCliOptions>();
  auto* sub = app.add_subcommand(
      "compare", "Compare two stored runs (A B) or two groups of runs (--a .. --b ..)");
  auto* pa = sub->add_option("A", o->a, "Run id (compared with the baseline B)")
                 ->transform(int_range(1, kMaxId));
  auto* pb = sub->add_option("B", o->b, "Run id (the baseline; deltas are A - B)")
                 ->transform(int_range(1, kMaxId));
  auto* ga = sub->add_option("--a", o->group_a, "Group A: run ids, comma-separated")
                 ->delimiter(',')
                 ->transform(int_range(1, kMaxId))
                 ->excludes(pa, pb);
  sub->add_option("--b", o->group_b, "Group B: run ids, comma-separated")
      ->delimiter(',')
      ->transform(int_range(1, kMaxId))
      ->excludes(pa, pb)
      ->needs(ga);
  add_db_option(sub, o->db);
  sub->add_flag("--json", o->json, "Print JSON (stable keys)");
  sub->add_option("--resamples", o->resamples, "Bootstrap resamples (default 10000)")
      ->transform(int_range(100, 1000000));
  sub->add_option("--seed", o->seed, "Bootstrap seed (the same seed gives the same intervals)")
      ->transform(uint_range(0, UINT64_MAX));
  sub->callback([o, io, &action] {
    action = [o, io] { return with_store_errors([&] { return run_compare(*o, io); }); };
  });
}

}  // namespace moelab::cli
