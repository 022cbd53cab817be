// Loading a report's data from the store: runs, statistics, routing aggregates, the A/B
// comparison, the machine, and the JSON form of it all.
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "internal.h"
#include "moelab/core/backends.h"
#include "moelab/core/error.h"

namespace moelab::report::detail {

namespace {

using nlohmann::json;

constexpr size_t kMaxTextBytes = 20000;  // prompt / output shown per run

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  const auto e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

json parse_or_string(const std::string& s) {
  try {
    return json::parse(s);
  } catch (const json::exception&) {
    return json(s);
  }
}

/// The first of `pointers` that exists in `j`.
const json* find(const json& j, std::initializer_list<const char*> pointers) {
  if (!j.is_object()) return nullptr;
  for (const char* p : pointers) {
    const json::json_pointer ptr(p);
    if (j.contains(ptr) && !j.at(ptr).is_null()) return &j.at(ptr);
  }
  return nullptr;
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789_./:=+-,@%") == std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string scalar_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.7g", v.get<double>());
    return buf;
  }
  return v.dump();
}

/// A moelab-cli run command reproducing the run from its stored config, plus the config keys
/// that command cannot express.
void reproduce(RunData& d) {
  const json& c = d.config;
  if (const json* cl = find(c, {"/command_line", "/command"}); cl && cl->is_string()) {
    d.command_line = cl->get<std::string>();
    return;
  }
  if (const json* argv = find(c, {"/argv"}); argv && argv->is_array()) {
    std::string s;
    for (const auto& a : *argv) s += (s.empty() ? "" : " ") + shell_quote(scalar_text(a));
    d.command_line = s;
    return;
  }
  std::set<std::string> used;
  std::string cmd = "moelab-cli run";
  auto opt = [&](const char* flag, std::initializer_list<const char*> ptrs) {
    const json* v = find(c, ptrs);
    if (!v) return;
    for (const char* p : ptrs) used.insert(p);
    if (v->is_boolean()) {
      if (v->get<bool>()) cmd += std::string(" ") + flag;
      return;
    }
    if (v->is_array()) {
      for (const auto& x : *v) cmd += std::string(" ") + flag + " " + shell_quote(scalar_text(x));
      return;
    }
    cmd += std::string(" ") + flag + " " + shell_quote(scalar_text(*v));
  };
  const json* engine = find(c, {"/engine"});
  if (engine && engine->is_string() && engine->get<std::string>() == "remote") {
    // A run streamed from an OpenAI-compatible server: `run --remote URL --remote-model NAME`.
    const json* url = find(c, {"/remote/url"});
    const json* name = find(c, {"/remote/requested_model"});
    cmd += " --remote " + shell_quote(url && url->is_string() ? url->get<std::string>() : "URL");
    cmd += " --remote-model " +
           shell_quote(name && name->is_string() ? name->get<std::string>() : "NAME");
    const json* routed = find(c, {"/remote/routed_experts_requested"});
    if (routed && routed->is_string() && routed->get<std::string>() != "auto")
      cmd += " --routed-experts-format " + shell_quote(routed->get<std::string>());
    for (const char* k : {"/engine", "/backend", "/remote"}) used.insert(k);
  } else {
    std::string model = d.model ? d.model->path : std::string();
    if (const json* m = find(c, {"/model/path", "/model", "/model_path"}); m && m->is_string())
      model = m->get<std::string>();
    used.insert("/model");
    used.insert("/model_path");
    cmd += " --model " + shell_quote(model.empty() ? "MODEL.gguf" : model);
  }
  cmd += " --prompt " + shell_quote(d.run.prompt);
  opt("--system", {"/system"});
  opt("--chat", {"/chat"});
  opt("-n", {"/max_tokens", "/n_predict", "/generate/max_tokens"});
  opt("--temp", {"/sampling/temperature", "/temperature", "/sampling/temp", "/temp"});
  opt("--top-k", {"/sampling/top_k", "/top_k"});
  opt("--top-p", {"/sampling/top_p", "/top_p"});
  opt("--min-p", {"/sampling/min_p", "/min_p"});
  opt("--repeat-penalty", {"/sampling/repeat_penalty", "/repeat_penalty"});
  opt("--repeat-last-n", {"/sampling/penalty_last_n", "/penalty_last_n"});
  opt("--frequency-penalty", {"/sampling/frequency_penalty", "/frequency_penalty"});
  opt("--presence-penalty", {"/sampling/presence_penalty", "/presence_penalty"});
  opt("--seed", {"/seed", "/sampling/seed"});
  opt("--threads", {"/threads", "/n_threads"});
  opt("--ctx", {"/n_ctx", "/ctx"});
  opt("--stop", {"/stop"});
  opt("--ignore-eos", {"/ignore_eos"});
  if (const json* kv = find(c, {"/kv_type"}); kv && kv->is_string()) {
    used.insert("/kv_type");
    std::string t = kv->get<std::string>();
    std::transform(t.begin(), t.end(), t.begin(), ::tolower);
    if (t == "f16") cmd += " --kv-f16";
  }
  // Policies: `run --routing-policy/--attention-policy`; the model's own rules need no option.
  auto policy = [&](const char* flag, const char* key, const char* model_default) {
    const json* v = find(c, {key});
    if (!v || !v->is_string()) return;
    used.insert(key);
    if (v->get<std::string>() != model_default)
      cmd += std::string(" ") + flag + " " + shell_quote(v->get<std::string>());
  };
  policy("--routing-policy", "/routing_policy", "default");
  policy("--attention-policy", "/attention_policy", "full");
  // The backend the run computed on (`run --backend cpu|cuda|auto`); runs stored before the
  // config had it get no option (`run`'s default, auto, then picks).
  if (const json* b = find(c, {"/backend"}); b && b->is_string()) {
    const auto& names = backend_names();
    if (std::find(names.begin(), names.end(), b->get<std::string>()) != names.end()) {
      used.insert("/backend");
      cmd += " --backend " + b->get<std::string>();
    }
  }
  d.command_line = cmd;
  // Settings the command cannot express.
  static const std::set<std::string> kInformational = {
      "version", "build", "machine", "model_sha256", "prompt", "sampling", "generate", "kind"};
  if (c.is_object())
    for (const auto& [k, v] : c.items()) {
      if (used.count("/" + k) || kInformational.count(k)) continue;
      d.command_notes.push_back(k + " = " + v.dump());
    }
  if (c.is_object() && c.contains("sampling") && c["sampling"].is_object())
    for (const auto& [k, v] : c["sampling"].items())
      if (!used.count("/sampling/" + k))
        d.command_notes.push_back("sampling." + k + " = " + v.dump());
}

