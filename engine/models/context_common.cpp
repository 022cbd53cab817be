#include "models/context_common.h"

#include <string>

#include "moelab/core/error.h"

namespace moelab::models {

void init_router(std::optional<policies::Router>& router, const RoutingPolicy& policy,
                 const ModelCard& card, bool renormalise) {
  if (policy.is_default()) return;
  if (card.expert_count == 0)
    throw Error(ErrorKind::BadInput, "the model has no experts to route",
                {.subject = "routing policy '" + policy.describe() + "'"});
  router.emplace(policy, static_cast<int>(card.n_layer), static_cast<int>(card.expert_count),
                 static_cast<int>(card.expert_used_count), renormalise);
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
