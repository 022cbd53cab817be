// The CPU backend's op set (forward.h) over host memory: the reference and SIMD kernels of
// engine/kernels and engine/ops. Matrix products go through kernels::matmul (n > 1, prefill) or
// kernels::matvec (n == 1, decode); MoE groups the tokens routed to each expert and runs one
// product per expert, except in decode, where kernels::matvec_batch runs the gate and up products
// of all selected experts in one parallel pass and then all their down products in another.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "models/forward.h"
#include "models/model_impl.h"
#include "moelab/core/error.h"
#include "moelab/kernels/kernels.h"
#include "ops/element/element.h"
#include "policies/masked_attention.h"

namespace moelab::models {
namespace {

namespace el = ops::element;

// Which arithmetic a product uses: exact_activations() (context_common.h) says when llama.cpp
// multiplies unrounded F32 activations; otherwise they are quantized like ggml's vec_dot_type.
kernels::Precision precision_for(gguf::TensorType type, int64_t n_in, bool expert) {
  return exact_activations(type, n_in, expert) ? kernels::Precision::Exact
                                               : kernels::Precision::GgmlCompatible;
}

// y[n, n_out] = x[n, n_in] · Wᵀ, W given as a pointer to its first row (for expert slices);
// repacked: W is in kernels::repack_rows's layout (CpuModel::repack_weights).
void linear_raw(gguf::TensorType type, const uint8_t* w, int64_t n_in, int64_t n_out,
                const float* x, int64_t n, float* y, ThreadPool* pool, bool expert, bool repacked) {
  if (repacked) return kernels::matmul_repacked(type, w, n_in, n_out, x, n, y, pool);
  const kernels::Precision prec = precision_for(type, n_in, expert);
  if (n == 1)
    kernels::matvec(type, w, n_in, n_out, x, y, pool, prec);
  else
    kernels::matmul(type, w, n_in, n_out, x, n, y, pool, prec);
}
// y[r] += row e of b (F32 [n_expert, width]) for m rows of width floats; b empty: nothing.
void add_expert_bias(const std::vector<float>& b, int e, float* y, int64_t m, int64_t width) {
  if (b.empty()) return;
  const float* row = b.data() + static_cast<int64_t>(e) * width;
  for (int64_t r = 0; r < m; ++r)
    for (int64_t i = 0; i < width; ++i) y[r * width + i] += row[i];
}
// Expert e of a merged 3-D tensor [n_in, n_out, n_expert].
void linear_expert(const Weight& w, int64_t e, const float* x, int64_t n, float* y,
                   ThreadPool* pool) {
  const uint8_t* base = w.data + static_cast<uint64_t>(e) * w.ne[1] * w.row_bytes;
  linear_raw(w.type, base, w.n_in(), w.n_out(), x, n, y, pool, true, w.repacked);
}

class CpuContext final : public ForwardContext {
 public:
  CpuContext(std::shared_ptr<const CpuModel> model, const ContextParams& p,
             std::shared_ptr<PolicyStats> shared_stats)
      : ForwardContext(model->card(), model->config(), p, std::move(shared_stats)),
        model_(std::move(model)),
        pool_(p.n_threads) {
    k_cache_.resize(card_.n_layer);
    v_cache_.resize(card_.n_layer);
    for (uint32_t il = 0; il < card_.n_layer; ++il) {
      k_cache_[il].assign(k_cell_bytes() * n_ctx_, 0);
      v_cache_[il].assign(v_cell_bytes() * n_ctx_, 0);
    }
  }

  const Model& model() const override { return *model_; }

