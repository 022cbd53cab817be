#include "models/context_common.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "moelab/core/error.h"
#include "moelab/kernels/kernels.h"

namespace moelab::models {

const std::vector<std::string>& observable_names() {
  static const std::vector<std::string> v = {"inp_embd",
                                             "attn_norm",
                                             "Qcur",
                                             "Kcur",
                                             "Vcur",
                                             "kq_soft_max",
                                             "kqv_out",
                                             "attn_out",
                                             "ffn_inp",
                                             "ffn_norm",
                                             "ffn_moe_logits",
                                             "ffn_moe_probs",
                                             "ffn_moe_topk",
                                             "ffn_moe_weights",
                                             "ffn_moe_weights_norm",
                                             "ffn_moe_out",
                                             "ffn_shexp",
                                             "ffn_out",
                                             "layer_out",
                                             "result_norm",
                                             "result_output",
                                             "ffn_moe_probs_biased",
                                             "ffn_moe_weights_scaled",
                                             "ffn_moe_weights_softmax",
                                             "ffn_moe_group_topk"};
  return v;
}

uint64_t observer_mask(const std::vector<std::string>& names) {
  const auto& all = observable_names();
  uint64_t mask = 0;
  for (const auto& n : names) {
    size_t i = 0;
    while (i < all.size() && all[i] != n) ++i;
    if (i == all.size()) {
      std::string list;
      for (const auto& a : all) list += (list.empty() ? "" : ", ") + a;
      throw Error(ErrorKind::BadInput,
                  "unknown intermediate '" + n + "' (observable: " + list + ")");
    }
    mask |= uint64_t{1} << i;
  }
  return mask;
}

void init_router(std::optional<policies::Router>& router, const RoutingPolicy& policy,
                 const ModelCard& card, const RouterGating& gating) {
  if (policy.is_default()) return;
  if (card.expert_count == 0)
    throw Error(ErrorKind::BadInput, "the model has no experts to route",
                {.subject = "routing policy '" + policy.describe() + "'"});
  router.emplace(policy, static_cast<int>(card.n_layer), static_cast<int>(card.expert_count),
                 static_cast<int>(card.expert_used_count), gating);
}

bool evicting_policy(const AttentionPolicy& policy, uint32_t n_ctx) {
  if (policy.rule != AttentionRule::Evict) return false;
  if (static_cast<uint64_t>(policy.sinks) + policy.window > n_ctx)
    throw Error(ErrorKind::BadInput,
                "sinks + window (" + std::to_string(policy.sinks) + " + " +
                    std::to_string(policy.window) + ") exceed n_ctx " + std::to_string(n_ctx),
                {.subject = "attention policy '" + policy.describe() + "'"});
  return true;
}

bool exact_activations(gguf::TensorType type, int64_t n_in, bool expert) {
  const bool tinyblas_type = type == gguf::TensorType::F16 || type == gguf::TensorType::F32;
  return tinyblas_type && !expert && n_in % 8 == 0;
}

int64_t logits_row(int i, int64_t n_logits, int64_t n_batch, bool logits_all) {
  if (n_logits == 0) throw Error(ErrorKind::BadInput, "no logits yet: call eval first");
  if (i < 0 || (!logits_all && i == n_batch - 1)) return n_logits - 1;
  if (logits_all && i < n_batch) return i;
  throw Error(ErrorKind::BadInput, "logits of token " + std::to_string(i) +
                                       " were not kept (batch of " + std::to_string(n_batch) +
                                       " tokens, all_logits " + (logits_all ? "on" : "off") + ")");
}

std::string find_non_finite_weight(const gguf::File& file) {
  // Forward order: token_embd, the blocks by index (in file order within a block), then
  // output_norm and output.
  auto rank = [](const std::string& name) -> int64_t {
    if (name.rfind("token_embd.", 0) == 0) return -1;
    if (name.rfind("blk.", 0) == 0) return std::strtoll(name.c_str() + 4, nullptr, 10);
    return INT32_MAX;
  };
  std::vector<const gguf::TensorInfo*> order;
  for (const auto& t : file.tensors()) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(),
                   [&](const auto* a, const auto* b) { return rank(a->name) < rank(b->name); });
  std::vector<float> row;
  for (const gguf::TensorInfo* t : order) {
    const auto type = static_cast<gguf::TensorType>(t->type);
    if (!kernels::supports(type) || t->n_elements() == 0) continue;
    const int64_t n_in = t->ne[0];
    const int64_t n_rows = t->n_elements() / n_in;
    row.resize(static_cast<size_t>(n_in));
    for (int64_t r = 0; r < n_rows; ++r) {
      kernels::dequantize_row(type, t->data + static_cast<uint64_t>(r) * t->row_bytes(), row.data(),
                              n_in);
      for (int64_t c = 0; c < n_in; ++c)
        if (!std::isfinite(row[c]))
          return "tensor '" + t->name + "' holds " +
                 (std::isnan(row[c]) ? "NaN"
                  : row[c] > 0       ? "+Inf"
                                     : "-Inf") +
                 " at row " + std::to_string(r) + ", column " + std::to_string(c);
    }
  }
  return {};
}

void check_finite_logits(const float* logits, int64_t n_rows, int64_t n_vocab, uint32_t pos0,
                         int64_t n_batch, const gguf::File& file) {
  // x - x is 0 for finite x and NaN for NaN/Inf: one vectorisable pass over the rows.
  float probe = 0;
  const int64_t n = n_rows * n_vocab;
  for (int64_t i = 0; i < n; ++i) probe += logits[i] - logits[i];
  if (probe == 0) return;
  int64_t bad = 0;
  while (bad < n && std::isfinite(logits[bad])) ++bad;
  const int64_t row = bad / n_vocab;
  const uint64_t pos = pos0 + static_cast<uint64_t>(n_batch - n_rows + row);
  const std::string where = find_non_finite_weight(file);
  throw Error(ErrorKind::BadInput,
              "the logits at position " + std::to_string(pos) + " are not finite (token id " +
                  std::to_string(bad % n_vocab) + " is " +
                  (std::isnan(logits[bad]) ? "NaN" : "Inf") + "): " +
                  (where.empty() ? "every weight is finite, so an activation overflowed"
                                 : "the non-finite values come from the weights: " + where),
              {.file = file.path()});
}

}  // namespace moelab::models
