// bench_kernels: matvec (decode) and matmul (prefill) throughput of moelab's CPU kernels.
//
// For each weight type a matrix of about --mb MiB (n_in = 4096, so it does not fit in cache)
// is multiplied by one activation vector (matvec) with 1 and 2 threads; the bytes of weights
// read per second are compared with a streaming-read baseline measured in the same run on the
// same buffer sizes (kernels::dot_f32(buf, buf): one pass over a large F32 buffer). A matvec
// cannot read its weights faster than that baseline, so "of BW" is the fraction of the memory
// roofline reached. Each figure is the best of --reps timed runs (the machine is shared).
// matmul: 64 tokens at once (prefill); GFLOP/s = 2 * n_in * n_out * n_tokens / time.
//
// Usage: bench_kernels [--mb 64] [--reps 5] [--simd scalar|avx2|avx512] [--types Q4_0,Q8_0]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "moelab/core/thread_pool.h"
#include "moelab/gguf/types.h"
#include "moelab/kernels/kernels.h"

using namespace moelab;
using gguf::TensorType;
using Clock = std::chrono::steady_clock;

namespace {

template <class F>
double best_seconds(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// Byte offsets of the binary16 scales in a block (so random blocks hold finite numbers).
std::vector<int> f16_fields(TensorType t) {
  switch (t) {
    case TensorType::Q4_0:
    case TensorType::Q5_0:
    case TensorType::Q8_0:
      return {0};
    case TensorType::Q4_1:
    case TensorType::Q5_1:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
      return {0, 2};
    case TensorType::Q2_K:
      return {80, 82};
    case TensorType::Q3_K:
      return {108};
    case TensorType::Q6_K:
      return {208};
    default:
      return {};
  }
}

std::vector<uint8_t> make_weights(TensorType t, int64_t n_in, int64_t n_out, std::mt19937& rng) {
  const uint64_t rb = kernels::row_bytes(t, n_in);
  std::vector<uint8_t> w(rb * n_out);
  if (t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16) {
    std::normal_distribution<float> nd(0.f, 0.02f);
    std::vector<float> row(n_in);
    for (int64_t r = 0; r < n_out; ++r) {
      for (auto& v : row) v = nd(rng);
      kernels::quantize_row(t, row.data(), w.data() + r * rb, n_in);
    }
    return w;
  }
  for (size_t i = 0; i + 4 <= w.size(); i += 4) {
    const uint32_t v = rng();
    std::memcpy(w.data() + i, &v, 4);
  }
  const auto tr = *gguf::type_traits(static_cast<uint32_t>(t));
  const uint16_t h = 0x2000;  // 0.0078125
  for (size_t b = 0; b < w.size() / tr.type_size; ++b)
    for (int off : f16_fields(t)) std::memcpy(w.data() + b * tr.type_size + off, &h, 2);
  if (t == TensorType::MXFP4)  // E8M0 byte 120: scale 2^-7
    for (size_t b = 0; b < w.size() / tr.type_size; ++b) w[b * tr.type_size] = 120;
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t mb = 64;
  int reps = 5;
  std::string types_arg;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--mb")
      mb = std::stoll(next());
    else if (a == "--reps")
      reps = std::stoi(next());
    else if (a == "--types")
      types_arg = next();
    else if (a == "--simd") {
      const std::string s = next();
      kernels::set_simd(s == "scalar" ? kernels::Simd::Scalar
                        : s == "avx2" ? kernels::Simd::Avx2
                                      : kernels::Simd::Avx512);
    } else {
      std::fprintf(stderr, "usage: %s [--mb N] [--reps N] [--simd L] [--types A,B]\n", argv[0]);
      return 2;
    }
  }
  std::vector<TensorType> types = {
      TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q8_0, TensorType::Q4_0,
      TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q2_K, TensorType::Q3_K,
      TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::MXFP4};
  if (!types_arg.empty()) {
    types.clear();
    size_t p = 0;
    while (p <= types_arg.size()) {
      const size_t q = std::min(types_arg.find(',', p), types_arg.size());
      if (auto t = gguf::type_from_name(types_arg.substr(p, q - p))) types.push_back(*t);
      p = q + 1;
    }
  }
  std::printf(
      "moelab bench_kernels  simd=%s (detected %s)  matrix ~%lld MiB, n_in 4096, best of %d\n",
      kernels::simd_level(), kernels::simd_name(kernels::detected_simd()),
      static_cast<long long>(mb), reps);

  ThreadPool pool1(1), pool2(2);
  ThreadPool* pools[2] = {&pool1, &pool2};

  // Baseline: streaming read of a buffer as large as the matrices (F32, summed by dot_f32).
  const int64_t nb = mb * 1024 * 1024 / 4;
  std::vector<float> buf(nb, 1.0f);
  // Measured before and after the type loop, the best counting: on a shared machine one
  // measurement can land in a busy moment and understate the roofline.
  double bw[2] = {0, 0};
  auto measure_bw = [&] {
    for (int p = 0; p < 2; ++p) {
      std::vector<float> part(2);
      const double s = best_seconds(reps, [&] {
        pools[p]->parallel_for(pools[p]->size(), [&](int64_t b, int64_t e, int) {
          for (int64_t k = b; k < e; ++k) {
            const int64_t chunk = nb / pools[p]->size();
            part[k] = kernels::dot_f32(buf.data() + k * chunk, buf.data() + k * chunk, chunk);
          }
        });
      });
      bw[p] = std::max(bw[p], nb * 4.0 / s / 1e9);
    }
  };
  measure_bw();
  struct Row {
    TensorType t;
    double bits, gbs[2], gfl[2], mm[2];
    int64_t n_out;
  };
  std::vector<Row> rows_out;

  std::mt19937 rng(42);
  const int64_t n_in = 4096;
  std::vector<float> x(n_in);
  for (auto& v : x) v = std::normal_distribution<float>(0.f, 1.f)(rng);
  const int64_t n_tok = 64;
  std::vector<float> X(n_in * n_tok);
  for (auto& v : X) v = std::normal_distribution<float>(0.f, 1.f)(rng);

  for (TensorType t : types) {
    const uint64_t rb = kernels::row_bytes(t, n_in);
    const int64_t n_out = std::max<int64_t>(64, mb * 1024 * 1024 / static_cast<int64_t>(rb));
    const auto w = make_weights(t, n_in, n_out, rng);
    std::vector<float> y(n_out);
    double gbs[2], gfl[2], mm[2];
    for (int p = 0; p < 2; ++p) {
      const double s = best_seconds(
          reps, [&] { kernels::matvec(t, w.data(), n_in, n_out, x.data(), y.data(), pools[p]); });
      gbs[p] = w.size() / s / 1e9;
      gfl[p] = 2.0 * n_in * n_out / s / 1e9;
      // prefill on a slice of 1024 rows (keeps the run short)
      const int64_t rows = std::min<int64_t>(n_out, 1024);
      std::vector<float> Y(rows * n_tok);
      const double sm = best_seconds(std::max(1, reps / 2), [&] {
        kernels::matmul(t, w.data(), n_in, rows, X.data(), n_tok, Y.data(), pools[p]);
      });
      mm[p] = 2.0 * n_in * rows * n_tok / sm / 1e9;
    }
    rows_out.push_back(
        {t, 8.0 * rb / n_in, {gbs[0], gbs[1]}, {gfl[0], gfl[1]}, {mm[0], mm[1]}, n_out});
    std::fprintf(stderr, "  %s done\n", gguf::type_name(static_cast<uint32_t>(t)).c_str());
  }
  measure_bw();
  std::printf(
      "memory bandwidth baseline (streaming read): %.2f GB/s (1 thread), %.2f GB/s (2 threads)\n\n",
      bw[0], bw[1]);
  std::printf("%-5s %6s %9s | %8s %8s %7s | %8s %8s %7s | %12s %12s\n", "type", "bits", "n_out",
              "GB/s t1", "GFLOP/s", "of BW", "GB/s t2", "GFLOP/s", "of BW", "mm64 GFLOP t1",
              "mm64 GFLOP t2");
  for (const Row& r : rows_out)
    std::printf("%-5s %6.2f %9lld | %8.2f %8.2f %6.0f%% | %8.2f %8.2f %6.0f%% | %12.1f %12.1f\n",
                gguf::type_name(static_cast<uint32_t>(r.t)).c_str(), r.bits,
                static_cast<long long>(r.n_out), r.gbs[0], r.gfl[0], 100 * r.gbs[0] / bw[0],
                r.gbs[1], r.gfl[1], 100 * r.gbs[1] / bw[1], r.mm[0], r.mm[1]);
  return 0;
}
