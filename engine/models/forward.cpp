// The forward pass shared by every architecture and backend (forward.h), and Context::create.
#include <algorithm>
#include <climits>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "models/context_common.h"
#include "models/forward.h"
#include "models/model_impl.h"
#include "moelab/core/backends.h"
#include "moelab/core/error.h"

namespace moelab {

namespace models {

// Times the OpKind parts when a timer is installed (marks from the backend).
class ForwardContext::Clock {
 public:
  explicit Clock(ForwardContext& c) : c_(c), on_(static_cast<bool>(c.timer_)) {
    if (on_) mark_ = c_.clock_mark();
  }
  // Reports the time since construction / the previous lap, and restarts.
  void lap(OpKind op, int layer, int64_t n) {
    if (!on_) return;
    const int64_t now = c_.clock_mark();
    c_.clock_report(op, layer, n, mark_, now);
    mark_ = now;
  }

 private:
  ForwardContext& c_;
  bool on_;
  int64_t mark_ = 0;
};

void ForwardContext::eval(std::span<const int32_t> tokens, bool all_logits) {
  begin_eval(tokens);
  const int64_t n = static_cast<int64_t>(tokens.size());
  start_batch(tokens);
  Clock clock(*this);
  const int64_t E = card_.n_embd;
  float* x = buf(Slot::X, n * E);
  embed(tokens, x);
  if (cfg_.embd_scale > 0) scale(x, cfg_.embd_scale, n * E);
  emit(kInpEmbd, -1, x, n, E);
  clock.lap(OpKind::Embed, -1, n);

  const BlockFn block = cfg_.block ? cfg_.block : &standard_block;
  for (uint32_t il = 0; il < card_.n_layer; ++il) {
    check_cancel();
    block(*this, static_cast<int>(il), n);
  }
  Clock head_clock(*this);

  // Output norm and head, for the rows whose logits are kept.
  const Weights& w = weights();
  const int64_t n_out = all_logits ? n : 1;
  const int64_t V = card_.n_vocab;
  x = buf(Slot::X, n * E);
  float* cur = buf(Slot::Cur, n_out * E);
  rms_norm(x + (n - n_out) * E, w.output_norm, cur, n_out, E);
  emit(kResultNorm, -1, cur, n_out, E);
  float* lg = buf(Slot::Logits, n_out * V);
  linear(w.output, cur, n_out, lg);
  if (cfg_.final_softcap > 0) softcap(lg, cfg_.final_softcap, n_out * V);
  if (cfg_.logit_scale > 0) scale(lg, 1.0f / cfg_.logit_scale, n_out * V);
  emit(kResultOutput, -1, lg, n_out, V);
  head_clock.lap(OpKind::Head, -1, n);
  finish_batch(lg, n_out * V);
  check_logits(n, n_out);
  deliver();
  commit_eval(n, n_out, all_logits);
}

void standard_block(ForwardContext& f, int il, int64_t n) {
  f.attention_block(il, n);
  f.ffn_block(il, n);
}

void ForwardContext::attention_block(int il, int64_t n) {
  const LayerWeights& L = weights().layers[il];
  const int64_t E = card_.n_embd;
  const int n_head = static_cast<int>(card_.n_head), n_head_kv = static_cast<int>(card_.n_head_kv);
  const int64_t hd = card_.head_dim, hdv = card_.head_dim_v;
  const int64_t qw = n_head * hd, kw = n_head_kv * hd, vw = n_head_kv * hdv, ow = n_head * hdv;
  Clock clock(*this);

  float* x = buf(Slot::X, n * E);
  float* cur = buf(Slot::Cur, n * E);
  rms_norm(x, L.attn_norm, cur, n, E);
  emit(kAttnNorm, il, cur, n, E);

  float* q = buf(Slot::Q, n * qw);
  float* k = buf(Slot::K, n * kw);
  float* v = buf(Slot::V, n * vw);
  {
    const Weight* w[] = {&L.wq, &L.wk, &L.wv};
    float* y[] = {q, k, v};
    linear_shared_input(w, y, 3, cur, n);
  }
  if (!L.bq.empty()) add_bias(q, L.bq, n);
  if (!L.bk.empty()) add_bias(k, L.bk, n);
  if (!L.bv.empty()) add_bias(v, L.bv, n);
  if (cfg_.qk_norm == QkNorm::FullWidth) {
    rms_norm(q, L.q_norm, q, n, qw);
    rms_norm(k, L.k_norm, k, n, kw);
  } else if (cfg_.qk_norm == QkNorm::PerHead) {
    rms_norm(q, L.q_norm, q, n * n_head, hd);
    rms_norm(k, L.k_norm, k, n * n_head_kv, hd);
  }
  rope(q, n, n_head);
  rope(k, n, n_head_kv);
  emit(kQcur, il, q, n, qw);
  emit(kKcur, il, k, n, kw);
  emit(kVcur, il, v, n, vw);

  // Append K and V to the cache at their positions (evicting: after the kept cells).
  const int64_t cell0 = kv_cell0();
  store_kv(il, cell0, k, v, n);

  const AttentionSetup setup = attention_setup(il);
  if (setup.q_scale != 0) scale(q, setup.q_scale, n * qw);
  const int64_t n_kv = cell0 + n;
  const std::vector<int32_t>* key_pos = evicting_ ? &key_positions(n) : nullptr;
  float* kqv = buf(Slot::Kqv, n * ow);
  const float* probs = attention(il, q, n, n_kv, setup, kqv, wants(kKqSoftMax));
  if (probs) emit(kKqSoftMax, il, probs, n_head, n, n_kv, key_pos);
  emit(kKqvOut, il, kqv, n, ow);

  float* attn = buf(Slot::Attn, n * E);
  linear(L.wo, kqv, n, attn);
  if (!L.bo.empty()) add_bias(attn, L.bo, n);
  if (!L.post_attn_norm.empty()) rms_norm(attn, L.post_attn_norm, attn, n, E);
  emit(kAttnOut, il, attn, n, E);
  if (cfg_.residual_scale > 0) scale(attn, cfg_.residual_scale, n * E);
  add(x, attn, n * E);
  emit(kFfnInp, il, x, n, E);
  clock.lap(OpKind::Attention, il, n);
}

void ForwardContext::mla_attention_block(int il, int64_t n) {
  const LayerWeights& L = weights().layers[il];
  const int64_t E = card_.n_embd;
  const int H = static_cast<int>(card_.n_head);
  const int64_t nope = cfg_.qk_nope, r = cfg_.qk_rope, c = cfg_.kv_lora_rank, dv = cfg_.v_head;
  const int64_t qh = nope + r;  // one head of q
  const int64_t kvw = c + r;    // the cached row (= card head_dim, one KV head)
  Clock clock(*this);

  float* x = buf(Slot::X, n * E);
  float* cur = buf(Slot::Cur, n * E);
  rms_norm(x, L.attn_norm, cur, n, E);
  emit(kAttnNorm, il, cur, n, E);

  // q F32 [n, H, qk_nope + qk_rope]
  float* q = buf(Slot::Q, n * H * qh);
  if (L.wq) {
    linear(L.wq, cur, n, q);
  } else {
    float* ql = buf(Slot::MlaLora, n * cfg_.q_lora_rank);
    linear(L.wq_a, cur, n, ql);
    rms_norm(ql, L.q_a_norm, ql, n, cfg_.q_lora_rank);
    linear(L.wq_b, ql, n, q);
  }
  // c_kv | k_pe F32 [n, kv_lora + qk_rope]; c_kv normed, k_pe roped (one head), in place.
  float* kv = buf(Slot::MlaKv, n * kvw);
  linear(L.wkv_a_mqa, cur, n, kv);
  float* ckv = buf(Slot::MlaCkv, n * c);
  copy_2d(kv, kvw, ckv, c, n, c);
  rms_norm(ckv, L.kv_a_norm, ckv, n, c);
  copy_2d(ckv, c, kv, kvw, n, c);
  float* pe = buf(Slot::MlaPe, n * H * r);
  copy_2d(kv + c, kvw, pe, r, n, r);
  rope_hd(pe, n, 1, static_cast<int>(r));
  copy_2d(pe, r, kv + c, kvw, n, r);

  // The absorbed query F32 [n, H, kv_lora + qk_rope]: q_nope · attn_k_b[j] | roped q_pe.
  float* qa = buf(Slot::MlaQ, n * H * kvw);
  float* hin = buf(Slot::MlaHeadIn, n * std::max(nope, c));
  float* hout = buf(Slot::MlaHeadOut, n * std::max(c, dv));
  for (int j = 0; j < H; ++j) {
    copy_2d(q + j * qh, H * qh, hin, nope, n, nope);
    linear_slice(L.wk_b, j, hin, n, hout);
    copy_2d(hout, c, qa + j * kvw, H * kvw, n, c);
  }
  copy_2d(q + nope, qh, pe, r, n * H, r);
  rope_hd(pe, n, H, static_cast<int>(r));
  copy_2d(pe, r, qa + c, kvw, n * H, r);
  emit(kQcur, il, qa, n, H * kvw);
  emit(kKcur, il, kv, n, kvw);
  emit(kVcur, il, ckv, n, c);

  const int64_t cell0 = kv_cell0();
  store_kv(il, cell0, kv, ckv, n);
  const AttentionSetup setup = attention_setup(il);
  if (setup.q_scale != 0) scale(qa, setup.q_scale, n * H * kvw);
  const int64_t n_kv = cell0 + n;
  const std::vector<int32_t>* key_pos = evicting_ ? &key_positions(n) : nullptr;
  float* kqv = buf(Slot::Kqv, n * H * c);
  const float* probs = attention(il, qa, n, n_kv, setup, kqv, wants(kKqSoftMax));
  if (probs) emit(kKqSoftMax, il, probs, H, n, n_kv, key_pos);

  // Per head: the kv_lora-wide output through attn_v_b[j] -> F32 [n, H, v_head].
  float* o = buf(Slot::MlaOut, n * H * dv);
  for (int j = 0; j < H; ++j) {
    copy_2d(kqv + j * c, H * c, hin, c, n, c);
    linear_slice(L.wv_b, j, hin, n, hout);
    copy_2d(hout, dv, o + j * dv, H * dv, n, dv);
  }
  emit(kKqvOut, il, o, n, H * dv);

  float* attn = buf(Slot::Attn, n * E);
  linear(L.wo, o, n, attn);
  emit(kAttnOut, il, attn, n, E);
  add(x, attn, n * E);
  emit(kFfnInp, il, x, n, E);
  clock.lap(OpKind::Attention, il, n);
}

void ForwardContext::dense_ffn(const Weight& gate, const Weight& up, const Weight& down,
                               const float* x, int64_t n, float* out) {
  const int64_t ff = gate.n_out();
  float* hg = buf(Slot::HGate, n * ff);
  float* hu = buf(Slot::HUp, n * ff);
  {
    const Weight* w[] = {&gate, &up};
    float* y[] = {hg, hu};
    linear_shared_input(w, y, 2, x, n);
  }
  glu(hg, hu, n, ff);
  linear(down, hg, n, out);
}

void ForwardContext::moe_ffn(int il, int64_t n) {
  const LayerWeights& L = weights().layers[il];
  const int64_t E = card_.n_embd;
  const int nx = static_cast<int>(card_.expert_count),
            k = router_ ? router_->max_k() : static_cast<int>(card_.expert_used_count);
  Clock clock(*this);
  const float* cur = buf(Slot::Cur, n * E);
  float* logits = buf(Slot::MoeLogits, n * nx);
  float* probs = buf(Slot::MoeProbs, n * nx);
  int32_t* ids = expert_ids(n * k);
  float* wts = buf(Slot::MoeWeights, n * k);
  float* applied = buf(Slot::MoeApplied, n * k);
  linear(L.gate_inp, cur, n, logits);
  if (!L.gate_inp_b.empty()) {
    // A router bias (gpt-oss): ffn_moe_logits are the logits before it, the routing works on
    // the biased logits (its "probs", oracle ffn_moe_probs).
    emit(kMoeLogits, il, logits, n, nx);
    add_bias(logits, L.gate_inp_b, n);
  }
  float* selection = L.exp_probs_b.empty() ? nullptr : buf(Slot::MoeSelection, n * nx);
  if (router_) {
    route_policy(il, logits, n, nx, k, probs, ids, wts, applied, L.exp_probs_b, selection);
  } else {
    route_top_k(logits, n, nx, k, probs, ids, wts, applied, L.exp_probs_b, selection);
    count_routing(n, k);
  }
  clock.lap(OpKind::Router, il, n);
  if (L.gate_inp_b.empty()) emit(kMoeLogits, il, logits, n, nx);
  emit(kMoeProbs, il, probs, n, nx);
  if (selection) emit(kMoeProbsBiased, il, selection, n, nx);
  if (wants(kMoeTopk)) emit(kMoeTopk, il, ids_as_floats(ids, n * k), n, k);
  emit(kMoeWeights, il, wts, n, k);
  if (cfg_.moe_weights_scale > 0)
    emit(kMoeWeightsScaled, il, applied, n, k);
  else if (cfg_.moe_softmax_selected)
    emit(kMoeWeightsSoftmax, il, applied, n, k);
  else if (cfg_.moe_renormalise || cfg_.moe_unit_weights)
    emit(kMoeWeightsNorm, il, applied, n, k);
  if (cfg_.expert_groups > 1 && !router_ && wants(kMoeGroupTopk)) {
    const int nu = cfg_.expert_groups_used;
    float* groups = buf(Slot::MoeGroups, n * nu);
    kept_groups(selection ? selection : probs, n, nx, groups);
    emit(kMoeGroupTopk, il, groups, n, nu);
  }

  float* out = buf(Slot::FfnOut, n * E);
  experts(L, cur, ids, applied, n, k, out);
  emit(kMoeOut, il, out, n, E);

  if (cfg_.shared_expert && L.gate_shexp) {
    float* t = buf(Slot::Tmp, n * E);
    dense_ffn(L.gate_shexp, L.up_shexp, L.down_shexp, cur, n, t);
    if (!L.gate_inp_shexp.empty()) shexp_gate(t, L.gate_inp_shexp, cur, n);
    emit(kShexp, il, t, n, E);
    add(out, t, n * E);
  }
  clock.lap(OpKind::Experts, il, n);
}

void ForwardContext::ffn_block(int il, int64_t n) {
  const LayerWeights& L = weights().layers[il];
  const int64_t E = card_.n_embd;
  Clock clock(*this);
  float* x = buf(Slot::X, n * E);
  float* cur = buf(Slot::Cur, n * E);
  rms_norm(x, L.ffn_norm, cur, n, E);
  emit(kFfnNorm, il, cur, n, E);
  float* out = nullptr;
  if (L.gate_inp) {  // a MoE layer (leading dense layers have a dense FFN)
    moe_ffn(il, n);  // times itself (router, experts)
    out = buf(Slot::FfnOut, n * E);
  } else {
    out = buf(Slot::FfnOut, n * E);
    dense_ffn(L.ffn_gate, L.ffn_up, L.ffn_down, cur, n, out);
    clock.lap(OpKind::Ffn, il, n);
  }
  if (!L.post_ffw_norm.empty()) rms_norm(out, L.post_ffw_norm, out, n, E);
  emit(kFfnOut, il, out, n, E);
  if (cfg_.residual_scale > 0) scale(out, cfg_.residual_scale, n * E);
  add(x, out, n * E);
  emit(kLayerOut, il, x, n, E);
}

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

std::string model_backend(const Model& model) {
  return backend::is_cuda_model(model) ? "cuda" : "cpu";
}

const std::vector<std::string>& Context::observable_names() {
  return models::observable_names();
}

std::unique_ptr<Context> Context::create(std::shared_ptr<const Model> model,
                                         const ContextParams& params) {
  if (!model) throw Error(ErrorKind::BadInput, "no model given");
  const ContextParams& p = params;
  std::shared_ptr<PolicyStats> shared_stats = p.policy_stats;
  auto cpu = backend::host_model(model);
  if (!cpu) throw Error(ErrorKind::Internal, "the model was not loaded by Model::load");
  const Backend requested = p.backend;
  const bool on_gpu = backend::is_cuda_model(*model);
  if (requested == Backend::Cuda && !on_gpu)
    throw Error(ErrorKind::BadInput,
                "backend 'cuda' needs a model loaded for CUDA (LoadOptions::backend 'cuda' or "
                "'auto' on a machine with a usable GPU); this model is on the CPU");
  if (params.n_ctx == 0) throw Error(ErrorKind::BadInput, "n_ctx must be at least 1");
  if (params.n_threads < 1)
    throw Error(ErrorKind::BadInput,
                "n_threads must be at least 1, got " + std::to_string(params.n_threads));
  if (on_gpu && requested != Backend::Cpu)
    return backend::make_cuda_context(std::move(model), p, std::move(shared_stats));
  return models::make_cpu_context(std::move(cpu), p, std::move(shared_stats));
}

}  // namespace moelab