void compute_stats(RunData& d) {
  RunStats& s = d.stats;
  const auto& t = d.tokens;
  s.n_tokens = static_cast<int64_t>(t.size());
  std::map<std::string, double> m;
  for (const auto& x : d.metrics) m[x.key] = x.value;
  // TTFT: one definition (compare::latency_figures, token 0's latency), as Compare and the views.
  if (const auto ttft = compare::latency_figures(t).ttft_ms) {
    s.ttft_ms = *ttft;
    s.ttft_source = "latency of token 0 (prefill + first token)";
  }
  // TPOT over the decode tokens (1..n-1): compare::latency_figures, as Compare and the views.
  std::vector<double> tpot = compare::latency_figures(t).tpot_ms;
  s.tpot_n = tpot.size();
  if (!tpot.empty()) {
    s.tpot_mean = compare::mean(tpot);
    std::sort(tpot.begin(), tpot.end());
    s.tpot_p50 = compare::quantile_sorted(tpot, 0.50);
    s.tpot_p90 = compare::quantile_sorted(tpot, 0.90);
    s.tpot_p99 = compare::quantile_sorted(tpot, 0.99);
    s.tpot_min = tpot.front();
    s.tpot_max = tpot.back();
  }
  // Decode tokens/s: compare::latency_figures ((n - 1) / sum of TPOT), the figure run prints
  // and compare and sessions use; the stored metric only for a run without token latencies.
  if (const auto tps = compare::latency_figures(t).decode_tokens_per_s) {
    s.tokens_per_s = *tps;
    s.tokens_per_s_source = "(n - 1) / sum of TPOT";
  } else if (m.count("tokens_per_s")) {
    s.tokens_per_s = m["tokens_per_s"];
    s.tokens_per_s_source = "stored metric tokens_per_s";
  }
  double e = 0, lat = 0;
  for (const auto& x : t)
    if (x.energy_uj) {
      e += *x.energy_uj;
      lat += static_cast<double>(x.latency_us);
      ++s.energy_tokens;
    }
  if (s.energy_tokens) {
    s.j_per_token = e * 1e-6 / static_cast<double>(s.energy_tokens);
    if (lat > 0) s.mean_power_w = e / lat;  // uJ / us = W
  } else if (m.count("j_per_token")) {
    // Runs measured by a power meter for the whole decode phase store the phase's J/token as
    // a metric instead of per-token energy.
    s.j_per_token = m["j_per_token"];
    s.j_per_token_source = "stored metric j_per_token (decode-phase energy / decode tokens)";
  }
}

