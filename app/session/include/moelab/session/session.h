// Engine results -> experiment store records. The store (storage/) knows no engine types and the
// engine knows no store; this small app-level library converts between them for the CLI (run
// --db, eval, sweep) and the desktop lab (its runs and headless demo) - one recording path:
//
//  - the complete run configuration as JSON (sampling, seed used, routing and attention policy,
//    threads, backend, KV type, n_ctx, build version, model identity);
//  - a model row (sha256 of the file, path, architecture, model card JSON);
//  - streaming a generation through storage::AsyncWriter while it runs: one TokenRecord per
//    generated token (id, piece, logprob, entropy, latency µs), its sparse next-token
//    distribution, the MoE routing of every layer, and the prompt's attention per layer, so that
//    a process killed mid-run keeps every token the writer thread committed;
//  - metrics after the run (TTFT, tokens/s, prefill, memory, policy statistics, energy when
//    measured), and perplexity evaluation results.
//
// Position convention: token, logprob, entropy, next-token distribution and routing at position
// i all describe the SAME forward pass, the one whose logits produced generated token i (for i = 0
// the last prompt token of the prefill, for i > 0 the decode step of token i - 1). Routing
// therefore says which experts computed the distribution token i was drawn from.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moelab/model/model.h"
#include "moelab/runtime/generator.h"
#include "moelab/runtime/perplexity.h"
#include "moelab/runtime/sampler.h"
#include "moelab/storage/writer.h"

namespace moelab::session {

class RunEnergy;

/// Everything that determines a generation run, as recorded in runs.config_json.
struct GenerateConfig {
  SamplerParams sampling;                  // sampling.seed must be set (see ensure_seed)
  std::string routing_policy = "default";  // RoutingPolicy spec (policies.h)
  std::string attention_policy = "full";   // AttentionPolicy spec
  int threads = 1;
  std::string backend = "cpu";
  uint32_t n_ctx = 0;
  std::string kv_type = "f32";  // "f32" or "f16"
  int32_t max_tokens = 0;
  bool chat = false;
  std::string system;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  std::string build_version;  // moelab version (kVersion) and build description
};

/// Draws a seed from std::random_device when none is set, so that the config stored BEFORE the
/// run already names the seed the run uses. Returns the seed.
uint64_t ensure_seed(SamplerParams& s);

/// What a user asks of one generation run (`moelab-cli run`'s options, the lab's Run panel),
/// and the one derivation of what the engine (ContextParams), the generator (GenerateParams)
/// and the store (GenerateConfig, via generate_config) get from it. Defaults come from the
/// model card and the machine through default_n_ctx and default_threads
/// (app/common/card_format.h), the same rules `inspect` and the lab's labels show.
struct RunRecipe {
  std::string prompt;
  std::string system;  // the chat template's system message (chat only)
  bool chat = false;
  int32_t max_tokens = 64;
  SamplerParams sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  int threads = 0;                         // 0: default_threads()
  uint32_t n_ctx = 0;                      // tokens; 0: default_n_ctx(trained context length)
  bool kv_f16 = false;                     // F16 KV cache, else F32
  Backend backend = Backend::Auto;         // ContextParams::backend
  std::string routing_policy = "default";  // RoutingPolicy spec ("" = default)
  std::string attention_policy = "full";   // AttentionPolicy spec ("" = full)

