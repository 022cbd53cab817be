// Plain records the experiment store keeps. They carry no engine types: app/ converts engine
// probe records (routing, attention, timing, power) into these.
//
// Units: times are microseconds (latency_us) or Unix milliseconds (*_at); energy is microjoules
// (energy_uj); log-probabilities are natural logarithms (nats); entropies are in nats.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moelab::storage {

/// A model file, identified by the SHA-256 of its bytes (lower-case hex).
struct ModelRecord {
  int64_t id = 0;            // assigned by the store
  std::string sha256;        // 64 hex characters; the identity of the model
  std::string path;          // where it was loaded from (last seen)
  std::string architecture;  // general.architecture, e.g. "llama", "qwen2moe"
  std::string card_json;     // the model card as a JSON object ("{}" when unknown)
  int64_t added_at = 0;      // Unix ms
};

/// A named experiment: a group of runs with notes and free-form tags.
struct SessionRecord {
  int64_t id = 0;
  std::string name;  // unique
  std::string notes;
  std::vector<std::string> tags;
  int64_t created_at = 0;  // Unix ms
  int64_t run_count = 0;   // filled by queries
};

/// Life cycle of a run. Running is the only non-final state; a run left Running by a process
/// that died becomes Interrupted the next time any process opens the file.
enum class RunStatus { Running, Complete, Failed, Cancelled, Interrupted };
const char* status_name(RunStatus s) noexcept;  // "running", "complete", ...
std::optional<RunStatus> parse_status(const std::string& name) noexcept;

/// What begin_run needs. config_json is the COMPLETE configuration as a JSON object: sampling
/// (temperature, top_k, top_p, min_p, penalties), the seed actually used, routing and attention
/// policy, threads, backend, build version, n_ctx ... The store checks it is a JSON object and
/// keeps the text as given.
struct RunBegin {
  int64_t session_id = 0;
  int64_t model_id = 0;  // 0: no model row (synthetic runs, tests)
  std::string config_json = "{}";
  std::string prompt;
  std::string kind = "generate";  // "generate", "eval", "sweep" ...
};

/// A run as stored, with aggregates computed from its tokens when it finished (or when
/// the migration to schema 2 back-filled them).
struct RunRecord {
  int64_t id = 0;
  int64_t session_id = 0;
  int64_t model_id = 0;  // 0 = none
  std::string kind;
  std::string config_json;
  std::string prompt;
  std::string output;
  RunStatus status = RunStatus::Running;
  std::string error;        // why it failed / was interrupted; empty otherwise
  int64_t started_at = 0;   // Unix ms
  int64_t finished_at = 0;  // Unix ms, 0 while running
  // Aggregates over the run's tokens.
  int64_t n_tokens = 0;
  int64_t latency_us_total = 0;
  double energy_uj_total = 0;  // 0 when no token had an energy value
};

/// One generated (or scored) token.
struct TokenRecord {
  int64_t position = 0;             // index in the generated sequence, 0-based, unique per run
  int32_t id = 0;                   // vocabulary id
  std::string piece;                // its bytes (may be a partial UTF-8 sequence)
  float logprob = 0;                // ln p(token); NaN = unknown
  float entropy = 0;                // entropy of the next-token distribution (nats); NaN = unknown
  int64_t latency_us = 0;           // time to produce this token (TPOT sample)
  std::optional<double> energy_uj;  // energy for this token, when a power sensor exists
};

/// Format of the optional full router probabilities of a routing record.
enum class ProbFormat : uint8_t { None = 0, F16 = 1, F32 = 2 };

