// policies::Router: the routing decision of every routing policy (see policies.h).
#include <algorithm>
#include <cmath>

#include "moelab/core/error.h"
#include "moelab/ops/ops.h"
#include "moelab/policies/policies.h"
#include "ops/element/element.h"

namespace moelab::policies {

namespace {
RouterGating softmax_gating(bool renormalise, bool unit_weights) {
  RouterGating g;
  g.renormalise = renormalise;
  g.unit_weights = unit_weights;
  return g;
}
}  // namespace

Router::Router(const RoutingPolicy& policy, int n_layer, int expert_count, int expert_used_count,
               bool renormalise, bool unit_weights)
    : Router(policy, n_layer, expert_count, expert_used_count,
             softmax_gating(renormalise, unit_weights)) {}

Router::Router(const RoutingPolicy& policy, int n_layer, int expert_count, int expert_used_count,
               const RouterGating& gating)
    : policy_(policy),
      n_layer_(n_layer),
      n_expert_(expert_count),
      k_model_(expert_used_count),
      gating_(gating) {
  const std::string subject = "routing policy '" + policy.describe() + "'";
  auto bad = [&](const std::string& why) {
    throw Error(ErrorKind::BadInput, why, {.subject = subject});
  };
  if (n_expert_ <= 0) bad("the model has no experts (not a Mixture-of-Experts model)");
  if (gating_.n_group > 1) {
    if (n_expert_ % gating_.n_group != 0)
      bad("expert_count " + std::to_string(n_expert_) + " is not a multiple of the " +
          std::to_string(gating_.n_group) + " expert groups");
    if (gating_.n_group_used < 1 || gating_.n_group_used > gating_.n_group)
      bad("expert_group_used_count " + std::to_string(gating_.n_group_used) + " is outside 1.." +
          std::to_string(gating_.n_group));
  }
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
  masked_only_.assign(n_expert_, 0);
  q_.resize(n_expert_);
  sel_tmp_.resize(n_expert_);
  gscore_.resize(std::max(gating_.n_group, 0));
  gorder_.resize(std::max(gating_.n_group, 0));
}

void Router::rank(const float* sel, const uint8_t* removed) {
  const int nx = n_expert_;
  // Descending selection score, ties to the lower id (as ggml_top_k / el::top_k).
  auto by_score = [sel](int32_t x, int32_t y) { return sel[x] > sel[y]; };
  for (int e = 0; e < nx; ++e) order_[e] = e;
  if (gating_.n_group <= 1) {
    std::stable_sort(order_.begin(), order_.end(), by_score);
    return;
  }
  // Group scores as el::top_groups (the sum of the group's 2 largest scores, added in that
  // order), over the experts not removed; a group with none left scores -inf.
  const int ng = gating_.n_group, per = nx / ng;
  for (int g = 0; g < ng; ++g) {
    int best[2] = {-1, -1};
    for (int i = g * per; i < (g + 1) * per; ++i) {
      if (removed[i]) continue;
      if (best[0] < 0 || sel[i] > sel[best[0]]) {
        best[1] = best[0];
        best[0] = i;
      } else if (best[1] < 0 || sel[i] > sel[best[1]]) {
        best[1] = i;
      }
    }
    float sum = 0;
    for (int j = 0; j < 2; ++j)
      if (best[j] >= 0) sum += sel[best[j]];
    gscore_[g] = best[0] < 0 ? -INFINITY : sum;
    gorder_[g] = g;
  }
  std::stable_sort(gorder_.begin(), gorder_.end(),
                   [this](int32_t x, int32_t y) { return gscore_[x] > gscore_[y]; });
  // The kept groups' experts merged by score, then each further group in group order.
  int n = 0;
  auto append_group = [&](int g) {
    for (int i = g * per; i < (g + 1) * per; ++i) order_[n++] = i;
  };
  const int nu = gating_.n_group_used;
  for (int j = 0; j < nu; ++j) append_group(gorder_[j]);
  // Stable over ascending ids: merge the kept groups' ids in id order first.
  std::sort(order_.begin(), order_.begin() + n);
  std::stable_sort(order_.begin(), order_.begin() + n, by_score);
  for (int j = nu; j < ng; ++j) {
    const int start = n;
    append_group(gorder_[j]);
    std::stable_sort(order_.begin() + start, order_.begin() + n, by_score);
  }
}

void Router::route(int layer, int64_t n, const float* logits, float* probs, int32_t* ids,
                   float* weights, float* applied, PolicyStats& stats, const float* sel_bias,
                   float* selection) {
  namespace el = ops::element;
  const int nx = n_expert_, K = max_k_;
  if (stats.failovers.size() < static_cast<size_t>(n_layer_)) {
    stats.failovers.resize(n_layer_);
    stats.overflows.resize(n_layer_);
  }
  const uint8_t* unavail = unavailable_.data() + static_cast<size_t>(layer) * nx;
  bool any_failed = false;
  for (int e = 0; e < nx; ++e) {
    masked_only_[e] = unavail[e] && !failed_[e];
    any_failed = any_failed || failed_[e];
  }
  const bool grouped = gating_.n_group > 1;
  std::fill(load_.begin(), load_.end(), 0);
  for (int64_t t = 0; t < n; ++t) {
    float* pr = probs + t * nx;
    int32_t* id = ids + t * K;
    float* w = weights + t * K;
    float* a = applied + t * K;
    // Gate scores s (as el::route_token_gated) and the distribution q of top-p / entropy.
    for (int e = 0; e < nx; ++e) pr[e] = logits[e + t * nx];
    const float* q = pr;
    if (gating_.softmax_selected) {
      for (int e = 0; e < nx; ++e) q_[e] = pr[e];
      el::softmax_row(q_.data(), nx);
      q = q_.data();
    } else if (gating_.sigmoid) {
      double total = 0;
      for (int e = 0; e < nx; ++e) {
        pr[e] = el::sigmoid(pr[e]);
        total += pr[e];
      }
      for (int e = 0; e < nx; ++e) q_[e] = static_cast<float>(pr[e] / total);
      q = q_.data();
    } else {
      ops::softmax(pr, 1, nx);
    }
    const float* sel = pr;
    if (sel_bias) {
      float* s = selection ? selection + t * nx : sel_tmp_.data();
      for (int e = 0; e < nx; ++e) s[e] = pr[e] + sel_bias[e];
      sel = s;
    }
    // The ranking of the base rule: masked experts removed from the group choice.
    rank(sel, masked_only_.data());
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
          while (want < nx && mass < policy_.p) mass += q[order_[want++]];
        }
        want = std::clamp(want, policy_.min_k, policy_.max_k);
        break;
      }
      case RoutingRule::Entropy: {
        double h = 0;
        for (int e = 0; e < nx; ++e)
          if (q[e] > 0) h -= static_cast<double>(q[e]) * std::log(static_cast<double>(q[e]));
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
    // Failed experts count for no group: the groups are chosen again without them.
    if (grouped && any_failed) rank(sel, unavail);
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
    // Weights: the chosen experts' gate scores, normalised as the architecture does
    // (el::route_token_gated's operations, so the default rule is bit-equal to no policy).
    float sum = 0;
    for (int j = 0; j < got; ++j) {
      w[j] = pr[id[j]];
      sum += w[j];
    }
    if (gating_.softmax_selected) {
      for (int j = 0; j < got; ++j) a[j] = w[j];
      if (got > 0) el::softmax_row(a, got);
      sum = 0;
      for (int j = 0; j < got; ++j) sum += a[j];
      for (int j = 0; j < got; ++j) {
        if (gating_.unit_weights)
          a[j] = 1.0f;
        else if (gating_.renormalise)
          a[j] = a[j] / sum;
        if (gating_.scale > 0) a[j] *= gating_.scale;
      }
    } else {
      for (int j = 0; j < got; ++j) {
        a[j] = gating_.unit_weights ? 1.0f : gating_.renormalise ? w[j] / sum : w[j];
        if (gating_.scale > 0) a[j] *= gating_.scale;
      }
    }
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
