// RunViewData: the one home of "a run -> every view". It accumulates one run's records - the
// same plain storage records whether they arrive live from the generation (LiveToken, converted
// by the main window) or are read back from the store - and builds each view's data from them:
// routing grid, expert load (normalised share or raw count), co-activation per layer, attention
// per layer and head (prompt and generated tokens, token text on both axes; runs stored before
// per-head capture: the prompt's head mean only), latency per token with the per
// layer / op breakdown, and power from the per-token energy. Because a live run and the same
// run read from the store go through the same accumulation, the views show identical values for
// both. No Qt; built with the views panel (MOELAB_HAVE_VIEWS_PANEL).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "moelab/storage/records.h"
#include "moelab/views/view_models.h"

namespace moelab::storage {
class Store;
}
namespace moelab {
struct ModelCard;
}

namespace moelab::lab {

struct LiveToken;  // lab_run.h

class RunViewData {
 public:
  /// Per layer / op wall time of the decode steps (single-token evaluations): summed µs per
  /// [row][op] with rows = layers 0..n_layer-1 then one row for the layer-less ops (embedding,
  /// output head); ops in moelab::OpKind order (embed, attention, router, experts, ffn, head).
  struct OpBreakdown {
    int n_layer = 0;
    int64_t decode_steps = 0;  // single-token evaluations summed
    std::vector<double> us;    // [(n_layer + 1) * kOps]
    static constexpr int kOps = 6;
  };

  /// What the routing records mean (the run config's "model" object, session::model_json):
  /// the gating function ("softmax", "sigmoid", "softmax_over_topk"; "" unknown = softmax),
  /// shared experts per MoE layer, and the group limit (0 groups: none).
  struct Router {
    std::string gating;
    int shared_experts = 0;
    int expert_groups = 0;
    int expert_groups_used = 0;
  };
  /// The Router of a run config's "model" object (missing keys: defaults).
  static Router router_of_config(const nlohmann::json& model);
  /// The Router of a model card, as session::model_json describes it for the run config.
  static Router router_of_card(const ModelCard& card);

  RunViewData() = default;
  /// Starts an empty run: `n_layer` layers, `expert_count` experts (0: dense model).
  RunViewData(int64_t run_id, int n_layer, int expert_count);
  /// Sets the router description; call before add_routing (confidence depends on the gating).
  void set_router(Router r) { router_ = std::move(r); }
  const Router& router() const { return router_; }

  /// Reads run `run` from `store`: tokens (text, latency µs, energy µJ), routing records,
  /// prompt attention snapshots and the per layer / op breakdown (op_breakdown_of its metrics);
  /// n_layer / expert_count from the run's config ("model" object), widened to what the routing
  /// records hold. `prompt_text` (optional): the prompt's token texts for the attention axes (the
  /// store keeps the prompt as one string). Throws storage::StorageError for an unknown run.
  static RunViewData from_store(const storage::Store& store, int64_t run,
                                std::vector<std::string> prompt_text = {});

  int64_t run_id() const { return run_; }
  void set_run_id(int64_t id) { run_ = id; }
  int n_layer() const { return n_layer_; }
  int expert_count() const { return expert_count_; }
  int n_tokens() const { return static_cast<int>(text_.size()); }

