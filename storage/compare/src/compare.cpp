#include "moelab/compare/compare.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <unordered_map>

namespace moelab::compare {

// ---------------------------------------------------------------- config

namespace {
std::string escape_pointer(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

void diff_into(const nlohmann::json& a, const nlohmann::json& b, const std::string& path,
               std::vector<ConfigChange>& out) {
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      const std::string p = path + "/" + escape_pointer(it.key());
      if (b.contains(it.key()))
        diff_into(it.value(), b.at(it.key()), p, out);
      else
        out.push_back({ConfigChange::Kind::Removed, p, it.value(), nullptr});
    }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key()))
        out.push_back({ConfigChange::Kind::Added, path + "/" + escape_pointer(it.key()), nullptr,
                       it.value()});
    return;
  }
  if (a.is_array() && b.is_array()) {
    const size_t n = std::max(a.size(), b.size());
    for (size_t i = 0; i < n; ++i) {
      const std::string p = path + "/" + std::to_string(i);
      if (i >= a.size())
        out.push_back({ConfigChange::Kind::Added, p, nullptr, b[i]});
      else if (i >= b.size())
        out.push_back({ConfigChange::Kind::Removed, p, a[i], nullptr});
      else
        diff_into(a[i], b[i], p, out);
    }
    return;
  }
  // Numbers compare by value (1 == 1.0); everything else by JSON equality.
  const bool same = (a.is_number() && b.is_number()) ? a.get<double>() == b.get<double>() : a == b;
  if (!same) out.push_back({ConfigChange::Kind::Changed, path, a, b});
}
}  // namespace

std::vector<ConfigChange> config_diff(const nlohmann::json& a, const nlohmann::json& b) {
  std::vector<ConfigChange> out;
  diff_into(a, b, "", out);
  std::sort(out.begin(), out.end(),
            [](const ConfigChange& x, const ConfigChange& y) { return x.path < y.path; });
  return out;
}

const char* kind_name(ConfigChange::Kind k) noexcept {
  switch (k) {
    case ConfigChange::Kind::Added:
      return "added";
    case ConfigChange::Kind::Removed:
      return "removed";
    case ConfigChange::Kind::Changed:
      return "changed";
  }
  return "changed";
}

// ---------------------------------------------------------------- scalars

Delta delta(double a, double b) noexcept {
  Delta d{a, b, a - b, NAN};
  if (b != 0 && !std::isnan(a) && !std::isnan(b)) d.rel = (a - b) / std::fabs(b);
  return d;
}

double mean(std::span<const double> x) noexcept {
  if (x.empty()) return NAN;
  double s = 0;
  for (double v : x) s += v;
  return s / static_cast<double>(x.size());
}

double stddev(std::span<const double> x) noexcept {
  if (x.size() < 2) return 0;
  const double m = mean(x);
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return std::sqrt(s / static_cast<double>(x.size() - 1));
}

double quantile_sorted(std::span<const double> s, double p) noexcept {
  if (s.empty()) return NAN;
  const double h = (static_cast<double>(s.size()) - 1) * std::clamp(p, 0.0, 1.0);
  const size_t lo = static_cast<size_t>(std::floor(h));
  const size_t hi = std::min(lo + 1, s.size() - 1);
  return s[lo] + (h - static_cast<double>(lo)) * (s[hi] - s[lo]);
}

// ---------------------------------------------------------------- bootstrap

BootstrapCI bootstrap_mean_diff(std::span<const double> a, std::span<const double> b, int resamples,
                                uint64_t seed, double level) {
  if (a.empty() || b.empty())
    throw std::invalid_argument("bootstrap needs at least one value on each side");
  if (resamples < 1) throw std::invalid_argument("bootstrap needs at least one resample");
  BootstrapCI ci;
  ci.n_a = a.size();
  ci.n_b = b.size();
  ci.mean_a = mean(a);
  ci.mean_b = mean(b);
  ci.diff = ci.mean_a - ci.mean_b;
  ci.resamples = resamples;
  ci.seed = seed;
  ci.level = level;
  std::mt19937_64 rng(seed);
  std::vector<double> diffs(static_cast<size_t>(resamples));
  for (auto& d : diffs) {
    double sa = 0, sb = 0;
    for (size_t i = 0; i < a.size(); ++i) sa += a[rng() % a.size()];
    for (size_t i = 0; i < b.size(); ++i) sb += b[rng() % b.size()];
    d = sa / static_cast<double>(a.size()) - sb / static_cast<double>(b.size());
  }
  std::sort(diffs.begin(), diffs.end());
  ci.lo = quantile_sorted(diffs, (1 - level) / 2);
  ci.hi = quantile_sorted(diffs, (1 + level) / 2);
  return ci;
}

