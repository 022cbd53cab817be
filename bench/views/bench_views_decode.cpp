// Decode tokens/s of the engine with the live views open vs closed.
//
// A Generator decodes on a worker thread (greedy, EOS ignored, a fixed number of tokens). In
// the "open" rounds a ViewsPanel (1280 x 800, Vulkan under Xvfb/X11, else the CPU fallback) is
// on screen and the worker publish()es after every token, as the app's live run does: the
// routing grid (layer x token), the expert load and the latency series; the GUI thread renders
// them at the panel's own pace. In the "closed" rounds the panel is hidden and nothing is
// built or published (generation alone). Rounds alternate closed/open so drift in machine load
// hits both; the report gives the median tokens/s of each and the open/closed ratio, plus how
// many snapshots the panel put on screen per second.
//
// The routing shown is synthetic (a hash of token id and layer picks the top expert): the
// views' cost depends on the grid's size, not on which expert won; the engine is not probed in
// either mode, so the ratio measures what rendering the views costs the engine.
//
// Usage: bench_views_decode [--model PATH] [--tokens N] [--rounds R] [--threads T]
//                           [--page routing|load|latency]
// Without --model a synthetic MoE model is written to a temporary directory first, the same
// file as: moelab-cli make-model --arch mixtral --n-embd 512 --n-layer 8 --n-head 8
//   --n-head-kv 4 --n-ff 1024 --experts 8 --top-k 2 --type Q8_0 -o moe.gguf
// Run under xvfb-run (or on a desktop) to measure the Vulkan views:
//   xvfb-run -a -s "-screen 0 1280x800x24" build/bench/views/bench_views_decode
#include <sys/resource.h>

#include <QApplication>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QTemporaryDir>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "moelab/core/error.h"
#include "moelab/runtime/generator.h"
#include "moelab/runtime/synthetic_model.h"
#include "moelab/views/views_panel.h"

using moelab::views::ViewsPanel;

