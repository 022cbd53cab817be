#include <algorithm>
#include <chrono>

#include "moelab/core/error.h"
#include "moelab/probes/probes.h"

namespace moelab {

namespace {
int key_index(std::string_view k) {
  const auto& all = Context::observable_names();
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i] == k) return static_cast<int>(i);
  throw Error(ErrorKind::BadInput, "unknown intermediate '" + std::string(k) + "'");
}
}  // namespace

ProbeHub::ProbeHub(Context& ctx) : ctx_(ctx) {}

ProbeHub::~ProbeHub() {
  ctx_.set_observer(nullptr, {});
  ctx_.set_op_timer(nullptr);
}

void ProbeHub::add(std::shared_ptr<Subscriber> s) {
  Entry e;
  e.want = s->subscription();
  for (const auto& k : e.want.keys) e.key_mask |= uint64_t{1} << key_index(k);
  if (!e.want.layers.empty()) {
    int mx = 0;
    for (int l : e.want.layers) mx = std::max(mx, l);
    e.layer_ok.assign(static_cast<size_t>(mx) + 1, 0);
    for (int l : e.want.layers)
      if (l >= 0) e.layer_ok[l] = 1;
  }
  e.sub = std::move(s);
  subs_.push_back(std::move(e));
  install();
}

void ProbeHub::remove(const Subscriber* s) {
  std::erase_if(subs_, [s](const Entry& e) { return e.sub.get() == s; });
  install();
}

void ProbeHub::install() {
  uint64_t mask = 0;
  timing_ = false;
  for (const auto& e : subs_) {
    mask |= e.key_mask;
    timing_ = timing_ || e.want.timing;
  }
  keys_.clear();
  const auto& all = Context::observable_names();
  for (size_t i = 0; i < all.size(); ++i)
    if ((mask >> i) & 1u) keys_.push_back(all[i]);
  if (keys_.empty()) {
    ctx_.set_observer(nullptr, {});
  } else {
    ctx_.set_observer(
        [this](const Observation& o) {
          const uint64_t bit = uint64_t{1} << key_index(o.name);
          for (auto& e : subs_) {
            if (!(e.key_mask & bit)) continue;
            if (o.layer >= 0 && !e.layer_ok.empty() &&
                (static_cast<size_t>(o.layer) >= e.layer_ok.size() || !e.layer_ok[o.layer]))
              continue;
            e.sub->on_observation(o);
          }
        },
        keys_);
  }
  if (timing_)
    ctx_.set_op_timer([this](const OpTime& t) {
      for (auto& e : subs_)
        if (e.want.timing) e.sub->on_op_time(t);
    });
  else
    ctx_.set_op_timer(nullptr);
}

void ProbeHub::eval(std::span<const int32_t> tokens, bool all_logits) {
  if (!timing_) {
    ctx_.eval(tokens, all_logits);
    return;
  }
  const uint32_t pos0 = ctx_.n_past();
  const auto t0 = std::chrono::steady_clock::now();
  ctx_.eval(tokens, all_logits);
  const int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  for (auto& e : subs_)
    if (e.want.timing) e.sub->on_eval(pos0, static_cast<int64_t>(tokens.size()), ns);
}

}  // namespace moelab