// ---------------------------------------------------------------- quality

PerplexityDelta perplexity_delta(const std::vector<EvalResult>& a,
                                 const std::vector<EvalResult>& b) {
  PerplexityDelta out;
  bool any_a = false, any_b = false;
  for (const auto& x : a) {
    if (x.metric != "perplexity") continue;
    any_a = true;
    for (const auto& y : b) {
      if (y.metric != "perplexity") continue;
      any_b = true;
      if (x.method == y.method && x.text_sha256 == y.text_sha256) {
        out.comparable = true;
        out.method = x.method;
        out.value = delta(x.value, y.value);
        return out;
      }
    }
  }
  for (const auto& y : b) any_b = any_b || y.metric == "perplexity";
  out.reason = !any_a || !any_b ? "perplexity was not measured in both runs"
                                : "the runs scored different texts or used different methods";
  return out;
}

namespace {
struct DistView {
  const NextTokenDist& d;
  std::unordered_map<int32_t, float> sparse;
  double tail = 0;  // probability of each unlisted id
  explicit DistView(const NextTokenDist& x) : d(x) {
    if (x.ids.empty()) return;
    double mass = 0;
    for (size_t i = 0; i < x.ids.size(); ++i) {
      sparse[x.ids[i]] = x.probs[i];
      mass += x.probs[i];
    }
    const double rest = static_cast<double>(x.n_vocab) - static_cast<double>(x.ids.size());
    tail = rest > 0 ? std::max(0.0, 1.0 - mass) / rest : 0;
  }
  bool dense() const { return d.ids.empty(); }
  double prob(int32_t id) const {
    if (dense()) return d.probs[static_cast<size_t>(id)];
    auto it = sparse.find(id);
    return it == sparse.end() ? tail : it->second;
  }
};
double kl_term(double p, double q) {
  if (p <= 0 || p == q) return 0;
  return p * std::log(p / std::max(q, 1e-12));
}
}  // namespace

double kl_divergence(const NextTokenDist& p, const NextTokenDist& q) {
  const int32_t n = p.ids.empty() ? static_cast<int32_t>(p.probs.size()) : p.n_vocab;
  const int32_t m = q.ids.empty() ? static_cast<int32_t>(q.probs.size()) : q.n_vocab;
  if (n != m || n <= 0) throw std::invalid_argument("distributions over different vocabularies");
  const DistView P(p), Q(q);
  double kl = 0;
  if (P.dense() || Q.dense()) {
    for (int32_t i = 0; i < n; ++i) kl += kl_term(P.prob(i), Q.prob(i));
    return std::max(0.0, kl);
  }
  // Both sparse: the listed ids one by one, the ids neither lists in one term.
  std::vector<int32_t> ids(p.ids);
  ids.insert(ids.end(), q.ids.begin(), q.ids.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  for (int32_t id : ids) kl += kl_term(P.prob(id), Q.prob(id));
  const double rest = static_cast<double>(n) - static_cast<double>(ids.size());
  if (rest > 0) kl += rest * kl_term(P.tail, Q.tail);
  return std::max(0.0, kl);
}

std::optional<KlSummary> next_token_kl(const std::vector<NextTokenDist>& a,
                                       const std::vector<NextTokenDist>& b, std::string* why) {
  std::map<int64_t, const NextTokenDist*> by_pos;
  for (const auto& d : b) by_pos[d.position] = &d;
  auto vocab = [](const NextTokenDist& d) {
    return d.ids.empty() ? static_cast<int32_t>(d.probs.size()) : d.n_vocab;
  };
  KlSummary s;
  for (const auto& d : a) {
    auto it = by_pos.find(d.position);
    if (it == by_pos.end()) continue;
    if (vocab(d) != vocab(*it->second)) {
      if (why)
        *why = "the runs' next-token distributions cover different vocabularies (" +
               std::to_string(vocab(d)) + " vs " + std::to_string(vocab(*it->second)) +
               " tokens): KL is not comparable";
      return std::nullopt;
    }
    const double kl = kl_divergence(d, *it->second);
    s.per_position.push_back(kl);
    s.max = std::max(s.max, kl);
  }
  if (s.per_position.empty()) return std::nullopt;
  s.n_positions = s.per_position.size();
  s.mean = mean(s.per_position);
  return s;
}

// ---------------------------------------------------------------- routing

double js_divergence(std::span<const double> p, std::span<const double> q) {
  if (p.size() != q.size()) throw std::invalid_argument("JS divergence of different lengths");
  auto normalised = [](std::span<const double> x) {
    double s = 0;
    for (double v : x) s += v;
    std::vector<double> out(x.size(), x.empty() ? 0 : 1.0 / static_cast<double>(x.size()));
    if (s > 0)
      for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] / s;
    return out;
  };
  const auto P = normalised(p), Q = normalised(q);
  double js = 0;
  for (size_t i = 0; i < P.size(); ++i) {
    const double m = (P[i] + Q[i]) / 2;
    if (P[i] > 0) js += 0.5 * P[i] * std::log2(P[i] / m);
    if (Q[i] > 0) js += 0.5 * Q[i] * std::log2(Q[i] / m);
  }
  return std::clamp(js, 0.0, 1.0);
}

