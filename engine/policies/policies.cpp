// Spec parsing and printing for routing / attention policies, PolicyStats, the mask rule.
#include "moelab/policies/policies.h"

#include <charconv>
#include <cstdio>
#include <sstream>

#include "moelab/core/error.h"

namespace moelab {

namespace {

[[noreturn]] void bad(const std::string& spec, const std::string& why) {
  throw Error(ErrorKind::BadInput, why, {.subject = "policy '" + spec + "'"});
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t b = 0;
  for (;;) {
    const size_t e = s.find(sep, b);
    out.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

long long to_int(const std::string& spec, const std::string& s, long long lo, long long hi) {
  long long v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) bad(spec, "'" + s + "' is not an integer");
  if (v < lo || v > hi)
    bad(spec, "'" + s + "' is out of range " + std::to_string(lo) + ".." + std::to_string(hi));
  return v;
}

double to_double(const std::string& spec, const std::string& s) {
  std::istringstream in(s);
  in.imbue(std::locale::classic());
  double v = 0;
  in >> v;
  if (s.empty() || !in || !in.eof()) bad(spec, "'" + s + "' is not a number");
  return v;
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

}  // namespace

RoutingPolicy RoutingPolicy::parse(const std::string& spec) {
  RoutingPolicy r;
  if (spec.empty()) bad(spec, "empty routing policy");
  bool base_seen = false;
  for (const std::string& part : split(spec, '+')) {
    const size_t colon = part.find(':');
    const std::string name = part.substr(0, colon);
    const std::string arg = colon == std::string::npos ? "" : part.substr(colon + 1);
    const auto args = split(arg, ',');
    auto base = [&](RoutingRule rule) {
      if (base_seen) bad(spec, "more than one base rule (default, k, top-p, entropy)");
      base_seen = true;
      r.rule = rule;
    };
    if (name == "default") {
      if (!arg.empty()) bad(spec, "'default' takes no argument");
      base(RoutingRule::Default);
    } else if (name == "k") {
      base(RoutingRule::FixedK);
      if (args.size() != 1) bad(spec, "expected k:N");
      r.k = static_cast<int>(to_int(spec, args[0], 1, 1 << 20));
    } else if (name == "top-p") {
      base(RoutingRule::TopP);
      if (args.size() != 1 && args.size() != 3) bad(spec, "expected top-p:P or top-p:P,min,max");
      r.p = to_double(spec, args[0]);
      if (!(r.p > 0 && r.p <= 1)) bad(spec, "P must be in (0, 1]");
      if (args.size() == 3) {
        r.min_k = static_cast<int>(to_int(spec, args[1], 1, 1 << 20));
        // max 0 = no upper limit (expert_count), the value describe() writes for it.
        r.max_k = static_cast<int>(to_int(spec, args[2], 0, 1 << 20));
      }
    } else if (name == "entropy") {
      base(RoutingRule::Entropy);
      if (args.size() != 2) bad(spec, "expected entropy:min,max");
      r.min_k = static_cast<int>(to_int(spec, args[0], 1, 1 << 20));
      r.max_k = static_cast<int>(to_int(spec, args[1], 1, 1 << 20));
    } else if (name == "mask") {
      const size_t c2 = arg.find(':');
      if (c2 == std::string::npos) bad(spec, "expected mask:L:E,E,... (L = * for every layer)");
      const std::string ls = arg.substr(0, c2);
      const int layer = ls == "*" ? -1 : static_cast<int>(to_int(spec, ls, 0, 1 << 20));
      for (const auto& e : split(arg.substr(c2 + 1), ','))
        r.masked.emplace_back(layer, static_cast<int>(to_int(spec, e, 0, 1 << 20)));
    } else if (name == "fail") {
      for (const auto& e : args) r.failed.push_back(static_cast<int>(to_int(spec, e, 0, 1 << 20)));
    } else if (name == "capacity") {
      if (args.size() != 1) bad(spec, "expected capacity:C");
      r.capacity = static_cast<int>(to_int(spec, args[0], 1, 1 << 30));
    } else {
      bad(spec, "unknown routing rule '" + name +
                    "' (expected default, k:N, top-p:P[,min,max], entropy:min,max, "
                    "mask:L:E,..., fail:E,..., capacity:C)");
    }
  }
  if ((r.rule == RoutingRule::TopP || r.rule == RoutingRule::Entropy) && r.max_k > 0 &&
      r.min_k > r.max_k)
    bad(spec, "min must not exceed max");
  return r;
}

std::string RoutingPolicy::describe() const {
  std::string s;
  switch (rule) {
    case RoutingRule::Default:
      s = "default";
      break;
    case RoutingRule::FixedK:
      s = "k:" + std::to_string(k);
      break;
    case RoutingRule::TopP:
      s = "top-p:" + fmt(p);
      if (min_k > 1 || max_k > 0) s += "," + std::to_string(min_k) + "," + std::to_string(max_k);
      break;
    case RoutingRule::Entropy:
      s = "entropy:" + std::to_string(min_k) + "," + std::to_string(max_k);
      break;
  }
  for (size_t i = 0; i < masked.size();) {
    const int layer = masked[i].first;
    s += "+mask:";
    s += layer < 0 ? std::string("*") : std::to_string(layer);
    s += ':';
    bool first = true;
    for (; i < masked.size() && masked[i].first == layer; ++i) {
      if (!first) s += ',';
      s += std::to_string(masked[i].second);
      first = false;
    }
  }
  if (!failed.empty()) {
    s += "+fail:";
    for (size_t i = 0; i < failed.size(); ++i) {
      if (i) s += ',';
      s += std::to_string(failed[i]);
    }
  }
  if (capacity > 0) s += "+capacity:" + std::to_string(capacity);
  return s;
}

bool RoutingPolicy::is_default() const {
  return rule == RoutingRule::Default && masked.empty() && failed.empty() && capacity == 0;
}

AttentionPolicy AttentionPolicy::parse(const std::string& spec) {
  AttentionPolicy a;
  const size_t colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  const auto args = split(arg, ',');
  constexpr long long kMax = 1LL << 31;
  if (name == "full") {
    if (!arg.empty()) bad(spec, "'full' takes no argument");
  } else if (name == "window") {
    if (args.size() != 1) bad(spec, "expected window:W");
    a.rule = AttentionRule::Window;
    a.window = static_cast<uint32_t>(to_int(spec, args[0], 1, kMax));
  } else if (name == "local-global") {
    if (args.size() != 3) bad(spec, "expected local-global:W,S,G");
    a.rule = AttentionRule::LocalGlobal;
    a.window = static_cast<uint32_t>(to_int(spec, args[0], 1, kMax));
    a.sinks = static_cast<uint32_t>(to_int(spec, args[1], 0, kMax));
    a.global_every = static_cast<uint32_t>(to_int(spec, args[2], 0, kMax));
  } else if (name == "evict") {
    if (args.size() != 2) bad(spec, "expected evict:S,W");
    a.rule = AttentionRule::Evict;
    a.sinks = static_cast<uint32_t>(to_int(spec, args[0], 0, kMax));
    a.window = static_cast<uint32_t>(to_int(spec, args[1], 1, kMax));
  } else {
    bad(spec, "unknown attention rule '" + name +
                  "' (expected full, window:W, local-global:W,S,G, "
                  "evict:S,W)");
  }
  return a;
}

std::string AttentionPolicy::describe() const {
  switch (rule) {
    case AttentionRule::Full:
      return "full";
    case AttentionRule::Window:
      return "window:" + std::to_string(window);
    case AttentionRule::LocalGlobal:
      return "local-global:" + std::to_string(window) + "," + std::to_string(sinks) + "," +
             std::to_string(global_every);
    case AttentionRule::Evict:
      return "evict:" + std::to_string(sinks) + "," + std::to_string(window);
  }
  return "full";
}

bool AttentionPolicy::visible(int64_t pos_q, int64_t pos_k, uint32_t model_window) const {
  if (pos_k > pos_q) return false;
  const int64_t d = pos_q - pos_k;
  if (model_window > 0 && d >= static_cast<int64_t>(model_window)) return false;
  switch (rule) {
    case AttentionRule::Full:
      return true;
    case AttentionRule::Window:
      return d < static_cast<int64_t>(window);
    case AttentionRule::LocalGlobal:
      return d < static_cast<int64_t>(window) || pos_k < static_cast<int64_t>(sinks) ||
             (global_every > 0 && pos_k % global_every == 0);
    case AttentionRule::Evict:
      return d < static_cast<int64_t>(window) || pos_k < static_cast<int64_t>(sinks);
  }
  return true;
}

void PolicyStats::merge(const PolicyStats& o) {
  if (failovers.size() < o.failovers.size()) failovers.resize(o.failovers.size());
  if (overflows.size() < o.overflows.size()) overflows.resize(o.overflows.size());
  for (size_t i = 0; i < o.failovers.size(); ++i) failovers[i] += o.failovers[i];
  for (size_t i = 0; i < o.overflows.size(); ++i) overflows[i] += o.overflows[i];
  routed += o.routed;
  active += o.active;
  evicted += o.evicted;
}

}  // namespace moelab
