// The CPU forward pass shared by every architecture (see arch.h), and Context::create.
//
// One eval = one batch of n tokens at positions n_past .. n_past+n-1:
//   x = token_embd rows (* embd_scale)
//   per layer: x += [post_attn_norm] Wo · attention(RoPE(qk_norm(Wq·norm(x) + bq)), ...)
//              x += [post_ffw_norm] FFN(norm(x))       (dense gated FFN, or routed experts
//                                                        plus an optional gated shared expert)
//   logits = [softcap] output · norm(x)
// Matrix products go through kernels::matmul (n > 1, prefill) or kernels::matvec (n == 1,
// decode); MoE groups the tokens routed to each expert and runs one product per expert.
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "models/context_base.h"
#include "models/context_common.h"
#include "models/model_impl.h"
#include "moelab/core/error.h"
#include "moelab/kernels/kernels.h"
#include "ops/element/element.h"
#include "policies/masked_attention.h"

namespace moelab {

namespace models {
namespace {

namespace el = ops::element;

// Which arithmetic a product uses: exact_activations() (context_common.h) says when llama.cpp
// multiplies unrounded F32 activations; otherwise they are quantized like ggml's vec_dot_type.
kernels::Precision precision_for(gguf::TensorType type, int64_t n_in, bool expert) {
  return exact_activations(type, n_in, expert) ? kernels::Precision::Exact
                                               : kernels::Precision::GgmlCompatible;
}

// y[n, n_out] = x[n, n_in] · Wᵀ, W given as a pointer to its first row (for expert slices).
void linear_raw(gguf::TensorType type, const uint8_t* w, int64_t n_in, int64_t n_out,
                const float* x, int64_t n, float* y, ThreadPool* pool, bool expert) {
  const kernels::Precision prec = precision_for(type, n_in, expert);
  if (n == 1)
    kernels::matvec(type, w, n_in, n_out, x, y, pool, prec);
  else
    kernels::matmul(type, w, n_in, n_out, x, n, y, pool, prec);
}
void linear(const Weight& w, const float* x, int64_t n, float* y, ThreadPool* pool) {
  linear_raw(w.type, w.data, w.n_in(), w.n_out(), x, n, y, pool, false);
}
// Expert e of a merged 3-D tensor [n_in, n_out, n_expert].
void linear_expert(const Weight& w, int64_t e, const float* x, int64_t n, float* y,
                   ThreadPool* pool) {
  const uint8_t* base = w.data + static_cast<uint64_t>(e) * w.ne[1] * w.row_bytes;
  linear_raw(w.type, base, w.n_in(), w.n_out(), x, n, y, pool, true);
}

void add_bias(float* x, const std::vector<float>& b, int64_t n) {
  if (b.empty()) return;
  const int64_t w = static_cast<int64_t>(b.size());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < w; ++i) x[t * w + i] += b[i];
}

// Reads the steady clock only when a timer is installed.
class OpClock {
 public:
  explicit OpClock(const OpTimer& timer) : on_(static_cast<bool>(timer)) {
    if (on_) t0_ = std::chrono::steady_clock::now();
  }
  // Reports the time since construction / the previous lap, and restarts.
  void lap(const OpTimer& timer, OpKind op, int layer, uint32_t pos0, int64_t n) {
    if (!on_) return;
    const auto t1 = std::chrono::steady_clock::now();
    timer(OpTime{op, layer, pos0, n,
                 std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0_).count()});
    t0_ = t1;
  }

 private:
  bool on_;
  std::chrono::steady_clock::time_point t0_;
};

class CpuContext final : public ContextBase {
 public:
  CpuContext(std::shared_ptr<const CpuModel> model, const ContextParams& p,
             std::shared_ptr<PolicyStats> shared_stats)
      : ContextBase(model->card(), model->config(), p, std::move(shared_stats)),
        model_(std::move(model)),
        w_(model_->weights()),
        pool_(p.n_threads) {
    k_cache_.resize(card_.n_layer);
    v_cache_.resize(card_.n_layer);
    for (uint32_t il = 0; il < card_.n_layer; ++il) {
      k_cache_[il].assign(k_cell_bytes() * n_ctx_, 0);
      v_cache_[il].assign(v_cell_bytes() * n_ctx_, 0);
    }
  }