std::vector<double> expert_share(std::span<const double> counts) {
  double s = 0;
  for (double v : counts) s += v;
  std::vector<double> shares(counts.size(), 0.0);
  if (s > 0)
    for (size_t i = 0; i < counts.size(); ++i) shares[i] = counts[i] / s;
  return shares;
}

LatencyFigures latency_figures(std::span<const storage::TokenRecord> tokens) {
  LatencyFigures f;
  if (tokens.empty()) return f;
  f.ttft_ms = static_cast<double>(tokens.front().latency_us) / 1000.0;
  double sum = 0;
  for (size_t i = 1; i < tokens.size(); ++i) {
    f.tpot_ms.push_back(static_cast<double>(tokens[i].latency_us) / 1000.0);
    sum += f.tpot_ms.back();
  }
  if (f.tpot_ms.empty()) return f;
  f.tpot_ms_mean = mean(f.tpot_ms);
  if (sum > 0) f.decode_tokens_per_s = static_cast<double>(f.tpot_ms.size()) / (sum / 1000.0);
  return f;
}

std::vector<LayerRouting> routing_divergence(const std::vector<RoutingRecord>& a,
                                             const std::vector<RoutingRecord>& b,
                                             int expert_count) {
  int n = expert_count;
  if (n <= 0)
    for (const auto* v : {&a, &b})
      for (const auto& r : *v)
        for (uint16_t e : r.experts) n = std::max(n, static_cast<int>(e) + 1);
  struct Acc {
    std::vector<double> count;
    size_t tokens = 0;
  };
  auto accumulate = [n](const std::vector<RoutingRecord>& v) {
    std::map<int32_t, Acc> m;
    for (const auto& r : v) {
      auto& acc = m[r.layer];
      if (acc.count.empty()) acc.count.assign(static_cast<size_t>(n), 0.0);
      ++acc.tokens;
      for (uint16_t e : r.experts)
        if (e < n) acc.count[e] += 1;
    }
    return m;
  };
  const auto A = accumulate(a), B = accumulate(b);
  std::vector<LayerRouting> out;
  for (const auto& [layer, acc_a] : A) {
    auto it = B.find(layer);
    if (it == B.end()) continue;
    LayerRouting l;
    l.layer = layer;
    l.tokens_a = acc_a.tokens;
    l.tokens_b = it->second.tokens;
    l.load_a = expert_share(acc_a.count);
    l.load_b = expert_share(it->second.count);
    l.diff.resize(l.load_a.size());
    for (size_t i = 0; i < l.diff.size(); ++i) l.diff[i] = l.load_a[i] - l.load_b[i];
    l.js = js_divergence(acc_a.count, it->second.count);
    out.push_back(std::move(l));
  }
  return out;
}

// ---------------------------------------------------------------- token diff

