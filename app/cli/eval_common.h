// Shared by `eval` and `sweep`: one perplexity evaluation under a routing / attention policy,
// stored as a run of kind "eval" (config, result with per-chunk values, metrics).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "moelab/runtime/perplexity.h"
#include "run_store.h"

namespace moelab::cli {

struct EvalSpec {
  std::string model;
  std::string file;
  std::string db;
  uint32_t n_ctx = 512;
  int threads = 0;  // 0: cores, at most 8
  int chunks = 0;   // 0: all
  bool kv_f16 = false;
  std::string routing_policy = "default";
  std::string attention_policy = "full";
  /// Optional reference model (e.g. the dense model a moefied one came from): each evaluation
  /// also stores kl_vs_reference, see mean_kl_to_reference.
  std::string reference;
};

/// --model, --file, --ctx, --threads, --chunks, --kv-f16, --reference.
void add_eval_spec_options(CLI::App* sub, EvalSpec& s, bool file_required = true);

/// Splits policy lists: "k:1,k:2,top-p:0.9,1,4" -> {"k:1", "k:2", "top-p:0.9,1,4"}. A comma
/// piece that starts with a digit, '.', '-' or '*' continues the previous spec (the parameters
/// of top-p, entropy, mask, fail, local-global and evict are comma-separated numbers). Each
/// argument may itself be a list; empty pieces are dropped.
std::vector<std::string> split_policy_list(const std::vector<std::string>& args);

/// Mean KL(reference || model) in nats per token over the positions llama.cpp's perplexity
/// method scores (non-overlapping chunks of n_ctx tokens, the first token of each chunk replaced
/// by BOS when the vocabulary adds one, positions n_ctx/2 .. n_ctx-2 predicting the next token),
/// both models' next-token distributions as softmax of their logits, summed in double; the
/// model runs under `routing` and `attention`, the reference without policies. Throws
/// moelab::Error (BadInput) when the vocabularies differ or the text is shorter than one chunk.
double mean_kl_to_reference(std::shared_ptr<const Model> reference,
                            std::shared_ptr<const Model> model, const std::string& text,
                            uint32_t n_ctx, int max_chunks, int threads,
                            const RoutingPolicy& routing, const AttentionPolicy& attention);

struct EvalOutcome {
  int64_t run_id = 0;
  PerplexityResult result;
  std::string routing_policy, attention_policy;  // canonical specs
  double avg_active_experts = 0;                 // 0 for a dense model
  double kl_vs_reference = -1;                   // nats/token; -1 without a reference
};

/// Runs and stores one evaluation. `progress(done, total, running_ppl)` after every chunk (the
/// running values are also stored as metrics chunks_done / running_ppl). The run is finished as
/// failed (and the error rethrown) when the evaluation throws.
EvalOutcome run_eval(storage::AsyncWriter& writer, const std::string& session,
                     std::shared_ptr<const Model> model, const storage::ModelRecord& model_row,
                     const EvalSpec& spec, const std::string& text, const std::string& routing,
                     const std::string& attention,
                     const std::function<void(int, int, double)>& progress = {});

}  // namespace moelab::cli