void compute_routing(RunData& d, const std::vector<storage::RoutingRecord>& rec,
                     int64_t max_detail) {
  RunRouting& r = d.routing;
  if (rec.empty()) return;
  r.present = true;
  int max_id = -1;
  std::set<int32_t> layers;
  std::set<int64_t> positions;
  for (const auto& x : rec) {
    layers.insert(x.layer);
    positions.insert(x.position);
    for (uint16_t e : x.experts) max_id = std::max<int>(max_id, e);
    if (!x.probs.empty()) max_id = std::max<int>(max_id, static_cast<int>(x.probs.size()) - 1);
  }
  // The card's expert_count comes from the model file: only a count that expert ids (uint16 in
  // the store) can address is used, so a crafted value neither overflows int nor sizes the
  // tables below by billions.
  int ec = 0;
  if (d.card.is_object() && d.card.contains("expert_count") &&
      d.card["expert_count"].is_number_integer()) {
    const int64_t v = d.card["expert_count"].get<int64_t>();
    if (v > 0 && v <= 65536) ec = static_cast<int>(v);
  }
  r.expert_count = std::max(ec, max_id + 1);
  r.layers.assign(layers.begin(), layers.end());
  r.positions_total = static_cast<int64_t>(positions.size());
  std::map<int32_t, size_t> li;
  for (size_t i = 0; i < r.layers.size(); ++i) li[r.layers[i]] = i;
  const size_t E = static_cast<size_t>(r.expert_count);
  r.selections.assign(r.layers.size() * E, 0);
  r.weight_sum.assign(r.layers.size() * E, 0.0);
  r.tokens.assign(r.layers.size(), 0);
  for (auto it = positions.begin();
       it != positions.end() && static_cast<int64_t>(r.grid_positions.size()) < max_detail; ++it)
    r.grid_positions.push_back(*it);
  std::map<int64_t, size_t> col;
  for (size_t i = 0; i < r.grid_positions.size(); ++i) col[r.grid_positions[i]] = i;
  r.grid_top.assign(r.layers.size() * r.grid_positions.size(), -1);
  int64_t k_sum = 0, k_n = 0;
  r.weights_reported = false;
  for (const auto& x : rec)
    for (const float w : x.weights)
      if (std::isfinite(w)) r.weights_reported = true;
  r.k_min = INT32_MAX;
  r.k_max = 0;
  for (const auto& x : rec) {
    const size_t l = li[x.layer];
    ++r.tokens[l];
    const int k = static_cast<int>(x.experts.size());
    r.k_min = std::min(r.k_min, k);
    r.k_max = std::max(r.k_max, k);
    k_sum += k;
    ++k_n;
    int top = -1;
    float best = -1;
    for (size_t j = 0; j < x.experts.size(); ++j) {
      const size_t e = x.experts[j];
      ++r.selections[l * E + e];
      const float w = j < x.weights.size() ? x.weights[j] : 0.f;
      r.weight_sum[l * E + e] += r.weights_reported ? w : 0.f;
      if (top < 0 || (r.weights_reported && w > best)) {
        top = static_cast<int>(e);
        best = w;
      }
    }
    if (auto c = col.find(x.position); c != col.end())
      r.grid_top[l * r.grid_positions.size() + c->second] = top;
  }
  if (r.k_min == INT32_MAX) r.k_min = 0;
  r.k_mean = k_n ? static_cast<double>(k_sum) / static_cast<double>(k_n) : 0.0;
}