  /// For a model trained on `trained_context_length` tokens (0: unknown). Throws
  /// moelab::Error (BadInput) for a bad policy spec.
  ContextParams context_params(uint64_t trained_context_length) const;
  GenerateParams generate_params() const;
};

/// The stored config of a generation run with these parameters: policies as canonical specs,
/// `backend_used` the backend the forward pass runs on ("cpu" or "cuda"), the system message
/// only for a chat. One assembly for the CLI's stored runs and the lab's.
GenerateConfig generate_config(const ContextParams& cp, const GenerateParams& gp,
                               const std::string& backend_used, const std::string& build_version);

/// The sampling parameters as JSON: temperature, top_k, top_p, min_p, repeat_penalty,
/// frequency_penalty, presence_penalty, penalty_last_n (and seed when set).
nlohmann::json sampling_json(const SamplerParams& s);

/// runs.config_json of a generation: {"kind": "generate", "sampling": {...}, "seed": N,
/// "routing_policy", "attention_policy", "threads", "backend", "n_ctx", "kv_type", "max_tokens",
/// "chat", "system", "stop", "ignore_eos", "build": "..."} (+ "model" from model_json).
nlohmann::json generate_config_json(const GenerateConfig& c);

/// Everything that determines a perplexity evaluation.
struct EvalConfig {
  uint32_t n_ctx = 512;
  int threads = 1;
  int max_chunks = 0;
  std::string kv_type = "f32";
  std::string backend = "cpu";
  std::string routing_policy = "default";
  std::string attention_policy = "full";
  std::string text_path;
  std::string text_sha256;
  std::string build_version;
};
/// {"kind": "eval", "metric": "perplexity", "n_ctx", "threads", "max_chunks", "kv_type",
/// "backend", "routing_policy", "attention_policy", "text": {"path", "sha256"}, "build"}.
nlohmann::json eval_config_json(const EvalConfig& c);

/// The model's row: sha256 of the file (computed now unless given; throws moelab::Error Io when
/// the file cannot be read), path, architecture and the model card JSON (app/common).
storage::ModelRecord model_record(const Model& model, const std::string& path,
                                  std::string sha256 = {});
/// {"path", "sha256", "architecture", "name", "n_layer", "expert_count", "expert_used_count"}
/// for the run config; MoE models add the router: "gating" (router_gating, card_format.h:
/// "softmax", "sigmoid" or "softmax_over_topk"), "expert_groups" / "expert_groups_used" (0
/// without a group limit), "shared_experts" (always-on experts per MoE layer) and
/// "leading_dense_layers".
nlohmann::json model_json(const storage::ModelRecord& m, const Model& model);

/// Entropy in nats of softmax(logits), computed in double. F32 [n_vocab].
double entropy_nats(std::span<const float> logits);

/// Number of most likely next-token probabilities stored per generated token (sparse
/// NextTokenDist, for the KL comparison of two runs in moelab/compare).
inline constexpr size_t kNextTokenTop = 16;
/// The `top_n` most likely ids of softmax(logits) (descending probability, ties by smaller id)
/// and their probabilities, as a sparse next-token distribution at `position`. F32 [n_vocab].
storage::NextTokenDist top_next_tokens(std::span<const float> logits, size_t top_n,
                                       int64_t position);

/// Per-chunk perplexities from llama.cpp's running values: chunk c (1-based) scores the same
/// number of tokens as every other chunk, so its mean NLL is c ln(P_c) - (c - 1) ln(P_{c-1}),
/// P_c the running perplexity after c chunks; returns exp of that per chunk.
std::vector<double> chunk_perplexities(const std::vector<double>& running_ppl);

/// Collects the MoE routing of a Context through its observer (ffn_moe_topk, the mixing weights
/// applied - the last of ffn_moe_weights / _norm / _scaled / _softmax the layer emits -, the kept
/// groups of group-limited routers (ffn_moe_group_topk) and, with `probs`, ffn_moe_probs and the
/// selection scores of biased routers, ffn_moe_probs_biased). Keeps, per layer, the LAST row of the
/// last evaluation (the token whose logits are next sampled). Expert ids < 0 (unused slots of
/// variable-k policies) are dropped. Installs the observer on construction and removes it on
/// destruction.
///
/// With `attention`, it also keeps the attention probabilities of the prompt (kq_soft_max of
/// the evaluations before the first take()), averaged over heads: one snapshot per layer, shape
/// {n_query, n_kv}, head -1 (= mean over heads), position 0. Causally masked entries are 0 as
/// the engine reports them. Bounded: layers are kept while the prompt's snapshots total at most
/// kMaxAttentionValues floats (later layers are then skipped).
///
/// With `attention` it also keeps every head's attention of the chosen layers
/// (AttentionCapture::layers; default every layer), for the prompt AND each decode step,
/// within AttentionCapture::budget_bytes of F32 per run:
///  - position 0: per layer one snapshot head storage::kAttentionAllHeads, F32
///    [n_head, n_prompt, n_prompt] (the prompt's query rows; masked entries 0);
///  - position i > 0: per layer one snapshot head kAttentionAllHeads, F32 [n_head, 1, n_kv] with
///    n_kv = n_prompt + i: the query row of the decode step that produced generated token i
///    (query position n_prompt + i - 1) over every cached position.
/// Values are kq_soft_max as the engine computes it: rows sum to 1, except with gpt-oss's
/// learned attention sinks (ops::AttentionParams::sinks), where each row sums to 1 - the sink's
/// share (the sink logit takes part in the softmax's denominator but is no key).
/// Budget: the prompt's layers are kept in layer order while they fit (the rest are skipped);
/// a decode step is kept only when all kept layers' rows fit, and once one does not, no later
/// step is kept (capture stops). attention_stats() says what was kept and skipped; the
/// GenerationRecorder stores it as metrics. Evicting attention policies (rows over key
/// positions after eviction) are not kept per head.
struct AttentionCapture {
  std::vector<int> layers;  // layers to keep per head (empty: every layer)
  /// Stored F32 bytes of per-head rows per run (prompt + decode); 0 disables per-head capture.
  size_t budget_bytes = size_t(16) << 20;
};
struct AttentionCaptureStats {
  uint64_t bytes = 0;          // F32 bytes of per-head rows kept
  int layers_kept = 0;         // layers kept per head (prompt and decode)
  int layers_skipped = 0;      // chosen layers that did not fit the budget
  uint64_t steps_kept = 0;     // decode steps kept
  uint64_t steps_dropped = 0;  // decode steps past the budget (not kept)
};
class RoutingRecorder {
 public:
  static constexpr size_t kMaxAttentionValues = size_t(1) << 21;  // 8 MiB of F32
  RoutingRecorder(Context& ctx, bool probs, bool attention = false, AttentionCapture capture = {});
  ~RoutingRecorder();
  RoutingRecorder(const RoutingRecorder&) = delete;
  RoutingRecorder& operator=(const RoutingRecorder&) = delete;
  /// The routing of the last evaluation, one record per MoE layer (by layer), at `position`;
  /// clears what was collected.
  std::vector<storage::RoutingRecord> take(int64_t position);
  /// The prompt's head-mean attention per layer (by layer; empty without `attention`); ends the
  /// prompt phase at the first call (later evaluations are not kept, nor observed). Call it
  /// between evaluations (e.g. from the token callback).
  /// Since the first call also the per-head rows of the last decode step (see above), with
  /// `position` as their position.
  std::vector<storage::AttentionSnapshot> take_attention(int64_t position = 0);
  AttentionCaptureStats attention_stats() const;
  /// Replaces the per-head capture settings (before the first evaluation).
  void set_capture(AttentionCapture capture);

