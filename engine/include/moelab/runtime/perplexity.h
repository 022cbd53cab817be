// Perplexity of a model over a text, computed the way llama.cpp's perplexity tool does
// (examples/perplexity/perplexity.cpp, function perplexity(), commit c392e50), so numbers are
// comparable with the ones people quote:
//
//   1. Tokenize the whole text once (with BOS when the vocabulary adds one).
//   2. Cut the tokens into n_chunks = floor(n_tokens / n_ctx) non-overlapping chunks of n_ctx
//      tokens; the remainder is not used.
//   3. Evaluate each chunk from an empty KV cache, with its first token replaced by BOS (when
//      the vocabulary has one and adds it), keeping the logits of every position.
//   4. Score only the second half of each chunk: for positions j in [n_ctx/2, n_ctx - 1), the
//      negative log-likelihood -log softmax(logits[j])[token[j + 1]] (so every scored token has
//      at least n_ctx/2 tokens of context).
//   5. PPL = exp(mean NLL over all scored tokens). The uncertainty is the standard error of the
//      mean NLL propagated through exp (PPL * stderr), as llama.cpp prints it.
//
// One deviation: llama.cpp refuses texts shorter than 2 * n_ctx tokens; we need one chunk
// (n_ctx tokens).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moelab/model/model.h"

namespace moelab {

struct PerplexityParams {
  uint32_t n_ctx = 512;  // tokens per chunk (>= 4)
  int n_threads = 1;
  KvType kv_type = KvType::F32;
  int max_chunks = 0;  // > 0: stop after this many chunks
  /// The policies the context runs under, and where it adds what they did (ContextParams).
  RoutingPolicy routing;
  AttentionPolicy attention;
  std::shared_ptr<PolicyStats> policy_stats;
  /// Called after each chunk with (chunks done, n_chunks, running PPL); return false to cancel
  /// (throws moelab::Error, Cancelled).
  std::function<bool(int, int, double)> progress;
};

struct PerplexityResult {
  double ppl = 0;
  double ppl_stderr = 0;
  double mean_nll = 0;         // nats per scored token
  uint64_t n_text_tokens = 0;  // tokens of the whole text
  uint32_t n_ctx = 0;
  int n_chunks = 0;               // chunks evaluated
  uint64_t n_scored = 0;          // tokens scored
  std::vector<double> chunk_ppl;  // running PPL after each chunk (as llama.cpp prints)
  double seconds = 0;
  /// One line naming the method, for reports.
  std::string method;
};

/// Perplexity over pre-tokenized text (`tokens[0]` should be BOS when the model uses one).
/// Throws moelab::Error (BadInput) when there are fewer than n_ctx tokens or n_ctx < 4.
PerplexityResult perplexity(std::shared_ptr<const Model> model, std::span<const int32_t> tokens,
                            const PerplexityParams& params);
/// Tokenizes `text` with the model's tokenizer (BOS as the vocabulary says, special-token text
/// not parsed) and calls the overload above. Throws BadInput when the model has no tokenizer.
PerplexityResult perplexity(std::shared_ptr<const Model> model, const std::string& text,
                            const PerplexityParams& params);

}  // namespace moelab
