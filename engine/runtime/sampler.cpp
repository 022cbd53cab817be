#include "moelab/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <unordered_map>

#include "moelab/core/error.h"

namespace moelab {

namespace {
// Order of a sorted candidate list: logit descending, ties by token id ascending. NaN logits
// sort last.
bool before(const Candidate& a, const Candidate& b) {
  const bool an = std::isnan(a.logit), bn = std::isnan(b.logit);
  if (an != bn) return bn;
  if (a.logit != b.logit) return a.logit > b.logit;
  return a.id < b.id;
}

void normalise(Candidates& c) {
  double sum = 0;
  for (const auto& x : c.items) sum += x.p;
  if (sum <= 0) return;
  for (auto& x : c.items) x.p = static_cast<float>(x.p / sum);
}
}  // namespace

std::string SamplerParams::describe() const {
  char buf[256];
  if (temperature <= 0.f) {
    std::snprintf(buf, sizeof buf, "greedy");
  } else {
    std::snprintf(buf, sizeof buf, "temp %.2f, top-k %d, top-p %.2f, min-p %.2f", temperature,
                  top_k, top_p, min_p);
  }
  std::string s = buf;
  if (repeat_penalty != 1.f || frequency_penalty != 0.f || presence_penalty != 0.f) {
    std::snprintf(buf, sizeof buf, ", repeat %.2f freq %.2f presence %.2f (last %d)",
                  repeat_penalty, frequency_penalty, presence_penalty, penalty_last_n);
    s += buf;
  }
  return s;
}

Candidates Candidates::from_logits(std::span<const float> logits) {
  Candidates c;
  c.items.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) c.items[i] = {static_cast<int32_t>(i), logits[i], 0.f};
  return c;
}

namespace sampling {

void softmax(Candidates& c) {
  if (c.sorted || c.items.empty()) return;
  std::sort(c.items.begin(), c.items.end(), before);
  const float max = c.items.front().logit;
  if (!std::isfinite(max)) {
    // Nothing finite to rank (all -inf or NaN): the first candidate takes all the mass.
    for (auto& x : c.items) x.p = 0.f;
    c.items.front().p = 1.f;
    c.sorted = true;
    return;
  }
  double sum = 0;
  std::vector<double> e(c.items.size());
  for (size_t i = 0; i < c.items.size(); ++i) {
    const float l = c.items[i].logit;
    e[i] = std::isnan(l) ? 0.0 : std::exp(static_cast<double>(l) - max);
    sum += e[i];
  }
  for (size_t i = 0; i < c.items.size(); ++i) c.items[i].p = static_cast<float>(e[i] / sum);
  c.sorted = true;
}

void top_k(Candidates& c, int32_t k) {
  if (k <= 0 || static_cast<size_t>(k) >= c.items.size()) return;
  if (!c.sorted) {
    std::nth_element(c.items.begin(), c.items.begin() + (k - 1), c.items.end(), before);
    c.items.resize(static_cast<size_t>(k));
    softmax(c);
  } else {
    c.items.resize(static_cast<size_t>(k));
    normalise(c);
  }
}

void top_p(Candidates& c, float p, size_t min_keep) {
  if (p >= 1.f || c.items.empty()) return;
  softmax(c);
  constexpr double kSlack = 1e-6;
  double cum = 0;
  size_t keep = c.items.size();
  for (size_t i = 0; i < c.items.size(); ++i) {
    cum += c.items[i].p;
    if (cum >= static_cast<double>(p) - kSlack && i + 1 >= min_keep) {
      keep = i + 1;
      break;
    }
  }
  keep = std::max<size_t>(keep, std::min(min_keep, c.items.size()));
  c.items.resize(std::max<size_t>(keep, 1));
  normalise(c);
}

void min_p(Candidates& c, float mp, size_t min_keep) {
  if (mp <= 0.f || c.items.empty()) return;
  softmax(c);
  const float threshold = mp * c.items.front().p;
  size_t keep = 0;
  while (keep < c.items.size() && c.items[keep].p >= threshold) ++keep;
  keep = std::max(keep, std::min<size_t>(std::max<size_t>(min_keep, 1), c.items.size()));
  c.items.resize(keep);
  normalise(c);
}

void temperature(Candidates& c, float t) {
  if (c.items.empty()) return;
  if (!(t > 0.f)) {
    softmax(c);
    c.items.resize(1);
    c.items.front().p = 1.f;
    return;
  }
  for (auto& x : c.items) x.logit /= t;
  // Division by a positive number keeps the order; recompute p.
  c.sorted = false;
  softmax(c);
}

int32_t draw(Candidates& c, double u) {
  if (c.items.empty()) throw Error(ErrorKind::BadInput, "no candidate token to draw from");
  softmax(c);
  double total = 0;
  for (const auto& x : c.items) total += x.p;
  const double target = u * total;
  double cum = 0;
  for (const auto& x : c.items) {
    cum += x.p;
    if (target < cum) return x.id;
  }
  // Rounding left target at the very end: the last candidate with non-zero mass.
  for (auto it = c.items.rbegin(); it != c.items.rend(); ++it)
    if (it->p > 0.f) return it->id;
  return c.items.front().id;
}

void apply_penalties(std::span<float> logits, std::span<const int32_t> history,
                     float repeat_penalty, float frequency_penalty, float presence_penalty) {
  if (history.empty()) return;
  if (repeat_penalty == 1.f && frequency_penalty == 0.f && presence_penalty == 0.f) return;
  std::unordered_map<int32_t, int> count;
  for (int32_t t : history)
    if (t >= 0 && static_cast<size_t>(t) < logits.size()) ++count[t];
  for (const auto& [t, n] : count) {
    float& l = logits[static_cast<size_t>(t)];
    l = l > 0.f ? l / repeat_penalty : l * repeat_penalty;
    l -= static_cast<float>(n) * frequency_penalty + presence_penalty;
  }
}

int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) throw Error(ErrorKind::BadInput, "empty logits row");
  int32_t best = -1;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) continue;
    if (best < 0 || logits[i] > logits[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  return best < 0 ? 0 : best;
}

float log_prob(std::span<const float> logits, int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= logits.size())
    return -std::numeric_limits<float>::infinity();
  const float max = logits[static_cast<size_t>(argmax(logits))];
  double sum = 0;
  for (float l : logits)
    if (!std::isnan(l)) sum += std::exp(static_cast<double>(l) - max);
  return static_cast<float>(static_cast<double>(logits[static_cast<size_t>(token)]) - max -
                            std::log(sum));
}

}  // namespace sampling

