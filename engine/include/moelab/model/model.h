// Loaded model and inference context: the engine's public entry points for a forward pass.
// (Contract fixed by the engine lead; models/ implements it, one file per architecture.)
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moelab/core/backends.h"
#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"
#include "moelab/policies/policies.h"

namespace moelab {

class Tokenizer;  // moelab/tokenizer/tokenizer.h

struct LoadOptions {
  /// Called with the fraction done in [0, 1]; return false to cancel (load throws
  /// moelab::Error with kind Cancelled).
  std::function<bool(float)> progress;
  /// Where the weights are prepared: Cpu (the reference; default), Cuda (the weights are also
  /// uploaded to the GPU, see engine/backend/cuda) or Auto (the fastest available). Cuda and
  /// Auto go through resolve_backend (moelab/core/backends.h): without a usable device the
  /// model is loaded for the CPU and one log line says why; Auto also falls back to the CPU
  /// (one warning line) when the GPU lacks the memory for the weights. Throws moelab::Error:
  /// with Cuda, Io when the GPU lacks the memory for the weights (the message gives the bytes
  /// needed and free). A user's name for it is parsed once, at the edge (parse_backend).
  Backend backend = Backend::Cpu;
};

/// Weights (memory-mapped, never copied for types the kernels read directly), hyper-parameters
/// and tokenizer of one GGUF model. Immutable after load; shared by any number of Contexts.
class Model {
 public:
  virtual ~Model() = default;
  /// Opens, validates (make_model_card + the architecture's own checks) and prepares a model.
  /// Throws moelab::Error: BadInput for an invalid or unsupported file (the message lists the
  /// supported architectures), Io, Cancelled.
  static std::shared_ptr<Model> load(const std::string& path, const LoadOptions& opts = {});
  /// Every check load() makes before it allocates (the card's problems, the architecture's
  /// configuration, each weight's presence/type/shape, the tokenizer), on an opened file and
  /// its card: the reason load() would refuse the file, or "" when it would load it. One
  /// validation for `inspect --check`, the model card and load. Throws moelab::Error for
  /// anything but a bad file (Io, Internal).
  static std::string check(const gguf::File& file, const ModelCard& card);

  virtual const ModelCard& card() const = 0;
  virtual const gguf::File& file() const = 0;
  /// The tokenizer built from the file's tokenizer.ggml.* metadata (null if the file has none).
  virtual const Tokenizer* tokenizer() const = 0;
};

/// The backend a loaded model's weights live on: "cpu" or "cuda".
std::string model_backend(const Model& model);

enum class KvType { F32, F16 };

/// One intermediate tensor of a forward pass, handed to an observer (see
/// Context::set_observer). Valid only during the call.
struct Observation {
  std::string_view name;  // stable key, named like llama.cpp's graph callbacks (see below)
  int layer = -1;         // block index, -1 for tensors outside the blocks
  uint32_t pos0 = 0;      // position of the batch's first token
  /// Row-major shape, outermost first; unused trailing dimensions are 1 and n_dims says how
  /// many count, e.g. {n_tokens, n_embd, 1} with n_dims 2.
  int64_t shape[3] = {1, 1, 1};
  int n_dims = 1;
  std::span<const float> data;
  /// kq_soft_max only: the position each key column holds, when the KV cache no longer maps
  /// cell i to position i (after eviction by an evict:S,W attention policy); empty otherwise.
  std::span<const int32_t> key_pos;
};
using Observer = std::function<void(const Observation&)>;

/// The parts of a forward pass that Context::set_op_timer times.
enum class OpKind : uint8_t {
  Embed,      // token embedding lookup (layer -1)
  Attention,  // attention block: norm, Q/K/V, RoPE, KV append, attention, output projection
  Router,     // MoE router: gate_inp product and the routing decision
  Experts,    // routed experts' products and weighted sum, plus any shared expert
  Ffn,        // dense FFN products (non-MoE layers)
  Head,       // output norm and output projection (layer -1)
};
inline constexpr int kOpKindCount = 6;
/// "embed", "attention", "router", "experts", "ffn", "head".
const char* op_kind_name(OpKind k);

/// One timed op of one eval (std::chrono::steady_clock).
struct OpTime {
  OpKind op = OpKind::Embed;
  int layer = -1;
  uint32_t pos0 = 0;     // position of the batch's first token
  int64_t n_tokens = 0;  // batch size
  int64_t ns = 0;        // elapsed nanoseconds
};
using OpTimer = std::function<void(const OpTime&)>;

struct ContextParams {
  uint32_t n_ctx = 512;  // tokens the KV cache holds
  KvType kv_type = KvType::F32;
  int n_threads = 1;
  /// Auto (default): the backend the model was loaded for (model_backend). Cpu: the CPU
  /// reference (on any model; a CUDA model keeps its host weights). Cuda: the GPU, for a model
  /// loaded with LoadOptions::backend Cuda or Auto on a machine with a usable GPU (BadInput
  /// otherwise).
  Backend backend = Backend::Auto;
  /// Decision rules at the MoE routing and attention-mask points (moelab/policies/policies.h).
  /// Throws at Context::create (BadInput) when a policy does not fit the model.
  RoutingPolicy routing;
  AttentionPolicy attention;
  /// Where the context also adds what its policies did (null: only Context::policy_stats).
  /// Guarded: several contexts, on any backend, may report into one object.
  std::shared_ptr<PolicyStats> policy_stats;
};

/// One sequence's state: KV cache and the logits of the last evaluation. Not thread-safe; one
/// Context per thread of generation. Cancel from another thread with request_cancel().
class Context {
 public:
  virtual ~Context() = default;
  static std::unique_ptr<Context> create(std::shared_ptr<const Model> model,
                                         const ContextParams& params);