 private:
  struct Layer {
    std::vector<float> ids, weights, probs, selection, groups;
  };
  Context& ctx_;
  bool probs_;
  bool attention_;
  bool prompt_phase_ = true;
  Observer observer_;
  std::vector<std::string> names_;  // observed after the prompt (without kq_soft_max)
  mutable std::mutex mu_;
  std::map<int, Layer> layers_;
  std::map<int, storage::AttentionSnapshot> attn_;
  // Per-head capture: chosen layers (empty: all), the layers kept at the prompt, this step's
  // rows by layer, and the bytes kept so far.
  AttentionCapture capture_;
  std::vector<int> kept_layers_;
  std::map<int, storage::AttentionSnapshot> heads_;
  AttentionCaptureStats stats_;
  bool capture_on_ = false;
  std::vector<int> skipped_layers_;
  void keep_heads(const Observation& o);  // mu_ held
};

/// One generation streamed into the store: THE recording path of every front end
/// (`moelab-cli run --db`, `sweep`, the desktop lab's runs and its headless demo), so that every
/// stored generation has the same records and metrics. Per generated token: TokenRecord,
/// sparse NextTokenDist (top kNextTokenTop), and for MoE models one RoutingRecord per layer;
/// per run: the prompt's head-mean attention per layer (AttentionSnapshot, see RoutingRecorder)
/// and the metrics listed at finish().
///
/// Use: construct before generating, then generate() (or: pass wrap()'s callback to
/// Generator::generate yourself and call finish() with the result, fail() when it threw).
/// Destroyed without finish/fail: the run is finished as failed (during unwinding) or cancelled.
class GenerationRecorder {
 public:
  /// Begins the run in session `session_name` (created when missing). `config` is stored as it
  /// is. With `routing` and a MoE model, the routing of every layer is recorded per token.
  GenerationRecorder(storage::AsyncWriter& writer, const std::string& session_name,
                     const std::optional<storage::ModelRecord>& model, const nlohmann::json& config,
                     const std::string& prompt, Generator& gen, bool routing = true,
                     bool routing_probs = false, const std::string& kind = "generate",
                     bool attention = true);
  ~GenerationRecorder();
  GenerationRecorder(const GenerationRecorder&) = delete;
  GenerationRecorder& operator=(const GenerationRecorder&) = delete;