Sampler::Sampler(const SamplerParams& params) : params_(params) {
  auto bad = [](const std::string& what) {
    throw Error(ErrorKind::BadInput, what, {.subject = "sampler"});
  };
  const auto& p = params_;
  if (std::isnan(p.temperature)) bad("temperature is NaN");
  if (!(p.top_p >= 0.f && p.top_p <= 1.f)) bad("top-p must be in [0, 1]");
  if (!(p.min_p >= 0.f && p.min_p <= 1.f)) bad("min-p must be in [0, 1]");
  if (!(p.repeat_penalty > 0.f)) bad("the repetition penalty must be > 0 (1 = off)");
  if (std::isnan(p.frequency_penalty) || std::isnan(p.presence_penalty)) bad("penalty is NaN");
  if (p.penalty_last_n < -1) bad("penalty window must be >= -1");
  if (p.seed) {
    seed_ = *p.seed;
  } else {
    std::random_device rd;
    seed_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  params_.seed = seed_;
  rng_.seed(seed_);
}

void Sampler::reset() {
  history_.clear();
  rng_.seed(seed_);
}

void Sampler::accept(int32_t token) {
  if (params_.penalty_last_n == 0) return;
  history_.push_back(token);
  // Keep the window bounded (twice its size before compacting, to stay amortised O(1)).
  const auto n = static_cast<size_t>(params_.penalty_last_n);
  if (params_.penalty_last_n > 0 && history_.size() > 2 * n)
    history_.erase(history_.begin(), history_.end() - static_cast<std::ptrdiff_t>(n));
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (logits.empty()) throw Error(ErrorKind::BadInput, "empty logits row");
  std::span<const float> row = logits;
  const bool penalise = !history_.empty() && params_.penalty_last_n != 0 &&
                        (params_.repeat_penalty != 1.f || params_.frequency_penalty != 0.f ||
                         params_.presence_penalty != 0.f);
  if (penalise) {
    scratch_.assign(logits.begin(), logits.end());
    std::span<const int32_t> window = history_;
    if (params_.penalty_last_n > 0 && window.size() > static_cast<size_t>(params_.penalty_last_n))
      window = window.last(static_cast<size_t>(params_.penalty_last_n));
    sampling::apply_penalties(scratch_, window, params_.repeat_penalty, params_.frequency_penalty,
                              params_.presence_penalty);
    row = scratch_;
  }
  if (greedy()) return sampling::argmax(row);

  Candidates c = Candidates::from_logits(row);
  sampling::top_k(c, params_.top_k);
  sampling::top_p(c, params_.top_p);
  sampling::min_p(c, params_.min_p);
  sampling::temperature(c, params_.temperature);
  // Uniform double in [0, 1) from the top 53 bits: identical on every standard library.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  return sampling::draw(c, u);
}

}  // namespace moelab