 private:
  const Weights& weights() const override { return model_->weights(); }
  float* buf(Slot s, size_t count) override {
    std::vector<float>& v = s == Slot::Logits ? logits_ : bufs_[static_cast<int>(s)];
    v.resize(count);
    return v.data();
  }
  int32_t* expert_ids(size_t count) override {
    ids_.resize(count);
    return ids_.data();
  }
  void start_batch(std::span<const int32_t>) override {}
  void embed(std::span<const int32_t> tokens, float* x) override {
    const Weight& te = model_->weights().token_embd;
    const int64_t E = card_.n_embd;
    for (size_t t = 0; t < tokens.size(); ++t) {
      const uint8_t* row = te.data + static_cast<uint64_t>(tokens[t]) * te.row_bytes;
      kernels::dequantize_row(te.type, row, x + t * E, E);
    }
  }
  void rms_norm(const float* x, const std::vector<float>& w, float* y, int64_t rows,
                int64_t width) override {
    ops::rms_norm(x, w.data(), y, rows, width, card_.rms_eps);
  }
  void linear(const Weight& w, const float* x, int64_t n, float* y) override {
    linear_raw(w.type, w.data, w.n_in(), w.n_out(), x, n, y, pool_for(w, n), false, w.repacked);
  }
  void linear_shared_input(const Weight* const* w, float* const* y, int count, const float* x,
                           int64_t n) override {
    // Decode: one matvec_batch over all the weights' rows (one parallel pass, the activation
    // converted once). Its rows compute exactly what matvec / matmul_repacked do, so this is
    // linear() for each, bit for bit. It needs one precision for all of them.
    bool batch = n == 1 && count > 1;
    const kernels::Precision p = precision_for(w[0]->type, w[0]->n_in(), false);
    for (int i = 0; i < count && batch; ++i)
      batch = w[i]->n_in() == w[0]->n_in() && precision_for(w[i]->type, w[i]->n_in(), false) == p;
    if (!batch) {
      for (int i = 0; i < count; ++i) linear(*w[i], x, n, y[i]);
      return;
    }
    lin_jobs_.clear();
    for (int i = 0; i < count; ++i)
      lin_jobs_.push_back(kernels::MatvecJob{w[i]->type, w[i]->data, w[i]->n_in(), w[i]->n_out(), x,
                                             y[i], w[i]->repacked});
    kernels::matvec_batch(lin_jobs_.data(), count, &pool_, p);
  }
  void add_bias(float* x, const std::vector<float>& b, int64_t n) override {
    const int64_t w = static_cast<int64_t>(b.size());
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < w; ++i) x[t * w + i] += b[i];
  }
  void rope_hd(float* x, int64_t n, int n_head, int head_dim) override {
    ops::rope(x, n, n_head, head_dim, pos_.data(), cfg_.rope);
  }
  void copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
               int64_t width) override {
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(dst + r * dst_stride, src + r * src_stride, width * sizeof(float));
  }
  void linear_slice(const Weight& w, int64_t j, const float* x, int64_t n, float* y) override {
    const uint8_t* base = w.data + static_cast<uint64_t>(j) * w.ne[1] * w.row_bytes;
    linear_raw(w.type, base, w.n_in(), w.n_out(), x, n, y, &pool_, false, w.repacked);
  }
  void scale(float* x, float s, int64_t count) override {
    for (int64_t i = 0; i < count; ++i) x[i] *= s;
  }
  void softcap(float* x, float cap, int64_t count) override {
    for (int64_t i = 0; i < count; ++i) x[i] = el::softcap(x[i], cap);
  }
  void add(float* x, const float* y, int64_t count) override {
    for (int64_t i = 0; i < count; ++i) x[i] += y[i];
  }
  void store_kv(int il, int64_t cell0, const float* k, const float* v, int64_t n) override;
  const float* attention(int il, const float* q, int64_t n, int64_t n_kv,
                         const AttentionSetup& setup, float* out, bool want_probs) override;
  void glu(float* gate, const float* up, int64_t n, int64_t ff) override {
    if (cfg_.ffn_act == FfnAct::GeluGated) {
      for (int64_t i = 0; i < n * ff; ++i) gate[i] = el::gelu_ggml(gate[i]) * up[i];
    } else if (cfg_.ffn_act == FfnAct::SwigluOai) {
      for (int64_t i = 0; i < n * ff; ++i)
        gate[i] = el::swiglu_oai(gate[i], up[i], el::kSwigluOaiAlpha, el::kSwigluOaiLimit);
    } else {
      for (int64_t t = 0; t < n; ++t) kernels::swiglu(gate + t * ff, up + t * ff, ff);
    }
  }
  void route_top_k(const float* logits, int64_t n, int nx, int k, float* probs, int32_t* ids,
                   float* w, float* applied, const std::vector<float>& sel_bias,
                   float* selection) override {
    if (!cfg_.moe_sigmoid && !cfg_.moe_softmax_selected && cfg_.moe_weights_scale == 0 &&
        sel_bias.empty() && cfg_.expert_groups <= 1) {
      for (int64_t t = 0; t < n; ++t)
        ops::route_top_k(logits + t * nx, nx, k, cfg_.moe_renormalise, probs + t * nx, ids + t * k,
                         w + t * k, applied + t * k, cfg_.moe_unit_weights);
      return;
    }
    const el::RouteSpec r = models::route_spec(cfg_);
    for (int64_t t = 0; t < n; ++t)
      el::route_token_gated(logits + t * nx, nx, k, r, sel_bias.empty() ? nullptr : sel_bias.data(),
                            probs + t * nx, selection ? selection + t * nx : nullptr, ids + t * k,
                            w + t * k, applied + t * k);
  }
  void kept_groups(const float* sel, int64_t n, int nx, float* out) override {
    const int ng = cfg_.expert_groups, nu = cfg_.expert_groups_used;
    int32_t g[el::kMaxExpertGroups];
    for (int64_t t = 0; t < n; ++t) {
      el::top_groups(sel + t * nx, nx, ng, nu, g);
      for (int j = 0; j < nu; ++j) out[t * nu + j] = static_cast<float>(g[j]);
    }
  }
  void route_policy(int il, const float* logits, int64_t n, int, int, float* probs, int32_t* ids,
                    float* w, float* applied, const std::vector<float>& sel_bias,
                    float* selection) override {
    router_->route(il, n, logits, probs, ids, w, applied, stats_,
                   sel_bias.empty() ? nullptr : sel_bias.data(), selection);
  }
  const float* ids_as_floats(const int32_t* ids, int64_t count) override {
    id_floats_.resize(count);
    for (int64_t i = 0; i < count; ++i) id_floats_[i] = static_cast<float>(ids[i]);
    return id_floats_.data();
  }
  void experts(const LayerWeights& L, const float* x, const int32_t* ids, const float* applied,
               int64_t n, int k, float* out) override;
  void experts_grouped(const LayerWeights& L, const float* x, const int32_t* ids, int64_t n, int k,
                       int nx);
  void shexp_gate(float* y, const std::vector<float>& gate, const float* x, int64_t n) override {
    const int64_t E = card_.n_embd;
    for (int64_t t = 0; t < n; ++t) {
      // As llama.cpp: a one-row F32 product (ggml_vec_dot_f32's order; tinyBLAS does not take a
      // single output row), then the sigmoid as silu(x) / x.
      const float dot = kernels::dot_f32(gate.data(), x + t * E, E);
      const float g = dot != 0.0f ? el::silu(dot) / dot : 0.5f;
      for (int64_t i = 0; i < E; ++i) y[t * E + i] *= g;
    }
  }
  void emit(Key k, int layer, const float* data, int64_t d0, int64_t d1, int64_t d2,
            const std::vector<int32_t>* key_pos) override {
    if (!wants(k)) return;
    Observation o = observation(k, layer, d0, d1, d2);
    o.data = {data, static_cast<size_t>(d0 * d1 * (d2 > 0 ? d2 : 1))};
    if (key_pos) o.key_pos = {key_pos->data(), key_pos->size()};
    observer_(o);
  }
  void finish_batch(const float*, int64_t) override {}  // buf(Logits) is logits_
  int64_t clock_mark() override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void clock_report(OpKind op, int layer, int64_t n, int64_t a, int64_t b) override {
    timer_(OpTime{op, layer, n_past_, n, b - a});
  }
  void move_cells(size_t dst, size_t src, size_t count) override {
    const size_t k_row = k_cell_bytes(), v_row = v_cell_bytes();
    for (uint32_t il = 0; il < card_.n_layer; ++il) {
      std::memmove(k_cache_[il].data() + dst * k_row, k_cache_[il].data() + src * k_row,
                   count * k_row);
      if (v_row)  // MLA keeps V inside the K rows: no V cache
        std::memmove(v_cache_[il].data() + dst * v_row, v_cache_[il].data() + src * v_row,
                     count * v_row);
    }
  }

