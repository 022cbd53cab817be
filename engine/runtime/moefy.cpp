// moefy: dense -> MoE conversion from calibration activations (method and sources in
// moelab/runtime/moefy.h).
#include "moelab/runtime/moefy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <tuple>

#include "moelab/core/error.h"
#include "moelab/core/files.h"
#include "moelab/core/thread_pool.h"
#include "moelab/gguf/gguf.h"
#include "moelab/gguf/writer.h"
#include "moelab/kernels/kernels.h"
#include "moelab/model/card.h"
#include "moelab/model/model.h"
#include "moelab/tokenizer/tokenizer.h"

namespace moelab {

namespace {

namespace fs = std::filesystem;
using gguf::TensorType;

[[noreturn]] void bad(const std::string& why, ErrorWhere where = {}) {
  throw Error(ErrorKind::BadInput, why, std::move(where));
}

// Bounded, non-blocking, regular files only, UTF-8 (moelab/core/files.h), as every text input.
std::string read_text(const std::string& path) {
  return read_utf8_text_file(path, "calibration text");
}

// All tensor bytes of a tensor in the mapped file.
std::span<const uint8_t> tensor_bytes(const gguf::TensorInfo& t) {
  return {t.data, static_cast<size_t>(t.row_bytes() * static_cast<uint64_t>(t.n_rows()))};
}

// Cholesky solve of (A) W = B for symmetric positive definite A [n, n] (row-major), B [n, r]
// (row-major); B is overwritten by W.
void cholesky_solve(std::vector<double>& a, std::vector<double>& b, int n, int r) {
  for (int j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0)) throw Error(ErrorKind::Internal, "moefy: router normal equations are singular");
    const double l = std::sqrt(d);
    a[j * n + j] = l;
    for (int i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (int k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / l;
    }
  }
  for (int c = 0; c < r; ++c) {
    for (int i = 0; i < n; ++i) {  // L y = b
      double s = b[i * r + c];
      for (int k = 0; k < i; ++k) s -= a[i * n + k] * b[k * r + c];
      b[i * r + c] = s / a[i * n + i];
    }
    for (int i = n - 1; i >= 0; --i) {  // L^T w = y
      double s = b[i * r + c];
      for (int k = i + 1; k < n; ++k) s -= a[k * n + i] * b[k * r + c];
      b[i * r + c] = s / a[i * n + i];
    }
  }
}

// Row-major transpose of m [rows, cols].
std::vector<float> transpose(const std::vector<float>& m, int64_t rows, int64_t cols) {
  std::vector<float> t(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = m[r * cols + c];
  return t;
}

// One layer's partition of the FFN neurons.
struct Partition {
  std::vector<int32_t> shared;               // ascending neuron ids
  std::vector<std::vector<int32_t>> expert;  // [N] ascending neuron ids, m each
};

// Balanced k-means of the routed neurons' activation patterns (see the header).
std::vector<std::vector<int32_t>> cluster(const std::vector<int32_t>& routed,
                                          const std::vector<float>& feat, int64_t T,
                                          const std::vector<int64_t>& count, int N, int m,
                                          ThreadPool* pool) {
  const int64_t R = static_cast<int64_t>(routed.size());
  // Features of the routed neurons, [R, T].
  std::vector<float> f(static_cast<size_t>(R * T));
  std::vector<double> fnorm(R);
  for (int64_t r = 0; r < R; ++r) {
    std::memcpy(f.data() + r * T, feat.data() + routed[r] * T, T * sizeof(float));
    fnorm[r] = static_cast<double>(count[routed[r]]);  // binary: |f|^2 = count
  }
  // Farthest-point seeding from the most often active neuron (ties: lower id).
  std::vector<float> cent(static_cast<size_t>(N) * T);
  std::vector<double> cnorm(N);
  int64_t first = 0;
  for (int64_t r = 1; r < R; ++r)
    if (count[routed[r]] > count[routed[first]]) first = r;
  std::vector<double> mind(R, INFINITY);
  std::vector<float> dots(static_cast<size_t>(R) * N);
  int64_t pick = first;
  for (int c = 0; c < N; ++c) {
    std::memcpy(cent.data() + c * T, f.data() + pick * T, T * sizeof(float));
    cnorm[c] = fnorm[pick];
    std::vector<float> d(R);
    kernels::matmul(TensorType::F32, cent.data() + c * T, T, 1, f.data(), R, d.data(), pool,
                    kernels::Precision::Exact);
    int64_t best = -1;
    for (int64_t r = 0; r < R; ++r) {
      mind[r] = std::min(mind[r], fnorm[r] - 2.0 * d[r] + cnorm[c]);
      if (best < 0 || mind[r] > mind[best]) best = r;
    }
    pick = best;
  }
  std::vector<int> assign(R, -1), prev;
  std::vector<std::tuple<double, int64_t, int>> pairs(static_cast<size_t>(R) * N);
  for (int iter = 0; iter < 16; ++iter) {
    kernels::matmul(TensorType::F32, cent.data(), T, N, f.data(), R, dots.data(), pool,
                    kernels::Precision::Exact);
    for (int64_t r = 0; r < R; ++r)
      for (int c = 0; c < N; ++c)
        pairs[r * N + c] = {fnorm[r] - 2.0 * dots[r * N + c] + cnorm[c], r, c};
    std::sort(pairs.begin(), pairs.end());
    prev = assign;
    std::fill(assign.begin(), assign.end(), -1);
    std::vector<int> size(N, 0);
    for (const auto& [dist, r, c] : pairs) {
      if (assign[r] >= 0 || size[c] >= m) continue;
      assign[r] = c;
      ++size[c];
    }
    if (assign == prev) break;
    std::fill(cent.begin(), cent.end(), 0.0f);
    for (int64_t r = 0; r < R; ++r) {
      float* dst = cent.data() + assign[r] * T;
      const float* src = f.data() + r * T;
      for (int64_t t = 0; t < T; ++t) dst[t] += src[t];
    }
    for (int c = 0; c < N; ++c) {
      double s = 0;
      for (int64_t t = 0; t < T; ++t) {
        cent[c * T + t] /= static_cast<float>(m);
        s += static_cast<double>(cent[c * T + t]) * cent[c * T + t];
      }
      cnorm[c] = s;
    }
  }
  std::vector<std::vector<int32_t>> out(N);
  for (int64_t r = 0; r < R; ++r) out[assign[r]].push_back(routed[r]);
  return out;
}

// The mixtral layout's router logits are the fitted ones times this: the softmax over them is
// then nearly uniform, so the renormalised top-K weights are each close to 1/K, and the routed
// experts' down projections are multiplied by K - the same experts chosen, each applied with a
// weight close to 1, as the unit gating does.
constexpr float kMixtralRouterScale = 1.0f / 64.0f;

struct LayerPlan {
  Partition part;
  std::vector<float> router;  // F32 [N rows of n_embd] (ffn_gate_inp)
  double shared_hit = 0, routed_hit = 0;
};

}  // namespace

MoefyResult moefy(const MoefySpec& s,
                  const std::function<bool(float, std::string_view)>& progress) {
  auto report = [&](float f, std::string_view stage) {
    if (progress && !progress(f, stage))
      throw Error(ErrorKind::Cancelled, "the conversion was cancelled", {.file = s.out_path});
  };
  // ---- checks, before any work ----
  const int N = static_cast<int>(s.experts), S = static_cast<int>(s.shared),
            K = static_cast<int>(s.top_k);
  if (s.experts < 2 || s.experts > 256)
    bad("the number of routed experts must be 2..256, got " + std::to_string(s.experts),
        {.subject = "--experts"});
  if (s.top_k < 1 || s.top_k > s.experts)
    bad("top-k " + std::to_string(s.top_k) + " is outside 1.." + std::to_string(s.experts) +
            " (the number of routed experts)",
        {.subject = "--top-k"});
  if (s.shared > 64) bad("at most 64 shared experts", {.subject = "--shared"});
  if (s.method != "cluster" && s.method != "contiguous")
    bad("unknown method '" + s.method + "' (expected cluster or contiguous)",
        {.subject = "--method"});
  if (s.layout != "moelab" && s.layout != "mixtral")
    bad("unknown layout '" + s.layout + "' (expected moelab or mixtral)", {.subject = "--layout"});
  if (s.layout == "mixtral" && s.shared != 0)
    bad("the mixtral layout has no shared expert: use --shared 0 or --layout moelab",
        {.subject = "--shared"});
  if (s.calib_tokens < kMoefyMinCalibTokens)
    bad("at least " + std::to_string(kMoefyMinCalibTokens) + " calibration tokens are needed",
        {.subject = "--calib-tokens"});
  if (s.calib_tokens > kMoefyMaxCalibTokens)
    bad("at most " + std::to_string(kMoefyMaxCalibTokens) + " calibration tokens are used",
        {.subject = "--calib-tokens"});
  if (s.n_ctx < kMoefyMinChunk)
    bad("the calibration chunk must be at least " + std::to_string(kMoefyMinChunk) +
            " tokens, got " + std::to_string(s.n_ctx),
        {.subject = "--ctx"});
  std::error_code ec;
  if (s.out_path.empty()) bad("no output file given", {.subject = "-o"});
  check_output_target(s.out_path);  // the writers' rule: regular files only, never renamed over
  if (fs::exists(s.out_path, ec) && fs::equivalent(s.out_path, s.model_path, ec))
    bad("the output is the input model; choose another output file", {.file = s.out_path});

  auto file = gguf::File::open(s.model_path);
  const ModelCard card = make_model_card(*file);
  if (card.expert_count > 0)
    bad("the model is already a Mixture-of-Experts model (expert_count " +
            std::to_string(card.expert_count) + "); moefy converts dense models",
        {.file = s.model_path, .subject = "metadata key '" + card.architecture + ".expert_count'"});
  if (card.architecture != "llama")
    bad("architecture '" + card.architecture +
            "' is not supported by moefy (supported: llama, dense SwiGLU FFN)",
        {.file = s.model_path, .subject = "metadata key 'general.architecture'"});
  const int64_t E = card.n_embd, FF = card.n_ff;
  if (FF <= 0 || FF % (N + S) != 0)
    bad("n_ff " + std::to_string(FF) + " is not divisible by experts + shared = " +
            std::to_string(N + S) + " (every expert must have the same width)",
        {.file = s.model_path, .subject = "--experts/--shared"});
  const int m = static_cast<int>(FF / (N + S));
  const std::string text = read_text(s.calib_path);
  if (text.empty()) bad("the calibration text is empty", {.file = s.calib_path});

  LoadOptions lo;
  lo.backend = Backend::Cpu;
  std::shared_ptr<Model> model = Model::load(s.model_path, lo);
  if (!model->tokenizer()) bad("the model has no tokenizer", {.file = s.model_path});
  std::vector<int32_t> tokens = model->tokenizer()->encode(text, true, false);
  if (tokens.size() < kMoefyMinCalibTokens)
    bad("the calibration text gives only " + std::to_string(tokens.size()) + " tokens; at least " +
            std::to_string(kMoefyMinCalibTokens) + " are needed",
        {.file = s.calib_path});
  const int64_t T = std::min<int64_t>(static_cast<int64_t>(tokens.size()), s.calib_tokens);
  tokens.resize(T);
  for (uint32_t il = 0; il < card.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    for (const char* n : {"ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"})
      if (!file->find_tensor(p + n))
        bad("the dense FFN tensor is missing", {.file = s.model_path, .subject = p + n});
  }
  report(0.0f, "calibrating");

  // ---- calibration: the FFN input of every token and layer ----
  const int64_t L = card.n_layer;
  std::vector<std::vector<float>> X(L, std::vector<float>(static_cast<size_t>(T * E)));
  {
    ContextParams cp;
    const uint32_t model_ctx = card.context_length ? card.context_length : s.n_ctx;
    cp.n_ctx = std::max<uint32_t>(1, std::min(s.n_ctx, model_ctx));
    cp.n_threads = s.n_threads;
    cp.backend = Backend::Cpu;
    auto ctx = Context::create(model, cp);
    int64_t base = 0;
    ctx->set_observer(
        [&](const Observation& o) {
          if (o.layer < 0 || o.layer >= L) return;
          std::memcpy(X[o.layer].data() + (base + o.pos0) * E, o.data.data(),
                      o.data.size() * sizeof(float));
        },
        {"ffn_norm"});
    for (base = 0; base < T; base += cp.n_ctx) {
      const int64_t n = std::min<int64_t>(cp.n_ctx, T - base);
      ctx->truncate(0);
      ctx->eval(std::span<const int32_t>(tokens.data() + base, n), false);
      report(0.3f * static_cast<float>(base + n) / static_cast<float>(T), "calibrating");
    }
  }

  // ---- per layer: statistics, partition, router ----
  ThreadPool pool(s.n_threads);
  const int64_t n_act = std::max<int64_t>(
      1, std::llround(static_cast<double>(FF) * (S + K) / static_cast<double>(N + S)));
  std::vector<LayerPlan> plans(L);
  for (int64_t il = 0; il < L; ++il) {
    report(0.3f + 0.6f * static_cast<float>(il) / static_cast<float>(L),
           "layer " + std::to_string(il));
    const std::string p = "blk." + std::to_string(il) + ".";
    const gguf::TensorInfo* tg = file->find_tensor(p + "ffn_gate.weight");
    const gguf::TensorInfo* tu = file->find_tensor(p + "ffn_up.weight");
    const gguf::TensorInfo* td = file->find_tensor(p + "ffn_down.weight");
    std::vector<float> G(static_cast<size_t>(T * FF)), U(static_cast<size_t>(T * FF));
    kernels::matmul(static_cast<TensorType>(tg->type), tg->data, E, FF, X[il].data(), T, G.data(),
                    &pool, kernels::Precision::Exact);
    kernels::matmul(static_cast<TensorType>(tu->type), tu->data, E, FF, X[il].data(), T, U.data(),
                    &pool, kernels::Precision::Exact);
    // Column norms of W_down (rows: n_embd outputs of n_ff).
    std::vector<double> dn(FF, 0.0);
    {
      std::vector<float> row(FF);
      for (int64_t j = 0; j < E; ++j) {
        kernels::dequantize_row(static_cast<TensorType>(td->type), td->data + j * td->row_bytes(),
                                row.data(), FF);
        for (int64_t i = 0; i < FF; ++i) dn[i] += static_cast<double>(row[i]) * row[i];
      }
      for (auto& v : dn) v = std::sqrt(v);
    }
    std::vector<float>& A = G;  // importance, in place
    for (int64_t i = 0; i < T * FF; ++i) {
      const float g = G[i];
      const float h = g / (1.0f + std::exp(-g)) * U[i];
      A[i] = std::fabs(h) * static_cast<float>(dn[i % FF]);
    }
    U.clear();
    U.shrink_to_fit();
    // Active neurons per token -> features [FF, T] and counts.
    std::vector<float> feat(static_cast<size_t>(FF * T), 0.0f);
    std::vector<int64_t> count(FF, 0);
    std::vector<float> tmp(FF);
    for (int64_t t = 0; t < T; ++t) {
      const float* a = A.data() + t * FF;
      std::copy(a, a + FF, tmp.begin());
      std::nth_element(tmp.begin(), tmp.begin() + (n_act - 1), tmp.end(), std::greater<float>());
      const float thr = tmp[n_act - 1];
      for (int64_t i = 0; i < FF; ++i)
        if (a[i] >= thr && a[i] > 0) {
          feat[i * T + t] = 1.0f;
          ++count[i];
        }
    }
    // Shared: the most often active neurons.
    std::vector<int32_t> order(FF);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t x, int32_t y) { return count[x] > count[y]; });
    LayerPlan& P = plans[il];
    P.part.shared.assign(order.begin(), order.begin() + static_cast<int64_t>(S) * m);
    std::sort(P.part.shared.begin(), P.part.shared.end());
    std::vector<int32_t> routed(order.begin() + static_cast<int64_t>(S) * m, order.end());
    std::sort(routed.begin(), routed.end());
    if (s.method == "contiguous") {
      P.part.expert.assign(N, {});
      for (int e = 0; e < N; ++e)
        P.part.expert[e].assign(routed.begin() + e * m, routed.begin() + (e + 1) * m);
    } else {
      P.part.expert = cluster(routed, feat, T, count, N, m, &pool);
      for (auto& v : P.part.expert) std::sort(v.begin(), v.end());
    }
    // Router: ridge least squares onto the standardised expert importance.
    std::vector<float> Z(static_cast<size_t>(T) * N, 0.0f);
    for (int64_t t = 0; t < T; ++t) {
      double mean = 0, sq = 0;
      for (int e = 0; e < N; ++e) {
        double z = 0;
        for (int32_t i : P.part.expert[e]) z += A[t * FF + i];
        Z[t * N + e] = static_cast<float>(z);
        mean += z;
      }
      mean /= N;
      for (int e = 0; e < N; ++e) sq += (Z[t * N + e] - mean) * (Z[t * N + e] - mean);
      const double sd = std::sqrt(sq / N);
      for (int e = 0; e < N; ++e)
        Z[t * N + e] = sd > 0 ? static_cast<float>((Z[t * N + e] - mean) / sd) : 0.0f;
    }
    const std::vector<float> Xt = transpose(X[il], T, E);  // [E, T]
    const std::vector<float> Zt = transpose(Z, T, N);      // [N, T]
    std::vector<float> xtx(static_cast<size_t>(E * E)), xtz(static_cast<size_t>(E) * N);
    kernels::matmul(TensorType::F32, Xt.data(), T, E, Xt.data(), E, xtx.data(), &pool,
                    kernels::Precision::Exact);
    kernels::matmul(TensorType::F32, Zt.data(), T, N, Xt.data(), E, xtz.data(), &pool,
                    kernels::Precision::Exact);
    std::vector<double> a(xtx.begin(), xtx.end()), b(xtz.begin(), xtz.end());
    double tr = 0;
    for (int64_t i = 0; i < E; ++i) tr += a[i * E + i];
    const double lambda = 1e-3 * std::max(tr / static_cast<double>(E), 1e-12);
    for (int64_t i = 0; i < E; ++i) a[i * E + i] += lambda;
    cholesky_solve(a, b, static_cast<int>(E), N);
    P.router.resize(static_cast<size_t>(N) * E);
    for (int e = 0; e < N; ++e)
      for (int64_t j = 0; j < E; ++j) P.router[e * E + j] = static_cast<float>(b[j * N + e]);
    // How much of the active set the shared expert and the router's top-K cover.
    std::vector<int> owner(FF, -1);
    for (int e = 0; e < N; ++e)
      for (int32_t i : P.part.expert[e]) owner[i] = e;
    std::vector<float> logits(static_cast<size_t>(T) * N);
    kernels::matmul(TensorType::F32, P.router.data(), E, N, X[il].data(), T, logits.data(), &pool,
                    kernels::Precision::Exact);
    int64_t total = 0, in_shared = 0, in_routed = 0;
    std::vector<int> ord(N);
    std::vector<uint8_t> chosen(N);
    for (int64_t t = 0; t < T; ++t) {
      std::iota(ord.begin(), ord.end(), 0);
      const float* lg = logits.data() + t * N;
      std::stable_sort(ord.begin(), ord.end(), [lg](int x, int y) { return lg[x] > lg[y]; });
      std::fill(chosen.begin(), chosen.end(), 0);
      for (int j = 0; j < K; ++j) chosen[ord[j]] = 1;
      for (int64_t i = 0; i < FF; ++i) {
        if (feat[i * T + t] == 0.0f) continue;
        ++total;
        if (owner[i] < 0)
          ++in_shared;
        else if (chosen[owner[i]])
          ++in_routed;
      }
    }
    P.shared_hit = total ? static_cast<double>(in_shared) / total : 0.0;
    P.routed_hit = total ? static_cast<double>(in_shared + in_routed) / total : 0.0;
    X[il].clear();
    X[il].shrink_to_fit();
  }
  report(0.9f, "writing");

  // ---- the output file ----
  const std::string a = card.architecture;
  const bool unit = s.layout == "moelab";
  gguf::Writer w;
  const std::vector<std::string> replaced = {a + ".expert_count",
                                             a + ".expert_used_count",
                                             a + ".expert_feed_forward_length",
                                             a + ".expert_shared_feed_forward_length",
                                             a + ".expert_shared_count",
                                             a + ".expert_weights_norm",
                                             "general.name"};
  for (const auto& v : file->metadata()) {
    const std::string& k = v.key();
    if (k == "general.alignment") {
      w.set_alignment(static_cast<uint32_t>(v.as_u64()));
      continue;
    }
    if (k.rfind("moelab.", 0) == 0) continue;
    if (std::find(replaced.begin(), replaced.end(), k) != replaced.end()) continue;
    // llama.cpp sizes a llama-architecture MoE's experts by feed_forward_length.
    if (!unit && k == a + ".feed_forward_length") {
      w.set_u32(k, static_cast<uint32_t>(m));
      continue;
    }
    w.copy_value(k, v);
  }
  const std::string layout_name = std::to_string(N) + "x" + std::to_string(m) +
                                  (S ? " + shared " + std::to_string(S * m) : std::string());
  w.set_string("general.name",
               file->get_string("general.name", "model") + " (moefied " + layout_name + ")");
  w.set_u32(a + ".expert_count", s.experts);
  w.set_u32(a + ".expert_used_count", s.top_k);
  w.set_u32(a + ".expert_feed_forward_length", static_cast<uint32_t>(m));
  if (S) w.set_u32(a + ".expert_shared_feed_forward_length", static_cast<uint32_t>(S * m));
  if (unit) w.set_string("moelab.expert_gating", "unit");
  w.set_string("moelab.moefy.source_sha256", sha256_file(s.model_path));
  w.set_string("moelab.moefy.calib_sha256", sha256_file(s.calib_path));
  w.set_u32("moelab.moefy.calib_tokens", static_cast<uint32_t>(T));
  w.set_string("moelab.moefy.method", s.method);
  w.set_string("moelab.moefy.layout", s.layout);
  w.set_u32("moelab.moefy.experts", s.experts);
  w.set_u32("moelab.moefy.shared", s.shared);
  w.set_u32("moelab.moefy.top_k", s.top_k);

  auto bytes_of = [](const std::vector<float>& v) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()),
                                    v.size() * sizeof(float));
  };
  // Gate/up rows (whole neurons) in the source type.
  auto gather_rows = [](const gguf::TensorInfo& t, const std::vector<int32_t>& ids,
                        std::vector<uint8_t>& out) {
    const uint64_t rb = t.row_bytes();
    for (int32_t i : ids) out.insert(out.end(), t.data + i * rb, t.data + (i + 1) * rb);
  };
  for (const auto& t : file->tensors()) {
    const std::string& n = t.name;
    int il = -1;
    char suffix[64] = {0};
    if (std::sscanf(n.c_str(), "blk.%d.%63s", &il, suffix) == 2) {
      const std::string suf = suffix;
      if (suf == "ffn_up.weight" || suf == "ffn_down.weight") continue;
      if (suf == "ffn_gate.weight") {
        const std::string p = "blk." + std::to_string(il) + ".";
        const LayerPlan& P = plans[il];
        const gguf::TensorInfo* tg = file->find_tensor(p + "ffn_gate.weight");
        const gguf::TensorInfo* tu = file->find_tensor(p + "ffn_up.weight");
        const gguf::TensorInfo* td = file->find_tensor(p + "ffn_down.weight");
        const auto tdt = static_cast<TensorType>(td->type);
        // Down: keep F32/F16/BF16 (element-sliceable), else dequantize to F32; the mixtral
        // layout's routed experts are scaled by K (F32).
        const bool keep =
            unit && (tdt == TensorType::F32 || tdt == TensorType::F16 || tdt == TensorType::BF16);
        const float down_scale = unit ? 1.0f : static_cast<float>(K);
        const size_t esz = tdt == TensorType::F32 ? 4 : 2;
        std::vector<float> dfull;
        if (!keep) {
          dfull.resize(static_cast<size_t>(E * FF));
          for (int64_t j = 0; j < E; ++j)
            kernels::dequantize_row(tdt, td->data + j * td->row_bytes(), dfull.data() + j * FF, FF);
        }
        auto down_of = [&](const std::vector<int32_t>& ids, std::vector<uint8_t>& out) {
          for (int64_t j = 0; j < E; ++j)
            for (int32_t i : ids) {
              if (keep) {
                const uint8_t* src = td->data + j * td->row_bytes() + i * esz;
                out.insert(out.end(), src, src + esz);
              } else {
                const float v = dfull[j * FF + i] * down_scale;
                const auto* b = reinterpret_cast<const uint8_t*>(&v);
                out.insert(out.end(), b, b + 4);
              }
            }
        };
        const TensorType dtype = keep ? tdt : TensorType::F32;
        std::vector<float> router = P.router;
        if (!unit)
          for (float& v : router) v *= kMixtralRouterScale;
        w.add_tensor(p + "ffn_gate_inp.weight", TensorType::F32, {E, N}, bytes_of(router));
        std::vector<uint8_t> buf;
        for (const auto& ex : P.part.expert) gather_rows(*tg, ex, buf);
        w.add_tensor(p + "ffn_gate_exps.weight", static_cast<TensorType>(tg->type), {E, m, N}, buf);
        buf.clear();
        for (const auto& ex : P.part.expert) gather_rows(*tu, ex, buf);
        w.add_tensor(p + "ffn_up_exps.weight", static_cast<TensorType>(tu->type), {E, m, N}, buf);
        buf.clear();
        for (const auto& ex : P.part.expert) down_of(ex, buf);
        w.add_tensor(p + "ffn_down_exps.weight", dtype, {m, E, N}, buf);
        if (S) {
          buf.clear();
          gather_rows(*tg, P.part.shared, buf);
          w.add_tensor(p + "ffn_gate_shexp.weight", static_cast<TensorType>(tg->type), {E, S * m},
                       buf);
          buf.clear();
          gather_rows(*tu, P.part.shared, buf);
          w.add_tensor(p + "ffn_up_shexp.weight", static_cast<TensorType>(tu->type), {E, S * m},
                       buf);
          buf.clear();
          down_of(P.part.shared, buf);
          w.add_tensor(p + "ffn_down_shexp.weight", dtype, {S * m, E}, buf);
        }
        continue;
      }
    }
    std::vector<int64_t> shape;
    for (int d = 0; d < t.n_dims; ++d) shape.push_back(t.ne[d]);
    w.add_tensor(n, static_cast<TensorType>(t.type), shape, tensor_bytes(t));
  }
  report(0.95f, "writing");
  w.write(s.out_path);

  MoefyResult r;
  r.architecture = a;
  r.n_layer = card.n_layer;
  r.n_embd = card.n_embd;
  r.n_ff = card.n_ff;
  r.expert_n_ff = static_cast<uint32_t>(m);
  r.calib_tokens = static_cast<uint32_t>(T);
  r.file_bytes = fs::file_size(s.out_path, ec);
  for (const auto& P : plans) {
    r.shared_hit.push_back(P.shared_hit);
    r.routed_hit.push_back(P.routed_hit);
  }
  if (progress) progress(1.0f, "done");  // written: too late to cancel
  return r;
}

}  // namespace moelab
