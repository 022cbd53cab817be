// bench_probes [MODEL.gguf] [--threads N] [--prompt N] [--decode N] [--rounds R]
//
// Decode cost of probes, side by side in one process. Configurations:
//   off        no probes (the baseline)
//   routing    RoutingProbe (every token x layer record kept) + TimingProbe (per-op timer)
//   attention  AttentionProbe capturing every head of 4 layers (exact rows)
// Each round runs every configuration once, in rotating order, on a fresh KV cache: a prompt
// of --prompt tokens, then --decode single-token evals (greedy). The decode time of a round is
// the sum of the single-token evals; each configuration's figure is the median over rounds,
// and the overhead is median(config) / median(off) - 1. Without a model argument a synthetic
// Mixtral-shaped model (8 layers, n_embd 512, 8 experts top-2, Q8_0) is written to /tmp.
// Prints one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "moelab/model/model.h"
#include "moelab/probes/probes.h"
#include "moelab/runtime/synthetic_model.h"

using namespace moelab;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  int threads = 1, n_prompt = 64, n_decode = 64, rounds = 9;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (a == "--threads")
      threads = next();
    else if (a == "--prompt")
      n_prompt = next();
    else if (a == "--decode")
      n_decode = next();
    else if (a == "--rounds")
      rounds = next();
    else
      path = a;
  }
  if (path.empty()) {
    path = "/tmp/moelab-bench-probes.gguf";
    SyntheticModelSpec s;
    s.arch = "mixtral";
    s.n_embd = 512;
    s.n_layer = 8;
    s.n_head = 8;
    s.n_head_kv = 4;
    s.n_ff = 1024;
    s.expert_count = 8;
    s.expert_used_count = 2;
    s.n_vocab = 512;
    s.type = gguf::TensorType::Q8_0;
    s.seed = 5;
    write_synthetic_model(s, path);
  }
  auto model = Model::load(path);
  const ModelCard& c = model->card();
  ContextParams cp;
  cp.n_ctx = static_cast<uint32_t>(n_prompt + n_decode + 1);
  cp.n_threads = threads;
  auto ctx = Context::create(model, cp);
  std::vector<int32_t> prompt(static_cast<size_t>(n_prompt));
  for (int i = 0; i < n_prompt; ++i) prompt[i] = static_cast<int32_t>((i * 7919 + 13) % c.n_vocab);

  const char* names[] = {"off", "routing+timing", "attention_4_layers"};
  std::vector<double> decode_s[3];
  size_t records = 0, rows = 0, attn_bytes = 0;
  for (int r = 0; r < rounds; ++r) {
    for (int j = 0; j < 3; ++j) {
      const int cfg = (j + r) % 3;
      ctx->truncate(0);
      auto hub = std::make_unique<ProbeHub>(*ctx);
      std::shared_ptr<RoutingProbe> rp;
      std::shared_ptr<AttentionProbe> ap;
      if (cfg == 1) {
        if (c.expert_count > 0) {
          rp = std::make_shared<RoutingProbe>(c.n_layer, c.expert_count);
          hub->add(rp);
        }
        hub->add(std::make_shared<TimingProbe>(c.n_layer));
      } else if (cfg == 2) {
        AttentionProbeOptions ao;
        for (int l = 0; l < 4 && l < static_cast<int>(c.n_layer); ++l) ao.layers.push_back(l);
        ap = std::make_shared<AttentionProbe>(c.n_layer, c.n_head, ao);
        hub->add(ap);
      }
      hub->eval(prompt);
      double total = 0;
      for (int s = 0; s < n_decode; ++s) {
        const auto l = ctx->logits();
        const int32_t tok = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
        const auto t0 = Clock::now();
        hub->eval({&tok, 1});
        total += std::chrono::duration<double>(Clock::now() - t0).count();
      }
      decode_s[cfg].push_back(total);
      if (rp) records = rp->size();
      if (ap) {
        rows = ap->rows().size();
        attn_bytes = ap->bytes();
      }
    }
  }
  const double base = median(decode_s[0]);
  std::printf(
      "{\"model\": \"%s\", \"n_layer\": %u, \"expert_count\": %u, \"threads\": %d, "
      "\"prompt\": %d, \"decode\": %d, \"rounds\": %d, \"configs\": [",
      path.c_str(), c.n_layer, c.expert_count, threads, n_prompt, n_decode, rounds);
  for (int cfg = 0; cfg < 3; ++cfg) {
    const double m = median(decode_s[cfg]);
    const auto [mn, mx] = std::minmax_element(decode_s[cfg].begin(), decode_s[cfg].end());
    std::printf(
        "%s{\"config\": \"%s\", \"decode_ms_per_token_median\": %.4f, \"min\": %.4f, "
        "\"max\": %.4f, \"overhead_pct\": %.2f}",
        cfg ? ", " : "", names[cfg], 1e3 * m / n_decode, 1e3 * *mn / n_decode, 1e3 * *mx / n_decode,
        100.0 * (m / base - 1.0));
  }
  std::printf("], \"routing_records\": %zu, \"attention_rows\": %zu, \"attention_bytes\": %zu}\n",
              records, rows, attn_bytes);
  return 0;
}
