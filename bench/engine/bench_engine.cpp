// bench_engine MODEL.gguf [--threads N] [--prefill N] [--decode N] [--depth N] [--reps R]
//                         [--kv f16|f32] [--bandwidth GB/s]
//
// Measures, for one model file and thread count, in one process, the way llama-bench does
// (`llama-bench -p PREFILL -n DECODE -d DEPTH`, F16 KV cache by default as there):
//   * memory read bandwidth (GB/s): a multi-threaded streaming sum over a 1 GiB buffer (larger
//     than any cache), best of 3 (skipped with --bandwidth);
//   * prefill tokens/s: one batch of --prefill tokens from an empty KV cache, best of --reps
//     (--prefill 0: not measured);
//   * decode tokens/s: --decode single-token evaluations with --depth tokens already in the KV
//     cache (one untimed batch; default 0: from an empty cache, as llama-bench's tg test), best
//     of --reps (--decode 0: not measured);
//   * the decode roofline: bytes of weights one decode token reads (every tensor, except that
//     the expert tensors count expert_used_count / expert_count of their bytes and token_embd
//     one row) divided by the bandwidth; decode is reported as a fraction of it. The KV cache
//     read by attention is not counted (it matters only with a deep cache, --depth).
// Prints one JSON object per run on stdout. Tokens are fixed pseudo-random ids (no tokenizer
// is needed). Sampling is not included (it is the same for every engine).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "moelab/core/error.h"
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
                 "usage: bench_engine MODEL.gguf [--threads N] [--prefill N] [--decode N] "
                 "[--depth N] [--reps R] [--kv f16|f32] [--bandwidth GB/s]\n");
    return 2;
  }
  std::string path = argv[1];
  int threads = 1, n_prefill = 64, n_decode = 32, depth = 0, reps = 3;
  double bw = 0;
  KvType kv = KvType::F16;
  for (int i = 2; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "error: %s needs a value\n", k.c_str());
      return 2;
    }
    const std::string v = argv[i + 1];
    // A whole-number option in [lo, hi]; false (after an error message) otherwise.
    auto int_arg = [&](int& out, int lo, int hi) {
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < lo || n > hi) {
        std::fprintf(stderr, "error: %s: '%s' is not a whole number in [%d, %d]\n", k.c_str(),
                     v.c_str(), lo, hi);
        return false;
      }
      out = static_cast<int>(n);
      return true;
    };
    bool ok = true;
    if (k == "--threads")
      ok = int_arg(threads, 1, 1024);
    else if (k == "--prefill")
      ok = int_arg(n_prefill, 0, 1 << 20);
    else if (k == "--decode")
      ok = int_arg(n_decode, 0, 1 << 20);
    else if (k == "--depth")
      ok = int_arg(depth, 0, 1 << 20);
    else if (k == "--reps")
      ok = int_arg(reps, 0, 1000);
    else if (k == "--kv") {
      if (v == "f16")
        kv = KvType::F16;
      else if (v == "f32")
        kv = KvType::F32;
      else {
        std::fprintf(stderr, "error: --kv: '%s' is not f16 or f32\n", v.c_str());
        ok = false;
      }
    } else if (k == "--bandwidth") {
      char* end = nullptr;
      bw = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(bw > 0 && bw < 1e6)) {
        std::fprintf(stderr, "error: --bandwidth: '%s' is not a GB/s figure > 0\n", v.c_str());
        ok = false;
      }
    } else {
      std::fprintf(stderr, "error: unknown option '%s'\n", k.c_str());
      ok = false;
    }
    if (!ok) return 2;
  }
  if (n_prefill == 0 && n_decode == 0) {
    std::fprintf(stderr, "error: --prefill and --decode are both 0: nothing to measure\n");
    return 2;
  }
  try {
    if (bw <= 0) bw = bandwidth_gbs(threads);
    reset_peak_rss();
    const auto t_load = Clock::now();
    auto model = Model::load(path);
    const double load_s = seconds_since(t_load);
    const uint32_t n_vocab = model->card().n_vocab;
    // The prompt (and the tokens that fill the cache to --depth): fixed pseudo-random ids.
    std::vector<int32_t> prompt(static_cast<size_t>(std::max(n_prefill, depth)));
    uint64_t x = 12345;
    for (auto& t : prompt) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      t = static_cast<int32_t>((x >> 33) % n_vocab);
    }
    const std::span<const int32_t> pp_tokens(prompt.data(), static_cast<size_t>(n_prefill));
    const std::span<const int32_t> depth_tokens(prompt.data(), static_cast<size_t>(depth));
    auto ctx = Context::create(
        model, {.n_ctx = static_cast<uint32_t>(std::max(n_prefill, depth + n_decode) + 8),
                .kv_type = kv,
                .n_threads = threads});
    double best_pp = 0, best_tg = 0;
    for (int rep = 0; rep < reps + 1; ++rep) {  // the first repetition warms up (page faults)
      double pp = 0, tg = 0;
      if (n_prefill > 0) {
        ctx->truncate(0);
        const auto t0 = Clock::now();
        ctx->eval(pp_tokens);
        pp = n_prefill / seconds_since(t0);
      }
      if (n_decode > 0) {
        ctx->truncate(0);
        if (depth > 0) ctx->eval(depth_tokens);  // untimed, as llama-bench -d
        int32_t tok = depth > 0 ? prompt[static_cast<size_t>(depth) - 1] : 1;
        const auto t0 = Clock::now();
        for (int i = 0; i < n_decode; ++i) {
          const int32_t one[1] = {tok};
          ctx->eval(one);
          tok = (tok * 31 + 7) % static_cast<int32_t>(n_vocab);
        }
        tg = n_decode / seconds_since(t0);
      }
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
        "\"threads\":%d,\"kv_type\":\"%s\",\"load_s\":%.3f,\"bandwidth_gbs\":%.2f,"
        "\"prefill_tokens\":%d,\"prefill_tok_s\":%.1f,\"decode_tokens\":%d,\"depth\":%d,"
        "\"decode_tok_s\":%.2f,"
        "\"decode_bytes_per_token\":%llu,\"roofline_tok_s\":%.2f,\"decode_fraction_of_roofline\":"
        "%.3f,\"peak_rss_mib\":%.1f,\"simd\":\"%s\",\"exact_kernels\":%s}\n",
        path.c_str(), c.architecture.c_str(), types.c_str(),
        static_cast<unsigned long long>(c.file_size), threads, kv == KvType::F16 ? "f16" : "f32",
        load_s, bw, n_prefill, best_pp, n_decode, depth, best_tg,
        static_cast<unsigned long long>(bytes), roofline, best_tg / roofline, peak_rss_mib(),
        kernels::simd_level(), kernels::exact_kernels() ? "true" : "false");
  } catch (const Error& e) {  // a bad or unreadable model file: 2, a bug: 1
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.kind() == ErrorKind::Internal ? 1 : 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
