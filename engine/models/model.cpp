// Model::load: open and validate the GGUF, pick the architecture from the registry, bind the
// weights (zero-copy views into the mapping; small vectors - norms, biases - as F32 copies).
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "backend/backend.h"
#include "models/context_common.h"
#include "models/model_impl.h"
#include "moelab/core/backends.h"
#include "moelab/core/error.h"
#include "moelab/core/log.h"
#include "moelab/kernels/kernels.h"

#if __has_include("moelab/tokenizer/tokenizer.h")
#include "moelab/tokenizer/tokenizer.h"
#define MOELAB_MODELS_HAVE_TOKENIZER 1
#endif

namespace moelab {

namespace models {

CpuModel::CpuModel(std::unique_ptr<gguf::File> file, ModelCard card, ArchConfig config,
                   Weights weights, std::shared_ptr<const Tokenizer> tokenizer)
    : file_(std::move(file)),
      card_(std::move(card)),
      config_(config),
      weights_(std::move(weights)),
      tokenizer_(std::move(tokenizer)) {}

CpuModel::~CpuModel() = default;

uint64_t CpuModel::repack_weights() {
  uint64_t total = 0;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uint8_t* map_lo = file_->base();
  const uint8_t* map_hi = map_lo + file_->file_size();
  auto repack = [&](Weight& w, bool expert) {
    if (!w || w.repacked || w.ne[3] != 1 || !kernels::can_repack(w.type, w.n_in(), w.n_out()) ||
        !kernels::repack_pays(w.type) || exact_activations(w.type, w.n_in(), expert))
      return;
    const uint64_t slice = static_cast<uint64_t>(w.ne[1]) * w.row_bytes;
    const uint64_t bytes = slice * static_cast<uint64_t>(w.ne[2]);
    auto* dst = static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
    if (!dst)
      throw Error(ErrorKind::Io, "out of memory repacking tensor '" + w.name + "' (" +
                                     std::to_string(bytes) + " bytes)");
    repacked_.emplace_back(dst);
    // Release the tensor's whole pages of the file mapping (never written: MAP_PRIVATE pages
    // that were only read are dropped and would be read again from the file) as each expert
    // slice is copied, so at most one slice is resident twice (not a whole 3-D expert tensor).
    const bool release = file_->mapped() && w.data >= map_lo && w.data + bytes <= map_hi;
    uintptr_t released = (reinterpret_cast<uintptr_t>(w.data) + page - 1) / page * page;
    for (int64_t e = 0; e < w.ne[2]; ++e) {
      kernels::repack_rows(w.type, w.data + e * slice, dst + e * slice, w.n_in(), w.n_out());
      const uintptr_t hi = (reinterpret_cast<uintptr_t>(w.data) + (e + 1) * slice) / page * page;
      if (release && hi > released) {
        madvise(reinterpret_cast<void*>(released), hi - released, MADV_DONTNEED);
        released = hi;
      }
    }
    w.data = dst;
    w.repacked = true;
    total += bytes;
  };
  for (LayerWeights& L : weights_.layers) {
    for (Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down,
                      &L.gate_shexp, &L.up_shexp, &L.down_shexp})
      repack(*w, false);
    for (Weight* w : {&L.gate_exps, &L.up_exps, &L.down_exps}) repack(*w, true);
  }
  // The output matrix, unless it is the token embedding (read row by row by embed).
  if (weights_.output.data != weights_.token_embd.data) repack(weights_.output, false);
  return total;
}

namespace {

std::string tensor_subject(const std::string& n) {
  return "tensor '" + n + "'";
}

}  // namespace

Weight WeightBinder::matrix(const std::string& name, bool required) const {
  Weight w;
  const gguf::TensorInfo* t = f_.find_tensor(name);
  if (!t) {
    if (required)
      f_.fail("the model needs this tensor but the file lacks it", tensor_subject(name));
    return w;
  }
  const auto type = static_cast<gguf::TensorType>(t->type);
  if (!kernels::supports(type))
    f_.fail("tensor type " + gguf::type_name(t->type) +
                " has no kernels in this moelab (supported: F32, F16, BF16, Q4_0, Q4_1, "
                "Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, MXFP4 as the kernels provide)",
            tensor_subject(name), t->header_offset);
  w.data = t->data;
  w.type = type;
  for (int d = 0; d < 4; ++d) w.ne[d] = t->ne[d];
  w.row_bytes = t->row_bytes();
  w.name = name;
  return w;
}

std::vector<float> WeightBinder::vec(const std::string& name, int64_t n, bool required) const {
  const gguf::TensorInfo* t = f_.find_tensor(name);
  if (!t) {
    if (required)
      f_.fail("the model needs this tensor but the file lacks it", tensor_subject(name));
    return {};
  }
  if (t->n_elements() != n)
    f_.fail("has " + std::to_string(t->n_elements()) + " elements, expected " + std::to_string(n),
            tensor_subject(name), t->header_offset);
  const auto type = static_cast<gguf::TensorType>(t->type);
  if (!kernels::supports(type))
    f_.fail("tensor type " + gguf::type_name(t->type) + " has no kernels in this moelab",
            tensor_subject(name), t->header_offset);
  std::vector<float> out(static_cast<size_t>(n));
  kernels::dequantize_row(type, t->data, out.data(), n);
  return out;
}

void WeightBinder::expect_shape(const Weight& w, int64_t n_in, int64_t n_out, int64_t n3) const {
  if (w.ne[0] != n_in || w.ne[1] != n_out || w.ne[2] != n3 || w.ne[3] != 1)
    f_.fail("has shape [" + std::to_string(w.ne[0]) + ", " + std::to_string(w.ne[1]) + ", " +
                std::to_string(w.ne[2]) + "], expected [" + std::to_string(n_in) + ", " +
                std::to_string(n_out) + ", " + std::to_string(n3) + "]",
            tensor_subject(w.name));
}

void bind_qkv_bias(const WeightBinder& b, const ModelCard& c, const std::string& p,
                   LayerWeights& L) {
  const int64_t q_width = static_cast<int64_t>(c.n_head) * c.head_dim;
  const int64_t k_width = static_cast<int64_t>(c.n_head_kv) * c.head_dim;
  const int64_t v_width = static_cast<int64_t>(c.n_head_kv) * c.head_dim_v;
  L.bq = b.vec(p + "attn_q.bias", q_width);
  L.bk = b.vec(p + "attn_k.bias", k_width);
  L.bv = b.vec(p + "attn_v.bias", v_width);
}

void bind_qk_norm(const WeightBinder& b, const ModelCard& c, const std::string& p, QkNorm kind,
                  LayerWeights& L) {
  if (kind == QkNorm::FullWidth) {
    L.q_norm = b.vec(p + "attn_q_norm.weight", static_cast<int64_t>(c.n_head) * c.head_dim);
    L.k_norm = b.vec(p + "attn_k_norm.weight", static_cast<int64_t>(c.n_head_kv) * c.head_dim);
  } else if (kind == QkNorm::PerHead) {
    L.q_norm = b.vec(p + "attn_q_norm.weight", c.head_dim);
    L.k_norm = b.vec(p + "attn_k_norm.weight", c.head_dim);
  }
}

void bind_post_norms(const WeightBinder& b, const ModelCard& c, const std::string& p,
                     LayerWeights& L) {
  L.post_attn_norm = b.vec(p + "post_attention_norm.weight", c.n_embd);
  L.post_ffw_norm = b.vec(p + "post_ffw_norm.weight", c.n_embd);
}

namespace {

Weights bind_weights(const gguf::File& f, const ModelCard& c, const ArchDef& arch,
                     const ArchConfig& cfg, const LoadOptions& opts) {
  WeightBinder b(f);
  Weights w;
  const int64_t E = c.n_embd, V = c.n_vocab;
  const int64_t q_width = static_cast<int64_t>(c.n_head) * c.head_dim;
  const int64_t k_width = static_cast<int64_t>(c.n_head_kv) * c.head_dim;
  const int64_t v_width = static_cast<int64_t>(c.n_head_kv) * c.head_dim_v;
  w.token_embd = b.matrix("token_embd.weight");
  b.expect_shape(w.token_embd, E, V);
  w.output = b.matrix("output.weight", false);
  if (!w.output) w.output = w.token_embd;  // tied embeddings
  b.expect_shape(w.output, E, V);
  w.output_norm = b.vec("output_norm.weight", E);
  w.layers.resize(c.n_layer);
  for (uint32_t il = 0; il < c.n_layer; ++il) {
    if (opts.progress &&
        !opts.progress(0.1f + 0.9f * static_cast<float>(il) / static_cast<float>(c.n_layer)))
      throw Error(ErrorKind::Cancelled, "loading was cancelled", {.file = f.path()});
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& L = w.layers[il];
    L.attn_norm = b.vec(p + "attn_norm.weight", E);
    L.wo = b.matrix(p + "attn_output.weight");
    if (!cfg.mla) {  // MLA binds its own projections (arch_deepseek2.cpp)
      L.wq = b.matrix(p + "attn_q.weight");
      L.wk = b.matrix(p + "attn_k.weight");
      L.wv = b.matrix(p + "attn_v.weight");
      b.expect_shape(L.wq, E, q_width);
      b.expect_shape(L.wk, E, k_width);
      b.expect_shape(L.wv, E, v_width);
      b.expect_shape(L.wo, static_cast<int64_t>(c.n_head) * c.head_dim_v, E);
    }
    if (arch.bind_layer) arch.bind_layer(b, c, p, L);
    // An architecture may bind the pre-FFN norm under its own name (glm4moe).
    if (L.ffn_norm.empty()) L.ffn_norm = b.vec(p + "ffn_norm.weight", E);
    if (c.expert_count > 0 && il >= c.n_layer_dense_lead) {  // a MoE layer
      const int64_t nx = c.expert_count;
      L.gate_inp = b.matrix(p + "ffn_gate_inp.weight");
      b.expect_shape(L.gate_inp, E, nx);
      L.gate_exps = b.matrix(p + "ffn_gate_exps.weight");
      const int64_t ff = L.gate_exps.ne[1];
      b.expect_shape(L.gate_exps, E, ff, nx);
      L.up_exps = b.matrix(p + "ffn_up_exps.weight");
      b.expect_shape(L.up_exps, E, ff, nx);
      L.down_exps = b.matrix(p + "ffn_down_exps.weight");
      b.expect_shape(L.down_exps, ff, E, nx);
      if (cfg.shared_expert) {
        L.gate_shexp = b.matrix(p + "ffn_gate_shexp.weight");
        const int64_t sff = L.gate_shexp.ne[1];
        b.expect_shape(L.gate_shexp, E, sff);
        L.up_shexp = b.matrix(p + "ffn_up_shexp.weight");
        b.expect_shape(L.up_shexp, E, sff);
        L.down_shexp = b.matrix(p + "ffn_down_shexp.weight");
        b.expect_shape(L.down_shexp, sff, E);
        L.gate_inp_shexp = b.vec(p + "ffn_gate_inp_shexp.weight", E, false);
      }
    } else {
      L.ffn_gate = b.matrix(p + "ffn_gate.weight");
      const int64_t ff = L.ffn_gate.ne[1];
      b.expect_shape(L.ffn_gate, E, ff);
      L.ffn_up = b.matrix(p + "ffn_up.weight");
      b.expect_shape(L.ffn_up, E, ff);
      L.ffn_down = b.matrix(p + "ffn_down.weight");
      b.expect_shape(L.ffn_down, ff, E);
    }
  }
  return w;
}

}  // namespace
}  // namespace models