std::vector<DiffOp> token_diff(std::span<const int32_t> a, std::span<const int32_t> b) {
  const int64_t N = static_cast<int64_t>(a.size()), M = static_cast<int64_t>(b.size());
  const int64_t MAX = N + M;
  std::vector<int64_t> V(static_cast<size_t>(2 * MAX + 3), 0);
  const int64_t off = MAX + 1;
  // trace[d] holds V[k] for k in [-d-1, d+1] as it was before step d.
  std::vector<std::vector<int64_t>> trace;
  int64_t D = -1;
  for (int64_t d = 0; d <= MAX && D < 0; ++d) {
    trace.emplace_back(V.begin() + (off - d - 1), V.begin() + (off + d + 2));
    for (int64_t k = -d; k <= d; k += 2) {
      int64_t x = (k == -d || (k != d && V[off + k - 1] < V[off + k + 1])) ? V[off + k + 1]
                                                                           : V[off + k - 1] + 1;
      int64_t y = x - k;
      while (x < N && y < M && a[static_cast<size_t>(x)] == b[static_cast<size_t>(y)]) ++x, ++y;
      V[off + k] = x;
      if (x >= N && y >= M) {
        D = d;
        break;
      }
    }
  }
  // Backtrack from (N, M), collecting single-element ops in reverse.
  std::vector<DiffOp> rev;
  int64_t x = N, y = M;
  for (int64_t d = D; d >= 0; --d) {
    const auto& v = trace[static_cast<size_t>(d)];
    auto at = [&](int64_t k) { return v[static_cast<size_t>(k + d + 1)]; };
    const int64_t k = x - y;
    const int64_t pk = (k == -d || (k != d && at(k - 1) < at(k + 1))) ? k + 1 : k - 1;
    const int64_t px = at(pk), py = px - pk;
    while (x > px && y > py) {
      --x, --y;
      rev.push_back({DiffOp::Kind::Equal, static_cast<size_t>(x), static_cast<size_t>(y), 1});
    }
    if (d > 0) {
      if (x == px)
        rev.push_back(
            {DiffOp::Kind::Insert, static_cast<size_t>(x), static_cast<size_t>(y - 1), 1});
      else
        rev.push_back(
            {DiffOp::Kind::Delete, static_cast<size_t>(x - 1), static_cast<size_t>(y), 1});
    }
    x = px, y = py;
  }
  std::vector<DiffOp> ops;
  for (auto it = rev.rbegin(); it != rev.rend(); ++it) {
    if (!ops.empty() && ops.back().kind == it->kind) {
      auto& last = ops.back();
      const bool contiguous =
          (it->kind == DiffOp::Kind::Equal && last.a_pos + last.len == it->a_pos) ||
          (it->kind == DiffOp::Kind::Delete && last.a_pos + last.len == it->a_pos) ||
          (it->kind == DiffOp::Kind::Insert && last.b_pos + last.len == it->b_pos);
      if (contiguous) {
        ++last.len;
        continue;
      }
    }
    ops.push_back(*it);
  }
  return ops;
}

const char* kind_name(DiffOp::Kind k) noexcept {
  switch (k) {
    case DiffOp::Kind::Equal:
      return "equal";
    case DiffOp::Kind::Delete:
      return "delete";
    case DiffOp::Kind::Insert:
      return "insert";
  }
  return "equal";
}

DiffSummary summarize(const std::vector<DiffOp>& ops, size_t n_a, size_t n_b) {
  DiffSummary s;
  for (const auto& op : ops) {
    if (op.kind == DiffOp::Kind::Equal)
      s.equal += op.len;
    else if (op.kind == DiffOp::Kind::Delete)
      s.deleted += op.len;
    else
      s.inserted += op.len;
  }
  if (!ops.empty() && ops.front().kind == DiffOp::Kind::Equal) s.common_prefix = ops.front().len;
  s.similarity =
      n_a + n_b == 0 ? 1.0 : 2.0 * static_cast<double>(s.equal) / static_cast<double>(n_a + n_b);
  return s;
}