  std::shared_ptr<const CpuModel> model_;
  ThreadPool pool_;
  std::vector<std::vector<uint8_t>> k_cache_, v_cache_;  // per layer, [n_ctx, n_head_kv*hd]
  std::array<std::vector<float>, static_cast<size_t>(Slot::Count)> bufs_;
  std::vector<int32_t> ids_;
  std::vector<float> probs_, id_floats_, moe_res_, moe_x_, moe_y_;
  std::vector<kernels::MatvecJob> moe_jobs_;
  std::vector<kernels::MatvecJob>
      lin_jobs_;  // linear_shared_input's (kept: no per-token allocation)
  // A decode product that reads at most this many weight bytes (a MoE router: 8-16 rows) runs on
  // the calling thread: it takes a few microseconds, about what waking and joining the pool's
  // other threads costs. The result is the same either way (rows do not depend on the split).
  static constexpr uint64_t kInlineBytes = 32 * 1024;
  ThreadPool* pool_for(const Weight& w, int64_t n) {
    return n == 1 && static_cast<uint64_t>(w.n_out()) * w.row_bytes <= kInlineBytes ? nullptr
                                                                                    : &pool_;
  }
};

void CpuContext::store_kv(int il, int64_t cell0, const float* k, const float* v, int64_t n) {
  const int64_t kw = static_cast<int64_t>(card_.n_head_kv) * card_.head_dim;
  // MLA keeps V inside the K rows (v_cell_bytes() 0): nothing to store for V.
  const int64_t vw = v_cell_bytes() ? static_cast<int64_t>(card_.n_head_kv) * card_.head_dim_v : 0;
  uint8_t* kc = k_cache_[il].data();
  uint8_t* vc = v_cache_[il].data();
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = cell0 + t;
    if (kv_f16_) {
      uint16_t* kd = reinterpret_cast<uint16_t*>(kc) + p * kw;
      uint16_t* vd = reinterpret_cast<uint16_t*>(vc) + p * vw;
      for (int64_t i = 0; i < kw; ++i) kd[i] = el::f32_to_f16(k[t * kw + i]);
      for (int64_t i = 0; i < vw; ++i) vd[i] = el::f32_to_f16(v[t * vw + i]);
    } else {
      std::memcpy(reinterpret_cast<float*>(kc) + p * kw, k + t * kw, kw * sizeof(float));
      if (vw) std::memcpy(reinterpret_cast<float*>(vc) + p * vw, v + t * vw, vw * sizeof(float));
    }
  }
}

