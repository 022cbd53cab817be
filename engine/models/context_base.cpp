#include "models/context_base.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <mutex>
#include <string>

#include "backend/backend.h"
#include "moelab/core/error.h"

namespace moelab::models {

RouterGating router_gating(const ArchConfig& c) {
  RouterGating g;
  g.renormalise = c.moe_renormalise;
  g.unit_weights = c.moe_unit_weights;
  g.sigmoid = c.moe_sigmoid;
  g.softmax_selected = c.moe_softmax_selected;
  g.scale = c.moe_weights_scale;
  g.n_group = c.expert_groups;
  g.n_group_used = c.expert_groups_used;
  return g;
}

ContextBase::ContextBase(const ModelCard& card, const ArchConfig& cfg, const ContextParams& p,
                         std::shared_ptr<PolicyStats> shared_stats)
    : card_(card),
      cfg_(cfg),
      n_ctx_(p.n_ctx),
      kv_f16_(p.kv_type == KvType::F16),
      routing_(p.routing),
      attention_policy_(p.attention),
      shared_stats_(std::move(shared_stats)) {
  init_router(router_, routing_, card_, router_gating(cfg_));
  evicting_ = evicting_policy(attention_policy_, n_ctx_);
  stats_.failovers.assign(card_.n_layer, 0);
  stats_.overflows.assign(card_.n_layer, 0);
}

ContextBase::~ContextBase() {
  try {
    flush_shared_stats();
  } catch (...) {  // a failing mutex must not escape a destructor
  }
}

std::span<const float> ContextBase::logits(int i) const {
  const int64_t row = logits_row(i, n_logits_, n_batch_, logits_all_);
  return {logits_.data() + row * card_.n_vocab, card_.n_vocab};
}

uint32_t ContextBase::n_ctx() const {
  return evicting_ ? uint32_t{INT32_MAX} : n_ctx_;
}

void ContextBase::truncate(uint32_t n) {
  if (n >= n_past_) return;
  n_past_ = n;
  if (evicting_) {
    while (!cell_pos_.empty() && static_cast<uint32_t>(cell_pos_.back()) >= n) cell_pos_.pop_back();
  }
}

void ContextBase::set_observer(Observer observer, std::vector<std::string> names) {
  const uint64_t mask = observer_mask(names);
  observer_ = observer && mask ? std::move(observer) : Observer{};
  wanted_ = observer_ ? mask : 0;
}

void ContextBase::reset_policy_stats() {
  flush_shared_stats();
  stats_ = PolicyStats{};
  stats_.failovers.assign(card_.n_layer, 0);
  stats_.overflows.assign(card_.n_layer, 0);
  flushed_ = PolicyStats{};
}

// Adds what happened since the last flush to the shared stats (ContextParams::policy_stats).
void ContextBase::flush_shared_stats() {
  if (!shared_stats_) return;
  PolicyStats d = stats_;
  for (size_t i = 0; i < d.failovers.size() && i < flushed_.failovers.size(); ++i) {
    d.failovers[i] -= flushed_.failovers[i];
    d.overflows[i] -= flushed_.overflows[i];
  }
  d.routed -= flushed_.routed;
  d.active -= flushed_.active;
  d.evicted -= flushed_.evicted;
  {
    std::lock_guard<std::mutex> lock(backend::shared_stats_mutex());
    shared_stats_->merge(d);
  }
  flushed_ = stats_;
}

void ContextBase::check_cancel() {
  if (cancel_.exchange(false)) throw Error(ErrorKind::Cancelled, "evaluation was cancelled");
}

void ContextBase::begin_eval(std::span<const int32_t> tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) throw Error(ErrorKind::BadInput, "eval needs at least one token");
  for (int64_t t = 0; t < n; ++t)
    if (tokens[t] < 0 || static_cast<uint32_t>(tokens[t]) >= card_.n_vocab)
      throw Error(ErrorKind::BadInput, "token id " + std::to_string(tokens[t]) + " (batch index " +
                                           std::to_string(t) + ") is outside the vocabulary (0.." +
                                           std::to_string(card_.n_vocab - 1) + ")");
  if (evicting_) {
    if (static_cast<uint64_t>(n_past_) + static_cast<uint64_t>(n) > INT32_MAX)
      throw Error(ErrorKind::BadInput, "positions past INT32_MAX");
    evict_for(n);
  } else if (static_cast<uint64_t>(n_past_) + static_cast<uint64_t>(n) > n_ctx_)
    throw Error(ErrorKind::BadInput,
                "the batch of " + std::to_string(n) + " tokens does not fit in the KV cache (" +
                    std::to_string(n_past_) + " of " + std::to_string(n_ctx_) + " positions used)");
  check_cancel();
  pos_.resize(n);
  for (int64_t t = 0; t < n; ++t) pos_[t] = static_cast<int32_t>(n_past_ + t);
}

void ContextBase::check_logits(int64_t n, int64_t n_out) const {
  check_finite_logits(logits_.data(), n_out, card_.n_vocab, n_past_, n, model().file());
}

