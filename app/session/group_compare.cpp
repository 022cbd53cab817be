#include "moelab/session/group_compare.h"

#include <cmath>
#include <functional>
#include <map>
#include <set>

namespace moelab::session {

namespace {

nlohmann::json parse_config(const std::string& s) {
  try {
    return nlohmann::json::parse(s);
  } catch (const nlohmann::json::exception&) {
    return nlohmann::json(s);
  }
}

struct Group {
  std::vector<storage::RunRecord> runs;
  std::vector<std::vector<int32_t>> outputs;
  std::vector<std::vector<storage::MetricRecord>> metrics;  // stored + derived, per run
  std::vector<double> tpot_ms, energy_j;                    // pooled per-token samples
  std::vector<storage::RoutingRecord> routing;              // pooled
  std::vector<std::vector<storage::EvalResult>> evals;
  std::map<std::string, std::string> units;
};

Group load(const storage::Store& store, const std::vector<int64_t>& ids, const char* which) {
  if (ids.empty())
    throw storage::StorageError(storage::StorageErrorKind::BadInput,
                                std::string("group ") + which + " has no runs",
                                {store.path(), "compare"});
  Group g;
  for (int64_t id : ids) {
    auto r = store.run(id);
    if (!r)
      throw storage::StorageError(storage::StorageErrorKind::BadInput,
                                  "no run with id " + std::to_string(id),
                                  {store.path(), "compare"});
    g.runs.push_back(*r);
    const auto tokens = store.tokens(id);
    std::vector<int32_t> out;
    for (const auto& t : tokens) {
      out.push_back(t.id);
      if (t.energy_uj) g.energy_j.push_back(*t.energy_uj * 1e-6);
    }
    // TPOT: the decode tokens of each run (compare::latency_figures, the one definition).
    const auto fig = compare::latency_figures(tokens);
    g.tpot_ms.insert(g.tpot_ms.end(), fig.tpot_ms.begin(), fig.tpot_ms.end());
    // Seed stability compares outputs: runs that stored no tokens (bench-serve's requests keep
    // only their metrics) have none to compare, and would otherwise count as identical.
    if (!out.empty()) g.outputs.push_back(std::move(out));
    // TTFT is token 0's latency (latency_figures) here as in compare_runs, the views and the
    // reports, not the stored ttft_ms metric (the generator's own clock). A run without stored
    // tokens (bench-serve's requests) keeps the ttft_ms it stored.
    auto m = store.metrics(id);
    // The per layer / op time breakdown is detail of one run, not a figure to compare.
    std::erase_if(m,
                  [](const storage::MetricRecord& x) { return compare::is_op_time_metric(x.key); });
    if (fig.ttft_ms) {
      std::erase_if(m, [](const storage::MetricRecord& x) { return x.key == "ttft_ms"; });
      m.push_back({"ttft_ms", *fig.ttft_ms, "ms"});
    }
    for (const auto& x : m) g.units[x.key] = x.unit;
    m.push_back({"n_tokens", static_cast<double>(tokens.size()), "tokens"});
    g.units["n_tokens"] = "tokens";
    if (fig.tpot_ms_mean) {
      m.push_back({"tpot_ms_mean", *fig.tpot_ms_mean, "ms"});
      g.units["tpot_ms_mean"] = "ms";
    }
    if (fig.decode_tokens_per_s) {
      m.push_back({"decode_tokens_per_s", *fig.decode_tokens_per_s, "tokens/s"});
      g.units["decode_tokens_per_s"] = "tokens/s";
    }
    g.metrics.push_back(std::move(m));
    auto routing = store.routing(id);
    g.routing.insert(g.routing.end(), routing.begin(), routing.end());
    g.evals.push_back(store.eval_results(id));
  }
  return g;
}

// JSON pointers whose value differs between the first run and any other run of the group.
std::vector<std::string> varying(const Group& g) {
  std::set<std::string> keys;
  const auto first = parse_config(g.runs.front().config_json);
  for (size_t i = 1; i < g.runs.size(); ++i)
    for (const auto& ch : compare::config_diff(first, parse_config(g.runs[i].config_json)))
      keys.insert(ch.path);
  return {keys.begin(), keys.end()};
}

nlohmann::json spread_json(const compare::MetricSpread& s) {
  if (s.n == 0) return nullptr;
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  return {{"n", s.n},     {"mean", num(s.mean)}, {"stddev", num(s.stddev)},
          {"min", s.min}, {"max", s.max},        {"cv", num(s.cv)}};
}

nlohmann::json ci_json(const std::optional<compare::BootstrapCI>& ci) {
  if (!ci) return nullptr;
  return {{"mean_a", ci->mean_a}, {"mean_b", ci->mean_b},
          {"diff", ci->diff},     {"lo", ci->lo},
          {"hi", ci->hi},         {"n_a", ci->n_a},
          {"n_b", ci->n_b},       {"resamples", ci->resamples},
          {"seed", ci->seed},     {"level", ci->level}};
}

nlohmann::json delta_json(const compare::Delta& d) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  return {{"a", num(d.a)}, {"b", num(d.b)}, {"abs", num(d.abs)}, {"rel", num(d.rel)}};
}

nlohmann::json stability_json(const compare::SeedStability& s) {
  nlohmann::json m = nlohmann::json::array();
  for (const auto& x : s.metrics) {
    auto j = spread_json(x);
    j["key"] = x.key;
    m.push_back(j);
  }
  return {{"n_runs", s.n_runs},
          {"distinct_outputs", s.distinct_outputs},
          {"identical_pairs", s.identical_pairs},
          {"mean_similarity", s.mean_similarity},
          {"mean_common_prefix", s.mean_common_prefix},
          {"metrics", m}};
}

}  // namespace

