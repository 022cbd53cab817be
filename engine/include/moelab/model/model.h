// Loaded model and inference context: the engine's public entry points for a forward pass.
// (Contract fixed by the engine lead; models/ implements it, one file per architecture.)
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"

namespace moelab {

class Tokenizer;  // moelab/tokenizer/tokenizer.h

struct LoadOptions {
  /// Called with the fraction done in [0, 1]; return false to cancel (load throws
  /// moelab::Error with kind Cancelled).
  std::function<bool(float)> progress;
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

  virtual const ModelCard& card() const = 0;
  virtual const gguf::File& file() const = 0;
  /// The tokenizer built from the file's tokenizer.ggml.* metadata (null if the file has none).
  virtual const Tokenizer* tokenizer() const = 0;
};

enum class KvType { F32, F16 };

struct ContextParams {
  uint32_t n_ctx = 512;        // tokens the KV cache holds
  KvType kv_type = KvType::F32;
  int n_threads = 1;
  std::string backend = "cpu";  // "cpu" (reference); "cuda" when built and available
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
  /// Drops KV-cache entries at positions >= n_past (0 clears the cache).
  virtual void truncate(uint32_t n_past) = 0;
  virtual void request_cancel() = 0;

  virtual const Model& model() const = 0;
};

}  // namespace moelab
