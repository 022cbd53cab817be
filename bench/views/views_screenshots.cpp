// Screenshots of the live views with a real run: loads a GGUF model, generates from a prompt
// with the engine's routing and attention probes attached, feeds the ViewsPanel what the run
// produced (routing grid, expert load, co-activation, head-mean attention of one layer with the
// per-head strip, latency) and saves every page as a PNG. Heatmap pages are read back from the
// Vulkan swapchain (QVulkanWindow::grab, through ViewsPanel::grabPage), so they show exactly
// what the GPU path draws, overlays included; without Vulkan they are the CPU fallback.
//
// Usage: views_screenshots MODEL OUT_PREFIX [--prompt TEXT] [--tokens N] [--layer L]
//                          [--size WxH] [--log]
// Writes OUT_PREFIX-routing.png, -active.png (dynamic k only), -load.png, -coactivation.png,
// -attention.png, -latency.png. Run under xvfb-run for Vulkan:
//   xvfb-run -a -s "-screen 0 1600x1000x24" views_screenshots model.gguf /tmp/shots/mixtral
#include <QApplication>
#include <QElapsedTimer>
#include <QImage>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "moelab/core/error.h"
#include "moelab/model/card.h"
#include "moelab/probes/probes.h"
#include "moelab/runtime/generator.h"
#include "moelab/tokenizer/tokenizer.h"
#include "moelab/views/view_kinds.h"
#include "moelab/views/views_panel.h"

using moelab::views::ViewsPanel;
namespace mv = moelab::views;