const float* CpuContext::attention(int il, const float* q, int64_t n, int64_t n_kv,
                                   const AttentionSetup& setup, float* out, bool want_probs) {
  ops::AttentionParams ap = setup.params;
  const std::vector<float>& sinks = model_->weights().layers[il].attn_sinks;
  if (!sinks.empty()) ap.sinks = sinks.data();
  float* probs = nullptr;
  if (want_probs) {
    probs_.resize(static_cast<size_t>(ap.n_head) * n * n_kv);
    probs = probs_.data();
  }
  ops::KvLayer kv{k_cache_[il].data(), v_cache_[il].data(), kv_f16_};
  if (v_cell_bytes() == 0) {  // MLA: V = the first head_dim_v values of each K row
    kv.v = kv.k;
    kv.v_row = static_cast<int64_t>(card_.n_head_kv) * card_.head_dim;
  }
  if (!policy_masked())
    ops::attention(q, pos_.data(), n, kv, n_kv, ap, out, probs, &pool_);
  else
    policies::masked_attention(q, pos_.data(), n, kv, evicting_ ? key_pos_.data() : nullptr, n_kv,
                               ap, attention_policy_, out, probs, &pool_);
  return probs;
}

void CpuContext::experts(const LayerWeights& L, const float* x, const int32_t* ids,
                         const float* applied, int64_t n, int k, float* out) {
  const int64_t E = card_.n_embd;
  const int nx = static_cast<int>(card_.expert_count);
  moe_res_.resize(n * k * E);
  if (n == 1) {
    // Decode: the gate and up products of all selected experts in one parallel pass (the
    // activation converted once), then all down products in another. Each row's arithmetic is
    // the per-expert path's, so the results are identical.
    const int64_t ff = L.gate_exps.n_out();
    float* hg = buf(Slot::HGate, k * ff);
    float* hu = buf(Slot::HUp, k * ff);
    auto slice = [](const Weight& w, int e) {
      return w.data + static_cast<uint64_t>(e) * w.ne[1] * w.row_bytes;
    };
    auto job = [](const Weight& w, const uint8_t* base, const float* in, float* y) {
      return kernels::MatvecJob{w.type, base, w.n_in(), w.n_out(), in, y, w.repacked};
    };
    // (a negative id is an unused slot of a variable-k policy; as in the grouped path, ids
    // outside [0, expert_count) select nothing)
    auto used = [&](int j) { return ids[j] >= 0 && ids[j] < nx; };
    moe_jobs_.clear();
    for (int j = 0; j < k; ++j)
      if (used(j))
        moe_jobs_.push_back(job(L.gate_exps, slice(L.gate_exps, ids[j]), x, hg + j * ff));
    const auto n_gate = static_cast<int>(moe_jobs_.size());
    for (int j = 0; j < k; ++j)
      if (used(j)) moe_jobs_.push_back(job(L.up_exps, slice(L.up_exps, ids[j]), x, hu + j * ff));
    // (a repacked weight has no Exact form: CpuModel::repack_weights repacks only weights whose
    // products are GgmlCompatible)
    const kernels::Precision pg = precision_for(L.gate_exps.type, E, true);
    const kernels::Precision pu = precision_for(L.up_exps.type, E, true);
    if (pg == pu) {
      kernels::matvec_batch(moe_jobs_.data(), 2 * n_gate, &pool_, pg);
    } else {
      kernels::matvec_batch(moe_jobs_.data(), n_gate, &pool_, pg);
      kernels::matvec_batch(moe_jobs_.data() + n_gate, n_gate, &pool_, pu);
    }
    moe_jobs_.clear();
    for (int j = 0; j < k; ++j) {
      if (!used(j)) continue;
      add_expert_bias(L.gate_exps_b, ids[j], hg + j * ff, 1, ff);  // gpt-oss's expert biases
      add_expert_bias(L.up_exps_b, ids[j], hu + j * ff, 1, ff);
      glu(hg + j * ff, hu + j * ff, 1, ff);
      moe_jobs_.push_back(
          job(L.down_exps, slice(L.down_exps, ids[j]), hg + j * ff, moe_res_.data() + j * E));
    }
    kernels::matvec_batch(moe_jobs_.data(), static_cast<int>(moe_jobs_.size()), &pool_,
                          precision_for(L.down_exps.type, ff, true));
    for (int j = 0; j < k; ++j)
      if (used(j)) add_expert_bias(L.down_exps_b, ids[j], moe_res_.data() + j * E, 1, E);
  } else {
    experts_grouped(L, x, ids, n, k, nx);
  }
  // Weighted sum over the k slots, in slot order.
  std::fill(out, out + n * E, 0.0f);
  for (int64_t t = 0; t < n; ++t)
    for (int j = 0; j < k; ++j) {
      if (ids[t * k + j] < 0) continue;  // unused slot (variable-k policies)
      const float wgt = applied[t * k + j];
      const float* y = moe_res_.data() + (t * k + j) * E;
      float* o = out + t * E;
      for (int64_t i = 0; i < E; ++i) o[i] += y[i] * wgt;
    }
}

