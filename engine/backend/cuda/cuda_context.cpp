// The CUDA backend: CudaModel (device copies of a loaded CpuModel's weights) and CudaContext
// (the op set of models/forward.h on the GPU; the forward pass itself, the observers, OpTimer
// ops, policies and KV-cache bookkeeping are models::ForwardContext's and ContextBase's, shared
// with the CPU). Host C++ only; the device work is in cuda_ops.cu.
//
// Numerics (what parity with the CPU reference means, tests/engine/cuda/test_cuda_parity.cpp):
//   * products of a batch of fewer than gemm_min tokens (decode, short prompts) run the
//     matvec kernels with ggml-compatible activations (Q8_0 / Q8_1 / Q8_K, F16 / BF16), i.e. the
//     integer block dot products of the CPU kernels, summed in another order;
//   * larger batches (prefill) dequantize each weight matrix to F32, round the activations as
//     the CPU kernels do (cuda::round_act: F16 / BF16 rounding, Q8 quantization per block) and
//     multiply with cuBLAS SGEMM (FP32, no TF32): the CPU's element products, summed in
//     another order. (Without the rounding, prefill on quantized models differed from the CPU
//     by rms 0.02-0.18 in the logits; the emulator-run parity test found it.)
//   * gemm_min is 32 tokens, or MOELAB_CUDA_GEMM_MIN from the environment (0 = never GEMM);
//   * MoE: top-k routing on the device (el::route_token) unless a routing policy is set (then
//     the policies::Router runs on the host over the copied logits). Batches of up to 4 tokens
//     run each (token, slot) against its expert's rows directly (no host round trip); larger
//     batches copy the expert ids back, group the tokens per expert and run one product per
//     expert that received tokens (experts with none are skipped).
//
// Probes: only the intermediates an observer subscribed to are copied back, asynchronously
// into pinned buffers on the compute stream, and handed to the observer after the eval's
// final synchronisation (in the order the CPU backend emits them). OpTimer times come from
// CUDA events around the same ops, reported after that synchronisation.
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_ops.h"
#include "models/context_common.h"
#include "models/forward.h"
#include "moelab/core/error.h"
#include "moelab/core/log.h"
#include "ops/element/element.h"