GroupComparison compare_groups(const storage::Store& store, const std::vector<int64_t>& a,
                               const std::vector<int64_t>& b, const compare::CompareOptions& o) {
  GroupComparison c;
  c.a_ids = a;
  c.b_ids = b;
  const Group ga = load(store, a, "A"), gb = load(store, b, "B");
  c.config = compare::config_diff(parse_config(ga.runs.front().config_json),
                                  parse_config(gb.runs.front().config_json));
  c.varying_a = varying(ga);
  c.varying_b = varying(gb);

  c.stability_a = compare::seed_stability(ga.outputs, ga.metrics);
  c.stability_b = compare::seed_stability(gb.outputs, gb.metrics);
  std::map<std::string, GroupMetricRow> rows;
  for (const auto& s : c.stability_a.metrics) {
    rows[s.key].key = s.key;
    rows[s.key].a = s;
  }
  for (const auto& s : c.stability_b.metrics) {
    rows[s.key].key = s.key;
    rows[s.key].b = s;
  }
  for (auto& [key, r] : rows) {
    auto u = ga.units.find(key);
    r.unit = u != ga.units.end() ? u->second : gb.units.count(key) ? gb.units.at(key) : "";
    if (r.a.n && r.b.n) r.delta = compare::delta(r.a.mean, r.b.mean);
    c.metrics.push_back(r);
  }

  if (ga.tpot_ms.size() >= 2 && gb.tpot_ms.size() >= 2)
    c.tpot_ms = compare::bootstrap_mean_diff(ga.tpot_ms, gb.tpot_ms, o.resamples, o.seed, o.level);
  if (ga.energy_j.size() >= 2 && gb.energy_j.size() >= 2)
    c.j_per_token =
        compare::bootstrap_mean_diff(ga.energy_j, gb.energy_j, o.resamples, o.seed, o.level);

  // Perplexity: the first comparable pair decides method and text; then every result of each
  // group with that method and text enters the group's mean.
  c.perplexity.reason = "no perplexity result in both groups";
  for (const auto& ea : ga.evals) {
    for (const auto& eb : gb.evals) {
      const auto d = compare::perplexity_delta(ea, eb);
      if (!d.comparable) {
        c.perplexity = d;
        continue;
      }
      c.perplexity = d;
      break;
    }
    if (c.perplexity.comparable) break;
  }
  if (c.perplexity.comparable) {
    // The matching text: take it from the first comparable result of group A.
    std::string text;
    for (const auto& ev : ga.evals)
      for (const auto& e : ev)
        if (text.empty() && e.metric == "perplexity" && e.method == c.perplexity.method)
          for (const auto& evb : gb.evals)
            for (const auto& f : evb)
              if (text.empty() && f.metric == "perplexity" && f.method == e.method &&
                  f.text_sha256 == e.text_sha256)
                text = e.text_sha256;
    auto mean_of = [&](const Group& g) {
      std::vector<double> v;
      for (const auto& ev : g.evals)
        for (const auto& e : ev)
          if (e.metric == "perplexity" && e.method == c.perplexity.method &&
              e.text_sha256 == text) {
            v.push_back(e.value);
            break;  // one result per run
          }
      return compare::mean(v);
    };
    c.perplexity_mean = compare::delta(mean_of(ga), mean_of(gb));
  }
  c.routing = compare::routing_divergence(ga.routing, gb.routing);
  return c;
}

nlohmann::json to_json(const GroupComparison& c) {
  nlohmann::json j;
  j["a"] = c.a_ids;
  j["b"] = c.b_ids;
  auto cfg = nlohmann::json::array();
  for (const auto& ch : c.config)
    cfg.push_back(
        {{"kind", compare::kind_name(ch.kind)}, {"path", ch.path}, {"a", ch.a}, {"b", ch.b}});
  j["config_diff"] = cfg;
  j["varying_in_a"] = c.varying_a;
  j["varying_in_b"] = c.varying_b;
  auto metrics = nlohmann::json::array();
  for (const auto& r : c.metrics)
    metrics.push_back({{"key", r.key},
                       {"unit", r.unit},
                       {"a", spread_json(r.a)},
                       {"b", spread_json(r.b)},
                       {"delta", r.a.n && r.b.n ? delta_json(r.delta) : nlohmann::json()}});
  j["metrics"] = metrics;
  j["tpot_ms_ci"] = ci_json(c.tpot_ms);
  j["j_per_token_ci"] = ci_json(c.j_per_token);
  j["perplexity"] = {
      {"comparable", c.perplexity.comparable},
      {"reason", c.perplexity.reason},
      {"method", c.perplexity.method},
      {"first", c.perplexity.comparable ? delta_json(c.perplexity.value) : nlohmann::json()},
      {"mean", c.perplexity_mean ? delta_json(*c.perplexity_mean) : nlohmann::json()}};
  auto routing = nlohmann::json::array();
  for (const auto& l : c.routing)
    routing.push_back({{"layer", l.layer},
                       {"js_divergence", l.js},
                       {"load_a", l.load_a},
                       {"load_b", l.load_b},
                       {"load_diff", l.diff},
                       {"tokens_a", l.tokens_a},
                       {"tokens_b", l.tokens_b}});
  j["routing"] = routing;
  j["stability_a"] = stability_json(c.stability_a);
  j["stability_b"] = stability_json(c.stability_b);
  return j;
}

}  // namespace moelab::session
