// Internal: the CUDA backend's device operations behind a plain C++ interface (no CUDA headers),
// so that the forward pass (cuda_context.cpp) and the parity tests are compiled by the host
// compiler and only cuda_ops.cu goes through nvcc.
//
// Every function enqueues its work on `stream` (asynchronous unless it says otherwise) and
// checks the launch; any CUDA error throws moelab::Error (kind Io) naming the op, e.g.
// "CUDA error in matvec(Q4_K): an illegal memory access was encountered".
//
// Pointers marked "device" point into device memory (dmalloc); "pinned" into hmalloc_pinned.
// Layouts follow the CPU engine: row-major, last dimension contiguous; a weight W with
// ne = [n_in, n_out] is n_out rows of row_bytes bytes (ggml block formats, kernels.h).
//
// Element math (block decoding, activation quantizers, per-block dot products, RoPE, SiLU,
// GELU, soft-capping, top-k routing, binary16 conversions) comes from the shared MOELAB_HD
// headers engine/kernels/element/*.h and engine/ops/element/element.h, so per element the
// device computes what the CPU reference computes; reductions run in parallel, so sums differ
// from the CPU's in order only (see tests/engine/cuda/test_cuda_parity.cpp for the tolerances).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

struct CUstream_st;  // cudaStream_t is CUstream_st*
struct CUevent_st;   // cudaEvent_t is CUevent_st*

namespace moelab::ops::element {
struct RouteSpec;  // ops/element/element.h
}

namespace moelab::cuda {

using Stream = CUstream_st*;
using Event = CUevent_st*;

// ---- device, memory, streams, events --------------------------------------------------------

/// Number of usable devices (0 without driver or device; never throws) and why none is usable.
int device_count(std::string* why = nullptr);
/// Makes device 0 current for the calling thread and returns its name ("NVIDIA H200").
std::string use_device();
/// Free and total bytes of the current device.
void mem_info(size_t* free_bytes, size_t* total_bytes);

void* dmalloc(size_t bytes, const char* what);  // throws Error naming `what` and the sizes
void dfree(void* p) noexcept;
void* hmalloc_pinned(size_t bytes, const char* what);
void hfree_pinned(void* p) noexcept;
void memset_async(void* dst, int value, size_t bytes, Stream s);
void h2d(void* dst, const void* src, size_t bytes, Stream s);  // async when src is pinned
void d2h(void* dst, const void* src, size_t bytes, Stream s);  // async when dst is pinned
void d2d(void* dst, const void* src, size_t bytes, Stream s);
void h2d_sync(void* dst, const void* src, size_t bytes);  // blocking (weight upload)

Stream stream_create();
void stream_destroy(Stream s) noexcept;
void stream_sync(Stream s, const char* op);  // throws on an error of earlier async work

Event event_create();
void event_destroy(Event e) noexcept;
void event_record(Event e, Stream s);
/// Milliseconds between two recorded events (both must have completed: sync first).
float event_elapsed_ms(Event a, Event b);

// ---- matrix products -------------------------------------------------------------------------

/// ggml type ids (== gguf::TensorType values) of the weight types the backend multiplies.
enum class WType : int {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  BF16 = 30,
  MXFP4 = 39,
};
bool supported(int ggml_type);
const char* wtype_name(WType t);

/// How activations meet the weights in matvec (kernels::Precision), and the order of the sums
/// (the CPU kernels' for float weights, so decode products are bit for bit the CPU's):
///   Ggml  - the activation row is converted to ggml's vec_dot_type first (Q8_0 / Q8_1 / Q8_K
///           for quantized weights, F16 / BF16 for F16 / BF16 weights, F32 for F32); F32 sums
///           in ggml_vec_dot_f32's order, F16 / BF16 in double
///   Exact - F32 activations (F32, F16, BF16 weights only; quantized weights go through gemm);
///           F32 weights sum in tinyBLAS's order, F16 / BF16 (decoded) in ggml_vec_dot_f32's
enum class ActMode { Ggml, Exact };

/// Bytes of one prepared activation row of n_in elements for weights of type t.
size_t act_row_bytes(WType t, ActMode m, int64_t n_in);

/// Prepares activations: out (device) row r = convert(x (device) row r), x F32 [n_rows, n_in]
/// with row stride ldx floats; out [n_rows, act_row_bytes]. One thread per block.
void prepare_act(WType t, ActMode m, const float* x, int64_t ldx, int64_t n_rows, int64_t n_in,
                 void* out, Stream s);

/// The activations matvec multiplies in mode m, as F32 for a GEMM against dequantized weights:
/// out row r = x row r rounded to F16 / BF16 (F16 / BF16 weights, Ggml mode), or quantized per
/// block to Q8_0 / Q8_1 / Q8_K exactly as prepare_act and decoded again (quantized weights), or
/// copied (F32 weights, Exact mode). The GEMM then multiplies the values the CPU kernels
/// multiply (F16 x F16 products are exact in F32), so prefill matches the CPU reference as
/// decode does. x F32 [n_rows, ldx]; out F32 [n_rows, n_in] (device). One thread per block.
void round_act(WType t, ActMode m, const float* x, int64_t ldx, int64_t n_rows, int64_t n_in,
               float* out, Stream s);

/// y[j, r] = W_e[r, :] · a[j / x_div, :] for j < n_rows, r < n_out, where W_e starts at
/// w + e * expert_stride bytes with e = ids[j] (ids null: e = 0; ids[j] < 0: row j of y is 0,
/// an unused routing slot). a: prepared activations (prepare_act with the same t, m, n_in).
/// w, ids, a, y: device; y F32 [n_rows, n_out]. One warp per output element row, summing the
/// per-block dot products of the shared element math.
void matvec(WType t, ActMode m, const void* w, uint64_t row_bytes, uint64_t expert_stride,
            const int32_t* ids, int64_t n_in, int64_t n_out, const void* a, int x_div,
            int64_t n_rows, float* y, Stream s);

/// Decodes rows of a weight matrix to F32: dst (device) row j = row (row_ids ? row_ids[j] : j)
/// of src (device, row_bytes per row), n_in elements each. dst F32 [n_rows, n_in] (ld n_in).
void dequantize_rows(WType t, const void* src, uint64_t row_bytes, int64_t n_in,
                     const int32_t* row_ids, int64_t n_rows, float* dst, Stream s);

/// GEMM engine for prefill: cuBLAS (libcublas loaded at run time, so binaries start without
/// the toolkit) or, where it cannot be loaded, a shared-memory tiled kernel of our own.
class Blas {
 public:
  explicit Blas(Stream s);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
  /// Y[n_tok, n_out] = X[n_tok, n_in] · Wᵀ with W F32 [n_out, n_in] (all device, F32, FP32
  /// arithmetic: no TF32).
  void gemm(int64_t n_tok, int64_t n_in, int64_t n_out, const float* x, const float* w, float* y);
  /// "cuBLAS 13.0.0" or "tiled kernel (libcublas not loadable: ...)".
  const std::string& describe() const { return what_; }

