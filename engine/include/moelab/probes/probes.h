// Probes: subscribers to a Context's intermediates and op timings.
//
// A ProbeHub sits on one Context. Each Subscriber first says what it wants (intermediate keys
// from Context::observable_names(), layers, heads, whether it wants op timings); the hub
// installs ONE observer for the union of the keys, so tensors nobody asked for are neither
// computed for observation nor copied (the forward pass tests a bit mask), and with no
// subscriber the context runs exactly as without probes. The hub then hands each observation
// only to the subscribers that asked for that key and layer. Probes never change a logit
// (test_probes checks bit equality).
//
// Three probes come with the engine:
//  * RoutingProbe   per token x MoE layer: router probabilities over all experts, selected
//                   experts, the weights applied; per token router entropy (nats) and top-1
//                   margin (p1 - p2); per layer: expert load histogram, coverage, co-activation
//                   matrix, mean router entropy, load-balance coefficient of variation (std /
//                   mean of the load histogram, population std; Shazeer et al. 2017 use CV^2 as
//                   their importance loss).
//  * AttentionProbe query rows of attention probabilities (kq_soft_max) for chosen layers and
//                   heads (or the mean over heads), within a memory budget; per head entropy and
//                   the shares of mass on sink tokens, the local window and distant tokens.
//  * TimingProbe    TTFT, TPOT, per layer and op (µs, steady clock) and per eval breakdowns.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moelab/model/model.h"

namespace moelab {

struct Subscription {
  std::vector<std::string> keys;  // Context::observable_names() entries
  std::vector<int> layers;        // empty: every layer (layer -1 tensors always pass)
  bool timing = false;            // wants on_op_time / on_eval
};

class Subscriber {
 public:
  virtual ~Subscriber() = default;
  virtual Subscription subscription() const = 0;
  /// One requested intermediate (valid only during the call).
  virtual void on_observation(const Observation&) {}
  virtual void on_op_time(const OpTime&) {}
  /// After each ProbeHub::eval: batch start position, size and wall time (ns).
  virtual void on_eval(uint32_t /*pos0*/, int64_t /*n*/, int64_t /*ns*/) {}
};

/// Fans one Context's observer and op timer out to subscribers. Detaches on destruction.
/// Not thread-safe (use from the thread that evaluates).
class ProbeHub {
 public:
  explicit ProbeHub(Context& ctx);
  ~ProbeHub();
  ProbeHub(const ProbeHub&) = delete;
  ProbeHub& operator=(const ProbeHub&) = delete;

  /// Adds a subscriber and re-installs the context's observer for the union of all keys.
  /// Throws moelab::Error (BadInput) for an unknown key.
  void add(std::shared_ptr<Subscriber> s);
  void remove(const Subscriber* s);
  /// Context::eval, timed (steady clock) for subscribers that want timing.
  void eval(std::span<const int32_t> tokens, bool all_logits = false);
  Context& context() { return ctx_; }
  /// The keys currently requested from the context.
  const std::vector<std::string>& keys() const { return keys_; }