  void eval(std::span<const int32_t> tokens, bool all_logits) override;
  const Model& model() const override { return *model_; }

 private:
  void emit(Key k, int layer, const float* data, int64_t d0, int64_t d1, int64_t d2 = 0,
            const std::vector<int32_t>* key_pos = nullptr) {
    if (!wants(k)) return;
    Observation o = observation(k, layer, d0, d1, d2);
    o.data = {data, static_cast<size_t>(d0 * d1 * (d2 > 0 ? d2 : 1))};
    if (key_pos) o.key_pos = {key_pos->data(), key_pos->size()};
    observer_(o);
  }
  void move_cells(size_t dst, size_t src, size_t count) override {
    const size_t k_row = k_cell_bytes(), v_row = v_cell_bytes();
    for (uint32_t il = 0; il < card_.n_layer; ++il) {
      std::memmove(k_cache_[il].data() + dst * k_row, k_cache_[il].data() + src * k_row,
                   count * k_row);
      std::memmove(v_cache_[il].data() + dst * v_row, v_cache_[il].data() + src * v_row,
                   count * v_row);
    }
  }

  void attention_block(int il, int64_t n);
  void ffn_block(int il, int64_t n);
  void dense_ffn(const Weight& gate, const Weight& up, const Weight& down, const float* x,
                 int64_t n, float* out);
  void moe_ffn(int il, int64_t n);

  std::shared_ptr<const CpuModel> model_;
  const Weights& w_;
  ThreadPool pool_;
  std::vector<std::vector<uint8_t>> k_cache_, v_cache_;  // per layer, [n_ctx, n_head_kv*hd]

