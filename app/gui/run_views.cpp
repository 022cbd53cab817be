#include "run_views.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "moelab/core/error.h"
#include "moelab/storage/store.h"

namespace moelab::lab {

views::ExpertLoad expert_load_of(const std::vector<storage::RoutingRecord>& routing, int n_layer,
                                 int expert_count) {
  // The one definition of expert share (as compare::routing_divergence's load).
  views::ExpertLoad l;
  l.n_layer = std::max(0, n_layer);
  l.expert_count = std::max(0, expert_count);
  l.unit = "share of tokens";
  l.load.assign(static_cast<size_t>(l.n_layer) * static_cast<size_t>(l.expert_count), 0.f);
  std::vector<double> count(l.load.size(), 0.0), total(static_cast<size_t>(l.n_layer), 0.0);
  for (const auto& r : routing) {
    if (r.layer < 0 || r.layer >= l.n_layer) continue;
    for (uint16_t e : r.experts)
      if (e < l.expert_count) {
        count[static_cast<size_t>(r.layer) * static_cast<size_t>(l.expert_count) + e] += 1.0;
        total[static_cast<size_t>(r.layer)] += 1.0;
      }
  }
  for (int layer = 0; layer < l.n_layer; ++layer) {
    const double n = total[static_cast<size_t>(layer)];
    if (n <= 0) continue;
    for (int e = 0; e < l.expert_count; ++e) {
      const size_t i =
          static_cast<size_t>(layer) * static_cast<size_t>(l.expert_count) + static_cast<size_t>(e);
      l.load[i] = static_cast<float>(count[i] / n);
    }
  }
  return l;
}

views::AttentionMap attention_map_of(const storage::AttentionSnapshot& a) {
  if (a.shape.size() != 2 || a.shape[0] < 1 || a.shape[1] < 1 ||
      static_cast<int64_t>(a.data.size()) != a.shape[0] * a.shape[1])
    throw Error(ErrorKind::BadInput, "attention snapshot is not a [n_query, n_key] matrix");
  views::AttentionMap m;
  m.n_query = static_cast<int>(a.shape[0]);
  m.n_key = static_cast<int>(a.shape[1]);
  m.weight = a.data;
  const int offset = m.n_key - m.n_query;
  for (int q = 0; q < m.n_query; ++q)
    for (int k = q + offset + 1; k < m.n_key; ++k)
      m.weight[static_cast<size_t>(q) * static_cast<size_t>(m.n_key) + static_cast<size_t>(k)] =
          std::numeric_limits<float>::quiet_NaN();
  m.layer = a.layer;
  m.head = a.head;
  return m;
}

namespace {

int config_expert_count(const storage::Store& store, int64_t run) {
  try {
    const auto r = store.run(run);
    if (!r) return 0;
    const auto j = nlohmann::json::parse(r->config_json);
    if (j.contains("model") && j["model"].is_object()) return j["model"].value("expert_count", 0);
  } catch (const std::exception&) {
  }
  return 0;
}

// The first n_query rows and n_key columns of m (prompt positions from 0 in both runs).
views::AttentionMap crop(const views::AttentionMap& m, int nq, int nk) {
  if (nq == m.n_query && nk == m.n_key) return m;
  views::AttentionMap c = m;
  c.n_query = nq;
  c.n_key = nk;
  c.weight.clear();
  for (int q = 0; q < nq; ++q)
    for (int k = 0; k < nk; ++k)
      c.weight.push_back(
          m.weight[static_cast<size_t>(q) * static_cast<size_t>(m.n_key) + static_cast<size_t>(k)]);
  return c;
}

}  // namespace

CompareViews read_compare_views(const storage::Store& store, int64_t a, int64_t b) {
  CompareViews v;
  v.a = a;
  v.b = b;
  const auto ra = store.routing(a);
  const auto rb = store.routing(b);
  int n_layer = 0;
  int experts = std::max(config_expert_count(store, a), config_expert_count(store, b));
  for (const auto* rs : {&ra, &rb})
    for (const auto& r : *rs) {
      n_layer = std::max(n_layer, r.layer + 1);
      for (uint16_t e : r.experts) experts = std::max(experts, int(e) + 1);
    }
  if (n_layer > 0 && experts > 0) {
    v.load_a = expert_load_of(ra, n_layer, experts);
    v.load_b = expert_load_of(rb, n_layer, experts);
  }

  const auto aa = store.attention(a);
  const auto ab = store.attention(b);
  // The deepest layer whose head-mean prompt attention both runs stored.
  const storage::AttentionSnapshot* sa = nullptr;
  const storage::AttentionSnapshot* sb = nullptr;
  for (const auto& x : aa) {
    if (x.head != -1 || x.position != 0 || x.shape.size() != 2) continue;
    for (const auto& y : ab) {
      if (y.head != -1 || y.position != 0 || y.layer != x.layer || y.shape.size() != 2) continue;
      if (!sa || x.layer > sa->layer) {
        sa = &x;
        sb = &y;
      }
    }
  }
  if (sa && sb) {
    const auto ma = attention_map_of(*sa);
    const auto mb = attention_map_of(*sb);
    // Prompt attention from an empty cache is square (queries = keys = prompt positions), so
    // the common top-left block holds the same positions in both runs.
    const int nq = std::min(ma.n_query, mb.n_query);
    const int nk = std::min(ma.n_key, mb.n_key);
    if (ma.n_query == ma.n_key && mb.n_query == mb.n_key) {
      v.attention_a = crop(ma, nq, nk);
      v.attention_b = crop(mb, nq, nk);
    } else if (ma.n_query == mb.n_query && ma.n_key == mb.n_key) {
      v.attention_a = ma;
      v.attention_b = mb;
    }
  }
  return v;
}

}  // namespace moelab::lab
