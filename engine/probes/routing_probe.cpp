#include <algorithm>
#include <cmath>
#include <cstring>

#include "moelab/probes/probes.h"

namespace moelab {

RouterScores router_scores_of(const std::string& router_gating) {
  if (router_gating == "sigmoid") return RouterScores::kSigmoid;
  if (router_gating == "softmax_over_topk") return RouterScores::kLogits;
  return RouterScores::kProbabilities;
}

RoutingProbe::RoutingProbe(int n_layer, int expert_count, bool keep_records, RouterScores scores)
    : n_layer_(n_layer), nx_(expert_count), keep_(keep_records), scores_(scores) {
  clear();
}

void RoutingProbe::clear() {
  pos_.clear();
  layer_.clear();
  n_sel_.clear();
  experts_.clear();
  weights_.clear();
  probs_.clear();
  entropy_.clear();
  margin_.clear();
  selection_.clear();
  groups_.clear();
  gcount_ = 0;
  sel_ok_ = groups_ok_ = true;
  tokens_.assign(n_layer_, 0);
  active_.assign(n_layer_, 0);
  load_.assign(n_layer_, std::vector<uint64_t>(nx_, 0));
  coact_.assign(n_layer_, std::vector<uint64_t>(static_cast<size_t>(nx_) * nx_, 0));
  entropy_sum_.assign(n_layer_, 0.0);
  cur_layer_ = -1;
}

Subscription RoutingProbe::subscription() const {
  // ffn_moe_out arrives after every routing tensor of the layer: it closes the batch (it is
  // handed over by pointer, not copied).
  return {{"ffn_moe_probs", "ffn_moe_topk", "ffn_moe_weights", "ffn_moe_weights_norm",
           "ffn_moe_weights_scaled", "ffn_moe_weights_softmax", "ffn_moe_probs_biased",
           "ffn_moe_group_topk", "ffn_moe_out"},
          {},
          false};
}

void RoutingProbe::on_observation(const Observation& o) {
  const int64_t n = o.shape[0];
  auto grab = [&](std::vector<float>& dst) { dst.assign(o.data.begin(), o.data.end()); };
  if (o.name == "ffn_moe_probs") {
    cur_layer_ = o.layer;
    cur_pos0_ = o.pos0;
    cur_n_ = n;
    have_wn_ = false;
    b_sel_.clear();
    b_groups_.clear();
    b_gcount_ = 0;
    grab(b_probs_);
  } else if (o.name == "ffn_moe_topk") {
    cur_k_ = static_cast<int>(o.shape[1]);
    grab(b_ids_);
  } else if (o.name == "ffn_moe_weights") {
    grab(b_w_);
  } else if (o.name == "ffn_moe_weights_norm" || o.name == "ffn_moe_weights_scaled" ||
             o.name == "ffn_moe_weights_softmax") {
    // The weights applied: renormalised, (routed scale) renormalised and scaled, or (gpt-oss)
    // the softmax over the selected logits.
    grab(b_wn_);
    have_wn_ = true;
  } else if (o.name == "ffn_moe_probs_biased") {
    grab(b_sel_);
  } else if (o.name == "ffn_moe_group_topk") {
    b_gcount_ = static_cast<int>(o.shape[1]);
    grab(b_groups_);
  } else if (o.name == "ffn_moe_out") {
    if (cur_layer_ == o.layer && cur_pos0_ == o.pos0) finish_batch();
    cur_layer_ = -1;
  }
}

void RoutingProbe::finish_batch() {
  const int il = cur_layer_, K = cur_k_;
  if (il < 0 || il >= n_layer_ || K <= 0) return;
  if (keep_ && K > kmax_) {
    // Re-lay existing records out with more slots (a context's k never changes; this only
    // happens when one probe sees contexts with different policies).
    const size_t nrec = pos_.size();
    std::vector<int32_t> ex(nrec * K, -1);
    std::vector<float> w(nrec * K, 0.0f);
    for (size_t r = 0; r < nrec; ++r)
      for (int j = 0; j < kmax_; ++j) {
        ex[r * K + j] = experts_[r * kmax_ + j];
        w[r * K + j] = weights_[r * kmax_ + j];
      }
    experts_.swap(ex);
    weights_.swap(w);
    kmax_ = K;
  } else if (!keep_) {
    kmax_ = std::max(kmax_, K);
  }
  const std::vector<float>& applied = have_wn_ ? b_wn_ : b_w_;
  auto& load = load_[il];
  auto& co = coact_[il];
  for (int64_t t = 0; t < cur_n_; ++t) {
    const float* pr = b_probs_.data() + t * nx_;
    // The distribution q the entropy and margin are taken over (RouterScores).
    q_.assign(pr, pr + nx_);
    if (scores_ == RouterScores::kSigmoid) {
      double sum = 0;
      for (double s : q_) sum += s > 0 ? s : 0;
      for (double& s : q_) s = sum > 0 && s > 0 ? s / sum : 0;
    } else if (scores_ == RouterScores::kLogits) {
      double mx = -INFINITY, sum = 0;
      for (double s : q_) mx = std::max(mx, s);
      for (double& s : q_) sum += (s = std::isfinite(mx) ? std::exp(s - mx) : 0);
      for (double& s : q_) s = sum > 0 ? s / sum : 0;
    }
    double h = 0;
    double p1 = 0, p2 = 0;
    for (int e = 0; e < nx_; ++e) {
      const double p = q_[e];
      if (p > 0) h -= p * std::log(p);
      if (p > p1) {
        p2 = p1;
        p1 = p;
      } else if (p > p2) {
        p2 = p;
      }
    }
    int sel = 0;
    sel_.resize(K);
    int32_t* ids = sel_.data();
    for (int j = 0; j < K; ++j) {
      const int id = static_cast<int>(b_ids_[t * K + j]);
      if (id < 0) continue;
      ids[sel++] = id;
    }
    ++tokens_[il];
    active_[il] += static_cast<uint64_t>(sel);
    entropy_sum_[il] += h;
    for (int a = 0; a < sel; ++a) {
      ++load[ids[a]];
      for (int b = 0; b < sel; ++b)
        if (a != b) ++co[static_cast<size_t>(ids[a]) * nx_ + ids[b]];
    }
    if (!keep_) continue;
    pos_.push_back(cur_pos0_ + static_cast<uint32_t>(t));
    layer_.push_back(il);
    n_sel_.push_back(static_cast<uint8_t>(sel));
    const size_t base = experts_.size();
    experts_.resize(base + kmax_, -1);
    weights_.resize(base + kmax_, 0.0f);
    int s = 0;
    for (int j = 0; j < K; ++j) {
      if (b_ids_[t * K + j] < 0) continue;
      experts_[base + s] = static_cast<int32_t>(b_ids_[t * K + j]);
      weights_[base + s] = applied[t * K + j];
      ++s;
    }
    probs_.insert(probs_.end(), pr, pr + nx_);
    // Selection scores and kept groups: kept while every record so far has them.
    const size_t nrec = pos_.size() - 1;
    const bool has_sel = b_sel_.size() == static_cast<size_t>(cur_n_) * nx_;
    if (sel_ok_ && has_sel && selection_.size() == nrec * nx_)
      selection_.insert(selection_.end(), b_sel_.begin() + t * nx_, b_sel_.begin() + (t + 1) * nx_);
    else
      sel_ok_ = false;
    const bool has_g = b_gcount_ > 0 && b_groups_.size() == static_cast<size_t>(cur_n_) * b_gcount_;
    if (groups_ok_ && has_g && (nrec == 0 || gcount_ == b_gcount_)) {
      gcount_ = b_gcount_;
      for (int j = 0; j < b_gcount_; ++j)
        groups_.push_back(static_cast<int32_t>(b_groups_[t * b_gcount_ + j]));
    } else {
      groups_ok_ = false;
    }
    entropy_.push_back(static_cast<float>(h));
    margin_.push_back(static_cast<float>(p1 - p2));
  }
}

RoutingRecordView RoutingProbe::record(size_t i) const {
  RoutingRecordView v;
  v.pos = pos_[i];
  v.layer = layer_[i];
  v.experts = {experts_.data() + i * kmax_, n_sel_[i]};
  v.weights = {weights_.data() + i * kmax_, n_sel_[i]};
  v.probs = {probs_.data() + i * nx_, static_cast<size_t>(nx_)};
  if (sel_ok_ && selection_.size() == pos_.size() * nx_)
    v.selection = {selection_.data() + i * nx_, static_cast<size_t>(nx_)};
  if (groups_ok_ && gcount_ > 0 && groups_.size() == pos_.size() * gcount_)
    v.groups = {groups_.data() + i * gcount_, static_cast<size_t>(gcount_)};
  v.entropy = entropy_[i];
  v.top1_margin = margin_[i];
  return v;
}

std::vector<RoutingLayerStats> RoutingProbe::layer_stats() const {
  std::vector<RoutingLayerStats> out;
  for (int il = 0; il < n_layer_; ++il) {
    if (tokens_[il] == 0) continue;
    RoutingLayerStats s;
    s.layer = il;
    s.tokens = tokens_[il];
    s.load = load_[il];
    s.coactivation = coact_[il];
    double sum = 0, sq = 0;
    for (uint64_t l : s.load) {
      s.coverage += l > 0;
      sum += static_cast<double>(l);
    }
    const double mean = sum / nx_;
    for (uint64_t l : s.load)
      sq += (static_cast<double>(l) - mean) * (static_cast<double>(l) - mean);
    s.load_cv = mean > 0 ? std::sqrt(sq / nx_) / mean : 0.0;
    s.mean_entropy = entropy_sum_[il] / static_cast<double>(tokens_[il]);
    s.avg_active = static_cast<double>(active_[il]) / static_cast<double>(tokens_[il]);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace moelab