  // Scratch, sized per batch.
  std::vector<float> x_, cur_, q_, k_, v_, kqv_, attn_, probs_, ffn_out_, tmp_;
  std::vector<float> h_gate_, h_up_;
  std::vector<float> moe_logits_, moe_probs_, moe_w_, moe_applied_, moe_res_, moe_x_, moe_y_;
  std::vector<int32_t> moe_ids_;
};

void CpuContext::eval(std::span<const int32_t> tokens, bool all_logits) {
  begin_eval(tokens);
  const int64_t n = static_cast<int64_t>(tokens.size());
  OpClock clock(timer_);
  const int64_t E = card_.n_embd;
  x_.resize(n * E);
  for (int64_t t = 0; t < n; ++t) {
    const uint8_t* row =
        w_.token_embd.data + static_cast<uint64_t>(tokens[t]) * w_.token_embd.row_bytes;
    kernels::dequantize_row(w_.token_embd.type, row, x_.data() + t * E, E);
  }
  if (cfg_.embd_scale > 0)
    for (auto& v : x_) v *= cfg_.embd_scale;
  emit(kInpEmbd, -1, x_.data(), n, E);
  clock.lap(timer_, OpKind::Embed, -1, n_past_, n);

  for (uint32_t il = 0; il < card_.n_layer; ++il) {
    check_cancel();
    attention_block(static_cast<int>(il), n);
    ffn_block(static_cast<int>(il), n);
  }
  OpClock head_clock(timer_);

  // Output norm and head, for the rows whose logits are kept.
  const int64_t n_out = all_logits ? n : 1;
  const float* last = x_.data() + (n - n_out) * E;
  cur_.resize(n_out * E);
  ops::rms_norm(last, w_.output_norm.data(), cur_.data(), n_out, E, card_.rms_eps);
  emit(kResultNorm, -1, cur_.data(), n_out, E);
  const int64_t V = card_.n_vocab;
  logits_.resize(n_out * V);
  linear(w_.output, cur_.data(), n_out, logits_.data(), &pool_);
  if (cfg_.final_softcap > 0)
    for (auto& v : logits_) v = el::softcap(v, cfg_.final_softcap);
  emit(kResultOutput, -1, logits_.data(), n_out, V);
  head_clock.lap(timer_, OpKind::Head, -1, n_past_, n);
  check_logits(n, n_out);
  commit_eval(n, n_out, all_logits);
}

void CpuContext::attention_block(int il, int64_t n) {
  const LayerWeights& L = w_.layers[il];
  const int64_t E = card_.n_embd;
  const int n_head = static_cast<int>(card_.n_head), n_head_kv = static_cast<int>(card_.n_head_kv);
  const int hd = static_cast<int>(card_.head_dim), hdv = static_cast<int>(card_.head_dim_v);
  const int64_t qw = static_cast<int64_t>(n_head) * hd, kw = static_cast<int64_t>(n_head_kv) * hd;
  const int64_t vw = static_cast<int64_t>(n_head_kv) * hdv, ow = static_cast<int64_t>(n_head) * hdv;
  const float eps = card_.rms_eps;
  OpClock clock(timer_);

  cur_.resize(n * E);
  ops::rms_norm(x_.data(), L.attn_norm.data(), cur_.data(), n, E, eps);
  emit(kAttnNorm, il, cur_.data(), n, E);

  q_.resize(n * qw);
  k_.resize(n * kw);
  v_.resize(n * vw);
  linear(L.wq, cur_.data(), n, q_.data(), &pool_);
  linear(L.wk, cur_.data(), n, k_.data(), &pool_);
  linear(L.wv, cur_.data(), n, v_.data(), &pool_);
  add_bias(q_.data(), L.bq, n);
  add_bias(k_.data(), L.bk, n);
  add_bias(v_.data(), L.bv, n);
  if (cfg_.qk_norm == QkNorm::FullWidth) {
    ops::rms_norm(q_.data(), L.q_norm.data(), q_.data(), n, qw, eps);
    ops::rms_norm(k_.data(), L.k_norm.data(), k_.data(), n, kw, eps);
  } else if (cfg_.qk_norm == QkNorm::PerHead) {
    ops::rms_norm(q_.data(), L.q_norm.data(), q_.data(), n * n_head, hd, eps);
    ops::rms_norm(k_.data(), L.k_norm.data(), k_.data(), n * n_head_kv, hd, eps);
  }
  ops::rope(q_.data(), n, n_head, hd, pos_.data(), cfg_.rope);
  ops::rope(k_.data(), n, n_head_kv, hd, pos_.data(), cfg_.rope);
  emit(kQcur, il, q_.data(), n, qw);
  emit(kKcur, il, k_.data(), n, kw);
  emit(kVcur, il, v_.data(), n, vw);

  // Append K and V to the cache at their positions (evicting: after the kept cells).
  uint8_t* kc = k_cache_[il].data();
  uint8_t* vc = v_cache_[il].data();
  const int64_t cell0 = kv_cell0();
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = cell0 + t;
    if (kv_f16_) {
      uint16_t* kd = reinterpret_cast<uint16_t*>(kc) + p * kw;
      uint16_t* vd = reinterpret_cast<uint16_t*>(vc) + p * vw;
      for (int64_t i = 0; i < kw; ++i) kd[i] = el::f32_to_f16(k_[t * kw + i]);
      for (int64_t i = 0; i < vw; ++i) vd[i] = el::f32_to_f16(v_[t * vw + i]);
    } else {
      std::memcpy(reinterpret_cast<float*>(kc) + p * kw, k_.data() + t * kw, kw * sizeof(float));
      std::memcpy(reinterpret_cast<float*>(vc) + p * vw, v_.data() + t * vw, vw * sizeof(float));
    }
  }

  const AttentionSetup setup = attention_setup(il);
  ops::AttentionParams ap;
  ap.n_head = n_head;
  ap.n_head_kv = n_head_kv;
  ap.head_dim = hd;
  ap.head_dim_v = hdv;
  ap.scale = setup.scale;
  if (setup.q_scale != 0)
    for (auto& v : q_) v *= setup.q_scale;
  ap.softcap = setup.softcap;
  ap.window = setup.window;
  const int64_t n_kv = cell0 + n;
  float* probs = nullptr;
  if (wants(kKqSoftMax)) {
    probs_.resize(static_cast<size_t>(n_head) * n * n_kv);
    probs = probs_.data();
  }
  kqv_.resize(n * ow);
  ops::KvLayer kv{kc, vc, kv_f16_};
  const std::vector<int32_t>* key_pos = evicting_ ? &key_positions(n) : nullptr;
  if (!policy_masked())
    ops::attention(q_.data(), pos_.data(), n, kv, n_kv, ap, kqv_.data(), probs, &pool_);
  else
    policies::masked_attention(q_.data(), pos_.data(), n, kv, key_pos ? key_pos->data() : nullptr,
                               n_kv, ap, attention_policy_, kqv_.data(), probs, &pool_);
  if (probs) emit(kKqSoftMax, il, probs, n_head, n, n_kv, key_pos);
  emit(kKqvOut, il, kqv_.data(), n, ow);