  /// One generated token at `position` (0-based, in order): its text, wall time (µs) and energy
  /// (µJ, when measured). Positions past the end grow the run; an earlier position overwrites.
  void add_token(int64_t position, std::string piece, int64_t latency_us,
                 std::optional<double> energy_uj = std::nullopt);
  /// The routing of token `r.position` at layer `r.layer` (the experts chosen, in order), its
  /// kept groups, and, when the record has router scores, their confidence
  /// (views::router_confidence with the router's gating). Records outside [0, n_layer) are
  /// ignored; expert ids >= expert_count are ignored.
  void add_routing(const storage::RoutingRecord& r);
  /// Replaces the run's attention with `snapshots` (as GenerationRecorder stores them: the
  /// prompt's head mean per layer, head -1; every head of the captured layers,
  /// storage::kAttentionAllHeads, F32 [n_head, n_query, n_kv] for the prompt at position 0 and
  /// [n_head, 1, n_kv] per decode step) and sets the prompt's token texts for the axes (may be
  /// empty: positions are shown). Other snapshots are ignored.
  void set_attention(std::vector<storage::AttentionSnapshot> snapshots,
                     std::vector<std::string> prompt_text = {});
  /// Adds snapshots (e.g. one decode step's rows, live) to what set_attention gave. A decode row
  /// over n_kv keys is query position n_kv - 1; a row whose layer has no prompt rows, or whose
  /// head count differs from them, is ignored.
  void add_attention(const std::vector<storage::AttentionSnapshot>& snapshots);
  void set_op_breakdown(OpBreakdown b) { ops_ = std::move(b); }
  const OpBreakdown& op_breakdown() const { return ops_; }
  /// `b` as the run's stored metrics (compare::kOpTimeMetricPrefix): one
  /// "decode_op_us.<row>.<op>" per non-zero cell (row "L<layer>" or "other", op an
  /// op_kind_name; µs summed over the decode steps) and "decode_op_us.steps" (steps). Empty when
  /// `b` has no decode step or its `us` is not [(n_layer + 1) * kOps]. At most
  /// (n_layer + 1) * 6 + 1 metrics per run.
  static std::vector<storage::MetricRecord> op_breakdown_metrics(const OpBreakdown& b);
  /// The breakdown of a run's stored `metrics` for a model of `n_layer` layers (the inverse of
  /// op_breakdown_metrics; absent cells are 0, rows >= n_layer and unknown ops ignored); nullopt
  /// when the metrics hold no "decode_op_us.steps" > 0.
  static std::optional<OpBreakdown> op_breakdown_of(
      const std::vector<storage::MetricRecord>& metrics, int n_layer);

  /// Routing grid: top (first chosen) expert and number of experts per (layer, token); -1 / 0
  /// where a token has no routing record for the layer. When any record had router scores:
  /// top_prob, margin and entropy per (layer, token), NaN where none. The router's gating and
  /// shared experts; for group-limited routers the kept groups per (layer, token) (-1: none).
  views::RoutingGrid routing_grid() const;
  /// Expert load per (layer, expert): with counts = false the normalised share
  /// count(l, e) / sum_e count(l, e) (a routed layer's row sums to 1; the same definition as
  /// compare::routing_divergence's load), with counts = true the raw number of tokens whose
  /// chosen experts include e ("tokens").
  /// With shared experts: `shared` per layer = the layer's routed tokens (counts) or 1 (share).
  views::ExpertLoad expert_load(bool counts = false) const;
  /// Co-activation of `layer`: tokens whose chosen experts include both i and j (diagonal: tokens
  /// routed to i). Throws moelab::Error (BadInput) for a layer outside [0, n_layer).
  views::CoActivation co_activation(int layer) const;
  /// Positions (ascending) of the generated tokens whose chosen experts at `layer` include
  /// `expert` ("which tokens went to expert 3 at layer 1"); empty outside the run's shape.
  std::vector<int64_t> tokens_of_expert(int layer, int expert) const;
  /// The generated tokens' text, by position.
  const std::vector<std::string>& token_text() const { return text_; }
  /// Layers with attention (ascending): per head or the prompt's head mean.
  std::vector<int> attention_layers() const;
  /// Heads stored per head for `layer` (0: only the prompt's head mean, as runs stored before
  /// per-head capture have, or nothing).
  int attention_heads(int layer) const;
  /// Query rows of `layer` stored per head: the prompt's rows then one per decode step, without
  /// gaps (0 when none).
  int attention_rows(int layer) const;
  /// The prompt tokens among attention(layer)'s positions: position p < this is prompt token p,
  /// position this + i is generated token i. Runs with the prompt's head mean only (no per-head
  /// rows for the layer): every position is a prompt token (INT_MAX).
  int attention_prompt_tokens(int layer) const {
    const auto it = heads_.find(layer);
    return it != heads_.end() ? it->second.n_prompt : std::numeric_limits<int>::max();
  }
  /// The attention of `layer`, head `head` (-1: the mean over heads), F32 [n, n] over positions
  /// 0..n-1 with n = attention_rows(layer) (query = key position; the causal mask as NaN) and
  /// token text on both axes (prompt tokens, then the generated tokens: position n_prompt + i
  /// is generated token i). `room` > n: the map has `room` rows and columns, the ones not made
  /// yet NaN (a live map that later rows are written into). Without per-head rows for the layer:
  /// the prompt's stored head mean (head -1 only). nullopt when there is nothing for the
  /// layer/head.
  std::optional<views::AttentionMap> attention(int layer, int head = -1, int room = 0) const;
  /// Rows [first, attention_rows(layer)) of attention(layer, head, ..) as a live update of a map
  /// with `n_key` columns (AttentionRows: the views write them in place); nullopt when there is
  /// no such row or they do not fit n_key.
  std::optional<views::AttentionRows> attention_rows_since(int layer, int head, int first,
                                                           int n_key) const;
  /// Puts the attention of (`layer`, `head`) on screen through `map` / `rows` (the views panel's
  /// publish overloads; `rows` returns 0 when the rows do not fit the map on screen). While
  /// `live`, a map with room to grow is published once and each later call sends only the new
  /// query rows (O(rows x n_key), never the whole map); when the rows do not fit (another
  /// layer/head, room used up, views cleared) the whole map is published again with twice the
  /// room. Not live: the exact map.
  void publish_attention(int layer, int head, bool live,
                         const std::function<uint64_t(views::AttentionMap)>& map,
                         const std::function<uint64_t(views::AttentionRows)>& rows);
  /// Latency per generated token (ms; token 0 includes the prompt: TTFT) and, when an op
  /// breakdown was recorded, mean ms per decode step per layer and op.
  views::LatencySeries latency() const;
  /// Power per generated token from its energy: watts = energy_uj / latency_us at t = the end of
  /// the token (s since the run started); empty with `sensor` = `no_sensor_reason` when no token
  /// has an energy value. decode_j_per_token: the run's stored "j_per_token" metric (set by
  /// from_store; nullopt without one), also when no token has an energy value.
  views::PowerSeries power(const std::string& no_sensor_reason) const;