/// The routing decision of one MoE layer for one token: the selected experts (top-k or
/// variable-k policies) with their mixing weights, and optionally the router's scores over all
/// expert_count experts. Stored packed (see codec.h); probs and selection are rounded to F16
/// when probs_format == F16.
///
/// What `probs` holds depends on the run's gating function (run config "model"."gating",
/// session::model_json): "softmax" probabilities (sum 1), "sigmoid" scores in (0, 1) that need
/// not sum to 1, or for "softmax_over_topk" (gpt-oss) the router logits plus the router bias
/// (any sign; the weights are the softmax over the k selected ones) - llama.cpp's ffn_moe_probs.
struct RoutingRecord {
  int64_t position = 0;
  int32_t layer = 0;
  std::vector<uint16_t> experts;  // [k] expert ids
  std::vector<float> weights;     // [k] mixing weights applied, same order
  ProbFormat probs_format = ProbFormat::None;
  std::vector<float> probs;  // [expert_count] or empty
  /// Routers with a selection-only bias (DeepSeek-V3, GLM-4.5): the scores the experts were
  /// chosen on, probs + bias (llama.cpp's ffn_moe_probs_biased) [expert_count]; empty otherwise
  /// or when probs is empty. Stored in probs_format.
  std::vector<float> selection;
  /// Group-limited routers (DeepSeek-V3): the expert groups kept for this token, descending
  /// group score (llama.cpp's ffn_moe_group_topk; group g = experts g * expert_count / n_group
  /// ..); [expert_group_used_count] or empty. Ids < 256.
  std::vector<uint8_t> groups;
};

/// AttentionSnapshot::head of a snapshot that holds every head of its layer:
/// data F32 [n_head, n_query, n_kv] (shape has 3 entries).
inline constexpr int32_t kAttentionAllHeads = -2;

/// One attention map snapshot (probabilities after softmax), zstd-compressed F32. `head` >= 0:
/// one head, shape {n_query, n_kv}; -1: the mean over heads, shape {n_query, n_kv};
/// kAttentionAllHeads: every head, shape {n_head, n_query, n_kv}. The generation recorder
/// (app/session) writes position 0 for the prompt's rows and position i > 0 for the one query
/// row of the decode step that produced generated token i (moelab/session/session.h).
struct AttentionSnapshot {
  int64_t position = 0;  // token position at which it was taken
  int32_t layer = 0;
  int32_t head = 0;
  std::vector<int64_t> shape;  // e.g. {n_query, n_kv}; product == data.size()
  std::vector<float> data;     // F32 [shape...], row-major
};

/// A named scalar of a run: "ttft_ms", "tokens_per_s", "prompt_tokens", "peak_rss_mib" ...
struct MetricRecord {
  std::string key;
  double value = 0;
  std::string unit;  // "ms", "tokens/s", "J" ...; may be empty
};

/// The next-token distribution at one position, for KL comparisons. Dense (ids empty,
/// probs[n_vocab]) or sparse top-N (ids[N], probs[N]; the remaining mass is spread uniformly over
/// the other n_vocab - N ids by the comparison code).
struct NextTokenDist {
  int64_t position = 0;
  int32_t n_vocab = 0;
  std::vector<int32_t> ids;  // empty = dense
  std::vector<float> probs;
};

/// An evaluation result, e.g. perplexity over a text. `method` names the procedure exactly
/// (e.g. "perplexity ctx=512 stride=512 score-second-half"), text_sha256 identifies the text, so
/// that two results are comparable only when both agree.
struct EvalResult {
  int64_t id = 0;
  std::string metric = "perplexity";
  std::string method;
  std::string text_sha256;
  double value = 0;
  int64_t n_tokens = 0;
  std::vector<double> chunk_values;  // per-chunk values (e.g. perplexity of each chunk)
};

/// A group of records written in ONE transaction (the writer thread's unit of work).
struct Batch {
  struct Tokens {
    int64_t run_id;
    std::vector<TokenRecord> items;
  };
  struct Routing {
    int64_t run_id;
    std::vector<RoutingRecord> items;
  };
  struct Attention {
    int64_t run_id;
    std::vector<AttentionSnapshot> items;
  };
  struct Metrics {
    int64_t run_id;
    std::vector<MetricRecord> items;
  };
  struct Dists {
    int64_t run_id;
    std::vector<NextTokenDist> items;
  };
  struct Evals {
    int64_t run_id;
    std::vector<EvalResult> items;
  };
  std::vector<Tokens> tokens;
  std::vector<Routing> routing;
  std::vector<Attention> attention;
  std::vector<Metrics> metrics;
  std::vector<Dists> dists;
  std::vector<Evals> evals;
  bool empty() const {
    return tokens.empty() && routing.empty() && attention.empty() && metrics.empty() &&
           dists.empty() && evals.empty();
  }
};

}  // namespace moelab::storage