  attn_.resize(n * E);
  linear(L.wo, kqv_.data(), n, attn_.data(), &pool_);
  if (!L.post_attn_norm.empty())
    ops::rms_norm(attn_.data(), L.post_attn_norm.data(), attn_.data(), n, E, eps);
  emit(kAttnOut, il, attn_.data(), n, E);
  for (int64_t i = 0; i < n * E; ++i) x_[i] += attn_[i];
  emit(kFfnInp, il, x_.data(), n, E);
  clock.lap(timer_, OpKind::Attention, il, n_past_, n);
}

void CpuContext::dense_ffn(const Weight& gate, const Weight& up, const Weight& down, const float* x,
                           int64_t n, float* out) {
  const int64_t ff = gate.n_out();
  h_gate_.resize(n * ff);
  h_up_.resize(n * ff);
  linear(gate, x, n, h_gate_.data(), &pool_);
  linear(up, x, n, h_up_.data(), &pool_);
  if (cfg_.ffn_act == FfnAct::GeluGated) {
    for (int64_t i = 0; i < n * ff; ++i) h_gate_[i] = el::gelu_ggml(h_gate_[i]) * h_up_[i];
  } else {
    for (int64_t t = 0; t < n; ++t)
      kernels::swiglu(h_gate_.data() + t * ff, h_up_.data() + t * ff, ff);
  }
  linear(down, h_gate_.data(), n, out, &pool_);
}