std::string cut_utf8(const std::string& s, size_t max_bytes, bool& cut) {
  cut = s.size() > max_bytes;
  if (!cut) return s;
  size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

void load_run(const storage::Store& store, int64_t id, RunData& d, const Options& o,
              std::vector<storage::RoutingRecord>* routing_out) {
  auto run = store.run(id);
  if (!run)
    throw Error(ErrorKind::BadInput, "no run with id " + std::to_string(id),
                ErrorWhere{store.path(), std::nullopt, "report"});
  d.run = *run;
  if (d.run.model_id) d.model = store.model(d.run.model_id);
  d.config = parse_or_string(d.run.config_json);
  d.card = d.model ? parse_or_string(d.model->card_json) : json::object();
  if (!d.card.is_object()) d.card = json::object();
  d.tokens = store.tokens(id);
  d.metrics = store.metrics(id);
  d.evals = store.eval_results(id);
  d.attention = store.attention(id);
  auto routing = store.routing(id);
  compute_stats(d);
  compute_routing(d, routing, o.max_detail_tokens);
  reproduce(d);
  if (routing_out) *routing_out = std::move(routing);
  d.label = "run " + std::to_string(id);
}

/// compare::compare_runs, assembled from the loaded runs so that the token diff (Myers, memory
/// O(D^2)) only sees the detail window of long runs.
compare::RunComparison assemble(const storage::Store& store, const RunData& A, const RunData& B,
                                const std::vector<storage::RoutingRecord>& ra,
                                const std::vector<storage::RoutingRecord>& rb, const Options& o,
                                std::vector<std::string>& notes) {
  compare::RunComparison c;
  c.a = A.run;
  c.b = B.run;
  c.config = compare::config_diff(A.config, B.config);
  std::map<std::string, compare::MetricRow> rows;
  // TTFT: compare::latency_figures (token 0's latency) replaces the stored ttft_ms metric, as
  // compare::compare_runs does.
  for (const auto& m : A.metrics)
    if (m.key != "ttft_ms" && !compare::is_op_time_metric(m.key))
      rows[m.key] = {m.key, m.unit, m.value, std::nullopt, {}};
  for (const auto& m : B.metrics) {
    if (m.key == "ttft_ms" || compare::is_op_time_metric(m.key)) continue;
    auto& r = rows[m.key];
    r.key = m.key;
    if (r.unit.empty()) r.unit = m.unit;
    r.b = m.value;
  }
  for (auto& [k, r] : rows) {
    if (r.a && r.b) r.delta = compare::delta(*r.a, *r.b);
    c.metrics.push_back(r);
  }
  auto derived = [&](const std::string& key, const std::string& unit, std::optional<double> a,
                     std::optional<double> b) {
    compare::MetricRow r{key, unit, a, b, {}};
    if (a && b) r.delta = compare::delta(*a, *b);
    c.metrics.push_back(r);
  };
  // The one definition of TPOT and decode tokens/s (compare::latency_figures): decode tokens.
  const auto fa = compare::latency_figures(A.tokens), fb = compare::latency_figures(B.tokens);
  auto energy = [](const RunData& d) {
    std::vector<double> v;
    for (const auto& t : d.tokens)
      if (t.energy_uj) v.push_back(*t.energy_uj * 1e-6);
    return v;
  };
  if (fa.ttft_ms || fb.ttft_ms) derived("ttft_ms", "ms", fa.ttft_ms, fb.ttft_ms);
  derived("n_tokens", "tokens", static_cast<double>(A.tokens.size()),
          static_cast<double>(B.tokens.size()));
  auto opt = [](bool has, double v) { return has ? std::optional<double>(v) : std::nullopt; };
  derived("tpot_ms_mean", "ms", opt(A.stats.tpot_n > 0, A.stats.tpot_mean),
          opt(B.stats.tpot_n > 0, B.stats.tpot_mean));
  derived("decode_tokens_per_s", "tokens/s", fa.decode_tokens_per_s, fb.decode_tokens_per_s);
  derived("tpot_ms_p50", "ms", opt(A.stats.tpot_n > 0, A.stats.tpot_p50),
          opt(B.stats.tpot_n > 0, B.stats.tpot_p50));
  derived("tpot_ms_p90", "ms", opt(A.stats.tpot_n > 0, A.stats.tpot_p90),
          opt(B.stats.tpot_n > 0, B.stats.tpot_p90));
  derived("tpot_ms_p99", "ms", opt(A.stats.tpot_n > 0, A.stats.tpot_p99),
          opt(B.stats.tpot_n > 0, B.stats.tpot_p99));
  if (A.stats.j_per_token || B.stats.j_per_token)
    derived("j_per_token", "J", A.stats.j_per_token, B.stats.j_per_token);
  const auto &la = fa.tpot_ms, &lb = fb.tpot_ms;
  if (la.size() >= 2 && lb.size() >= 2)
    c.tpot_ms = compare::bootstrap_mean_diff(la, lb, o.bootstrap_resamples, o.bootstrap_seed);
  const auto ea = energy(A), eb = energy(B);
  if (ea.size() >= 2 && eb.size() >= 2)
    c.j_per_token = compare::bootstrap_mean_diff(ea, eb, o.bootstrap_resamples, o.bootstrap_seed);
  c.perplexity = compare::perplexity_delta(A.evals, B.evals);
  c.kl = compare::next_token_kl(store.next_token_dists(A.run.id), store.next_token_dists(B.run.id));
  c.routing =
      compare::routing_divergence(ra, rb, std::max(A.routing.expert_count, B.routing.expert_count));
  std::vector<int32_t> ia, ib;
  const size_t cap = static_cast<size_t>(std::max<int64_t>(o.max_detail_tokens, 0));
  for (size_t i = 0; i < A.tokens.size() && i < cap; ++i) ia.push_back(A.tokens[i].id);
  for (size_t i = 0; i < B.tokens.size() && i < cap; ++i) ib.push_back(B.tokens[i].id);
  if (ia.size() < A.tokens.size() || ib.size() < B.tokens.size())
    notes.push_back("The output diff covers the first " + std::to_string(cap) +
                    " tokens of each run (A has " + std::to_string(A.tokens.size()) + ", B has " +
                    std::to_string(B.tokens.size()) + ").");
  c.diff = compare::token_diff(ia, ib);
  c.diff_summary = compare::summarize(c.diff, ia.size(), ib.size());
  compare::check_comparable(store, c);
  return c;
}

std::string read_first_line_value(const char* path, const char* key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key, 0) == 0) {
      const auto p = line.find_first_of(":=");
      if (p != std::string::npos) return trim(line.substr(p + 1));
    }
  }
  return {};
}

}  // namespace

