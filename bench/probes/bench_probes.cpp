// bench_probes [MODEL.gguf] [--threads N] [--prompt N] [--decode N] [--rounds R] [--kv f16|f32]
//
// Decode cost of probes (issue #19: routing + timing <= 3 % of decode tokens/s, attention
// capture of 4 layers <= 10 %), side by side in one process. Two groups of configurations:
//  * engine probes (moelab/probes/probes.h) on Context::eval through a ProbeHub:
//      off                  no probes (the baseline of this group)
//      routing+timing       RoutingProbe (every token x layer record kept) + TimingProbe
//      attention_4_layers   AttentionProbe capturing every head of 4 layers (exact rows)
//    decode time = the sum of the single-token evals (greedy arg-max between them);
//  * what `moelab-cli run --db` records (session::GenerationRecorder into a temporary SQLite
//    store through storage::AsyncWriter: per token the token row, entropy, top-16 next-token
//    distribution, latency and the routing of every MoE layer), on Generator::generate (greedy,
//    ignore_eos):
//      generate             no recorder (the baseline of this group)
//      run_db_routing       the recorder without attention
//      run_db_attention_4   the recorder with attention: the prompt's head mean of every layer
//                           and every head of layers 0-3 for the prompt and each decode step
//                           (--attention-layers 0,1,2,3, default budget)
//    decode time = (tokens - 1) / GenerateResult::tokens_per_s (first to last token).
// Besides wall time, the process CPU time over the same span (getrusage: every thread, incl.
// the store's writer thread) - the steadier figure on a loaded machine.
// Each round runs every configuration once, in rotating order, on a fresh KV cache: a prompt
// of --prompt tokens, then --decode tokens. Each configuration's figure is the median over
// rounds, and its overhead is median(config) / median(baseline of its group) - 1. Without a
// model argument a synthetic Mixtral-shaped model (8 layers, n_embd 512, 8 experts top-2, Q8_0)
// is written to /tmp. F16 KV cache by default (as llama-bench and bench_engine). Prints one JSON
// object.
#include <sys/resource.h>
#include <unistd.h>
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
#include "moelab/runtime/generator.h"
#include "moelab/runtime/synthetic_model.h"
#include "moelab/session/session.h"
#include "moelab/storage/writer.h"