void CpuContext::moe_ffn(int il, int64_t n) {
  const LayerWeights& L = w_.layers[il];
  const int64_t E = card_.n_embd;
  const int nx = static_cast<int>(card_.expert_count),
            k = router_ ? router_->max_k() : static_cast<int>(card_.expert_used_count);
  OpClock clock(timer_);
  moe_logits_.resize(n * nx);
  moe_probs_.resize(n * nx);
  moe_ids_.resize(n * k);
  moe_w_.resize(n * k);
  moe_applied_.resize(n * k);
  linear(L.gate_inp, cur_.data(), n, moe_logits_.data(), &pool_);
  if (router_) {
    router_->route(il, n, moe_logits_.data(), moe_probs_.data(), moe_ids_.data(), moe_w_.data(),
                   moe_applied_.data(), stats_);
  } else {
    for (int64_t t = 0; t < n; ++t)
      ops::route_top_k(moe_logits_.data() + t * nx, nx, k, cfg_.moe_renormalise,
                       moe_probs_.data() + t * nx, moe_ids_.data() + t * k, moe_w_.data() + t * k,
                       moe_applied_.data() + t * k, cfg_.moe_unit_weights);
    count_routing(n, k);
  }
  clock.lap(timer_, OpKind::Router, il, n_past_, n);
  emit(kMoeLogits, il, moe_logits_.data(), n, nx);
  emit(kMoeProbs, il, moe_probs_.data(), n, nx);
  if (wants(kMoeTopk)) {
    tmp_.resize(n * k);
    for (int64_t i = 0; i < n * k; ++i) tmp_[i] = static_cast<float>(moe_ids_[i]);
    emit(kMoeTopk, il, tmp_.data(), n, k);
  }
  emit(kMoeWeights, il, moe_w_.data(), n, k);
  if (cfg_.moe_renormalise || cfg_.moe_unit_weights)
    emit(kMoeWeightsNorm, il, moe_applied_.data(), n, k);

  // Group the (token, slot) pairs by expert; one product per expert over its tokens.
  moe_res_.resize(n * k * E);
  std::vector<int64_t> rows;  // (t * k + slot) routed to the current expert
  for (int e = 0; e < nx; ++e) {
    rows.clear();
    for (int64_t i = 0; i < n * k; ++i)
      if (moe_ids_[i] == e) rows.push_back(i);
    if (rows.empty()) continue;
    const int64_t m = static_cast<int64_t>(rows.size());
    const int64_t ff = L.gate_exps.n_out();
    moe_x_.resize(m * E);
    for (int64_t r = 0; r < m; ++r)
      std::memcpy(moe_x_.data() + r * E, cur_.data() + (rows[r] / k) * E, E * sizeof(float));
    h_gate_.resize(m * ff);
    h_up_.resize(m * ff);
    linear_expert(L.gate_exps, e, moe_x_.data(), m, h_gate_.data(), &pool_);
    linear_expert(L.up_exps, e, moe_x_.data(), m, h_up_.data(), &pool_);
    if (cfg_.ffn_act == FfnAct::GeluGated) {
      for (int64_t i = 0; i < m * ff; ++i) h_gate_[i] = el::gelu_ggml(h_gate_[i]) * h_up_[i];
    } else {
      for (int64_t t = 0; t < m; ++t)
        kernels::swiglu(h_gate_.data() + t * ff, h_up_.data() + t * ff, ff);
    }
    moe_y_.resize(m * E);
    linear_expert(L.down_exps, e, h_gate_.data(), m, moe_y_.data(), &pool_);
    for (int64_t r = 0; r < m; ++r)
      std::memcpy(moe_res_.data() + rows[r] * E, moe_y_.data() + r * E, E * sizeof(float));
  }
  // Weighted sum over the k slots, in slot order.
  ffn_out_.assign(n * E, 0.0f);
  for (int64_t t = 0; t < n; ++t)
    for (int j = 0; j < k; ++j) {
      if (moe_ids_[t * k + j] < 0) continue;  // unused slot (variable-k policies)
      const float wgt = moe_applied_[t * k + j];
      const float* y = moe_res_.data() + (t * k + j) * E;
      float* o = ffn_out_.data() + t * E;
      for (int64_t i = 0; i < E; ++i) o[i] += y[i] * wgt;
    }
  emit(kMoeOut, il, ffn_out_.data(), n, E);

  if (cfg_.shared_expert && L.gate_shexp) {
    tmp_.resize(n * E);
    dense_ffn(L.gate_shexp, L.up_shexp, L.down_shexp, cur_.data(), n, tmp_.data());
    for (int64_t t = 0; t < n; ++t) {
      float g = 1.0f;
      if (!L.gate_inp_shexp.empty()) {
        // As llama.cpp: a one-row F32 product (ggml_vec_dot_f32's order; tinyBLAS does not
        // take a single output row), then the sigmoid as silu(x) / x.
        const float dot = kernels::dot_f32(L.gate_inp_shexp.data(), cur_.data() + t * E, E);
        g = dot != 0.0f ? el::silu(dot) / dot : 0.5f;
      }
      for (int64_t i = 0; i < E; ++i) tmp_[t * E + i] *= g;
    }
    emit(kShexp, il, tmp_.data(), n, E);
    for (int64_t i = 0; i < n * E; ++i) ffn_out_[i] += tmp_[i];
  }
  clock.lap(timer_, OpKind::Experts, il, n_past_, n);
}

void CpuContext::ffn_block(int il, int64_t n) {
  const LayerWeights& L = w_.layers[il];
  const int64_t E = card_.n_embd;
  OpClock clock(timer_);
  cur_.resize(n * E);
  ops::rms_norm(x_.data(), L.ffn_norm.data(), cur_.data(), n, E, card_.rms_eps);
  emit(kFfnNorm, il, cur_.data(), n, E);
  if (card_.expert_count > 0) {
    moe_ffn(il, n);  // times itself (router, experts)
  } else {
    ffn_out_.resize(n * E);
    dense_ffn(L.ffn_gate, L.ffn_up, L.ffn_down, cur_.data(), n, ffn_out_.data());
    clock.lap(timer_, OpKind::Ffn, il, n_past_, n);
  }
  if (!L.post_ffw_norm.empty())
    ops::rms_norm(ffn_out_.data(), L.post_ffw_norm.data(), ffn_out_.data(), n, E, card_.rms_eps);
  emit(kFfnOut, il, ffn_out_.data(), n, E);
  for (int64_t i = 0; i < n * E; ++i) x_[i] += ffn_out_[i];
  emit(kLayerOut, il, x_.data(), n, E);
}