namespace {

void wait_ms(QApplication& app, int ms) {
  QElapsedTimer t;
  t.start();
  while (t.elapsed() < ms) app.processEvents(QEventLoop::AllEvents, 10);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  if (argc < 3 || std::string(argv[1]) == "--help") {
    std::printf(
        "views_screenshots MODEL OUT_PREFIX [--prompt TEXT] [--tokens N] [--layer L] "
        "[--size WxH] [--log] [--chat]\n");
    return argc < 3 ? 2 : 0;
  }
  const std::string model_path = argv[1], out = argv[2];
  std::string prompt = "Once upon a time, a little fox found a shiny stone by the river.";
  int tokens = 24, layer = -1, width = 1280, height = 720;
  bool log_scale = false, chat = false;
  for (int i = 3; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--prompt" && i + 1 < argc)
      prompt = argv[++i];
    else if (s == "--tokens" && i + 1 < argc)
      tokens = std::atoi(argv[++i]);
    else if (s == "--layer" && i + 1 < argc)
      layer = std::atoi(argv[++i]);
    else if (s == "--size" && i + 1 < argc)
      std::sscanf(argv[++i], "%dx%d", &width, &height);
    else if (s == "--log")
      log_scale = true;
    else if (s == "--chat")
      chat = true;
  }
  QApplication app(argc, argv);

  moelab::ContextParams cp;
  cp.n_ctx = 512;
  cp.n_threads = 2;
  std::unique_ptr<moelab::Generator> gen;
  try {
    gen = moelab::Generator::load(model_path, cp);
  } catch (const moelab::Error& e) {
    std::printf("cannot load %s: %s\n", model_path.c_str(), e.what());
    return 1;
  }
  const moelab::ModelCard& card = gen->model().card();
  const int n_layer = static_cast<int>(card.n_layer);
  const int n_head = static_cast<int>(card.n_head);
  const int n_expert = static_cast<int>(card.expert_count);
  if (layer < 0) layer = n_layer / 2;
  std::printf("%s: %s, %d layers, %d heads, %d experts (top-%d)\n", model_path.c_str(),
              card.architecture.c_str(), n_layer, n_head, n_expert,
              static_cast<int>(card.expert_used_count));

  moelab::ProbeHub hub(gen->context());
  std::shared_ptr<moelab::RoutingProbe> routing;
  if (n_expert > 0) {
    routing = std::make_shared<moelab::RoutingProbe>(n_layer, n_expert);
    hub.add(routing);
  }
  moelab::AttentionProbeOptions ao;
  ao.layers = {layer};
  ao.max_row_keys = 1 << 20;  // exact rows
  ao.sink_tokens = 1;
  auto attention = std::make_shared<moelab::AttentionProbe>(n_layer, n_head, ao);
  hub.add(attention);

  moelab::GenerateParams gp;
  gp.prompt = prompt;
  gp.chat = chat;
  gp.max_tokens = tokens;
  gp.sampling.temperature = 0.0f;
  std::vector<double> latency_ms;
  const moelab::GenerateResult r = gen->generate(gp, [&](const moelab::TokenEvent& ev) {
    latency_ms.push_back(ev.latency_us / 1000.0);
    return true;
  });
  const moelab::Tokenizer* tok = gen->model().tokenizer();
  std::vector<int32_t> ids = r.prompt_tokens;
  ids.insert(ids.end(), r.tokens.begin(), r.tokens.end());
  std::vector<std::string> text;
  for (int32_t id : ids) text.push_back(tok ? tok->display_piece(id) : std::to_string(id));
  std::printf("generated %zu tokens after a %zu-token prompt: %s\n", r.tokens.size(),
              r.prompt_tokens.size(), r.text.c_str());

  ViewsPanel panel;
  panel.resize(width, height);
  panel.show();
  wait_ms(app, 300);
  std::printf("views: %s\n", panel.backendText().toStdString().c_str());

  // Positions evaluated: the prompt and every generated token but the last (never evaluated).
  if (!r.tokens.empty()) ids.pop_back();
  text.resize(ids.size());
  const int n_pos = static_cast<int>(ids.size());
  if (routing && routing->size() > 0) {
    mv::RoutingGrid g;
    g.n_layer = n_layer;
    g.n_tokens = n_pos;
    g.expert_count = n_expert;
    g.top_expert.assign(static_cast<size_t>(n_layer) * n_pos, -1);
    g.active_count.assign(static_cast<size_t>(n_layer) * n_pos, 0);
    for (size_t i = 0; i < routing->size(); ++i) {
      const moelab::RoutingRecordView rec = routing->record(i);
      if (static_cast<int>(rec.pos) >= n_pos || rec.layer < 0 || rec.layer >= n_layer) continue;
      const size_t at = static_cast<size_t>(rec.layer) * n_pos + rec.pos;
      g.top_expert[at] = rec.experts.empty() ? -1 : rec.experts[0];
      g.active_count[at] = static_cast<int32_t>(rec.experts.size());
    }
    g.token_text = text;
    panel.publish(std::move(g));
    mv::ExpertLoad load{n_layer, n_expert, {}, "share of tokens"};
    load.load.assign(static_cast<size_t>(n_layer) * n_expert, 0.0f);
    int co_layer = -1;
    std::vector<uint64_t> co;
    for (const auto& st : routing->layer_stats()) {
      for (int e = 0; e < n_expert; ++e)
        load.load[static_cast<size_t>(st.layer) * n_expert + e] =
            st.tokens ? static_cast<float>(st.load[static_cast<size_t>(e)]) / st.tokens : 0.0f;
      if (st.layer <= layer || co_layer < 0) {
        co_layer = st.layer;
        co = st.coactivation;
      }
    }
    panel.publish(std::move(load));
    // The probe counts pairs of distinct experts; the view's diagonal is the expert's load.
    mv::CoActivation c{co_layer, n_expert, {}, "tokens"};
    c.count.assign(co.begin(), co.end());
    for (const auto& st : routing->layer_stats())
      if (st.layer == co_layer)
        for (int e = 0; e < n_expert; ++e)
          c.count[static_cast<size_t>(e) * n_expert + e] =
              static_cast<float>(st.load[static_cast<size_t>(e)]);
    panel.publish(std::move(c));
  }
  // Head-mean attention of `layer` (rows of every head averaged) and the per-head strip.
  {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<mv::AttentionMap> per_head(static_cast<size_t>(n_head));
    for (auto& m : per_head) {
      m.n_query = m.n_key = n_pos;
      m.weight.assign(static_cast<size_t>(n_pos) * n_pos, nan);
    }
    for (const moelab::AttentionRow& row : attention->rows()) {
      if (row.layer != layer || row.head < 0 || row.head >= n_head) continue;
      if (static_cast<int>(row.pos) >= n_pos || row.bin_size != 1 || !row.key_pos.empty()) continue;
      float* dst = per_head[static_cast<size_t>(row.head)].weight.data() +
                   static_cast<size_t>(row.pos) * n_pos;
      // Prefill rows cover the whole batch; keys after the query are causally masked (NaN).
      for (size_t k = 0; k < row.probs.size() && k <= row.pos; ++k) dst[k] = row.probs[k];
    }
    mv::AttentionMap mean;
    mean.n_query = mean.n_key = n_pos;
    mean.layer = layer;
    mean.head = -1;
    mean.weight.assign(static_cast<size_t>(n_pos) * n_pos, nan);
    for (size_t i = 0; i < mean.weight.size(); ++i) {
      double s = 0;
      int n = 0;
      for (const auto& m : per_head)
        if (!std::isnan(m.weight[i])) s += m.weight[i], ++n;
      if (n > 0) mean.weight[i] = static_cast<float>(s / n);
    }
    mean.query_text = text;
    mean.key_text = text;
    mv::AttentionHeads heads;
    heads.layer = layer;
    heads.n_sink = 1;
    heads.local_window = 16;
    for (int h = 0; h < n_head; ++h) {
      mv::HeadSummary s = mv::summarize_head(per_head[static_cast<size_t>(h)], 1, 16);
      s.head = h;
      heads.heads.push_back(s);
    }
    panel.publish(std::move(mean));
    panel.publish(std::move(heads));
  }
  {
    mv::LatencySeries ls;
    ls.ms = latency_ms;
    ls.ttft_ms = latency_ms.empty() ? 0.0 : latency_ms.front();
    panel.publish(std::move(ls));
  }
  panel.setAttentionLogScale(log_scale);

  struct Shot {
    ViewsPanel::Page page;
    const char* name;
    bool active = false;
  };
  std::vector<Shot> shots;
  if (routing) {
    shots.push_back({ViewsPanel::Page::kRouting, "routing"});
    shots.push_back({ViewsPanel::Page::kRouting, "active", true});
    shots.push_back({ViewsPanel::Page::kExpertLoad, "load"});
    shots.push_back({ViewsPanel::Page::kCoActivation, "coactivation"});
  }
  shots.push_back({ViewsPanel::Page::kAttention, "attention"});
  shots.push_back({ViewsPanel::Page::kLatency, "latency"});
  for (const Shot& s : shots) {
    panel.setRoutingShowsActiveCount(s.active);
    panel.setPage(s.page);
    wait_ms(app, 400);
    const QImage img = panel.grabPage();
    const std::string path = out + "-" + s.name + ".png";
    if (img.isNull() || !img.save(QString::fromStdString(path))) {
      std::printf("could not save %s\n", path.c_str());
      return 1;
    }
    std::printf("wrote %s (%d x %d)\n", path.c_str(), img.width(), img.height());
  }
  return 0;
}
