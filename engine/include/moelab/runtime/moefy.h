// Dense -> Mixture-of-Experts conversion without training ("MoEfication").
//
// Method (after CMoE, Pei et al. 2025, arXiv:2502.04416, and MoEfication, Zhang et al., ACL
// Findings 2022): the dense model runs over a calibration text; per layer, the FFN input x
// (ffn_norm output, F32 [T, n_embd]) of each token gives the hidden activations
// h = silu(W_gate x) * (W_up x) (F32 [T, n_ff]). Neuron i's importance for token t is
// a[t, i] = |h[t, i]| * ||W_down[:, i]||, the largest its contribution to the FFN output can be.
// A neuron is "active" for a token when it is among the token's (S + K) / (N + S) * n_ff most
// important neurons (the fraction of the FFN the MoE runs per token).
//   * Shared expert: the S * m neurons active most often (m = n_ff / (N + S); ties: lower
//     index), merged into one always-on shared expert of width S * m (CMoE's shared experts).
//   * Routed experts (method "cluster", the default): the remaining N * m neurons grouped into N
//     experts of exactly m neurons by balanced k-means on their binary activation patterns over
//     the calibration tokens (squared Euclidean distance; centroids seeded by farthest-point
//     from the most often active neuron; each iteration assigns (neuron, expert) pairs in
//     ascending distance while the expert has room, as CMoE's balanced assignment; at most 16
//     iterations). Method "contiguous" splits them in index order (the baseline MoEfication
//     compares clustering against).
//   * Router: a linear router fitted without gradients by ridge least squares on the
//     calibration tokens, W = argmin ||X W - Z||^2 + lambda ||W||^2 with Z[t, e] the per-token
//     standardised importance of expert e (sum of a[t, i] over its neurons) and lambda =
//     1e-3 * trace(X^T X) / n_embd. Least squares rather than CMoE's representative-neuron
//     router because moelab's router must be one linear map (ffn_gate_inp) and the fit uses
//     every neuron of the expert, not one.
// Gating: with layout "moelab" (default) the file records moelab.expert_gating = "unit": the K
// selected experts are applied with weight 1 (CMoE's training-free mode) and the shared expert is
// ungated, so with every routed expert active (routing policy k:N) the MoE computes what the
// dense model computes (the same neurons, summed in another order). Layout "mixtral" writes a
// standard llama-architecture MoE (softmax -> top-k -> renormalised weights, no shared expert,
// S must be 0) that other engines load. To stay close to the unit gating there, its router
// logits are scaled by 1/64 (a nearly uniform softmax: each renormalised top-K weight is close to
// 1/K; the choice of experts is unchanged) and its routed experts' down projections (F32) are
// multiplied by K, so the top-K experts are applied with weights close to 1.
//
// Tensors: ffn_gate_exps / ffn_up_exps keep the source type (their rows are whole neurons);
// ffn_down_exps, the shared expert's down and every shared-expert tensor are F32 when the source
// down projection is quantized (a neuron is a column of W_down, which a block format cannot
// slice; F32 is exact), as are the routers. Every other tensor and metadata key is copied.
// Metadata moelab.moefy.*: source_sha256, calib_sha256, calib_tokens, method, layout, experts,
// shared, top_k.
//
// Deterministic: the same model, text and parameters give the same bytes (no random numbers;
// every sum in a fixed order for a fixed n_threads).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace moelab {

struct MoefySpec {
  std::string model_path;          // dense GGUF (architecture llama)
  std::string calib_path;          // UTF-8 calibration text
  std::string out_path;            // written via a temporary file in the same folder, then renamed
  uint32_t experts = 8;            // N routed experts
  uint32_t shared = 0;             // S shared experts (merged into one always-active expert)
  uint32_t top_k = 2;              // K routed experts per token (expert_used_count)
  std::string method = "cluster";  // "cluster" | "contiguous"
  std::string layout = "moelab";   // "moelab" (unit gating) | "mixtral" (softmax, S = 0)
  uint32_t calib_tokens = 2048;    // at most this many calibration tokens are used
  uint32_t n_ctx = 256;            // calibration chunk length (capped by the model's context)
  int n_threads = 1;
};

struct MoefyResult {
  std::string architecture;
  uint32_t n_layer = 0, n_embd = 0, n_ff = 0;
  uint32_t expert_n_ff = 0;   // m = n_ff / (N + S)
  uint32_t calib_tokens = 0;  // tokens used
  uint64_t file_bytes = 0;
  std::vector<double> shared_hit;  // per layer: share of active (token, neuron) pairs in shared
  std::vector<double> routed_hit;  // per layer: share covered by the router's top-K experts
};

/// Checks every argument and input before any work (throws moelab::Error BadInput with the file
/// or option named: already-MoE file, architecture other than llama, N + S not dividing n_ff,
/// K outside 1..N, N < 2, a chunk length under kMoefyMinChunk, calibration text missing, empty,
/// not UTF-8 or shorter than 64 tokens, output path the same as the model or not a regular
/// file), then converts. `progress(fraction,
/// stage)` may return false to cancel (throws Cancelled; no output file is left).
MoefyResult moefy(const MoefySpec& spec,
                  const std::function<bool(float, std::string_view)>& progress = {});

/// Minimum calibration tokens moefy accepts.
inline constexpr uint32_t kMoefyMinCalibTokens = 64;
/// Most calibration tokens used (16M; the activation statistics are O(tokens x n_ff) time).
inline constexpr uint32_t kMoefyMaxCalibTokens = 1u << 24;
/// Shortest calibration chunk (MoefySpec::n_ctx), tokens.
inline constexpr uint32_t kMoefyMinChunk = 8;

}  // namespace moelab