// A model seen through policies (with_policies): forwards everything to the wrapped model;
// Context::create applies the policies.
class PolicyModel final : public Model {
 public:
  PolicyModel(std::shared_ptr<const Model> base, RoutingPolicy r, AttentionPolicy a,
              std::shared_ptr<PolicyStats> stats)
      : base_(std::move(base)), routing_(std::move(r)), attention_(a), stats_(std::move(stats)) {}
  const ModelCard& card() const override { return base_->card(); }
  const gguf::File& file() const override { return base_->file(); }
  const Tokenizer* tokenizer() const override { return base_->tokenizer(); }

  std::shared_ptr<const Model> base_;
  RoutingPolicy routing_;
  AttentionPolicy attention_;
  std::shared_ptr<PolicyStats> stats_;
};

}  // namespace
}  // namespace models

const char* op_kind_name(OpKind k) {
  switch (k) {
    case OpKind::Embed:
      return "embed";
    case OpKind::Attention:
      return "attention";
    case OpKind::Router:
      return "router";
    case OpKind::Experts:
      return "experts";
    case OpKind::Ffn:
      return "ffn";
    case OpKind::Head:
      return "head";
  }
  return "?";
}

std::shared_ptr<const Model> with_policies(std::shared_ptr<const Model> model,
                                           RoutingPolicy routing, AttentionPolicy attention,
                                           std::shared_ptr<PolicyStats> stats) {
  if (!model) throw Error(ErrorKind::BadInput, "no model given");
  return std::make_shared<models::PolicyModel>(std::move(model), std::move(routing), attention,
                                               std::move(stats));
}

std::string model_backend(const Model& model) {
  const Model* m = &model;
  if (auto pm = dynamic_cast<const models::PolicyModel*>(m)) m = pm->base_.get();
  return backend::is_cuda_model(*m) ? "cuda" : "cpu";
}

const std::vector<std::string>& Context::observable_names() {
  return models::observable_names();
}

std::unique_ptr<Context> Context::create(std::shared_ptr<const Model> model,
                                         const ContextParams& params) {
  if (!model) throw Error(ErrorKind::BadInput, "no model given");
  ContextParams p = params;
  std::shared_ptr<PolicyStats> shared_stats;
  if (auto pm = std::dynamic_pointer_cast<const models::PolicyModel>(model)) {
    if (p.routing.is_default()) p.routing = pm->routing_;
    if (p.attention.is_full()) p.attention = pm->attention_;
    shared_stats = pm->stats_;
    model = pm->base_;
  }
  auto cpu = backend::host_model(model);
  if (!cpu) throw Error(ErrorKind::Internal, "the model was not loaded by Model::load");
  if (p.backend != "cpu" && p.backend != "cuda" && p.backend != "auto")
    throw Error(ErrorKind::BadInput,
                "unknown backend '" + p.backend + "' (expected cpu, cuda or auto)");
  const bool on_gpu = backend::is_cuda_model(*model);
  if (p.backend == "cuda" && !on_gpu)
    throw Error(ErrorKind::BadInput,
                "backend 'cuda' needs a model loaded for CUDA (LoadOptions::backend 'cuda' or "
                "'auto' on a machine with a usable GPU); this model is on the CPU");
  if (params.n_ctx == 0) throw Error(ErrorKind::BadInput, "n_ctx must be at least 1");
  if (params.n_threads < 1)
    throw Error(ErrorKind::BadInput,
                "n_threads must be at least 1, got " + std::to_string(params.n_threads));
  if (on_gpu && p.backend != "cpu")
    return backend::make_cuda_context(std::move(model), p, std::move(shared_stats));
  return std::make_unique<models::CpuContext>(std::move(cpu), p, std::move(shared_stats));
}

}  // namespace moelab