SeedStability seed_stability(const std::vector<std::vector<int32_t>>& outputs,
                             const std::vector<std::vector<MetricRecord>>& metrics) {
  SeedStability s;
  s.n_runs = outputs.size();
  {
    auto sorted = outputs;
    std::sort(sorted.begin(), sorted.end());
    s.distinct_outputs =
        static_cast<size_t>(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
  }
  size_t pairs = 0, identical = 0;
  double sim = 0, prefix = 0;
  for (size_t i = 0; i < outputs.size(); ++i)
    for (size_t j = i + 1; j < outputs.size(); ++j) {
      ++pairs;
      identical += outputs[i] == outputs[j];
      const auto sum =
          summarize(token_diff(outputs[i], outputs[j]), outputs[i].size(), outputs[j].size());
      sim += sum.similarity;
      prefix += static_cast<double>(sum.common_prefix);
    }
  if (pairs) {
    s.identical_pairs = static_cast<double>(identical) / static_cast<double>(pairs);
    s.mean_similarity = sim / static_cast<double>(pairs);
    s.mean_common_prefix = prefix / static_cast<double>(pairs);
  } else {  // fewer than two outputs: nothing to compare
    s.identical_pairs = s.mean_similarity = s.mean_common_prefix =
        std::numeric_limits<double>::quiet_NaN();
  }
  std::map<std::string, std::vector<double>> values;
  for (const auto& run : metrics)
    for (const auto& m : run) values[m.key].push_back(m.value);
  for (const auto& [key, v] : values) {
    if (v.size() != metrics.size()) continue;  // only keys every run has
    MetricSpread m;
    m.key = key;
    m.n = v.size();
    m.mean = mean(v);
    m.stddev = stddev(v);
    m.min = *std::min_element(v.begin(), v.end());
    m.max = *std::max_element(v.begin(), v.end());
    m.cv = m.mean != 0 ? m.stddev / std::fabs(m.mean) : NAN;
    s.metrics.push_back(m);
  }
  return s;
}

// ---------------------------------------------------------------- two stored runs

RunComparison compare_runs(const storage::Store& store, int64_t ia, int64_t ib,
                           const CompareOptions& o) {
  RunComparison c;
  auto load = [&](int64_t id) {
    auto r = store.run(id);
    if (!r)
      throw storage::StorageError(storage::StorageErrorKind::BadInput,
                                  "no run with id " + std::to_string(id),
                                  {store.path(), "compare"});
    return *r;
  };
  c.a = load(ia);
  c.b = load(ib);
  auto parse = [](const std::string& s) {
    try {
      return nlohmann::json::parse(s);
    } catch (const nlohmann::json::exception&) {
      return nlohmann::json(s);
    }
  };
  c.config = config_diff(parse(c.a.config_json), parse(c.b.config_json));

  const auto ta = store.tokens(ia), tb = store.tokens(ib);
  const auto ma = store.metrics(ia), mb = store.metrics(ib);
  std::map<std::string, MetricRow> rows;
  // TTFT has one definition (latency_figures: token 0's latency), as in the views and the
  // reports; the stored ttft_ms metric (the generator's clock, not truncated to whole µs) is
  // replaced by it below.
  for (const auto& m : ma)
    if (m.key != "ttft_ms" && !is_op_time_metric(m.key))
      rows[m.key] = {m.key, m.unit, m.value, std::nullopt, {}};
  for (const auto& m : mb) {
    if (m.key == "ttft_ms" || is_op_time_metric(m.key)) continue;
    auto& r = rows[m.key];
    r.key = m.key;
    if (r.unit.empty()) r.unit = m.unit;
    r.b = m.value;
  }
  for (auto& [k, r] : rows) {
    if (r.a && r.b) r.delta = delta(*r.a, *r.b);
    c.metrics.push_back(r);
  }
  auto energy_j = [](const std::vector<storage::TokenRecord>& t) {
    std::vector<double> v;
    for (const auto& x : t)
      if (x.energy_uj) v.push_back(*x.energy_uj * 1e-6);
    return v;
  };
  auto derived = [&](const std::string& key, const std::string& unit, std::optional<double> a,
                     std::optional<double> b) {
    MetricRow r{key, unit, a, b, {}};
    if (a && b) r.delta = delta(*a, *b);
    c.metrics.push_back(r);
  };
  const auto fa = latency_figures(ta), fb = latency_figures(tb);
  const auto &la = fa.tpot_ms, &lb = fb.tpot_ms;
  if (fa.ttft_ms || fb.ttft_ms) derived("ttft_ms", "ms", fa.ttft_ms, fb.ttft_ms);
  derived("n_tokens", "tokens", static_cast<double>(ta.size()), static_cast<double>(tb.size()));
  auto opt_mean = [](const std::vector<double>& v) {
    return v.empty() ? std::nullopt : std::optional<double>(mean(v));
  };
  derived("tpot_ms_mean", "ms", fa.tpot_ms_mean, fb.tpot_ms_mean);
  derived("decode_tokens_per_s", "tokens/s", fa.decode_tokens_per_s, fb.decode_tokens_per_s);
  const auto ea = energy_j(ta), eb = energy_j(tb);
  if (!ea.empty() || !eb.empty()) derived("j_per_token", "J", opt_mean(ea), opt_mean(eb));
  if (la.size() >= 2 && lb.size() >= 2)
    c.tpot_ms = bootstrap_mean_diff(la, lb, o.resamples, o.seed, o.level);
  if (ea.size() >= 2 && eb.size() >= 2)
    c.j_per_token = bootstrap_mean_diff(ea, eb, o.resamples, o.seed, o.level);

  c.perplexity = perplexity_delta(store.eval_results(ia), store.eval_results(ib));
  c.kl = next_token_kl(store.next_token_dists(ia), store.next_token_dists(ib), &c.kl_reason);
  c.routing = routing_divergence(store.routing(ia), store.routing(ib));
  std::vector<int32_t> ida, idb;
  for (const auto& t : ta) ida.push_back(t.id);
  for (const auto& t : tb) idb.push_back(t.id);
  c.diff = token_diff(ida, idb);
  c.diff_summary = summarize(c.diff, ida.size(), idb.size());
  check_comparable(store, c);
  return c;
}

namespace {
nlohmann::json num(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}
nlohmann::json ci_json(const BootstrapCI& ci) {
  return {{"mean_a", num(ci.mean_a)},
          {"mean_b", num(ci.mean_b)},
          {"diff", num(ci.diff)},
          {"lo", num(ci.lo)},
          {"hi", num(ci.hi)},
          {"level", ci.level},
          {"n_a", ci.n_a},
          {"n_b", ci.n_b},
          {"resamples", ci.resamples},
          {"seed", ci.seed}};
}
nlohmann::json run_json(const storage::RunRecord& r) {
  return {{"id", r.id},
          {"session_id", r.session_id},
          {"status", storage::status_name(r.status)},
          {"n_tokens", r.n_tokens},
          {"output", r.output}};
}
}  // namespace

nlohmann::json to_json(const RunComparison& c) {
  nlohmann::json j;
  j["a"] = run_json(c.a);
  j["b"] = run_json(c.b);
  j["sign"] = "A - B (B = baseline)";
  j["config_diff"] = nlohmann::json::array();
  for (const auto& ch : c.config)
    j["config_diff"].push_back(
        {{"path", ch.path}, {"kind", kind_name(ch.kind)}, {"a", ch.a}, {"b", ch.b}});
  j["metrics"] = nlohmann::json::array();
  for (const auto& m : c.metrics) {
    nlohmann::json row = {{"key", m.key},
                          {"unit", m.unit},
                          {"a", m.a ? num(*m.a) : nlohmann::json()},
                          {"b", m.b ? num(*m.b) : nlohmann::json()}};
    if (m.a && m.b) {
      row["abs_delta"] = num(m.delta.abs);
      row["rel_delta"] = num(m.delta.rel);
    }
    j["metrics"].push_back(row);
  }
  j["tpot_ms_ci"] = c.tpot_ms ? ci_json(*c.tpot_ms) : nlohmann::json();
  j["j_per_token_ci"] = c.j_per_token ? ci_json(*c.j_per_token) : nlohmann::json();
  if (c.perplexity.comparable)
    j["perplexity"] = {{"method", c.perplexity.method},
                       {"a", num(c.perplexity.value.a)},
                       {"b", num(c.perplexity.value.b)},
                       {"abs_delta", num(c.perplexity.value.abs)},
                       {"rel_delta", num(c.perplexity.value.rel)}};
  else
    j["perplexity"] = {{"comparable", false}, {"reason", c.perplexity.reason}};
  j["kl_next_token"] = c.kl ? nlohmann::json{{"positions", c.kl->n_positions},
                                             {"mean_nats", num(c.kl->mean)},
                                             {"max_nats", num(c.kl->max)}}
                       : c.kl_reason.empty()
                           ? nlohmann::json()
                           : nlohmann::json{{"comparable", false}, {"reason", c.kl_reason}};
  j["routing"] = nlohmann::json::array();
  for (const auto& l : c.routing)
    j["routing"].push_back({{"layer", l.layer},
                            {"js_divergence", num(l.js)},
                            {"load_a", l.load_a},
                            {"load_b", l.load_b},
                            {"load_diff", l.diff}});
  j["output_diff"] = {{"equal", c.diff_summary.equal},
                      {"deleted", c.diff_summary.deleted},
                      {"inserted", c.diff_summary.inserted},
                      {"common_prefix", c.diff_summary.common_prefix},
                      {"similarity", num(c.diff_summary.similarity)},
                      {"ops", nlohmann::json::array()}};
  for (const auto& op : c.diff)
    j["output_diff"]["ops"].push_back(
        {{"op", kind_name(op.kind)}, {"a_pos", op.a_pos}, {"b_pos", op.b_pos}, {"len", op.len}});
  j["warnings"] = c.warnings;
  j["per_expert_refused"] = c.per_expert_refused;
  return j;
}

Side side_of(const storage::Store& store, const std::string& label, int64_t run_id) {
  Side s{label, run_id, std::nullopt, -1, {}};
  const auto r = store.run(run_id);
  if (!r) return s;  // compare_runs / compare_groups report the unknown id
  s.prompt = r->prompt;
  if (r->model_id > 0) s.model = store.model(r->model_id);
  if (s.model) {
    const auto card = nlohmann::json::parse(s.model->card_json, nullptr, false);
    if (card.is_object() && card.contains("expert_count") &&
        card["expert_count"].is_number_integer())
      s.expert_count = card["expert_count"].get<int64_t>();
  }
  return s;
}

namespace {
std::string model_name(const Side& s) {
  if (!s.model) return "unknown";
  const std::string path = std::filesystem::path(s.model->path).filename().string();
  return (path.empty() ? s.model->architecture : path) + " (" + s.model->sha256.substr(0, 12) + ")";
}
}  // namespace

std::vector<std::string> comparison_warnings(const Side& a, const Side& b,
                                             bool* per_expert_refused) {
  std::vector<std::string> w;
  *per_expert_refused = false;
  const std::string both = a.label + " and " + b.label;
  if (a.model && b.model && a.model->sha256 != b.model->sha256)
    w.push_back(both + " are runs of different models (" + a.label + ": " + model_name(a) + ", " +
                b.label + ": " + model_name(b) + ")");
  if (a.expert_count >= 0 && b.expert_count >= 0 && a.expert_count != b.expert_count) {
    *per_expert_refused = true;
    w.push_back(both + " have different expert counts (" + a.label + " " +
                std::to_string(a.expert_count) + ", " + b.label + " " +
                std::to_string(b.expert_count) + "): per-expert routing loads are not compared");
  }
  if (a.prompt != b.prompt)
    w.push_back(both +
                " have different prompts: KL and the output diff compare continuations of "
                "different texts");
  return w;
}

std::string diverged_output_warning(const RunComparison& c) {
  if (!c.kl || c.diff_summary.common_prefix >= c.kl->n_positions) return {};
  return "the outputs differ from token " + std::to_string(c.diff_summary.common_prefix) +
         " on: KL over positions " + std::to_string(c.diff_summary.common_prefix) + ".." +
         std::to_string(c.kl->n_positions - 1) +
         " compares next-token distributions after different prefixes";
}

void check_comparable(const storage::Store& store, RunComparison& c) {
  c.warnings = comparison_warnings(side_of(store, "A", c.a.id), side_of(store, "B", c.b.id),
                                   &c.per_expert_refused);
  if (c.warnings.empty())
    if (auto w = diverged_output_warning(c); !w.empty()) c.warnings.push_back(w);
  if (c.per_expert_refused) c.routing.clear();
}

}  // namespace moelab::compare
