// bench_engine MODEL.gguf [--threads N] [--prefill N] [--decode N] [--reps R]
//
// Measures, for one model file and thread count, in one process:
//   * memory read bandwidth (GB/s): a multi-threaded streaming sum over a 1 GiB buffer (larger
//     than any cache), best of 3;
//   * prefill tokens/s: one batch of --prefill tokens from an empty KV cache, best of --reps;
//   * decode tokens/s: --decode single-token evaluations after that prompt, best of --reps;
//   * the decode roofline: bytes of weights one decode token reads (every tensor, except that
//     the expert tensors count expert_used_count / expert_count of their bytes and token_embd
//     one row) divided by the bandwidth; decode is reported as a fraction of it.
// Prints one JSON object per run on stdout. Tokens are fixed pseudo-random ids (no tokenizer
// is needed). Sampling is not included (it is the same for every engine).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "moelab/core/thread_pool.h"
#include "moelab/gguf/gguf.h"
#include "moelab/kernels/kernels.h"
#include "moelab/model/model.h"

using namespace moelab;
using Clock = std::chrono::steady_clock;

namespace {
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double bandwidth_gbs(int threads) {
  const size_t n = (size_t(1) << 30) / sizeof(uint64_t);
  std::vector<uint64_t> buf(n);
  for (size_t i = 0; i < n; ++i) buf[i] = i * 0x9E3779B97F4A7C15ull;
  ThreadPool pool(threads);
  double best = 0;
  volatile uint64_t sink = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<uint64_t> part(static_cast<size_t>(threads), 0);
    const auto t0 = Clock::now();
    pool.parallel_for(static_cast<int64_t>(n), [&](int64_t b, int64_t e, int ti) {
      uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      int64_t i = b;
      for (; i + 4 <= e; i += 4) {
        a0 += buf[i];
        a1 += buf[i + 1];
        a2 += buf[i + 2];
        a3 += buf[i + 3];
      }
      for (; i < e; ++i) a0 += buf[i];
      part[static_cast<size_t>(ti)] = a0 + a1 + a2 + a3;
    });
    const double s = seconds_since(t0);
    for (uint64_t p : part) sink = sink + p;
    best = std::max(best, static_cast<double>(n * sizeof(uint64_t)) / s / 1e9);
  }
  return best;
}

// Peak resident memory of this process in MiB (VmHWM of /proc/self/status; 0 if unreadable).
double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}
// Resets VmHWM to the current RSS (Linux clear_refs "5"), so the peak excludes the 1 GiB buffer
// of the bandwidth measurement.
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

// Bytes of weights read to decode one token.
uint64_t decode_bytes(const Model& m) {
  const auto& c = m.card();
  const gguf::File& f = m.file();
  const bool tied = f.find_tensor("output.weight") == nullptr;
  uint64_t b = 0;
  for (const auto& t : f.tensors()) {
    if (t.name.find("_exps.") != std::string::npos && c.expert_count > 0)
      b += t.nbytes / c.expert_count * c.expert_used_count;
    else if (t.name == "token_embd.weight" && !tied)
      b += t.row_bytes();
    else
      b += t.nbytes;
  }
  return b;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: bench_engine MODEL.gguf [--threads N] [--prefill N] "
                 "[--decode N] [--reps R] [--bandwidth GB/s] [--kv f32|f16]\n");
    return 2;
  }
  std::string path = argv[1];
  int threads = 1, n_prefill = 64, n_decode = 32, reps = 3;
  double bw = 0;
  KvType kv_type = KvType::F32;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (k == "--prefill")
      n_prefill = std::atoi(argv[i + 1]);
    else if (k == "--decode")
      n_decode = std::atoi(argv[i + 1]);
    else if (k == "--reps")
      reps = std::atoi(argv[i + 1]);
    else if (k == "--bandwidth")
      bw = std::atof(argv[i + 1]);
    else if (k == "--kv") {
      const std::string v = argv[i + 1];
      if (v != "f32" && v != "f16") {
        std::fprintf(stderr, "error: --kv: expected f32 or f16, got '%s'\n", v.c_str());
        return 2;
      }
      kv_type = v == "f16" ? KvType::F16 : KvType::F32;
    }
  }
  try {
    if (bw <= 0) bw = bandwidth_gbs(threads);
    reset_peak_rss();
    const auto t_load = Clock::now();
    auto model = Model::load(path);
    const double load_s = seconds_since(t_load);
    const uint32_t n_vocab = model->card().n_vocab;
    std::vector<int32_t> prompt(static_cast<size_t>(n_prefill));
    uint64_t x = 12345;
    for (auto& t : prompt) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      t = static_cast<int32_t>((x >> 33) % n_vocab);
    }
    auto ctx = Context::create(model, {.n_ctx = static_cast<uint32_t>(n_prefill + n_decode + 8),
                                       .kv_type = kv_type,
                                       .n_threads = threads});
    double best_pp = 0, best_tg = 0;
    for (int rep = 0; rep < reps + 1; ++rep) {  // the first repetition warms up (page faults)
      ctx->truncate(0);
      auto t0 = Clock::now();
      ctx->eval(prompt);
      const double pp = n_prefill / seconds_since(t0);
      int32_t tok = prompt.back();
      t0 = Clock::now();
      for (int i = 0; i < n_decode; ++i) {
        const int32_t one[1] = {tok};
        ctx->eval(one);
        tok = (tok * 31 + 7) % static_cast<int32_t>(n_vocab);
      }
      const double tg = n_decode / seconds_since(t0);
      if (rep > 0 || reps == 0) {
        best_pp = std::max(best_pp, pp);
        best_tg = std::max(best_tg, tg);
      }
    }
    const uint64_t bytes = decode_bytes(*model);
    const double roofline = bw * 1e9 / static_cast<double>(bytes);
    const auto& c = model->card();
    std::string types;
    for (const auto& [name, use] : c.tensor_types)
      types += (types.empty() ? "" : ",") + name + ":" + std::to_string(use.tensors);
    std::printf(
        "{\"model\":\"%s\",\"arch\":\"%s\",\"types\":\"%s\",\"file_bytes\":%llu,"
        "\"threads\":%d,\"load_s\":%.3f,\"bandwidth_gbs\":%.2f,\"prefill_tokens\":%d,"
        "\"prefill_tok_s\":%.1f,\"decode_tokens\":%d,\"decode_tok_s\":%.2f,"
        "\"decode_bytes_per_token\":%llu,\"roofline_tok_s\":%.2f,\"decode_fraction_of_roofline\":"
        "%.3f,\"peak_rss_mib\":%.1f,\"simd\":\"%s\",\"exact_kernels\":%s}\n",
        path.c_str(), c.architecture.c_str(), types.c_str(),
        static_cast<unsigned long long>(c.file_size), threads, load_s, bw, n_prefill, best_pp,
        n_decode, best_tg, static_cast<unsigned long long>(bytes), roofline, best_tg / roofline,
        peak_rss_mib(), kernels::simd_level(), kernels::exact_kernels() ? "true" : "false");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