namespace moelab {
namespace backend {
namespace {

using cuda::WType;

struct DWeight {
  const uint8_t* data = nullptr;  // device
  WType type = WType::F32;
  int64_t n_in = 0, n_out = 0;
  uint64_t row_bytes = 0;
  uint64_t expert_stride = 0;  // bytes between experts of a merged 3-D tensor
  explicit operator bool() const { return data != nullptr; }
};

constexpr size_t kAlign = 256;
size_t align_up(size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

class CudaModel final : public Model {
 public:
  CudaModel(std::shared_ptr<const models::CpuModel> cpu, const LoadOptions& opts)
      : cpu_(std::move(cpu)) {
    device_name_ = cuda::use_device();
    const models::Weights& w = cpu_->weights();
    // Plan the arena: every distinct tensor once (tied output = token_embd).
    struct Item {
      const void* host;
      size_t bytes;
      size_t offset;
    };
    std::vector<Item> items;
    size_t total = 0;
    auto plan = [&](const void* host, size_t bytes) {
      if (!host || bytes == 0) return;
      for (const auto& it : items)
        if (it.host == host) return;
      items.push_back({host, bytes, total});
      total += align_up(bytes);
    };
    auto mat_bytes = [](const models::Weight& m) {
      return static_cast<size_t>(m.row_bytes) * m.ne[1] * m.ne[2] * m.ne[3];
    };
    auto plan_w = [&](const models::Weight& m) {
      if (!m) return;
      if (!cuda::supported(static_cast<int>(m.type)))
        throw Error(ErrorKind::BadInput, "the CUDA backend has no kernels for this tensor type",
                    {.file = cpu_->file().path(), .subject = "tensor '" + m.name + "'"});
      plan(m.data, mat_bytes(m));
    };
    auto plan_v = [&](const std::vector<float>& v) {
      if (!v.empty()) plan(v.data(), v.size() * sizeof(float));
    };
    models::for_each_weight(w, plan_w, plan_v);
    size_t free_b = 0, total_b = 0;
    cuda::mem_info(&free_b, &total_b);
    if (total > free_b)
      throw Error(ErrorKind::Io,
                  "the model's weights need " + format_bytes(total) + " of GPU memory but " +
                      device_name_ + " has " + format_bytes(free_b) + " free (of " +
                      format_bytes(total_b) +
                      "); run it with --backend cpu or a smaller "
                      "quantization",
                  {.file = cpu_->file().path(), .subject = "cuda"});
    arena_ = static_cast<uint8_t*>(cuda::dmalloc(total, "the model's weights"));
    weight_bytes_ = total;
    try {
      for (size_t i = 0; i < items.size(); ++i) {
        cuda::h2d_sync(arena_ + items[i].offset, items[i].host, items[i].bytes);
        if (opts.progress && (i % 16 == 0) &&
            !opts.progress(0.9f + 0.1f * static_cast<float>(i) / static_cast<float>(items.size())))
          throw Error(ErrorKind::Cancelled, "loading was cancelled", {.file = cpu_->file().path()});
      }
    } catch (...) {
      cuda::dfree(arena_);
      throw;
    }
    auto dev = [&](const void* host) -> uint8_t* {
      if (!host) return nullptr;
      for (const auto& it : items)
        if (it.host == host) return arena_ + it.offset;
      return nullptr;
    };
    auto dw = [&](const models::Weight& m) {
      DWeight d;
      if (!m) return d;
      d.data = dev(m.data);
      d.type = static_cast<WType>(m.type);
      d.n_in = m.ne[0];
      d.n_out = m.ne[1];
      d.row_bytes = m.row_bytes;
      d.expert_stride = static_cast<uint64_t>(m.row_bytes) * m.ne[1];
      return d;
    };
    auto dv = [&](const std::vector<float>& v) {
      return v.empty() ? nullptr : reinterpret_cast<const float*>(dev(v.data()));
    };
    auto map_w = [&](const models::Weight& m) {
      if (m) mats_.emplace(m.data, dw(m));
    };
    auto map_v = [&](const std::vector<float>& v) {
      if (!v.empty()) vecs_.emplace(v.data(), dv(v));
    };
    models::for_each_weight(w, map_w, map_v);
    log(LogLevel::Info, "CUDA: " + format_bytes(total) + " of weights on " + device_name_);
  }
  ~CudaModel() override { cuda::dfree(arena_); }

  const ModelCard& card() const override { return cpu_->card(); }
  const gguf::File& file() const override { return cpu_->file(); }
  const Tokenizer* tokenizer() const override { return cpu_->tokenizer(); }

  const std::shared_ptr<const models::CpuModel>& cpu() const { return cpu_; }
  /// The device copy of a weight of cpu()->weights().
  const DWeight& mat(const models::Weight& m) const { return mats_.at(m.data); }
  /// The device copy of an F32 vector of cpu()->weights() (null for an empty one).
  const float* vec(const std::vector<float>& v) const {
    return v.empty() ? nullptr : vecs_.at(v.data());
  }
  const std::string& device_name() const { return device_name_; }

 private:
  std::shared_ptr<const models::CpuModel> cpu_;
  std::string device_name_;
  uint8_t* arena_ = nullptr;
  size_t weight_bytes_ = 0;
  std::unordered_map<const void*, DWeight> mats_;       // by host data
  std::unordered_map<const void*, const float*> vecs_;  // by host data
};

// A growable device buffer. Growing waits for the stream (the old memory may still be read).
class DBuf {
 public:
  DBuf() = default;
  DBuf(const DBuf&) = delete;
  DBuf& operator=(const DBuf&) = delete;
  ~DBuf() { cuda::dfree(p_); }
  template <typename T>
  T* get(size_t count, cuda::Stream s, const char* what) {
    const size_t bytes = count * sizeof(T);
    if (bytes > cap_) {
      if (p_) {
        cuda::stream_sync(s, what);
        cuda::dfree(p_);
        p_ = nullptr;
        cap_ = 0;
      }
      const size_t want = bytes + bytes / 4;
      p_ = cuda::dmalloc(want, what);
      cap_ = want;
    }
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
  size_t cap_ = 0;
};

// A growable pinned host buffer (never resized while a copy into it is pending: the context
// synchronises at the end of every eval before reuse).
class PinnedBuf {
 public:
  PinnedBuf() = default;
  PinnedBuf(PinnedBuf&& o) noexcept : p_(o.p_), cap_(o.cap_) { o.p_ = nullptr, o.cap_ = 0; }
  PinnedBuf(const PinnedBuf&) = delete;
  ~PinnedBuf() { cuda::hfree_pinned(p_); }
  template <typename T>
  T* get(size_t count) {
    const size_t bytes = count * sizeof(T);
    if (bytes > cap_) {
      cuda::hfree_pinned(p_);
      p_ = nullptr;
      cap_ = 0;
      p_ = cuda::hmalloc_pinned(bytes, "observer staging");
      cap_ = bytes;
    }
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
  size_t cap_ = 0;
};

// The observable intermediates: models::Key (kInpEmbd ... kKeyCount), shared with the CPU.
using models::Key;
using enum models::Key;

int64_t gemm_min_from_env() {
  const char* e = std::getenv("MOELAB_CUDA_GEMM_MIN");
  if (!e || !*e) return 32;
  char* end = nullptr;
  const long long v = std::strtoll(e, &end, 10);
  if (end == e || v < 0) return 32;
  return v == 0 ? INT64_MAX : v;
}

constexpr int64_t kSlotPathMaxTokens = 4;        // MoE batches up to this run per (token, slot)
constexpr size_t kScoreChunkFloats = 16u << 20;  // attention score scratch without an observer

class CudaContext final : public models::ForwardContext {
 public:
  CudaContext(std::shared_ptr<const CudaModel> model, const ContextParams& p,
              std::shared_ptr<PolicyStats> shared_stats)
      : ForwardContext(model->card(), model->cpu()->config(), p, std::move(shared_stats)),
        model_(std::move(model)),
        gemm_min_(gemm_min_from_env()) {
    cuda::use_device();
    k_row_ = k_cell_bytes();
    v_row_ = v_cell_bytes();
    const size_t layer_k = align_up(k_row_ * n_ctx_), layer_v = align_up(v_row_ * n_ctx_);
    const size_t kv_bytes = (layer_k + layer_v) * card_.n_layer;
    size_t free_b = 0, total_b = 0;
    cuda::mem_info(&free_b, &total_b);
    if (kv_bytes > free_b)
      throw Error(ErrorKind::Io,
                  "the KV cache of " + std::to_string(n_ctx_) + " tokens needs " +
                      format_bytes(kv_bytes) + " of GPU memory but " + model_->device_name() +
                      " has " + format_bytes(free_b) + " free (of " + format_bytes(total_b) +
                      "); use a smaller n_ctx, an F16 KV cache or --backend cpu",
                  {.subject = "cuda"});
    stream_ = cuda::stream_create();
    try {
      kv_ = static_cast<uint8_t*>(cuda::dmalloc(kv_bytes, "the KV cache"));
      cuda::memset_async(kv_, 0, kv_bytes, stream_);
      for (uint32_t il = 0; il < card_.n_layer; ++il) {
        k_cache_.push_back(kv_ + il * (layer_k + layer_v));
        v_cache_.push_back(kv_ + il * (layer_k + layer_v) + layer_k);
      }
      blas_.emplace(stream_);
      cuda::stream_sync(stream_, "context setup");
    } catch (...) {
      release();
      throw;
    }
  }
  ~CudaContext() override { release(); }

  const Model& model() const override { return *model_; }

 private:
  struct Pending {
    Observation obs;  // data and key_pos set on delivery
    size_t count;
    size_t staging;  // index into staging_
    std::vector<int32_t> key_pos;
  };
  struct Timing {
    OpKind op;
    int layer;
    uint32_t pos0;
    int64_t n;
    int ev_a, ev_b;
  };

  void release() noexcept {
    blas_.reset();
    cuda::dfree(kv_);
    kv_ = nullptr;
    for (auto e : events_) cuda::event_destroy(e);
    events_.clear();
    if (stream_) {
      try {
        cuda::stream_sync(stream_, "context teardown");
      } catch (...) {
      }
      cuda::stream_destroy(stream_);
      stream_ = nullptr;
    }
  }

  // Queues the copy of a device tensor for the observer (delivered after the eval's sync).
  void emit(Key k, int layer, const float* dev, int64_t d0, int64_t d1, int64_t d2,
            const std::vector<int32_t>* key_pos) override {
    if (!wants(k)) return;
    Pending p;
    p.obs = observation(k, layer, d0, d1, d2);
    p.count = static_cast<size_t>(d0 * d1 * (d2 > 0 ? d2 : 1));
    p.staging = pending_.size();
    if (key_pos) p.key_pos = *key_pos;
    if (staging_.size() <= p.staging) staging_.emplace_back();
    float* host = staging_[p.staging].get<float>(p.count);
    cuda::d2h(host, dev, p.count * sizeof(float), stream_);
    pending_.push_back(std::move(p));
  }
  void deliver_observations() {
    for (auto& p : pending_) {
      p.obs.data = {staging_[p.staging].get<float>(p.count), p.count};
      if (!p.key_pos.empty()) p.obs.key_pos = {p.key_pos.data(), p.key_pos.size()};
      observer_(p.obs);
    }
    pending_.clear();
  }

  // CUDA-event op timing (only with a timer installed).
  int record_event() {
    if (ev_used_ == static_cast<int>(events_.size())) events_.push_back(cuda::event_create());
    cuda::event_record(events_[ev_used_], stream_);
    return ev_used_++;
  }
  int64_t clock_mark() override { return record_event(); }
  void clock_report(OpKind op, int layer, int64_t n, int64_t a, int64_t b) override {
    timings_.push_back({op, layer, n_past_, n, static_cast<int>(a), static_cast<int>(b)});
  }
  void deliver_timings() {
    for (const auto& t : timings_) {
      const float ms = cuda::event_elapsed_ms(events_[t.ev_a], events_[t.ev_b]);
      timer_(OpTime{t.op, t.layer, t.pos0, t.n, static_cast<int64_t>(std::llround(ms * 1e6))});
    }
    timings_.clear();
    ev_used_ = 0;
  }

  // y[n, n_out] = x[n, n_in] · W_eᵀ (expert e of a merged tensor; 0 for plain matrices).
  void linear_e(const DWeight& w, int64_t e, const float* x, int64_t n, float* y, bool expert) {
    const uint8_t* base = w.data + static_cast<uint64_t>(e) * w.expert_stride;
    const cuda::ActMode m = act_mode(w, expert);
    if (n >= gemm_min_) {
      float* wd = deq_.get<float>(static_cast<size_t>(w.n_in * w.n_out), stream_, "gemm weights");
      cuda::dequantize_rows(w.type, base, w.row_bytes, w.n_in, nullptr, w.n_out, wd, stream_);
      // The activations the CPU kernels multiply (F16-rounded, Q8-quantized, ...), as F32.
      const float* xa = x;
      if (!(w.type == WType::F32 || (w.type == WType::F16 && m == cuda::ActMode::Exact))) {
        float* r = act_f_.get<float>(static_cast<size_t>(n * w.n_in), stream_, "gemm activations");
        cuda::round_act(w.type, m, x, w.n_in, n, w.n_in, r, stream_);
        xa = r;
      }
      blas_->gemm(n, w.n_in, w.n_out, xa, wd, y);
      return;
    }
    void* a = act_.get<uint8_t>(cuda::act_row_bytes(w.type, m, w.n_in) * n, stream_, "activations");
    cuda::prepare_act(w.type, m, x, w.n_in, n, w.n_in, a, stream_);
    cuda::matvec(w.type, m, base, w.row_bytes, 0, nullptr, w.n_in, w.n_out, a, 1, n, y, stream_);
  }
  // The shared precision rule (models::exact_activations): F32 activations summed in
  // tinyBLAS's order (F32) / ggml_vec_dot_f32's (F16 decoded), else ggml-compatible ones.
  static cuda::ActMode act_mode(const DWeight& w, bool expert) {
    return models::exact_activations(static_cast<gguf::TensorType>(w.type), w.n_in, expert)
               ? cuda::ActMode::Exact
               : cuda::ActMode::Ggml;
  }

  // ---- The op set (models/forward.h) on the device. ----
  const models::Weights& weights() const override { return model_->cpu()->weights(); }
  float* buf(models::Slot slot, size_t count) override {
    static constexpr const char* kWhat[] = {"hidden state",
                                            "normed state",
                                            "Q",
                                            "K",
                                            "V",
                                            "attention output",
                                            "attention projection",
                                            "FFN output",
                                            "shared expert",
                                            "FFN gate",
                                            "FFN up",
                                            "router logits",
                                            "router probabilities",
                                            "expert weights",
                                            "applied weights",
                                            "router selection scores",
                                            "kept expert groups",
                                            "MLA compressed query",
                                            "MLA KV row",
                                            "MLA c_kv",
                                            "MLA rope part",
                                            "MLA absorbed query",
                                            "MLA head input",
                                            "MLA head output",
                                            "MLA values",
                                            "logits"};
    static_assert(std::size(kWhat) == static_cast<size_t>(models::Slot::Count));
    const int i = static_cast<int>(slot);
    return bufs_[i].get<float>(count, stream_, kWhat[i]);
  }
  int32_t* expert_ids(size_t count) override {
    return moe_ids_.get<int32_t>(count, stream_, "expert ids");
  }
  void start_batch(std::span<const int32_t> tokens) override;
  void embed(std::span<const int32_t> tokens, float* x) override {
    const DWeight& te = model_->mat(weights().token_embd);
    const int32_t* tok_d = tokens_d_.get<int32_t>(tokens.size(), stream_, "token ids");
    cuda::dequantize_rows(te.type, te.data, te.row_bytes, card_.n_embd, tok_d,
                          static_cast<int64_t>(tokens.size()), x, stream_);
  }
  void rms_norm(const float* x, const std::vector<float>& w, float* y, int64_t rows,
                int64_t width) override {
    cuda::rms_norm(x, model_->vec(w), y, rows, width, card_.rms_eps, stream_);
  }
  void linear(const models::Weight& w, const float* x, int64_t n, float* y) override {
    linear_e(model_->mat(w), 0, x, n, y, false);
  }
  void add_bias(float* x, const std::vector<float>& b, int64_t n) override {
    cuda::add_bias(x, model_->vec(b), n, static_cast<int64_t>(b.size()), stream_);
  }
  void scale(float* x, float s, int64_t count) override { cuda::scale(x, s, count, stream_); }
  void softcap(float* x, float cap, int64_t count) override {
    cuda::softcap(x, cap, count, stream_);
  }
  void add(float* x, const float* y, int64_t count) override { cuda::add(x, y, count, stream_); }
  void store_kv(int il, int64_t cell0, const float* k, const float* v, int64_t n) override {
    const int64_t kw = static_cast<int64_t>(card_.n_head_kv) * card_.head_dim;
    // MLA keeps V inside the K rows (v_cell_bytes() 0): nothing to store for V.
    const int64_t vw = v_row_ ? static_cast<int64_t>(card_.n_head_kv) * card_.head_dim_v : 0;
    cuda::kv_store(k_cache_[il], v_cache_[il], kv_f16_, cell0, k, v, n, kw, vw, stream_);
  }
  const float* attention(int il, const float* q, int64_t n, int64_t n_kv,
                         const models::AttentionSetup& setup, float* out, bool want_probs) override;
  void glu(float* gate, const float* up, int64_t n, int64_t ff) override {
    if (cfg_.ffn_act == models::FfnAct::SwigluOai)
      cuda::glu_oai(gate, up, n * ff, ops::element::kSwigluOaiAlpha, ops::element::kSwigluOaiLimit,
                    stream_);
    else
      cuda::glu(gate, up, n * ff, ff, cfg_.ffn_act == models::FfnAct::GeluGated, stream_);
  }
  void route_top_k(const float* logits, int64_t n, int nx, int k, float* probs, int32_t* ids,
                   float* w, float* applied, const std::vector<float>& sel_bias,
                   float* selection) override {
    if (!cfg_.moe_sigmoid && !cfg_.moe_softmax_selected && cfg_.moe_weights_scale == 0 &&
        sel_bias.empty() && cfg_.expert_groups <= 1) {
      cuda::route_top_k(logits, n, nx, k, cfg_.moe_renormalise, probs, ids, w, applied, stream_,
                        cfg_.moe_unit_weights);
      return;
    }
    cuda::route_gated(logits, n, nx, k, models::route_spec(cfg_),
                      sel_bias.empty() ? nullptr : model_->vec(sel_bias), probs, selection, ids, w,
                      applied, stream_);
  }
  void kept_groups(const float* sel, int64_t n, int nx, float* out) override {
    cuda::kept_groups(sel, n, nx, cfg_.expert_groups, cfg_.expert_groups_used, out, stream_);
  }
  void rope_hd(float* x, int64_t n, int n_head, int head_dim) override {
    const int32_t* pos_d = pos_d_.get<int32_t>(n, stream_, "positions");
    const int rope_type =
        cfg_.rope.type == ops::RopeType::Neox ? ops::element::kRopeNeox : ops::element::kRopeNorm;
    cuda::RopeYarnArgs yarn;
    yarn.ext_factor = cfg_.rope.ext_factor;
    yarn.mscale = cfg_.rope.attn_factor;
    ops::rope_yarn_corr_dims(cfg_.rope, &yarn.corr_low, &yarn.corr_high);
    cuda::rope(x, n, n_head, head_dim, pos_d, cfg_.rope.n_rot, cfg_.rope.freq_base,
               cfg_.rope.freq_scale, rope_type, stream_, yarn);
  }
  void copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
               int64_t width) override {
    cuda::copy_2d(src, src_stride, dst, dst_stride, rows, width, stream_);
  }
  void linear_slice(const models::Weight& w, int64_t j, const float* x, int64_t n,
                    float* y) override {
    linear_e(model_->mat(w), j, x, n, y, false);
  }
  void route_policy(int il, const float* logits, int64_t n, int nx, int k, float* probs,
                    int32_t* ids, float* w, float* applied, const std::vector<float>& sel_bias,
                    float* selection) override;
  const float* ids_as_floats(const int32_t* ids, int64_t count) override {
    float* f = obs_f_.get<float>(count, stream_, "expert ids as floats");
    cuda::ids_to_float(ids, count, f, stream_);
    return f;
  }
  void experts(const models::LayerWeights& L, const float* x, const int32_t* ids,
               const float* applied, int64_t n, int k, float* out) override;
  void shexp_gate(float* y, const std::vector<float>& gate, const float* x, int64_t n) override {
    cuda::shexp_gate(y, model_->vec(gate), x, n, card_.n_embd, stream_);
  }
  void finish_batch(const float* logits, int64_t count) override {
    float* lh = logits_h_.get<float>(count);
    cuda::d2h(lh, logits, count * sizeof(float), stream_);
    cuda::stream_sync(stream_, "eval");
    logits_.assign(lh, lh + count);
  }
  void deliver() override {
    if (observer_) deliver_observations();
    if (timer_) deliver_timings();
  }
  // Eviction's compaction, in pieces that never overlap their destination.
  void move_cells(size_t dst, size_t src, size_t count) override {
    while (count > 0) {
      const size_t piece = std::min(count, src - dst);
      for (uint32_t il = 0; il < card_.n_layer; ++il) {
        cuda::d2d(k_cache_[il] + dst * k_row_, k_cache_[il] + src * k_row_, piece * k_row_,
                  stream_);
        if (v_row_)
          cuda::d2d(v_cache_[il] + dst * v_row_, v_cache_[il] + src * v_row_, piece * v_row_,
                    stream_);
      }
      dst += piece;
      src += piece;
      count -= piece;
    }
  }

  std::shared_ptr<const CudaModel> model_;
  int64_t gemm_min_;

  cuda::Stream stream_ = nullptr;
  std::optional<cuda::Blas> blas_;
  uint8_t* kv_ = nullptr;
  size_t k_row_ = 0, v_row_ = 0;  // bytes per cache cell
  std::vector<uint8_t*> k_cache_, v_cache_;
  std::vector<Pending> pending_;
  std::vector<PinnedBuf> staging_;
  std::vector<cuda::Event> events_;
  int ev_used_ = 0;
  std::vector<Timing> timings_;

  // Device scratch.
  std::array<DBuf, static_cast<size_t>(models::Slot::Count)> bufs_;
  DBuf tokens_d_, pos_d_, scores_, mask_d_, key_d_, moe_ids_, moe_res_, moe_x_, moe_y_, rows_d_,
      obs_f_, act_, act_f_, deq_;
  // Host copies.
  std::vector<int32_t> moe_ids_h_, rows_h_;
  std::vector<float> moe_logits_h_, moe_probs_h_, moe_w_h_, moe_applied_h_, moe_selection_h_;
  std::vector<uint8_t> mask_h_;
  PinnedBuf logits_h_;
};

void CudaContext::start_batch(std::span<const int32_t> tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  cuda::use_device();
  // An earlier eval that threw (cancelled) may have left work queued: let it finish before its
  // staging buffers are reused.
  cuda::stream_sync(stream_, "previous eval");
  pending_.clear();
  timings_.clear();
  ev_used_ = 0;
  int32_t* tok_d = tokens_d_.get<int32_t>(n, stream_, "token ids");
  int32_t* pos_d = pos_d_.get<int32_t>(n, stream_, "positions");
  cuda::h2d(tok_d, tokens.data(), n * sizeof(int32_t), stream_);
  cuda::h2d(pos_d, pos_.data(), n * sizeof(int32_t), stream_);
}

const float* CudaContext::attention(int il, const float* q, int64_t n, int64_t n_kv,
                                    const models::AttentionSetup& setup, float* out,
                                    bool want_probs) {
  cuda::Stream s = stream_;
  const ops::AttentionParams& p = setup.params;
  const int n_head = p.n_head;
  cuda::AttnArgs a{p.n_head, p.n_head_kv, p.head_dim, p.head_dim_v, p.scale, p.softcap, p.window};
  a.pos = pos_d_.get<int32_t>(n, s, "positions");
  a.k = k_cache_[il];
  a.v = v_cache_[il];
  a.f16 = kv_f16_;
  const std::vector<float>& sinks = model_->cpu()->weights().layers[il].attn_sinks;
  if (!sinks.empty()) a.sinks = model_->vec(sinks);
  if (v_row_ == 0) {  // MLA: V = the first head_dim_v values of each K row
    a.v = a.k;
    a.v_row = static_cast<int64_t>(card_.n_head_kv) * card_.head_dim;
  }
  if (evicting_) {
    // The cells' positions (key_pos_) order the attention's sums as the CPU's evicting kernel
    // orders them.
    int32_t* kd = key_d_.get<int32_t>(key_pos_.size(), s, "attention key positions");
    cuda::h2d(kd, key_pos_.data(), key_pos_.size() * sizeof(int32_t), s);
    a.key = kd;
  }
  if (policy_masked()) {
    // Policy masks (local-global, evict) are decided on the host by the policy itself, exactly
    // as policies::masked_attention decides them, and uploaded as a byte mask.
    mask_h_.resize(static_cast<size_t>(n * n_kv));
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < n_kv; ++i)
        mask_h_[t * n_kv + i] =
            attention_policy_.visible(pos_[t], evicting_ ? key_pos_[i] : i, a.window) ? 1 : 0;
    uint8_t* md = mask_d_.get<uint8_t>(mask_h_.size(), s, "attention mask");
    cuda::h2d(md, mask_h_.data(), mask_h_.size(), s);
    a.mask = md;
  }
  int64_t chunk = n;
  if (!want_probs) {
    const int64_t per_token = static_cast<int64_t>(n_head) * n_kv;
    chunk = std::max<int64_t>(1, std::min<int64_t>(n, kScoreChunkFloats / per_token));
  }
  float* scores =
      scores_.get<float>(static_cast<size_t>(n_head) * chunk * n_kv, s, "attention scores");
  for (int64_t t0 = 0; t0 < n; t0 += chunk)
    cuda::attention(a, q, n, t0, std::min(chunk, n - t0), n_kv, out, scores, s);
  return want_probs ? scores : nullptr;
}

void CudaContext::route_policy(int il, const float* logits, int64_t n, int nx, int k, float* probs,
                               int32_t* ids, float* w, float* applied,
                               const std::vector<float>& sel_bias, float* selection) {
  cuda::Stream s = stream_;
  moe_logits_h_.resize(n * nx);
  moe_probs_h_.resize(n * nx);
  moe_ids_h_.resize(n * k);
  moe_w_h_.resize(n * k);
  moe_applied_h_.resize(n * k);
  cuda::d2h(moe_logits_h_.data(), logits, n * nx * sizeof(float), s);
  cuda::stream_sync(s, "router logits");
  const bool biased = !sel_bias.empty();
  if (biased) moe_selection_h_.resize(n * nx);
  router_->route(il, n, moe_logits_h_.data(), moe_probs_h_.data(), moe_ids_h_.data(),
                 moe_w_h_.data(), moe_applied_h_.data(), stats_, biased ? sel_bias.data() : nullptr,
                 biased ? moe_selection_h_.data() : nullptr);
  if (biased && selection) cuda::h2d(selection, moe_selection_h_.data(), n * nx * sizeof(float), s);
  cuda::h2d(probs, moe_probs_h_.data(), n * nx * sizeof(float), s);
  cuda::h2d(ids, moe_ids_h_.data(), n * k * sizeof(int32_t), s);
  cuda::h2d(w, moe_w_h_.data(), n * k * sizeof(float), s);
  cuda::h2d(applied, moe_applied_h_.data(), n * k * sizeof(float), s);
}

void CudaContext::experts(const models::LayerWeights& HL, const float* cur, const int32_t* ids,
                          const float* applied, int64_t n, int k, float* out) {
  const DWeight &gate_exps = model_->mat(HL.gate_exps), &up_exps = model_->mat(HL.up_exps),
                &down_exps = model_->mat(HL.down_exps);
  const int64_t E = card_.n_embd;
  const int nx = static_cast<int>(card_.expert_count);
  cuda::Stream s = stream_;
  const int64_t ff = gate_exps.n_out;
  const int64_t slots = n * k;
  float* res = moe_res_.get<float>(slots * E, s, "expert outputs");
  if (n <= kSlotPathMaxTokens) {
    // Every (token, slot) against its expert's rows, ids read on the device.
    float* hg = buf(models::Slot::HGate, slots * ff);
    float* hu = buf(models::Slot::HUp, slots * ff);
    auto slot_product = [&](const DWeight& w, const float* xin, int64_t n_x, int x_div, float* y) {
      const cuda::ActMode m = cuda::ActMode::Ggml;  // expert products: ggml-compatible
      void* act = act_.get<uint8_t>(cuda::act_row_bytes(w.type, m, w.n_in) * n_x, s, "activations");
      cuda::prepare_act(w.type, m, xin, w.n_in, n_x, w.n_in, act, s);
      cuda::matvec(w.type, m, w.data, w.row_bytes, w.expert_stride, ids, w.n_in, w.n_out, act,
                   x_div, slots, y, s);
    };
    slot_product(gate_exps, cur, n, k, hg);
    slot_product(up_exps, cur, n, k, hu);
    if (!HL.gate_exps_b.empty())
      cuda::add_bias_ids(hg, model_->vec(HL.gate_exps_b), ids, slots, ff, s);
    if (!HL.up_exps_b.empty()) cuda::add_bias_ids(hu, model_->vec(HL.up_exps_b), ids, slots, ff, s);
    glu(hg, hu, slots, ff);
    slot_product(down_exps, hg, slots, 1, res);
    if (!HL.down_exps_b.empty())
      cuda::add_bias_ids(res, model_->vec(HL.down_exps_b), ids, slots, E, s);
  } else {
    // Group the (token, slot) pairs per expert on the host; one product per expert with tokens.
    moe_ids_h_.resize(slots);
    cuda::d2h(moe_ids_h_.data(), ids, slots * sizeof(int32_t), s);
    cuda::stream_sync(s, "expert ids");
    std::vector<int64_t> offset(nx + 1, 0);
    for (int64_t i = 0; i < slots; ++i)
      if (moe_ids_h_[i] >= 0 && moe_ids_h_[i] < nx) ++offset[moe_ids_h_[i] + 1];
    for (int e = 0; e < nx; ++e) offset[e + 1] += offset[e];
    rows_h_.assign(offset[nx], 0);
    {
      std::vector<int64_t> fill(offset.begin(), offset.end() - 1);
      for (int64_t i = 0; i < slots; ++i)
        if (moe_ids_h_[i] >= 0 && moe_ids_h_[i] < nx)
          rows_h_[fill[moe_ids_h_[i]]++] = static_cast<int32_t>(i);
    }
    int64_t max_m = 0;
    for (int e = 0; e < nx; ++e) max_m = std::max(max_m, offset[e + 1] - offset[e]);
    int32_t* rows = rows_d_.get<int32_t>(std::max<size_t>(rows_h_.size(), 1), s, "expert rows");
    cuda::h2d(rows, rows_h_.data(), rows_h_.size() * sizeof(int32_t), s);
    float* mx = moe_x_.get<float>(max_m * E, s, "expert inputs");
    float* my = moe_y_.get<float>(max_m * E, s, "expert results");
    float* hg = buf(models::Slot::HGate, max_m * ff);
    float* hu = buf(models::Slot::HUp, max_m * ff);
    for (int e = 0; e < nx; ++e) {
      const int64_t m = offset[e + 1] - offset[e];
      if (m == 0) continue;  // no tokens: skipped
      const int32_t* r = rows + offset[e];
      cuda::gather_rows(cur, r, k, m, E, mx, s);
      linear_e(gate_exps, e, mx, m, hg, true);
      linear_e(up_exps, e, mx, m, hu, true);
      if (!HL.gate_exps_b.empty())
        cuda::add_bias(hg, model_->vec(HL.gate_exps_b) + e * ff, m, ff, s);
      if (!HL.up_exps_b.empty()) cuda::add_bias(hu, model_->vec(HL.up_exps_b) + e * ff, m, ff, s);
      glu(hg, hu, m, ff);
      linear_e(down_exps, e, hg, m, my, true);
      if (!HL.down_exps_b.empty()) cuda::add_bias(my, model_->vec(HL.down_exps_b) + e * E, m, E, s);
      cuda::scatter_rows(my, r, m, E, res, s);
    }
  }
  cuda::moe_weighted_sum(res, ids, applied, n, k, E, out, s);
}

}  // namespace

std::shared_ptr<Model> make_cuda_model(std::shared_ptr<const models::CpuModel> cpu,
                                       const LoadOptions& opts) {
  return std::make_shared<CudaModel>(std::move(cpu), opts);
}

std::shared_ptr<const models::CpuModel> host_model(const std::shared_ptr<const Model>& model) {
  if (auto c = std::dynamic_pointer_cast<const models::CpuModel>(model)) return c;
  if (auto g = std::dynamic_pointer_cast<const CudaModel>(model)) return g->cpu();
  return nullptr;
}

bool is_cuda_model(const Model& model) {
  return dynamic_cast<const CudaModel*>(&model) != nullptr;
}

std::unique_ptr<Context> make_cuda_context(std::shared_ptr<const Model> model,
                                           const ContextParams& params,
                                           std::shared_ptr<PolicyStats> shared_stats) {
  auto g = std::dynamic_pointer_cast<const CudaModel>(model);
  if (!g) throw Error(ErrorKind::Internal, "make_cuda_context: not a CUDA model");
  return std::make_unique<CudaContext>(std::move(g), params, std::move(shared_stats));
}

}  // namespace backend
}  // namespace moelab