  /// Evaluates `tokens` at positions n_past() .. n_past()+n-1 as one batch (prefill when n > 1,
  /// decode when n == 1) and appends them to the KV cache. When all_logits is true the logits
  /// of every token are kept, otherwise only the last token's.
  /// Throws moelab::Error: BadInput for a token id outside the vocabulary or when the batch
  /// does not fit in the KV cache (the context is left unchanged), Cancelled.
  virtual void eval(std::span<const int32_t> tokens, bool all_logits = false) = 0;

  /// Logits F32 [n_vocab] of token i of the last eval (i = -1: the last token).
  virtual std::span<const float> logits(int i = -1) const = 0;
  virtual uint32_t n_past() const = 0;
  virtual uint32_t n_ctx() const = 0;
  /// With an evict:S,W attention policy the cache never fills: n_ctx() is then the position
  /// limit (INT32_MAX) and a batch must fit in the cells left after eviction.
  /// Drops KV-cache entries at positions >= n_past (0 clears the cache).
  virtual void truncate(uint32_t n_past) = 0;
  virtual void request_cancel() = 0;

  /// Installs `observer` for the intermediates named in `names` (replacing any previous one;
  /// a null observer or an empty list removes it). Tensors not asked for cost nothing. Names
  /// and shapes (n = tokens of the batch, n_kv = n_past + n, k = expert_used_count; ids are
  /// stored as floats):
  ///   layer -1:  inp_embd [n, n_embd] (after any embedding scale), result_norm [n_out, n_embd],
  ///              result_output [n_out, n_vocab] (n_out = n with all_logits, else 1)
  ///   per layer: attn_norm [n, n_embd]; Qcur [n, n_head*head_dim], Kcur [n, n_head_kv*head_dim]
  ///              (after q/k norm and RoPE); Vcur [n, n_head_kv*head_dim_v];
  ///              kq_soft_max [n_head, n, n_kv] (attention probabilities, masked entries 0);
  ///              kqv_out [n, n_head*head_dim_v]; attn_out [n, n_embd] (after attn_output and
  ///              any post-attention norm); ffn_inp [n, n_embd] (residual after attention);
  ///              ffn_norm [n, n_embd]; ffn_moe_logits, ffn_moe_probs [n, expert_count]
  ///              (softmax probabilities, or sigmoid scores for sigmoid-gated routers; gpt-oss:
  ///              logits before its router bias, probs = the biased logits, scores);
  ///              ffn_moe_probs_biased [n, expert_count] (routers with a selection-only bias:
  ///              the scores the choice is made on); ffn_moe_topk [n, k] (descending
  ///              selection score); ffn_moe_weights [n, k] (un-normalised scores);
  ///              ffn_moe_weights_norm [n, k] (renormalising architectures and unit-gated
  ///              moefied models only: the weights applied); ffn_moe_weights_scaled [n, k]
  ///              (routers with a routed scale, e.g. glm4moe: the weights applied);
  ///              ffn_moe_weights_softmax [n, k] (gpt-oss: the softmax over the k selected
  ///              scores, the weights applied);
  ///              ffn_moe_group_topk [n, expert_group_used_count] (group-limited routers,
  ///              deepseek2 V3-style: the kept expert groups as floats, descending group
  ///              score; only without a routing policy);
  ///              For MLA (deepseek2) Qcur is the absorbed query [n, n_head*(kv_lora+rope)],
  ///              Kcur the cached row [n, kv_lora+rope], Vcur c_kv [n, kv_lora] and kqv_out
  ///              the per-head values after attn_v_b [n, n_head*v_head];
  ///              MoE layers only (leading dense layers emit none of the ffn_moe_* tensors);
  ///              ffn_moe_out [n, n_embd] (routed experts' weighted sum); ffn_shexp [n, n_embd]
  ///              (gated shared expert); ffn_out [n, n_embd] (FFN result incl. post-FFN norm);
  ///              layer_out [n, n_embd].
  /// Throws moelab::Error (BadInput) for a name not in observable_names().
  virtual void set_observer(Observer observer, std::vector<std::string> names) = 0;
  static const std::vector<std::string>& observable_names();

  /// Installs `timer` (null removes it), called after each timed op of every eval (see OpKind).
  /// Without a timer no clock is read.
  virtual void set_op_timer(OpTimer timer) = 0;

  /// The policies in force and what they did since creation (or reset_policy_stats()).
  virtual const RoutingPolicy& routing_policy() const = 0;
  virtual const AttentionPolicy& attention_policy() const = 0;
  virtual PolicyStats policy_stats() const = 0;
  virtual void reset_policy_stats() = 0;

  virtual const Model& model() const = 0;
};

}  // namespace moelab
