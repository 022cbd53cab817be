// Internal: what every backend's Context (CPU: cpu_context.cpp, CUDA:
// backend/cuda/cuda_context.cpp) does the same way - checking the run's policies against the model
// and picking the logits row that Context::logits(i) returns (contract in moelab/model/model.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"
#include "moelab/policies/policies.h"

namespace moelab::models {

/// The observable intermediates, in the order of observable_names() (= Context::
/// observable_names(); names as llama.cpp's graph callbacks, see moelab/model/model.h).
enum Key : int {
  kInpEmbd,
  kAttnNorm,
  kQcur,
  kKcur,
  kVcur,
  kKqSoftMax,
  kKqvOut,
  kAttnOut,
  kFfnInp,
  kFfnNorm,
  kMoeLogits,
  kMoeProbs,
  kMoeTopk,
  kMoeWeights,
  kMoeWeightsNorm,
  kMoeOut,
  kShexp,
  kFfnOut,
  kLayerOut,
  kResultNorm,
  kResultOutput,
  kMoeProbsBiased,     // selection scores (probs + selection bias)
  kMoeWeightsScaled,   // applied weights after the routed scale
  kMoeWeightsSoftmax,  // applied weights of a softmax-over-selected router (gpt-oss)
  kMoeGroupTopk,       // group-limited routers: the kept expert groups per token
  kKeyCount
};

/// The names of the Key values, index = Key.
const std::vector<std::string>& observable_names();

/// Bit k set for each requested name of Key k. Throws moelab::Error (BadInput) naming an unknown
/// name and listing the observable ones.
uint64_t observer_mask(const std::vector<std::string>& names);

/// Emplaces the router of a non-default routing policy into `router` (leaves it empty for the
/// model's own top-k). Throws moelab::Error (BadInput) when the model has no experts to route or
/// the policy does not fit it (policies::Router's checks). gating: the architecture's router
/// (ArchConfig's moe_* fields and expert groups).
void init_router(std::optional<policies::Router>& router, const RoutingPolicy& policy,
                 const ModelCard& card, const RouterGating& gating);

/// True when the attention policy evicts KV cells (StreamingLLM-style sinks + window). Throws
/// moelab::Error (BadInput) when sinks + window exceed n_ctx.
bool evicting_policy(const AttentionPolicy& policy, uint32_t n_ctx);

/// The precision rule every backend follows for a product with weights of `type` and n_in
/// inputs: true = the activations stay F32 (kernels::Precision::Exact), false = they are rounded
/// or quantized like ggml's vec_dot_type (GgmlCompatible). One exception to the rounding mirrors
/// llama.cpp on x86: a dense product (ggml_mul_mat) with F32 or F16 weights and n_in % 8 == 0 is
/// taken by llamafile's tinyBLAS, which multiplies the weights with the F32 activations
/// unrounded and sums in its own lane order; expert products (`expert`, ggml_mul_mat_id) never
/// take that path (F32: ggml_vec_dot_f32's order; F16: rounded activations). Measured on the
/// fixtures: llama-dense-k.F16 agrees to 2e-6 this way and to 3e-3 with rounded activations.
bool exact_activations(gguf::TensorType type, int64_t n_in, bool expert);

/// The row of a context's logits buffer [n_logits, n_vocab] that Context::logits(i) returns
/// after an eval of n_batch tokens: i < 0, or the batch's last token, gives the last row; with
/// all_logits, token i's row. Throws moelab::Error (BadInput) when none was kept.
int64_t logits_row(int i, int64_t n_logits, int64_t n_batch, bool logits_all);

/// Stops a run whose logits are not finite. `logits` F32 [n_rows, n_vocab] of an eval of the
/// positions pos0 .. pos0 + n_batch - 1 (n_rows = n_batch with all logits, else 1). When a value
/// is NaN or ±Inf, throws moelab::Error (BadInput) naming the position and where the non-finite
/// values come from: the first weight tensor of `file` in forward order (token_embd, blk.0 ..
/// blk.N-1, output_norm, output) holding a NaN/Inf (row and column given), else "an activation
/// overflowed" (every weight is finite). The scan of the weights runs only on that error path.
void check_finite_logits(const float* logits, int64_t n_rows, int64_t n_vocab, uint32_t pos0,
                         int64_t n_batch, const gguf::File& file);

/// The first weight tensor of `file`, in forward order, holding a NaN or ±Inf, as
/// "tensor 'NAME' holds NaN at row R, column C"; empty when every weight is finite.
std::string find_non_finite_weight(const gguf::File& file);

}  // namespace moelab::models