 private:
  Stream s_;
  void* handle_ = nullptr;
  std::string what_;
};

// ---- element-wise and row ops ------------------------------------------------------------------

/// y = RMSNorm(x) * w per row (w device F32 [n] or null); x, y F32 [n_rows, n] (may alias).
/// Sum of squares in double as el::rms_norm_row.
void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps,
              Stream s);
/// x[r, i] += b[i] for x F32 [n_rows, n].
void add_bias(float* x, const float* b, int64_t n_rows, int64_t n, Stream s);
/// x[i] += y[i], i < count.
void add(float* x, const float* y, int64_t count, Stream s);
/// x[i] *= f.
void scale(float* x, float f, int64_t count, Stream s);
/// x[i] = cap * tanh(x[i] / cap).
void softcap(float* x, float cap, int64_t count, Stream s);
/// Softmax of each row in place (el::softmax_row semantics; -inf -> 0; all -inf -> all 0).
void softmax_rows(float* x, int64_t n_rows, int64_t n, Stream s);
/// gate[i] = act(gate[i]) * up[i] over rows of `row` elements (count a multiple of row): GELU is
/// ggml's (el::gelu_ggml); SiLU is el::swiglu_row's (llama.cpp's: silu_ggml on whole blocks of
/// 8 of each row, libm expf on the row's last row % 8 elements).
void glu(float* gate, const float* up, int64_t count, int64_t row, bool gelu, Stream s);
/// YaRN settings of a RoPE (el::RopeYarn; ops::RopeParams documents them): the defaults are
/// plain RoPE.
struct RopeYarnArgs {
  float ext_factor = 0;               // 0 = no YaRN ramp
  float mscale = 1;                   // magnitude multiplied into cos and sin
  float corr_low = 0, corr_high = 0;  // ramp ends (ops::rope_yarn_corr_dims)
};
/// gate[i] = el::swiglu_oai(gate[i], up[i], alpha, limit) (gpt-oss's clamped SwiGLU), i < count.
void glu_oai(float* gate, const float* up, int64_t count, float alpha, float limit, Stream s);
/// x[r, i] += b[ids[r], i] for x F32 [n_rows, n], b F32 [n_expert, n] (device), ids device int32
/// [n_rows]; rows with ids[r] < 0 are left alone (expert biases of routed slots).
void add_bias_ids(float* x, const float* b, const int32_t* ids, int64_t n_rows, int64_t n,
                  Stream s);
/// RoPE in place on x F32 [n_tok, n_head * head_dim] with pos (device int32 [n_tok]);
/// rope_type: el::kRopeNorm / kRopeNeox; yarn: YaRN scaling (default none). One thread per
/// (token, head): el::rope_head.
void rope(float* x, int64_t n_tok, int n_head, int head_dim, const int32_t* pos, int n_rot,
          float freq_base, float freq_scale, int rope_type, Stream s,
          const RopeYarnArgs& yarn = RopeYarnArgs());