 private:
  int64_t run_ = 0;
  int n_layer_ = 0;
  int expert_count_ = 0;
  std::vector<std::string> text_;
  std::vector<int64_t> latency_us_;
  std::vector<std::optional<double>> energy_uj_;
  // [layer][token] chosen experts of that token at that layer (empty: not routed).
  std::vector<std::vector<std::vector<uint16_t>>> experts_;
  // [layer][token] router confidence (NaN: no probabilities); any_probs_: some record had them.
  std::vector<std::vector<views::RouterConfidence>> confidence_;
  bool any_probs_ = false;
  Router router_;
  // [layer][token] kept groups of group-limited routers (empty: none recorded).
  std::vector<std::vector<std::vector<uint8_t>>> groups_;
  std::vector<storage::AttentionSnapshot> attention_;
  // Per layer with per-head rows: rows[q] = F32 [n_head, n_kv(q)] of query position q.
  struct HeadRows {
    int n_head = 0;
    int n_prompt = 0;
    std::vector<std::vector<float>> rows;
    std::vector<int> n_kv;
  };
  std::map<int, HeadRows> heads_;
  // What publish_attention last put on screen.
  struct LiveAttention {
    int layer = -1, head = -2, n_key = 0, rows = 0;
  } live_;
  std::vector<std::string> prompt_text_;
  OpBreakdown ops_;
  std::optional<double> j_per_token_;  // the stored "j_per_token" metric (J/token, decode)
};

/// What add_live_tokens() added: any generated token; a prompt attention snapshot (token 0).
struct LiveTokensAdded {
  bool tokens = false;
  bool attention = false;
};
/// Adds the live run's tokens `items` (LiveToken, lab_run.h; closing text-only events, index < 0,
/// are skipped) to `feed` as the store holds them: each token's text and latency, its routing
/// per MoE layer (experts, weights, router probabilities), token 0's prompt attention snapshots
/// (later tokens' snapshots: that decode step's attention rows, per head)
/// with the prompt's token texts, and the per layer / op breakdown so far. The same records a
/// stored run is read from (from_store), so the views show the same values live and after a
/// restart.
LiveTokensAdded add_live_tokens(RunViewData& feed, const std::vector<LiveToken>& items);

}  // namespace moelab::lab