namespace models {
namespace {
// Everything Model::load checks and derives before the model exists: the card's verdict, the
// architecture's configuration, every weight (presence, type, shape; zero-copy views) and the
// tokenizer. Model::check runs exactly this, so `inspect --check` and load cannot disagree.
struct Prepared {
  ArchConfig config;
  Weights weights;
  std::shared_ptr<const Tokenizer> tokenizer;
};

Prepared prepare(const gguf::File& file, const ModelCard& card, const LoadOptions& opts) {
  const ArchDef* arch = find_architecture(card.architecture);
  if (!arch) {
    std::string list;
    for (const auto& a : architectures()) list += (list.empty() ? "" : ", ") + std::string(a.name);
    file.fail("architecture '" + card.architecture + "' is not supported (supported: " + list + ")",
              "metadata key 'general.architecture'");
  }
  if (!card.problems.empty()) {
    std::string msg = "the model cannot be run: " + card.problems.front();
    if (card.problems.size() > 1)
      msg += " (and " + std::to_string(card.problems.size() - 1) + " more problems)";
    file.fail(msg);
  }
  Prepared p;
  p.config = arch->configure(file, card);
  // Written by moefy (moelab/runtime/moefy.h): unit gating and an ungated shared expert in any
  // MoE architecture.
  if (const gguf::Value* g = file.find("moelab.expert_gating")) {
    const std::string gating =
        g->type() == gguf::ValueType::STRING ? std::string(g->as_string()) : std::string();
    if (gating == "unit")
      p.config.moe_unit_weights = true;
    else if (gating != "softmax")
      file.fail("expert gating '" + gating + "' is not known (expected unit or softmax)",
                "metadata key 'moelab.expert_gating'");
    if (card.expert_count == 0)
      file.fail("expert gating is set but the model has no experts",
                "metadata key 'moelab.expert_gating'");
  }
  if (card.expert_count > 0 && card.expert_shared_count > 0) p.config.shared_expert = true;
  p.config.block = arch->block;
  p.weights = bind_weights(file, card, *arch, p.config, opts);
#ifdef MOELAB_MODELS_HAVE_TOKENIZER
  if (file.find("tokenizer.ggml.tokens")) p.tokenizer = Tokenizer::from_gguf(file);
#endif
  return p;
}
}  // namespace
}  // namespace models