/// Writes K [n, kw] and V [n, vw] (device F32) into cache cells cell0 .. cell0+n-1 (F32 or
/// F16 caches, [n_cells, kw] / [n_cells, vw]).
void kv_store(void* k_cache, void* v_cache, bool f16, int64_t cell0, const float* k, const float* v,
              int64_t n, int64_t kw, int64_t vw, Stream s);

struct AttnArgs {
  int n_head = 0, n_head_kv = 0, head_dim = 0, head_dim_v = 0;
  float scale = 1, softcap = 0;
  uint32_t window = 0;            // causal sliding window (no mask): 0 = none
  const int32_t* pos = nullptr;   // device int32 [n_tok]: query positions
  const uint8_t* mask = nullptr;  // device [n_tok, n_kv]: 1 = visible (overrides causal)
  const int32_t* key = nullptr;   // device int32 [n_kv]: logical index (position) of cell i,
                                  // ascending; orders the sums as the CPU kernel's key (null: i)
  const void* k = nullptr;        // KV cache layer (device), F32 or F16
  const void* v = nullptr;
  bool f16 = false;
  const float* sinks = nullptr;  // device F32 [n_head]: attention sinks (ops::AttentionParams)
  int64_t v_row = 0;  // values per V cell (0: n_head_kv*head_dim_v); as ops::KvLayer::v_row
};
/// Grouped-query attention of queries t0 .. t0+n_chunk-1 (of n_tok) over n_kv cells; without a
/// mask cell i holds position i and is visible when ops::key_visible(pos[t], i, window).
/// q F32 [n_tok, n_head*head_dim]; out F32 [n_tok, n_head*head_dim_v]; scores (device) F32
/// [n_head, n_chunk, n_kv] receives the softmax probabilities (masked 0). Bit for bit the CPU
/// kernel (ops/attention_kernel.h, llama.cpp's order): K·Q in ggml_vec_dot_f32's / tinyBLAS's
/// lanes, the softmax sum in blocks of 8 keys, probabilities · V in 8 fused lanes by key.
void attention(const AttnArgs& a, const float* q, int64_t n_tok, int64_t t0, int64_t n_chunk,
               int64_t n_kv, float* out, float* scores, Stream s);

/// MoE routing of n tokens (el::route_token, one thread per token): logits F32 [n, n_expert]
/// -> probs [n, n_expert], ids int32 [n, k], weights, applied F32 [n, k] (1 with unit_weights).
void route_top_k(const float* logits, int64_t n, int n_expert, int k, bool renormalise,
                 float* probs, int32_t* ids, float* weights, float* applied, Stream s,
                 bool unit_weights = false);
/// MoE routing with a gating function, selection-only bias and routed scale
/// (el::route_token_gated, one thread per token): as route_top_k, plus sel_bias F32 [n_expert]
/// (device, may be null) and selection F32 [n, n_expert] (probs + sel_bias; used when sel_bias
/// is given), the gating r (sigmoid, renormalise, unit, scale, softmax_selected, group limit)
/// as el::route_token_gated; with a group limit, groups int32 [n, n_group_used] (device, may
/// be null) receives the kept groups per token.
void route_gated(const float* logits, int64_t n, int n_expert, int k,
                 const ops::element::RouteSpec& r, const float* sel_bias, float* probs,
                 float* selection, int32_t* ids, float* weights, float* applied, Stream s,
                 int32_t* groups = nullptr);
/// out F32 [n, n_group_used] = the kept groups of each token (el::top_groups on sel F32
/// [n, n_expert]), as floats (one thread per token).
void kept_groups(const float* sel, int64_t n, int n_expert, int n_group, int n_group_used,
                 float* out, Stream s);
/// dst[r * dst_stride + i] = src[r * src_stride + i] for r < rows, i < width (device F32).
void copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
             int64_t width, Stream s);
/// out[t] = sum_j applied[t, j] * res[t*k + j] over slots with ids >= 0, in slot order.
/// res F32 [n*k, E]; out F32 [n, E] (overwritten).
void moe_weighted_sum(const float* res, const int32_t* ids, const float* applied, int64_t n, int k,
                      int64_t E, float* out, Stream s);
/// dst[r] = src[rows[r] / div] for r < m (rows of E floats; rows device int32 [m]).
void gather_rows(const float* src, const int32_t* rows, int div, int64_t m, int64_t E, float* dst,
                 Stream s);
/// dst[rows[r]] = src[r] for r < m.
void scatter_rows(const float* src, const int32_t* rows, int64_t m, int64_t E, float* dst,
                  Stream s);
/// Qwen2-MoE shared-expert gate: x[t] *= sigmoid(g · cur[t]) (g F32 [E]; x, cur F32 [n, E]);
/// the sigmoid evaluated as silu(x) / x like the CPU context.
void shexp_gate(float* x, const float* g, const float* cur, int64_t n, int64_t E, Stream s);
/// out[i] = float(ids[i]).
void ids_to_float(const int32_t* ids, int64_t count, float* out, Stream s);

}  // namespace moelab::cuda