std::string format_number(double v, int significant) {
  if (!std::isfinite(v)) return "-";
  if (v == 0) return "0";
  char buf[64];
  const double a = std::fabs(v);
  if (a < 1e7 && v == std::round(v)) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  if (a != 0 && (a >= 1e7 || a < 1e-4))
    std::snprintf(buf, sizeof buf, "%.*e", significant - 1, v);
  else if (a >= std::pow(10.0, significant))
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else {
    const int digits = a == 0 ? 0 : static_cast<int>(std::floor(std::log10(a))) + 1;
    std::snprintf(buf, sizeof buf, "%.*f", std::max(0, significant - digits), v);
  }
  return buf;
}

std::string format_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string iso8601_utc(int64_t unix_ms) {
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string version_string() {
  return MOELAB_REPORT_VERSION;
}
std::string build_string() {
  return MOELAB_REPORT_BUILD;
}

Report load_report(const storage::Store& store, const Selection& sel, const Options& o,
                   const std::function<void(const std::string&)>& step) {
  Report r;
  r.selection = sel;
  r.options = o;
  std::vector<int64_t> ids;
  switch (sel.kind) {
    case Selection::Kind::Run:
      ids = {sel.run};
      break;
    case Selection::Kind::Compare:
      ids = {sel.a, sel.b};
      break;
    case Selection::Kind::Session: {
      r.session = store.session_by_name(sel.session);
      if (!r.session)
        throw Error(ErrorKind::BadInput, "no session named '" + sel.session + "'",
                    ErrorWhere{store.path(), std::nullopt, "report"});
      for (const auto& run : store.runs(r.session->id)) ids.push_back(run.id);
      if (ids.empty())
        throw Error(ErrorKind::BadInput, "session '" + sel.session + "' has no runs",
                    ErrorWhere{store.path(), std::nullopt, "report"});
      break;
    }
  }
  std::vector<std::vector<storage::RoutingRecord>> routing(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    step("loading run " + std::to_string(ids[i]));
    RunData d;
    const bool keep = sel.kind == Selection::Kind::Compare;
    load_run(store, ids[i], d, o, keep ? &routing[i] : nullptr);
    if (sel.kind == Selection::Kind::Compare)
      d.label = std::string(i == 0 ? "A" : "B") + " (run " + std::to_string(ids[i]) + ")";
    r.runs.push_back(std::move(d));
  }
  if (sel.kind != Selection::Kind::Session && !r.runs.empty() && r.runs[0].run.session_id)
    r.session = store.session(r.runs[0].run.session_id);
  if (sel.kind == Selection::Kind::Compare) {
    step("comparing runs " + std::to_string(sel.a) + " and " + std::to_string(sel.b));
    r.comparison = assemble(store, r.runs[0], r.runs[1], routing[0], routing[1], o, r.diff_notes);
  }
  for (const auto& d : r.runs) {
    const int64_t n = d.stats.n_tokens;
    if (n > o.max_detail_tokens)
      r.notes.push_back(d.label + ": " + std::to_string(n) +
                        " tokens; per-token detail (token table, routing grid, JSON token list) "
                        "shows the first " +
                        std::to_string(o.max_detail_tokens) +
                        ". Metrics, percentiles, histogram and expert load use all tokens.");
    if (n > o.max_series_points)
      r.notes.push_back(d.label +
                        ": the latency timeline and power trace average consecutive "
                        "tokens into " +
                        std::to_string(o.max_series_points) + " bins.");
    if (d.run.output.size() > kMaxTextBytes || d.run.prompt.size() > kMaxTextBytes)
      r.notes.push_back(d.label + ": prompt/output text longer than " +
                        std::to_string(kMaxTextBytes) +
                        " bytes is cut (the full text is in "
                        "the store).");
    const auto maps = std::count_if(d.attention.begin(), d.attention.end(), [](const auto& a) {
      return a.head != storage::kAttentionAllHeads && a.shape.size() == 2;
    });
    if (maps > o.max_attention_figures)
      r.notes.push_back(d.label + ": " + std::to_string(maps) +
                        " attention snapshots stored; the first " +
                        std::to_string(o.max_attention_figures) + " are drawn.");
  }
  for (const auto& n : r.diff_notes) r.notes.push_back(n);
  if (!o.title.empty())
    r.title = o.title;
  else if (sel.kind == Selection::Kind::Run)
    r.title = "moelab report: run " + std::to_string(sel.run);
  else if (sel.kind == Selection::Kind::Session)
    r.title = "moelab report: session " + sel.session;
  else
    r.title =
        "moelab A/B report: run " + std::to_string(sel.a) + " vs run " + std::to_string(sel.b);
  return r;
}

std::string shown_text(const std::string& s) {
  bool cut = false;
  std::string t = cut_utf8(s, kMaxTextBytes, cut);
  return t;
}

namespace {

json num(double v) {
  return std::isfinite(v) ? json(v) : json();
}
json num(const std::optional<double>& v) {
  return v && std::isfinite(*v) ? json(*v) : json();
}

json run_to_json(const RunData& d, const Options& o) {
  json j;
  const auto& r = d.run;
  j["id"] = r.id;
  j["label"] = d.label;
  j["session_id"] = r.session_id;
  j["kind"] = r.kind;
  j["status"] = storage::status_name(r.status);
  j["error"] = r.error;
  j["started_at"] = iso8601_utc(r.started_at);
  j["finished_at"] = r.finished_at ? json(iso8601_utc(r.finished_at)) : json();
  j["config"] = d.config;
  j["command_line"] = d.command_line;
  j["command_notes"] = d.command_notes;
  bool pc = false, oc = false;
  j["prompt"] = cut_utf8(r.prompt, kMaxTextBytes, pc);
  j["prompt_truncated"] = pc;
  j["output"] = cut_utf8(r.output, kMaxTextBytes, oc);
  j["output_truncated"] = oc;
  if (d.model) {
    j["model"] = {{"id", d.model->id},
                  {"sha256", d.model->sha256},
                  {"path", d.model->path},
                  {"architecture", d.model->architecture},
                  {"card", d.card}};
  } else {
    j["model"] = nullptr;
  }
  const RunStats& s = d.stats;
  json m;
  m["n_tokens"] = s.n_tokens;
  m["ttft_ms"] = num(s.ttft_ms);
  m["ttft_source"] = s.ttft_source;
  m["tpot_ms"] = s.tpot_n ? json{{"n", s.tpot_n},          {"mean", num(s.tpot_mean)},
                                 {"p50", num(s.tpot_p50)}, {"p90", num(s.tpot_p90)},
                                 {"p99", num(s.tpot_p99)}, {"min", num(s.tpot_min)},
                                 {"max", num(s.tpot_max)}}
                          : json();
  m["tokens_per_s"] = num(s.tokens_per_s);
  m["tokens_per_s_source"] = s.tokens_per_s_source;
  m["energy_sensor"] = s.energy_tokens > 0;
  m["j_per_token"] = num(s.j_per_token);
  m["mean_power_w"] = num(s.mean_power_w);
  m["perplexity"] = json::array();
  for (const auto& e : d.evals)
    if (e.metric == "perplexity")
      m["perplexity"].push_back({{"value", num(e.value)},
                                 {"method", e.method},
                                 {"text_sha256", e.text_sha256},
                                 {"n_tokens", e.n_tokens}});
  j["metrics"] = m;
  j["stored_metrics"] = json::array();
  for (const auto& x : d.metrics)
    j["stored_metrics"].push_back({{"key", x.key}, {"value", num(x.value)}, {"unit", x.unit}});
  j["evals"] = json::array();
  for (const auto& e : d.evals)
    j["evals"].push_back({{"id", e.id},
                          {"metric", e.metric},
                          {"method", e.method},
                          {"text_sha256", e.text_sha256},
                          {"value", num(e.value)},
                          {"n_tokens", e.n_tokens},
                          {"chunk_values", e.chunk_values}});
  // Tokens: the detail window.
  json t;
  const size_t cap = static_cast<size_t>(std::max<int64_t>(o.max_detail_tokens, 0));
  t["count"] = d.tokens.size();
  t["detail_count"] = std::min(cap, d.tokens.size());
  t["sampled"] = d.tokens.size() > cap;
  t["sampling"] = d.tokens.size() > cap ? "first " + std::to_string(cap) + " tokens"
                                        : std::string("all tokens");
  t["detail"] = json::array();
  for (size_t i = 0; i < d.tokens.size() && i < cap; ++i) {
    const auto& x = d.tokens[i];
    t["detail"].push_back({{"position", x.position},
                           {"id", x.id},
                           {"piece", x.piece},
                           {"logprob", num(x.logprob)},
                           {"entropy", num(x.entropy)},
                           {"latency_us", x.latency_us},
                           {"energy_uj", x.energy_uj ? num(*x.energy_uj) : json()}});
  }
  j["tokens"] = t;
  // Latency series (binned means when long).
  json lat;
  const size_t n = d.tokens.size();
  const size_t bins = static_cast<size_t>(std::max(1, o.max_series_points));
  const size_t per = n > bins ? (n + bins - 1) / bins : 1;
  lat["bin_tokens"] = per;
  lat["ms"] = json::array();
  for (size_t b = 0; b < n; b += per) {
    double sum = 0;
    size_t k = 0;
    for (size_t i = b; i < n && i < b + per; ++i, ++k) sum += d.tokens[i].latency_us / 1000.0;
    lat["ms"].push_back(sum / static_cast<double>(k));
  }
  j["latency"] = lat;
  // Routing aggregates.
  const RunRouting& rt = d.routing;
  if (rt.present) {
    json ro;
    ro["expert_count"] = rt.expert_count;
    ro["layers"] = rt.layers;
    ro["positions"] = rt.positions_total;
    ro["k"] = {{"min", rt.k_min}, {"max", rt.k_max}, {"mean", num(rt.k_mean)}};
    ro["per_layer"] = json::array();
    const size_t E = static_cast<size_t>(rt.expert_count);
    for (size_t l = 0; l < rt.layers.size(); ++l) {
      json sel = json::array(), share = json::array(), w = json::array();
      for (size_t e = 0; e < E; ++e) {
        const int64_t c = rt.selections[l * E + e];
        sel.push_back(c);
        share.push_back(num(rt.share(l, static_cast<int>(e))));
        w.push_back(c && rt.weights_reported
                        ? num(rt.weight_sum[l * E + e] / static_cast<double>(c))
                        : json());
      }
      ro["per_layer"].push_back({{"layer", rt.layers[l]},
                                 {"tokens", rt.tokens[l]},
                                 {"selections", sel},
                                 {"share", share},
                                 {"mean_weight", w}});
    }
    json grid;
    grid["positions"] = rt.grid_positions;
    grid["sampled"] = static_cast<int64_t>(rt.grid_positions.size()) < rt.positions_total;
    grid["top_expert"] = json::array();
    const size_t C = rt.grid_positions.size();
    for (size_t l = 0; l < rt.layers.size(); ++l)
      grid["top_expert"].push_back(
          std::vector<int32_t>(rt.grid_top.begin() + l * C, rt.grid_top.begin() + (l + 1) * C));
    ro["grid"] = grid;
    j["routing"] = ro;
  } else {
    j["routing"] = nullptr;
  }
  j["attention"] = json::array();
  for (const auto& a : d.attention)
    j["attention"].push_back(
        {{"position", a.position}, {"layer", a.layer}, {"head", a.head}, {"shape", a.shape}});
  return j;
}

}  // namespace

nlohmann::json to_json(const Report& r) {
  json j;
  j["schema_version"] = kSchemaVersion;
  j["generator"] = {{"name", "moelab"}, {"version", version_string()}, {"build", build_string()}};
  j["generated_at"] = iso8601_utc(r.generated_at_ms);
  j["kind"] = r.selection.kind == Selection::Kind::Run       ? "run"
              : r.selection.kind == Selection::Kind::Session ? "session"
                                                             : "compare";
  j["title"] = r.title;
  j["machine"] = {{"cpu_model", r.machine.cpu_model},
                  {"cores", r.machine.cores},
                  {"gpu", r.machine.gpu},
                  {"ram_bytes", r.machine.ram_bytes},
                  {"os", r.machine.os}};
  if (r.session)
    j["session"] = {{"id", r.session->id},
                    {"name", r.session->name},
                    {"notes", r.session->notes},
                    {"tags", r.session->tags},
                    {"created_at", iso8601_utc(r.session->created_at)}};
  else
    j["session"] = nullptr;
  j["runs"] = json::array();
  for (const auto& d : r.runs) j["runs"].push_back(run_to_json(d, r.options));
  if (r.comparison) {
    json c = compare::to_json(*r.comparison);
    auto& ops = c["output_diff"]["ops"];
    if (ops.size() > 2000) {
      ops.erase(ops.begin() + 2000, ops.end());
      c["output_diff"]["ops_truncated"] = true;
    }
    j["comparison"] = c;
  } else {
    j["comparison"] = nullptr;
  }
  j["notes"] = r.notes;
  return j;
}

}  // namespace moelab::report::detail

