// cuda_bench MODEL.gguf --backend cpu|cuda [--threads N] [--prefill N] [--decode N] [--reps R]
// cuda_bench --devices                      the backends and devices (probe_backends)
// cuda_bench --make-mixtral OUT.gguf TYPE   the synthetic Mixtral-shaped model of gpu_check.sh:
//     n_embd 1024, 8 layers, 16 heads / 4 KV heads, 8 experts top-2, expert n_ff 2816,
//     vocabulary 32000, weights TYPE (Q8_0, Q4_0, F16, F32), seed 1 (as `moelab-cli make-model`)
//
// Prefill and decode speed and energy of one model on one backend, for bench/gpu_check.sh:
//   * prefill tokens/s: one batch of --prefill pseudo-random token ids from an empty KV cache
//     (best of --reps); decode tokens/s: --decode single-token evals after it (best of --reps);
//   * J/token per phase from the machine's sensor (NVML for cuda, RAPL for cpu; telemetry's
//     EnergySampler on the best repetition's phases), or the reason there is none.
// No tokenizer is needed. Prints one JSON object. Not a test (not registered with ctest).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "moelab/core/backends.h"
#include "moelab/core/error.h"
#include "moelab/model/model.h"
#include "moelab/runtime/synthetic_model.h"
#include "moelab/telemetry/power.h"

using namespace moelab;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: cuda_bench MODEL --backend cpu|cuda [--threads N] [--prefill N] "
                 "[--decode N] [--reps R]\n");
    return 2;
  }
  if (std::strcmp(argv[1], "--devices") == 0) {
    for (const auto& b : probe_backends())
      std::printf("%s: %s - %s\n", b.name.c_str(), b.available ? "available" : "unavailable",
                  b.detail.c_str());
    return 0;
  }
  if (std::strcmp(argv[1], "--make-mixtral") == 0 && argc == 4) {
    try {
      SyntheticModelSpec spec;
      spec.arch = "mixtral";
      spec.n_embd = 1024;
      spec.n_layer = 8;
      spec.n_head = 16;
      spec.n_head_kv = 4;
      spec.n_ff = 2816;
      spec.expert_count = 8;
      spec.expert_used_count = 2;
      spec.n_vocab = 32000;
      const std::string t = argv[3];
      spec.type = t == "Q4_0"  ? gguf::TensorType::Q4_0
                  : t == "F16" ? gguf::TensorType::F16
                  : t == "F32" ? gguf::TensorType::F32
                               : gguf::TensorType::Q8_0;
      spec.seed = 1;
      const auto info = write_synthetic_model(spec, argv[2]);
      std::printf("wrote %s: %llu parameters, %llu bytes\n", argv[2],
                  static_cast<unsigned long long>(info.n_params),
                  static_cast<unsigned long long>(info.file_bytes));
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cuda_bench: %s\n", e.what());
      return 1;
    }
  }
  std::string path = argv[1], backend = "cuda";
  int threads = 8, prefill = 512, decode = 64, reps = 3;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--backend")
      backend = argv[i + 1];
    else if (a == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (a == "--prefill")
      prefill = std::atoi(argv[i + 1]);
    else if (a == "--decode")
      decode = std::atoi(argv[i + 1]);
    else if (a == "--reps")
      reps = std::atoi(argv[i + 1]);
  }
  try {
    LoadOptions lo;
    lo.backend = resolve_backend(parse_backend(backend));
    auto model = Model::load(path, lo);
    const std::string used = model_backend(*model);
    ContextParams cp;
    cp.n_ctx = static_cast<uint32_t>(prefill + decode + 8);
    cp.n_threads = threads;
    cp.backend = parse_backend(used);
    auto ctx = Context::create(model, cp);
    const uint32_t V = model->card().n_vocab;
    std::vector<int32_t> prompt(static_cast<size_t>(prefill));
    for (int i = 0; i < prefill; ++i) prompt[i] = static_cast<int32_t>((i * 7919u + 13u) % V);
    auto meter = open_power_meter(used == "cuda");
    double best_prefill = 0, best_decode = 0, pj = NAN, dj = NAN;
    for (int r = 0; r < reps; ++r) {
      ctx->truncate(0);
      EnergySampler sampler(*meter, std::chrono::milliseconds(20));
      sampler.begin_phase("prefill");
      auto t0 = Clock::now();
      ctx->eval(prompt);
      const double tp = std::chrono::duration<double>(Clock::now() - t0).count();
      sampler.begin_phase("decode");
      t0 = Clock::now();
      for (int i = 0; i < decode; ++i) {
        const int32_t tok = static_cast<int32_t>((i * 104729u + 5u) % V);
        ctx->eval({&tok, 1});
        sampler.mark_token();
      }
      const double td = std::chrono::duration<double>(Clock::now() - t0).count();
      const EnergyReport rep = sampler.finish();
      const double p = prefill / tp, d = decode / td;
      if (p > best_prefill) {
        best_prefill = p;
        for (const auto& ph : rep.phases)
          if (ph.phase == "prefill") pj = ph.joules / prefill;
      }
      if (d > best_decode) {
        best_decode = d;
        for (const auto& ph : rep.phases)
          if (ph.phase == "decode") dj = ph.joules / decode;
      }
    }
    std::printf(
        "{\"model\": \"%s\", \"backend\": \"%s\", \"threads\": %d, \"prefill\": %d, "
        "\"decode\": %d, \"prefill_tokens_per_s\": %.2f, \"decode_tokens_per_s\": %.2f, "
        "\"prefill_j_per_token\": %s, \"decode_j_per_token\": %s, \"meter\": \"%s\"%s}\n",
        path.c_str(), used.c_str(), threads, prefill, decode, best_prefill, best_decode,
        std::isnan(pj) ? "null" : std::to_string(pj).c_str(),
        std::isnan(dj) ? "null" : std::to_string(dj).c_str(), meter->name().c_str(),
        meter->available()
            ? ""
            : (", \"energy_unavailable\": \"" + meter->unavailable_reason() + "\"").c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_bench: %s\n", e.what());
    return 1;
  }
}
