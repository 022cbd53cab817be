#include <algorithm>
#include <cmath>

#include "moelab/probes/probes.h"

namespace moelab {

AttentionProbe::AttentionProbe(int n_layer, int n_head, AttentionProbeOptions opts)
    : n_layer_(n_layer), n_head_(n_head), o_(std::move(opts)) {
  head_on_.assign(n_head_, o_.heads.empty() ? 1 : 0);
  for (int h : o_.heads)
    if (h >= 0 && h < n_head_) head_on_[h] = 1;
  stats_.resize(static_cast<size_t>(n_layer_) * n_head_);
  for (int il = 0; il < n_layer_; ++il)
    for (int h = 0; h < n_head_; ++h) {
      stats_[il * n_head_ + h].layer = il;
      stats_[il * n_head_ + h].head = h;
    }
  if (o_.max_row_keys < 1) o_.max_row_keys = 1;
  std::sort(o_.exact_rows.begin(), o_.exact_rows.end());
}

Subscription AttentionProbe::subscription() const {
  Subscription s;
  s.keys = {"kq_soft_max"};
  s.layers = o_.layers.empty() ? std::vector<int>{n_layer_} : o_.layers;  // n_layer_: none
  return s;
}

void AttentionProbe::on_observation(const Observation& o) {
  const int il = o.layer;
  if (il < 0 || il >= n_layer_) return;
  const int H = static_cast<int>(o.shape[0]);
  const int64_t T = o.shape[1], K = o.shape[2];
  const bool mapped = !o.key_pos.empty();
  auto key_position = [&](int64_t i) -> int64_t { return mapped ? o.key_pos[i] : i; };
  // Per-head statistics over every query row of this batch.
  for (int h = 0; h < H && h < n_head_; ++h) {
    AttentionHeadStats& st = stats_[il * n_head_ + h];
    for (int64_t t = 0; t < T; ++t) {
      const float* row = o.data.data() + (h * T + t) * K;
      const int64_t q = static_cast<int64_t>(o.pos0) + t;
      double ent = 0, sink = 0, local = 0, dist = 0;
      for (int64_t i = 0; i < K; ++i) {
        const double p = row[i];
        if (p <= 0) continue;
        ent -= p * std::log(p);
        const int64_t pk = key_position(i);
        if (pk < static_cast<int64_t>(o_.sink_tokens))
          sink += p;
        else if (q - pk < static_cast<int64_t>(o_.local_window))
          local += p;
        else
          dist += p;
      }
      const double n = static_cast<double>(++st.rows);
      st.entropy += (ent - st.entropy) / n;
      st.sink_share += (sink - st.sink_share) / n;
      st.local_share += (local - st.local_share) / n;
      st.distant_share += (dist - st.distant_share) / n;
    }
  }
  // Captured rows.
  auto store = [&](int head, int64_t t, const float* row) {
    const uint32_t pos = o.pos0 + static_cast<uint32_t>(t);
    const bool exact =
        K <= o_.max_row_keys || std::binary_search(o_.exact_rows.begin(), o_.exact_rows.end(), pos);
    AttentionRow r;
    r.layer = il;
    r.head = head;
    r.pos = pos;
    r.n_keys = static_cast<uint32_t>(K);
    if (exact) {
      r.probs.assign(row, row + K);
      if (mapped) r.key_pos.assign(o.key_pos.begin(), o.key_pos.end());
    } else {
      r.bin_size = static_cast<uint32_t>((K + o_.max_row_keys - 1) / o_.max_row_keys);
      r.probs.assign(static_cast<size_t>((K + r.bin_size - 1) / r.bin_size), 0.0f);
      for (int64_t i = 0; i < K; ++i) r.probs[i / r.bin_size] += row[i];
    }
    const size_t b = r.probs.size() * sizeof(float) + r.key_pos.size() * sizeof(int32_t);
    if (bytes_ + b > o_.budget_bytes) {
      ++dropped_;
      return;
    }
    bytes_ += b;
    rows_.push_back(std::move(r));
  };
  for (int64_t t = 0; t < T; ++t) {
    if (o_.head_mean) {
      mean_.assign(K, 0.0f);
      int cnt = 0;
      for (int h = 0; h < H && h < n_head_; ++h) {
        if (!head_on_[h]) continue;
        const float* row = o.data.data() + (h * T + t) * K;
        for (int64_t i = 0; i < K; ++i) mean_[i] += row[i];
        ++cnt;
      }
      if (cnt == 0) continue;
      for (auto& v : mean_) v /= static_cast<float>(cnt);
      store(-1, t, mean_.data());
    } else {
      for (int h = 0; h < H && h < n_head_; ++h)
        if (head_on_[h]) store(h, t, o.data.data() + (h * T + t) * K);
    }
  }
}

std::vector<AttentionHeadStats> AttentionProbe::head_stats() const {
  std::vector<AttentionHeadStats> out;
  for (const auto& s : stats_)
    if (s.rows > 0) out.push_back(s);
  return out;
}

}  // namespace moelab