// Prefill: group the (token, slot) pairs by expert; one product per expert over its tokens.
void CpuContext::experts_grouped(const LayerWeights& L, const float* x, const int32_t* ids,
                                 int64_t n, int k, int nx) {
  const int64_t E = card_.n_embd;
  std::vector<int64_t> rows;  // (t * k + slot) routed to the current expert
  for (int e = 0; e < nx; ++e) {
    rows.clear();
    for (int64_t i = 0; i < n * k; ++i)
      if (ids[i] == e) rows.push_back(i);
    if (rows.empty()) continue;
    const int64_t m = static_cast<int64_t>(rows.size());
    const int64_t ff = L.gate_exps.n_out();
    moe_x_.resize(m * E);
    for (int64_t r = 0; r < m; ++r)
      std::memcpy(moe_x_.data() + r * E, x + (rows[r] / k) * E, E * sizeof(float));
    float* hg = buf(Slot::HGate, m * ff);
    float* hu = buf(Slot::HUp, m * ff);
    linear_expert(L.gate_exps, e, moe_x_.data(), m, hg, &pool_);
    linear_expert(L.up_exps, e, moe_x_.data(), m, hu, &pool_);
    add_expert_bias(L.gate_exps_b, e, hg, m, ff);
    add_expert_bias(L.up_exps_b, e, hu, m, ff);
    glu(hg, hu, m, ff);
    moe_y_.resize(m * E);
    linear_expert(L.down_exps, e, hg, m, moe_y_.data(), &pool_);
    add_expert_bias(L.down_exps_b, e, moe_y_.data(), m, E);
    for (int64_t r = 0; r < m; ++r)
      std::memcpy(moe_res_.data() + rows[r] * E, moe_y_.data() + r * E, E * sizeof(float));
  }
}

}  // namespace

std::unique_ptr<Context> make_cpu_context(std::shared_ptr<const CpuModel> model,
                                          const ContextParams& params,
                                          std::shared_ptr<PolicyStats> shared_stats) {
  return std::make_unique<CpuContext>(std::move(model), params, std::move(shared_stats));
}

}  // namespace moelab::models