std::string Model::check(const gguf::File& file, const ModelCard& card) {
  try {
    models::prepare(file, card, {});
    return {};
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::BadInput) throw;
    return e.where().subject.empty() ? e.detail() : e.where().subject + ": " + e.detail();
  }
}

std::shared_ptr<Model> Model::load(const std::string& path, const LoadOptions& opts) {
  const Backend requested = opts.backend;
  if (opts.progress && !opts.progress(0.0f))
    throw Error(ErrorKind::Cancelled, "loading was cancelled", {.file = path});
  std::unique_ptr<gguf::File> file = gguf::File::open(path);
  ModelCard card = make_model_card(*file);
  models::Prepared prep = models::prepare(*file, card, opts);
  auto cpu = std::make_shared<models::CpuModel>(std::move(file), std::move(card), prep.config,
                                                std::move(prep.weights), std::move(prep.tokenizer));
  if (resolve_backend(requested) == Backend::Cuda) {
    try {
      auto gpu = backend::make_cuda_model(cpu, opts);
      if (opts.progress && !opts.progress(1.0f))
        throw Error(ErrorKind::Cancelled, "loading was cancelled", {.file = path});
      return gpu;
    } catch (const Error& e) {
      // "auto" is the fastest backend that can hold the model: a GPU without the memory (or a
      // failing device) leaves the CPU, with one line saying why. "cuda" reports the error.
      if (requested != Backend::Auto || e.kind() == ErrorKind::Cancelled) throw;
      log(LogLevel::Warning, std::string("CUDA: ") + e.what() + "; loading on the CPU instead");
    }
  }
  // The CPU kernels' fastest layout (kernels.h: repack_rows), unless the llama.cpp-order
  // kernels are asked for (MOELAB_EXACT_KERNELS=1).
  if (!kernels::exact_kernels()) {
    const uint64_t bytes = cpu->repack_weights();
    if (bytes > 0)
      log(LogLevel::Debug, "repacked " + std::to_string(bytes >> 20) +
                               " MiB of weights for the CPU kernels (MOELAB_EXACT_KERNELS=1: off)");
  }
  if (opts.progress && !opts.progress(1.0f))
    throw Error(ErrorKind::Cancelled, "loading was cancelled", {.file = path});
  return cpu;
}

}  // namespace moelab
