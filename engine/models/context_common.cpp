#include "models/context_common.h"

#include <string>

#include "moelab/core/error.h"

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
                                             "result_output"};
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
                 const ModelCard& card, bool renormalise, bool unit_weights) {
  if (policy.is_default()) return;
  if (card.expert_count == 0)
    throw Error(ErrorKind::BadInput, "the model has no experts to route",
                {.subject = "routing policy '" + policy.describe() + "'"});
  router.emplace(policy, static_cast<int>(card.n_layer), static_cast<int>(card.expert_count),
                 static_cast<int>(card.expert_used_count), renormalise, unit_weights);
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

int64_t logits_row(int i, int64_t n_logits, int64_t n_batch, bool logits_all) {
  if (n_logits == 0) throw Error(ErrorKind::BadInput, "no logits yet: call eval first");
  if (i < 0 || (!logits_all && i == n_batch - 1)) return n_logits - 1;
  if (logits_all && i < n_batch) return i;
  throw Error(ErrorKind::BadInput, "logits of token " + std::to_string(i) +
                                       " were not kept (batch of " + std::to_string(n_batch) +
                                       " tokens, all_logits " + (logits_all ? "on" : "off") + ")");
}

}  // namespace moelab::models