  int64_t id() const { return run_.id(); }
  /// A callback that records each generated token (and its routing) and then calls `inner`
  /// (which may be empty). Valid while this recorder lives.
  /// Inside `inner`, last_routing() and last_entropy() describe the token being reported.
  TokenCallback wrap(TokenCallback inner = {});
  /// Runs the generation on the recorder's Generator with wrap(inner) and finishes the run:
  /// resets the context's policy statistics first (unless set_policy_stats gave others), stores
  /// avg_active_experts, failovers and overflows when the routing policy routed tokens, then
  /// finish(). When generation throws, the run is stored as failed (fail()) and the exception is
  /// rethrown; a storage::StorageError is rethrown without touching the run.
  GenerateResult generate(const GenerateParams& gp, TokenCallback inner = {});
  /// Policy statistics to store instead of the context's (e.g. stats several contexts share
  /// through ContextParams::policy_stats); not reset by generate().
  void set_policy_stats(std::shared_ptr<const PolicyStats> stats) { stats_ = std::move(stats); }
  /// Stores the metrics (ttft_ms, tokens_per_s, prefill_ms, prefill_tokens_per_s, total_ms,
  /// prompt_tokens, generated_tokens, model_memory_mib = weights + KV cache of the context, and
  /// the energy metrics of set_energy's RunEnergy when a sensor measured them) and the final
  /// status (cancelled when the run was cancelled, else complete) with the output text; waits
  /// until everything is committed.
  void finish(const GenerateResult& r);
  /// Finishes the run as failed with `error`; waits for the commit.
  void fail(const std::string& error);
  /// Extra metric (e.g. avg_active_experts from the policies).
  void metric(const std::string& key, double value, const std::string& unit = {}) {
    run_.metric(key, value, unit);
  }
  /// Tokens recorded so far.
  int64_t tokens_recorded() const { return n_tokens_; }
  /// Routing records stored so far (MoE layers x tokens).
  int64_t routing_recorded() const { return n_routing_; }
  /// The routing records (by layer) and the entropy (nats) of the next-token distribution of the
  /// token most recently recorded - valid inside wrap()'s inner callback.
  const std::vector<storage::RoutingRecord>& last_routing() const { return last_routing_; }
  float last_entropy() const { return last_entropy_; }
  /// The attention snapshots stored with the token being reported (see
  /// RoutingRecorder::take_attention) - inside wrap()'s inner callback: for token 0 the prompt's
  /// (head mean and every head of the captured layers), for token i > 0 the decode step's rows
  /// of every head (while the capture budget lasts); empty without attention.
  const std::vector<storage::AttentionSnapshot>& last_attention() const { return last_attention_; }
  /// Energy of this run (energy.h), owned by the caller and alive until finish(): finish()
  /// stores its measured metrics (energy_j, j_per_token, ...; none without a sensor).
  void set_energy(RunEnergy* energy) { energy_ = energy; }
  /// Which layers' attention is kept per head and within which budget (RoutingRecorder);
  /// call before generating. finish() stores what was kept as metrics attention_head_bytes,
  /// attention_head_layers, attention_layers_skipped, attention_steps_dropped.
  void set_attention_capture(const AttentionCapture& c);

 private:
  storage::RunWriter run_;
  Generator& gen_;
  nlohmann::json config_;
  bool route_ = false;
  std::unique_ptr<RoutingRecorder> routing_;
  std::shared_ptr<const PolicyStats> stats_;
  std::vector<storage::RoutingRecord> last_routing_;
  std::vector<storage::AttentionSnapshot> last_attention_;
  float last_entropy_ = 0.f;
  int64_t n_tokens_ = 0;
  int64_t n_routing_ = 0;
  std::vector<storage::TokenRecord> latencies_;  // latency_us of each token, for tokens_per_s
  RunEnergy* energy_ = nullptr;
  bool done_ = false;
  bool attention_ = false;
  AttentionCapture capture_;
};

/// Stores a finished perplexity evaluation on `run`: an EvalResult (metric "perplexity", method
/// r.method, text_sha256, value r.ppl, n_tokens r.n_scored, chunk_values = per-chunk
/// perplexities from chunk_perplexities) and the metrics ppl, ppl_stderr, mean_nll, n_chunks,
/// n_scored, n_text_tokens, eval_seconds, eval_tokens_per_s.
void record_perplexity(storage::RunWriter& run, const PerplexityResult& r,
                       const std::string& text_sha256);

}  // namespace moelab::session
