#include "moelab/views/synthetic.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "moelab/views/view_kinds.h"

namespace moelab::views {
namespace {

const char* kWords[] = {"The",   " quick",  " brown", " fox",  " jumps", " over",    " the",
                        " lazy", " dog",    ".",      " It",   " was",   " a",       " sunny",
                        " day",  " in",     " the",   " MoE",  " lab",   ",",        " and",
                        " the",  " expert", "s",      " were", " busy",  " routing", " tokens"};

}  // namespace

AttentionMap synthetic_attention(int n, uint32_t seed, float sink, float local) {
  AttentionMap a;
  a.n_query = a.n_key = n;
  a.weight.assign(static_cast<size_t>(n) * n, std::numeric_limits<float>::quiet_NaN());
  std::mt19937 rng(seed);
  std::exponential_distribution<float> e(1.0f);
  for (int q = 0; q < n; ++q) {
    float* row = a.weight.data() + static_cast<size_t>(q) * n;
    float sum = 0.0f;
    for (int k = 0; k <= q; ++k) {
      float w = 0.02f * e(rng);
      if (k == 0) w += sink * (q + 1) * 0.05f;
      if (q - k < 3) w += local * (q + 1) * 0.05f / static_cast<float>(1 + q - k);
      row[k] = w;
      sum += w;
    }
    for (int k = 0; k <= q; ++k) row[k] /= sum;
  }
  for (int i = 0; i < n; ++i) {
    const std::string t = kWords[static_cast<size_t>(i) % std::size(kWords)];
    a.query_text.push_back(t);
  }
  a.key_text = a.query_text;
  return a;
}

SyntheticRun synthetic_run(int n_layer, int n_tokens, int expert_count, int top_k, int n_head,
                           uint32_t seed) {
  SyntheticRun r;
  std::mt19937 rng(seed);
  // Routing: each layer prefers a few hot experts (Zipf-like weights), token-dependent noise.
  RoutingGrid& g = r.routing;
  g.n_layer = n_layer;
  g.n_tokens = n_tokens;
  g.expert_count = expert_count;
  g.top_expert.resize(static_cast<size_t>(n_layer) * n_tokens);
  g.active_count.resize(g.top_expert.size());
  for (int t = 0; t < n_tokens; ++t)
    g.token_text.push_back(kWords[static_cast<size_t>(t) % std::size(kWords)]);
  std::vector<std::vector<int32_t>> topk_ids(static_cast<size_t>(n_layer));
  auto make_load = [&](std::mt19937& rr, ExpertLoad& load, bool fill_grid) {
    load.n_layer = n_layer;
    load.expert_count = expert_count;
    load.load.assign(static_cast<size_t>(n_layer) * expert_count, 0.0f);
    std::gamma_distribution<float> gam(0.6f, 1.0f);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int l = 0; l < n_layer; ++l) {
      std::vector<float> pref(static_cast<size_t>(expert_count));
      for (float& p : pref) p = gam(rr);
      for (int t = 0; t < n_tokens; ++t) {
        std::vector<std::pair<float, int>> score;
        for (int e = 0; e < expert_count; ++e)
          score.push_back({pref[static_cast<size_t>(e)] * (0.3f + u(rr)), e});
        std::partial_sort(score.begin(), score.begin() + top_k, score.end(),
                          [](auto a, auto b) { return a.first > b.first; });
        // Dynamic policy: drop experts scoring under 40% of the best (at least 1).
        int active = 1;
        while (active < top_k && score[static_cast<size_t>(active)].first > 0.4f * score[0].first)
          ++active;
        for (int j = 0; j < top_k; ++j) {
          load.load[static_cast<size_t>(l) * expert_count + score[static_cast<size_t>(j)].second] +=
              1.0f / static_cast<float>(n_tokens);
          if (fill_grid)
            topk_ids[static_cast<size_t>(l)].push_back(score[static_cast<size_t>(j)].second);
        }
        if (fill_grid) {
          const size_t i = static_cast<size_t>(l) * n_tokens + t;
          g.top_expert[i] = score[0].second;
          g.active_count[i] = active;
        }
      }
    }
  };
  make_load(rng, r.load, true);
  std::mt19937 rng_b(seed + 1);
  make_load(rng_b, r.load_b, false);
  // Layer 0 dense (no routing) to show the masked colour.
  for (int t = 0; t < n_tokens; ++t) {
    g.top_expert[static_cast<size_t>(t)] = -1;
    g.active_count[static_cast<size_t>(t)] = 0;
  }
  const int cl = n_layer / 2;
  r.coactivation =
      co_activation_from_topk(cl, expert_count, top_k, topk_ids[static_cast<size_t>(cl)]);

  // Attention of one layer: per-head maps with different sink/local mixes, head mean.
  r.heads.layer = cl;
  r.heads.n_sink = 1;
  r.heads.local_window = 4;
  std::vector<float> mean(static_cast<size_t>(n_tokens) * n_tokens, 0.0f);
  for (int h = 0; h < n_head; ++h) {
    const float sink = 0.05f + 0.9f * static_cast<float>(h % 4) / 3.0f;
    const float local = 0.05f + 0.9f * static_cast<float>((h / 4) % 4) / 3.0f;
    AttentionMap hm =
        synthetic_attention(n_tokens, seed * 100 + static_cast<uint32_t>(h), sink, local);
    hm.head = h;
    HeadSummary s = summarize_head(hm, r.heads.n_sink, r.heads.local_window);
    r.heads.heads.push_back(s);
    for (size_t i = 0; i < mean.size(); ++i) mean[i] += hm.weight[i] / static_cast<float>(n_head);
  }
  r.attention = synthetic_attention(n_tokens, seed);
  r.attention.weight = mean;
  r.attention.layer = cl;
  r.attention.head = -1;
  r.attention_b = synthetic_attention(n_tokens, seed + 7, 0.6f, 0.2f);
  r.attention_b.layer = cl;

  // Latency: TTFT ~ 40x a decode step; decode ~ 25 ms with jitter and a slow spike.
  std::normal_distribution<double> jitter(0.0, 1.5);
  r.latency.ttft_ms = 950.0;
  for (int t = 0; t < n_tokens; ++t)
    r.latency.ms.push_back(
        t == 0 ? 950.0 : 24.0 + 0.05 * t + jitter(rng) + (t == n_tokens / 2 ? 20.0 : 0.0));
  r.latency.parts = {"attention", "router", "experts", "norm + other"};
  for (int l = 0; l < n_layer; ++l) {
    r.latency.rows.push_back("layer " + std::to_string(l));
    const double experts = l == 0 ? 0.25 : 0.55 + 0.1 * std::sin(l);
    for (double v : {0.30, l == 0 ? 0.0 : 0.03, experts, 0.06}) r.latency.part_ms.push_back(v);
  }
  // Power: ramp to ~180 W during prefill, ~120 W decode, 10 Hz over the generation.
  double t = 0.0;
  const double total_s = (950.0 + 25.0 * (n_tokens - 1)) / 1000.0;
  std::normal_distribution<double> wn(0.0, 4.0);
  for (; t <= total_s + 1e-9; t += 0.1) {
    r.power.t_s.push_back(t);
    r.power.watts.push_back((t < 0.95 ? 180.0 : 120.0) + wn(rng));
  }
  r.power.sensor = "synthetic sensor";
  r.power.n_tokens = n_tokens;
  return r;
}

}  // namespace moelab::views