namespace moelab::report {

std::string format_number(double v, int significant) {
  return detail::format_number(v, significant);
}

MachineInfo probe_machine() {
  using detail::read_first_line_value;
  MachineInfo m;
  m.cpu_model = read_first_line_value("/proc/cpuinfo", "model name");
  if (m.cpu_model.empty()) m.cpu_model = "unknown";
  m.cores = static_cast<int>(std::thread::hardware_concurrency());
  const std::string mem = read_first_line_value("/proc/meminfo", "MemTotal");
  if (!mem.empty()) m.ram_bytes = std::strtoull(mem.c_str(), nullptr, 10) * 1024ull;
  std::string os = read_first_line_value("/etc/os-release", "PRETTY_NAME");
  if (os.size() >= 2 && os.front() == '"') os = os.substr(1, os.size() - 2);
  utsname u{};
  if (uname(&u) == 0) os += (os.empty() ? "" : ", ") + std::string(u.sysname) + " " + u.release;
  m.os = os.empty() ? "unknown" : os;
  std::string gpu;
  for (const auto& b : probe_backends())
    if (b.name != "cpu" && b.available) gpu += (gpu.empty() ? "" : "; ") + b.name + ": " + b.detail;
  m.gpu = gpu.empty() ? "none" : gpu;
  return m;
}

}  // namespace moelab::report