 private:
  void install();
  struct Entry {
    std::shared_ptr<Subscriber> sub;
    Subscription want;
    uint64_t key_mask = 0;
    std::vector<uint8_t> layer_ok;  // empty: all
  };
  Context& ctx_;
  std::vector<Entry> subs_;
  std::vector<std::string> keys_;
  bool timing_ = false;
};

/// One (token, layer) routing decision, as views into RoutingProbe's flat storage.
struct RoutingRecordView {
  uint32_t pos = 0;
  int layer = 0;
  std::span<const int32_t> experts;  // selected, descending probability (variable-k: no -1s)
  std::span<const float> weights;    // applied to the experts' outputs
  /// The router's scores over all experts [expert_count]: softmax probabilities, or for
  /// sigmoid-gated routers (glm4moe) sigmoid scores that need not sum to 1, or for a
  /// softmax-over-selected router (gpt-oss) the router logits plus the router bias (llama.cpp's
  /// ffn_moe_probs: scores, not probabilities - any sign; the weights are the softmax over the
  /// k selected ones). entropy and top1_margin are taken over the distribution q of
  /// moelab/policies/policies.h ("Gated routers"), the one top-p and entropy policies use:
  /// softmax routers q = probs; sigmoid q = probs / sum(probs); softmax over the selected
  /// q = softmax(probs) over every expert (RouterScores, given to the probe).
  std::span<const float> probs;
  /// Routers with a selection-only bias (deepseek2 V3-style, glm4moe): the scores the choice
  /// was made on, probs + bias [expert_count]; empty otherwise.
  std::span<const float> selection;
  /// Group-limited routers: the expert groups kept for this token (descending group score;
  /// group g = experts g*expert_count/n_group ..); empty otherwise.
  std::span<const int32_t> groups;
  float entropy = 0;      // nats, of q (see probs), in [0, ln expert_count]
  float top1_margin = 0;  // q(top-1) - q(top-2), in [0, 1]
};

/// What a router's scores (ffn_moe_probs) are: how RoutingProbe turns them into the distribution
/// q its entropy and top-1 margin are taken over (policies.h, "Gated routers").
enum class RouterScores {
  kProbabilities,  // softmax routers (and moefied "unit" gating): q = the scores
  kSigmoid,        // sigmoid gating (DeepSeek-V3, GLM-4.5): q = s / sum(s)
  kLogits,         // softmax over the selected (gpt-oss): q = softmax(logits) over every expert
};
/// From ModelCard::router_gating ("softmax", "sigmoid", "softmax_over_topk", "unit", "").
RouterScores router_scores_of(const std::string& router_gating);

struct RoutingLayerStats {
  int layer = 0;
  uint64_t tokens = 0;
  std::vector<uint64_t> load;          // [expert_count] tokens routed to each expert
  std::vector<uint64_t> coactivation;  // [expert_count * expert_count] tokens routed to both
  int coverage = 0;                    // experts used at least once
  double mean_entropy = 0;             // nats
  double load_cv = 0;                  // std / mean of `load` (0 when no tokens)
  double avg_active = 0;               // experts per token
};

class RoutingProbe final : public Subscriber {
 public:
  /// keep_records = false keeps only the per-layer aggregates (constant memory).
  /// scores: what the router's scores are (router_scores_of(card.router_gating)).
  RoutingProbe(int n_layer, int expert_count, bool keep_records = true,
               RouterScores scores = RouterScores::kProbabilities);
  Subscription subscription() const override;
  void on_observation(const Observation& o) override;

  size_t size() const { return pos_.size(); }
  RoutingRecordView record(size_t i) const;
  /// Per layer that saw routing (MoE layers), in layer order.
  std::vector<RoutingLayerStats> layer_stats() const;
  int max_k() const { return kmax_; }
  void clear();