void ContextBase::commit_eval(int64_t n, int64_t n_out, bool all_logits) {
  if (evicting_)
    for (int64_t t = 0; t < n; ++t) cell_pos_.push_back(pos_[t]);
  n_past_ += static_cast<uint32_t>(n);
  n_logits_ = n_out;
  n_batch_ = n;
  logits_all_ = all_logits;
}

// StreamingLLM eviction (Xiao et al. 2023, arXiv:2309.17453): drop the cells no query at a
// position >= n_past can see (neither a sink nor within the local window), compacting the cache
// in position order. Kept cells move in runs (move_cells), each to a lower cell.
void ContextBase::evict_for(int64_t n) {
  if (cell_pos_.size() + static_cast<size_t>(n) <= n_ctx_) return;
  const int64_t S = attention_policy_.sinks, W = attention_policy_.window;
  size_t kept = 0;
  size_t run_src = 0, run_dst = 0, run_len = 0;
  for (size_t i = 0; i < cell_pos_.size(); ++i) {
    const int64_t p = cell_pos_[i];
    if (!(p < S || static_cast<int64_t>(n_past_) - p < W)) continue;
    if (kept != i) {
      if (run_len > 0 && run_src + run_len == i && run_dst + run_len == kept) {
        ++run_len;
      } else {
        if (run_len > 0) move_cells(run_dst, run_src, run_len);
        run_src = i;
        run_dst = kept;
        run_len = 1;
      }
    }
    cell_pos_[kept++] = static_cast<int32_t>(p);
  }
  if (run_len > 0) move_cells(run_dst, run_src, run_len);
  stats_.evicted += cell_pos_.size() - kept;
  cell_pos_.resize(kept);
  if (kept + static_cast<size_t>(n) > n_ctx_)
    throw Error(ErrorKind::BadInput,
                "the batch of " + std::to_string(n) + " tokens does not fit in the KV cache (" +
                    std::to_string(kept) + " of " + std::to_string(n_ctx_) +
                    " cells kept after eviction)",
                {.subject = "attention policy '" + attention_policy_.describe() + "'"});
}

int64_t ContextBase::kv_cell0() const {
  return evicting_ ? static_cast<int64_t>(cell_pos_.size()) : n_past_;
}

const std::vector<int32_t>& ContextBase::key_positions(int64_t n) {
  key_pos_.assign(cell_pos_.begin(), cell_pos_.end());
  for (int64_t t = 0; t < n; ++t) key_pos_.push_back(pos_[t]);
  return key_pos_;
}

AttentionSetup ContextBase::attention_setup(int il) const {
  AttentionSetup a;
  ops::AttentionParams& p = a.params;
  p.n_head = static_cast<int>(card_.n_head);
  p.n_head_kv = static_cast<int>(card_.n_head_kv);
  p.head_dim = static_cast<int>(card_.head_dim);
  p.head_dim_v = static_cast<int>(card_.head_dim_v);
  p.scale =
      cfg_.attn_scale > 0 ? cfg_.attn_scale : 1.0f / std::sqrt(static_cast<float>(card_.head_dim));
  if (cfg_.scale_q) {  // Q scaled (one rounding per element), then K·Q unscaled
    a.q_scale = p.scale;
    p.scale = 1.0f;
  }
  p.softcap = cfg_.attn_softcap;
  p.window = (cfg_.swa_period > 0 && il % static_cast<int>(cfg_.swa_period) == 0)
                 ? cfg_.sliding_window
                 : 0;
  if (attention_policy_.rule == AttentionRule::Window)
    p.window =
        p.window > 0 ? std::min(p.window, attention_policy_.window) : attention_policy_.window;
  return a;
}

bool ContextBase::policy_masked() const {
  return attention_policy_.rule != AttentionRule::Full &&
         attention_policy_.rule != AttentionRule::Window;
}

size_t ContextBase::k_cell_bytes() const {
  return static_cast<size_t>(card_.n_head_kv) * card_.head_dim * (kv_f16_ ? 2 : 4);
}

size_t ContextBase::v_cell_bytes() const {
  if (cfg_.mla) return 0;  // V is read from the K rows (absorbed MLA: V = c_kv)
  return static_cast<size_t>(card_.n_head_kv) * card_.head_dim_v * (kv_f16_ ? 2 : 4);
}

Observation ContextBase::observation(Key k, int layer, int64_t d0, int64_t d1, int64_t d2) const {
  Observation o;
  o.name = observable_names()[k];
  o.layer = layer;
  o.pos0 = n_past_;
  o.shape[0] = d0;
  o.shape[1] = d1;
  o.shape[2] = d2 > 0 ? d2 : 1;
  o.n_dims = d2 > 0 ? 3 : 2;
  return o;
}

void ContextBase::count_routing(int64_t n, int k) {
  stats_.routed += static_cast<uint64_t>(n);
  stats_.active += static_cast<uint64_t>(n * k);
}

}  // namespace moelab::models
