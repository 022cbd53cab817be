// policies::Router: the routing decision of every routing policy (see policies.h).
#include <algorithm>
#include <cmath>

#include "moelab/core/error.h"
#include "moelab/ops/ops.h"
#include "moelab/policies/policies.h"

namespace moelab::policies {

Router::Router(const RoutingPolicy& policy, int n_layer, int expert_count, int expert_used_count,
               bool renormalise, bool unit_weights)
    : policy_(policy),
      n_layer_(n_layer),
      n_expert_(expert_count),
      k_model_(expert_used_count),
      renormalise_(renormalise),
      unit_weights_(unit_weights) {
  const std::string subject = "routing policy '" + policy.describe() + "'";
  auto bad = [&](const std::string& why) {
    throw Error(ErrorKind::BadInput, why, {.subject = subject});
  };
  if (n_expert_ <= 0) bad("the model has no experts (not a Mixture-of-Experts model)");
  auto check_k = [&](int k, const char* what) {
    if (k < 1 || k > n_expert_)
      bad(std::string(what) + " " + std::to_string(k) + " is outside 1.." +
          std::to_string(n_expert_) + " (expert_count)");
  };
  switch (policy_.rule) {
    case RoutingRule::Default:
      max_k_ = k_model_;
      break;
    case RoutingRule::FixedK:
      check_k(policy_.k, "k");
      max_k_ = policy_.k;
      break;
    case RoutingRule::TopP:
    case RoutingRule::Entropy:
      if (policy_.max_k == 0) policy_.max_k = n_expert_;
      check_k(policy_.min_k, "min");
      check_k(policy_.max_k, "max");
      max_k_ = policy_.max_k;
      break;
  }
  unavailable_.assign(static_cast<size_t>(n_layer_) * n_expert_, 0);
  failed_.assign(n_expert_, 0);
  for (const auto& [layer, e] : policy_.masked) {
    if (e >= n_expert_)
      bad("masked expert " + std::to_string(e) + " does not exist (expert_count " +
          std::to_string(n_expert_) + ")");
    if (layer >= n_layer_)
      bad("layer " + std::to_string(layer) + " does not exist (n_layer " +
          std::to_string(n_layer_) + ")");
    for (int il = 0; il < n_layer_; ++il)
      if (layer < 0 || layer == il) unavailable_[static_cast<size_t>(il) * n_expert_ + e] = 1;
  }
  for (int e : policy_.failed) {
    if (e >= n_expert_)
      bad("failed expert " + std::to_string(e) + " does not exist (expert_count " +
          std::to_string(n_expert_) + ")");
    failed_[e] = 1;
    for (int il = 0; il < n_layer_; ++il) unavailable_[static_cast<size_t>(il) * n_expert_ + e] = 1;
  }
  load_.assign(n_expert_, 0);
  order_.resize(n_expert_);
}

void Router::route(int layer, int64_t n, const float* logits, float* probs, int32_t* ids,
                   float* weights, float* applied, PolicyStats& stats) {
  const int nx = n_expert_, K = max_k_;
  if (stats.failovers.size() < static_cast<size_t>(n_layer_)) {
    stats.failovers.resize(n_layer_);
    stats.overflows.resize(n_layer_);
  }
  const uint8_t* unavail = unavailable_.data() + static_cast<size_t>(layer) * nx;
  std::fill(load_.begin(), load_.end(), 0);
  for (int64_t t = 0; t < n; ++t) {
    float* pr = probs + t * nx;
    int32_t* id = ids + t * K;
    float* w = weights + t * K;
    float* a = applied + t * K;
    for (int e = 0; e < nx; ++e) pr[e] = logits[e + t * nx];
    ops::softmax(pr, 1, nx);
    // Descending probability, ties to the lower id (as ggml_top_k / ops::route_top_k).
    for (int e = 0; e < nx; ++e) order_[e] = e;
    std::stable_sort(order_.begin(), order_.end(),
                     [pr](int32_t x, int32_t y) { return pr[x] > pr[y]; });
    // How many experts the base rule wants.
    int want = k_model_;
    switch (policy_.rule) {
      case RoutingRule::Default:
        want = k_model_;
        break;
      case RoutingRule::FixedK:
        want = policy_.k;
        break;
      case RoutingRule::TopP: {
        if (policy_.p >= 1.0) {
          want = nx;
        } else {
          double mass = 0;
          want = 0;
          while (want < nx && mass < policy_.p) mass += pr[order_[want++]];
        }
        want = std::clamp(want, policy_.min_k, policy_.max_k);
        break;
      }
      case RoutingRule::Entropy: {
        double h = 0;
        for (int e = 0; e < nx; ++e)
          if (pr[e] > 0) h -= static_cast<double>(pr[e]) * std::log(static_cast<double>(pr[e]));
        const double frac = nx > 1 ? h / std::log(static_cast<double>(nx)) : 0.0;
        want =
            policy_.min_k + static_cast<int>(std::lround((policy_.max_k - policy_.min_k) * frac));
        want = std::clamp(want, policy_.min_k, policy_.max_k);
        break;
      }
    }
    // Fail-overs: failed experts among the ones the base rule picked.
    for (int j = 0; j < want; ++j)
      if (failed_[order_[j]]) ++stats.failovers[layer];
    // Walk the ranking, skipping unavailable and full experts.
    int got = 0;
    bool overflowed = false;
    for (int j = 0; j < nx && got < want; ++j) {
      const int e = order_[j];
      if (unavail[e]) continue;
      if (policy_.capacity > 0 && load_[e] >= policy_.capacity) {
        overflowed = true;
        continue;
      }
      ++load_[e];
      id[got++] = e;
    }
    if (overflowed) ++stats.overflows[layer];
    float sum = 0;
    for (int j = 0; j < got; ++j) {
      w[j] = pr[id[j]];
      sum += w[j];
    }
    for (int j = 0; j < got; ++j) a[j] = unit_weights_ ? 1.0f : renormalise_ ? w[j] / sum : w[j];
    for (int j = got; j < K; ++j) {
      id[j] = -1;
      w[j] = 0;
      a[j] = 0;
    }
    ++stats.routed;
    stats.active += static_cast<uint64_t>(got);
  }
}

}  // namespace moelab::policies
