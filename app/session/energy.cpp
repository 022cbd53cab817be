#include "moelab/session/energy.h"

#include <cmath>

namespace moelab::session {

RunEnergy::RunEnergy(std::unique_ptr<PowerMeter> meter, std::chrono::milliseconds interval)
    : meter_(std::move(meter)), sampler_(std::make_unique<EnergySampler>(*meter_, interval)) {
  sampler_->begin_phase("prefill");
}

RunEnergy::~RunEnergy() = default;

TokenCallback RunEnergy::wrap(TokenCallback inner) {
  return [this, inner = std::move(inner)](const TokenEvent& ev) {
    if (ev.id >= 0 && !report_) {
      if (ev.index == 0)
        sampler_->begin_phase("decode");
      else
        sampler_->mark_token();
    }
    return inner ? inner(ev) : true;
  };
}

const EnergyReport& RunEnergy::finish() {
  if (!report_) report_ = sampler_->finish();
  return *report_;
}

namespace {
std::optional<double> phase_j(const EnergyReport& r, const char* phase) {
  double j = 0;
  bool any = false;
  for (const auto& p : r.phases)
    if (p.phase == phase && std::isfinite(p.joules)) {
      j += p.joules;
      any = true;
    }
  if (!any) return std::nullopt;
  return j;
}
}  // namespace

std::optional<double> total_energy_j(const EnergyReport& report) {
  if (!report.available) return std::nullopt;
  double j = 0;
  bool any = false;
  for (const auto& p : report.phases)
    if (std::isfinite(p.joules)) {
      j += p.joules;
      any = true;
    }
  if (!any) return std::nullopt;
  return j;
}

std::optional<double> decode_j_per_token(const EnergyReport& report) {
  if (!report.available) return std::nullopt;
  int64_t n = 0;
  for (const auto& p : report.phases)
    if (p.phase == "decode") n += p.tokens;
  const auto j = phase_j(report, "decode");
  if (!j || n <= 0) return std::nullopt;
  return *j / static_cast<double>(n);
}

std::optional<double> RunEnergy::energy_j() const {
  return report_ ? total_energy_j(*report_) : std::nullopt;
}

std::optional<double> RunEnergy::j_per_token() const {
  return report_ ? decode_j_per_token(*report_) : std::nullopt;
}

nlohmann::json RunEnergy::json() {
  const EnergyReport& r = finish();
  nlohmann::json j;
  const auto e = energy_j();
  const auto jt = j_per_token();
  j["energy_j"] = e ? nlohmann::json(*e) : nlohmann::json(nullptr);
  j["j_per_token"] = jt ? nlohmann::json(*jt) : nlohmann::json(nullptr);
  j["energy_meter"] = r.meter;
  if (!r.available) j["energy_unavailable"] = r.reason;
  return j;
}

void RunEnergy::store_metrics(storage::RunWriter& run) {
  const EnergyReport& r = finish();
  if (!r.available) return;
  if (const auto e = energy_j()) run.metric("energy_j", *e, "J");
  if (const auto p = phase_j(r, "prefill")) run.metric("prefill_energy_j", *p, "J");
  if (const auto d = phase_j(r, "decode")) run.metric("decode_energy_j", *d, "J");
  if (const auto jt = j_per_token()) run.metric("j_per_token", *jt, "J/token");
}

}  // namespace moelab::session