using namespace moelab;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// CPU time of the whole process (every thread: the thread pool and the store's writer), s.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  int threads = 1, n_prompt = 64, n_decode = 64, rounds = 9;
  KvType kv = KvType::F16;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (a == "--kv") {
      const std::string v = i + 1 < argc ? argv[++i] : "";
      if (v != "f16" && v != "f32") {
        std::fprintf(stderr, "error: --kv: '%s' is not f16 or f32\n", v.c_str());
        return 2;
      }
      kv = v == "f16" ? KvType::F16 : KvType::F32;
    } else if (a == "--threads")
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
  cp.kv_type = kv;
  auto ctx = Context::create(model, cp);
  std::vector<int32_t> prompt(static_cast<size_t>(n_prompt));
  for (int i = 0; i < n_prompt; ++i) prompt[i] = static_cast<int32_t>((i * 7919 + 13) % c.n_vocab);

  // The run --db group: one Generator (its own context) and a temporary store.
  Generator gen(model, cp);
  GenerateParams gp;
  gp.prompt_tokens = prompt;
  gp.max_tokens = n_decode;
  gp.ignore_eos = true;
  gp.sampling.temperature = 0;
  gp.sampling.seed = 1;
  const std::string db = "/tmp/moelab-bench-probes-" + std::to_string(getpid()) + ".db";
  auto writer = std::make_unique<storage::AsyncWriter>(db);
  const storage::ModelRecord mrec = session::model_record(*model, path);
  const nlohmann::json config = {{"kind", "generate"}, {"bench", "bench_probes"}};

  const char* names[] = {"off",      "routing+timing", "attention_4_layers",
                         "generate", "run_db_routing", "run_db_attention_4"};
  constexpr int kConfigs = 6;
  std::vector<double> decode_s[kConfigs], decode_cpu_s[kConfigs];
  size_t records = 0, rows = 0, attn_bytes = 0;
  int64_t db_routing = 0;
  for (int r = 0; r < rounds; ++r) {
    for (int j = 0; j < kConfigs; ++j) {
      const int cfg = (j + r) % kConfigs;
      if (cfg >= 3) {
        gen.context().truncate(0);
        std::unique_ptr<session::GenerationRecorder> rec;
        if (cfg > 3) {
          rec = std::make_unique<session::GenerationRecorder>(
              *writer, "bench_probes", mrec, config, std::string(), gen, /*routing=*/true,
              /*routing_probs=*/false, "generate", /*attention=*/cfg == 5);
          if (cfg == 5) rec->set_attention_capture({.layers = {0, 1, 2, 3}});
        }
        // Process CPU time from the first token to the last (the span of tokens_per_s).
        double cpu_first = 0, cpu_last = 0;
        const TokenCallback cb = [&](const TokenEvent& ev) {
          if (ev.index == 0) cpu_first = cpu_seconds();
          cpu_last = cpu_seconds();
          return true;
        };
        const GenerateResult res = rec ? rec->generate(gp, cb) : gen.generate(gp, cb);
        if (rec) db_routing = rec->routing_recorded();
        decode_cpu_s[cfg].push_back(cpu_last - cpu_first);
        decode_s[cfg].push_back(res.tokens_per_s > 0
                                    ? static_cast<double>(res.tokens.size() - 1) / res.tokens_per_s
                                    : 0.0);
        continue;
      }
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
      const double cpu0 = cpu_seconds();
      for (int s = 0; s < n_decode; ++s) {
        const auto l = ctx->logits();
        const int32_t tok = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
        const auto t0 = Clock::now();
        hub->eval({&tok, 1});
        total += std::chrono::duration<double>(Clock::now() - t0).count();
      }
      decode_s[cfg].push_back(total);
      decode_cpu_s[cfg].push_back(cpu_seconds() - cpu0);
      if (rp) records = rp->size();
      if (ap) {
        rows = ap->rows().size();
        attn_bytes = ap->bytes();
      }
    }
  }
  const storage::AsyncWriter::Stats ws = writer->stats();
  writer.reset();
  std::remove(db.c_str());
  for (const char* ext : {"-wal", "-shm"}) std::remove((db + ext).c_str());
  std::printf(
      "{\"model\": \"%s\", \"n_layer\": %u, \"expert_count\": %u, \"threads\": %d, "
      "\"kv_type\": \"%s\", \"prompt\": %d, \"decode\": %d, \"rounds\": %d, \"configs\": [",
      path.c_str(), c.n_layer, c.expert_count, threads, kv == KvType::F16 ? "f16" : "f32", n_prompt,
      n_decode, rounds);
  for (int cfg = 0; cfg < kConfigs; ++cfg) {
    const double base = median(decode_s[cfg < 3 ? 0 : 3]);
    const double m = median(decode_s[cfg]);
    const double cpu_base = median(decode_cpu_s[cfg < 3 ? 0 : 3]);
    const double cpu = median(decode_cpu_s[cfg]);
    // The generate group's span holds tokens - 1 decode steps (first token to last).
    const int steps = cfg < 3 ? n_decode : n_decode - 1;
    const auto [mn, mx] = std::minmax_element(decode_s[cfg].begin(), decode_s[cfg].end());
    std::printf(
        "%s{\"config\": \"%s\", \"decode_ms_per_token_median\": %.4f, \"min\": %.4f, "
        "\"max\": %.4f, \"overhead_pct\": %.2f, \"cpu_ms_per_token_median\": %.4f, "
        "\"cpu_overhead_pct\": %.2f}",
        cfg ? ", " : "", names[cfg], 1e3 * m / steps, 1e3 * *mn / steps, 1e3 * *mx / steps,
        100.0 * (m / base - 1.0), 1e3 * cpu / steps, 100.0 * (cpu / cpu_base - 1.0));
  }
  std::printf(
      "], \"routing_records\": %zu, \"attention_rows\": %zu, \"attention_bytes\": %zu, "
      "\"run_db_routing_records\": %lld, \"store_records\": %llu, \"store_transactions\": %llu}\n",
      records, rows, attn_bytes, static_cast<long long>(db_routing),
      static_cast<unsigned long long>(ws.committed),
      static_cast<unsigned long long>(ws.transactions));
  return 0;
}