 private:
  void finish_batch();
  int n_layer_, nx_;
  bool keep_;
  RouterScores scores_;
  std::vector<double> q_;  // one token's distribution q (scratch)
  int kmax_ = 0;
  // Records (flat); slots per record = kmax_ (fixed at the first batch; grows by re-layout).
  std::vector<uint32_t> pos_;
  std::vector<int32_t> layer_;
  std::vector<uint8_t> n_sel_;
  std::vector<int32_t> experts_;
  std::vector<float> weights_, probs_, entropy_, margin_;
  // Per record: selection scores (expert_count each) and kept groups (gcount_ each), stored
  // only while every record has them (sel_ok_ / groups_ok_).
  std::vector<float> selection_;
  std::vector<int32_t> groups_;
  int gcount_ = 0;
  bool sel_ok_ = true, groups_ok_ = true;
  // Current batch of the current layer.
  int cur_layer_ = -1;
  uint32_t cur_pos0_ = 0;
  int64_t cur_n_ = 0;
  int cur_k_ = 0;
  std::vector<float> b_probs_, b_ids_, b_w_, b_wn_, b_sel_, b_groups_;
  int b_gcount_ = 0;
  std::vector<int32_t> sel_;
  bool have_wn_ = false;
  // Aggregates [layer].
  std::vector<uint64_t> tokens_, active_;
  std::vector<std::vector<uint64_t>> load_, coact_;
  std::vector<double> entropy_sum_;
};

struct AttentionProbeOptions {
  std::vector<int> layers;  // layers to capture (empty: none captured, only head statistics)
  std::vector<int> heads;   // heads to capture (empty: every head)
  bool head_mean = false;   // capture the mean over the chosen heads instead of each head
  /// Query rows with more keys than this are stored as max_row_keys bins (each the summed
  /// probability of a contiguous key range), unless the query's position is in exact_rows.
  int64_t max_row_keys = 1024;
  std::vector<uint32_t> exact_rows;  // query positions always kept exactly
  /// Stored floats stop at this many bytes; further rows are counted in dropped_rows().
  size_t budget_bytes = size_t{64} << 20;
  uint32_t sink_tokens = 4;    // keys at positions < this are sinks
  uint32_t local_window = 16;  // keys with pos_q - pos_k < this are local
};

/// One captured query row.
struct AttentionRow {
  int layer = 0;
  int head = -1;                 // -1: mean over the chosen heads
  uint32_t pos = 0;              // query position
  uint32_t n_keys = 0;           // keys the row covered
  uint32_t bin_size = 1;         // keys per stored value (1 = exact)
  std::vector<int32_t> key_pos;  // exact rows after eviction: key positions (else empty:
                                 // value i is key position i * bin_size)
  std::vector<float> probs;
};

struct AttentionHeadStats {
  int layer = 0, head = 0;
  uint64_t rows = 0;
  double entropy = 0;        // mean over query rows, nats
  double sink_share = 0;     // mean share of mass on sink tokens
  double local_share = 0;    // ... on the local window (excluding sinks)
  double distant_share = 0;  // ... on everything else
};

class AttentionProbe final : public Subscriber {
 public:
  AttentionProbe(int n_layer, int n_head, AttentionProbeOptions opts);
  Subscription subscription() const override;
  void on_observation(const Observation& o) override;
  const std::vector<AttentionRow>& rows() const { return rows_; }
  std::vector<AttentionHeadStats> head_stats() const;  // captured layers x heads with rows
  uint64_t dropped_rows() const { return dropped_; }
  size_t bytes() const { return bytes_; }

 private:
  int n_layer_, n_head_;
  AttentionProbeOptions o_;
  std::vector<uint8_t> head_on_;
  std::vector<AttentionRow> rows_;
  std::vector<AttentionHeadStats> stats_;  // [layer * n_head + head]
  uint64_t dropped_ = 0;
  size_t bytes_ = 0;
  std::vector<float> mean_;
};

struct EvalTiming {
  uint32_t pos0 = 0;
  int64_t n_tokens = 0;
  double total_us = 0;
  std::array<double, kOpKindCount> op_us{};  // summed over layers, by OpKind
};

class TimingProbe final : public Subscriber {
 public:
  explicit TimingProbe(int n_layer);
  Subscription subscription() const override;
  void on_op_time(const OpTime& t) override;
  void on_eval(uint32_t pos0, int64_t n, int64_t ns) override;

  /// Wall time of the first eval (the prefill), µs; 0 before it. (Sampling time is outside
  /// the engine and not included.)
  double ttft_us() const { return evals_.empty() ? 0 : evals_.front().total_us; }
  /// Mean wall time of single-token evals after the first, µs (0 if none).
  double tpot_us() const;
  const std::vector<EvalTiming>& evals() const { return evals_; }
  /// Summed µs per [layer][OpKind] over every eval (layer -1 ops in row n_layer).
  const std::vector<std::array<double, kOpKindCount>>& per_layer_us() const { return layer_us_; }

 private:
  int n_layer_;
  std::vector<EvalTiming> evals_;
  EvalTiming cur_;
  std::vector<std::array<double, kOpKindCount>> layer_us_;
};

}  // namespace moelab