namespace {

struct Args {
  std::string model;
  int tokens = 128;
  int rounds = 5;
  int threads = 0;
  ViewsPanel::Page page = ViewsPanel::Page::kRouting;
};

void usage() {
  std::printf(
      "bench_views_decode: engine decode tokens/s with the live views open vs closed\n"
      "  --model PATH   GGUF model (default: a synthetic MoE model, see below)\n"
      "  --tokens N     tokens generated per round (default 128)\n"
      "  --rounds R     closed/open round pairs; medians are reported (default 5)\n"
      "  --threads T    engine threads (default: hardware concurrency)\n"
      "  --page P       views page on screen: routing (default), load, latency\n"
      "Default model = moelab-cli make-model --arch mixtral --n-embd 512 --n-layer 8\n"
      "  --n-head 8 --n-head-kv 4 --n-ff 1024 --experts 8 --top-k 2 --type Q8_0\n"
      "Run under xvfb-run -a -s \"-screen 0 1280x800x24\" for the Vulkan views.\n");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// CPU seconds of this process, all threads (engine workers, GUI, lavapipe rasterizer threads).
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

uint32_t mix(uint32_t x) {  // integer hash (for the synthetic routing)
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (s == "--help" || s == "-h") {
      usage();
      return 0;
    } else if (s == "--model") {
      a.model = next();
    } else if (s == "--tokens") {
      a.tokens = std::max(2, std::atoi(next()));
    } else if (s == "--rounds") {
      a.rounds = std::max(1, std::atoi(next()));
    } else if (s == "--threads") {
      a.threads = std::atoi(next());
    } else if (s == "--page") {
      const std::string p = next();
      a.page = p == "load"      ? ViewsPanel::Page::kExpertLoad
               : p == "latency" ? ViewsPanel::Page::kLatency
                                : ViewsPanel::Page::kRouting;
    } else {
      usage();
      return 2;
    }
  }
  if (a.threads <= 0)
    a.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  QApplication app(argc, argv);
  QTemporaryDir tmp;
  if (a.model.empty()) {
    moelab::SyntheticModelSpec spec;
    spec.arch = "mixtral";
    spec.n_embd = 512;
    spec.n_layer = 8;
    spec.n_head = 8;
    spec.n_head_kv = 4;
    spec.n_ff = 1024;
    spec.expert_count = 8;
    spec.expert_used_count = 2;
    spec.type = moelab::gguf::TensorType::Q8_0;
    a.model = tmp.filePath("moe.gguf").toStdString();
    const auto info = moelab::write_synthetic_model(spec, a.model);
    std::printf("synthetic model: %s, %.1f MB, %llu parameters\n", info.architecture.c_str(),
                info.file_bytes / 1e6, static_cast<unsigned long long>(info.n_params));
  }
  moelab::ContextParams cp;
  cp.n_ctx = static_cast<uint32_t>(a.tokens + 16);
  cp.n_threads = a.threads;
  std::unique_ptr<moelab::Generator> gen;
  try {
    gen = moelab::Generator::load(a.model, cp);
  } catch (const moelab::Error& e) {
    std::printf("cannot load %s: %s\n", a.model.c_str(), e.what());
    return 1;
  }
  const auto& card = gen->model().card();
  const int n_layer = static_cast<int>(card.n_layer);
  const int n_expert = std::max(1, static_cast<int>(card.expert_count));
  std::printf("model: %s, %d layers, %d experts; %d tokens/round, %d engine thread(s)\n",
              a.model.c_str(), n_layer, static_cast<int>(card.expert_count), a.tokens, a.threads);

  ViewsPanel panel;
  panel.resize(1280, 800);
  panel.setPage(a.page);
  std::atomic<int> shown{0};
  QObject::connect(&panel, &ViewsPanel::snapshotShown, [&](int, quint64) { ++shown; });

  // One round: generation on a worker thread, the GUI thread runs the event loop meanwhile.
  auto round = [&](bool open, double* shown_per_s, double* cpu_per_token_ms) {
    if (open) {
      panel.show();
      QElapsedTimer t;
      t.start();
      while (t.elapsed() < 500) app.processEvents(QEventLoop::AllEvents, 10);  // mapped, warm
    } else {
      panel.hide();
      app.processEvents();
    }
    panel.clear();
    moelab::GenerateParams gp;
    gp.prompt_tokens = std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8};
    gp.max_tokens = a.tokens;
    gp.ignore_eos = true;
    gp.sampling.temperature = 0.0f;
    moelab::GenerateResult result;
    QEventLoop loop;  // the GUI thread sleeps in it until events come (never spins)
    const int shown0 = shown.load();
    const double cpu0 = cpu_seconds();
    QElapsedTimer wall;
    wall.start();
    std::thread worker([&] {
      std::vector<int32_t> top;  // [token][layer] as generated
      std::vector<double> ms;
      std::vector<std::string> text;
      std::vector<float> counts(static_cast<size_t>(n_layer) * n_expert, 0.0f);
      result = gen->generate(gp, [&](const moelab::TokenEvent& ev) {
        if (!open) return true;
        ms.push_back(ev.latency_us / 1000.0);
        text.push_back(std::to_string(ev.id));
        for (int l = 0; l < n_layer; ++l) {
          const int e = static_cast<int>(mix(static_cast<uint32_t>(ev.id) * 131u + l) % n_expert);
          top.push_back(e);
          counts[static_cast<size_t>(l) * n_expert + e] += 1.0f;
        }
        const int n = static_cast<int>(ms.size());
        moelab::views::RoutingGrid g;
        g.n_layer = n_layer;
        g.n_tokens = n;
        g.expert_count = n_expert;
        g.top_expert.resize(static_cast<size_t>(n_layer) * n);
        g.active_count.assign(static_cast<size_t>(n_layer) * n, 2);
        for (int t = 0; t < n; ++t)
          for (int l = 0; l < n_layer; ++l)
            g.top_expert[static_cast<size_t>(l) * n + t] =
                top[static_cast<size_t>(t) * n_layer + l];
        g.token_text = text;
        panel.publish(std::move(g));
        moelab::views::ExpertLoad load{n_layer, n_expert, counts, "share of tokens"};
        for (float& x : load.load) x /= static_cast<float>(n);
        panel.publish(std::move(load));
        moelab::views::LatencySeries ls;
        ls.ms = ms;
        ls.ttft_ms = ms.front();
        panel.publish(std::move(ls));
        return true;
      });
      QMetaObject::invokeMethod(&loop, &QEventLoop::quit, Qt::QueuedConnection);
    });
    loop.exec();
    worker.join();
    const double secs = wall.elapsed() / 1000.0;
    if (cpu_per_token_ms && !result.tokens.empty())
      *cpu_per_token_ms = (cpu_seconds() - cpu0) * 1000.0 / result.tokens.size();
    if (shown_per_s) *shown_per_s = (shown.load() - shown0) / secs;
    return result.tokens_per_s;
  };

  std::vector<double> closed, open, shown_rate, cpu_closed, cpu_open;
  round(false, nullptr, nullptr);  // warm-up (page cache, thread pool)
  for (int r = 0; r < a.rounds; ++r) {
    double cc = 0.0, co = 0.0, rate = 0.0;
    closed.push_back(round(false, nullptr, &cc));
    open.push_back(round(true, &rate, &co));
    shown_rate.push_back(rate);
    cpu_closed.push_back(cc);
    cpu_open.push_back(co);
    std::printf(
        "round %d: closed %.1f tok/s (%.1f CPU ms/token), open %.1f tok/s (%.1f CPU ms/token, "
        "%.1f snapshots shown/s)\n",
        r + 1, closed.back(), cc, open.back(), co, rate);
  }
  const double mc = median(closed), mo = median(open);
  std::printf("views backend: %s\n", panel.backendText().toStdString().c_str());
  std::printf("median decode: closed %.1f tok/s, open %.1f tok/s, open/closed %.3f\n", mc, mo,
              mc > 0 ? mo / mc : 0.0);
  std::printf("median snapshots shown while open: %.1f /s\n", median(shown_rate));
  std::printf("median CPU per token (process, all threads): closed %.1f ms, open %.1f ms\n",
              median(cpu_closed), median(cpu_open));
  return 0;
}
