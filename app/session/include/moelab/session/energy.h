// Energy of one generation (engine/telemetry's PowerMeter + EnergySampler) for the CLI, the
// stored run metrics and the GUI. Never a number without a sensor: when the meter is
// unavailable, every energy value is absent and the meter's reason is carried instead.
//
// Phases follow the token callback of Generator::generate (runtime/generator.h): the callback of
// token 0 runs after the prompt prefill and the first sampling, so "prefill" spans from
// construction to token 0; each later callback ends one decode step, so "decode" has one token
// per generated token after the first. j_per_token is the decode energy per decode token (J);
// energy_j is prefill + decode (J).
#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "moelab/runtime/generator.h"
#include "moelab/storage/writer.h"
#include "moelab/telemetry/power.h"

namespace moelab::session {

/// The run's energy (J): the sum of its phases' joules (prefill + decode); nullopt without a
/// sensor or when no phase has a finite value. The one definition behind the stored "energy_j".
std::optional<double> total_energy_j(const EnergyReport& report);
/// Decode energy per decode token (J/token): the "decode" phases' joules over their tokens (the
/// tokens after the first; see the header comment). nullopt without a sensor or without a
/// decode token. The one definition behind the stored "j_per_token" that the CLI, Compare, the
/// reports and the lab's status bar / Power page show.
std::optional<double> decode_j_per_token(const EnergyReport& report);

class RunEnergy {
 public:
  /// Starts the "prefill" phase now. `meter` must not be null.
  explicit RunEnergy(std::unique_ptr<PowerMeter> meter,
                     std::chrono::milliseconds interval = std::chrono::milliseconds(10));
  ~RunEnergy();
  RunEnergy(const RunEnergy&) = delete;
  RunEnergy& operator=(const RunEnergy&) = delete;

  bool available() const { return meter_->available(); }
  /// Why there is no measurement (empty when the meter is available).
  std::string unavailable_reason() const { return meter_->unavailable_reason(); }
  /// A callback that marks phases and tokens, then calls `inner` (may be empty).
  TokenCallback wrap(TokenCallback inner = {});
  /// Ends the measurement (idempotent) and returns the report.
  const EnergyReport& finish();

  /// Total energy (J) and decode energy per decode token (J/token); nullopt without a sensor,
  /// before finish(), or (j_per_token) when no decode token was generated.
  std::optional<double> energy_j() const;
  std::optional<double> j_per_token() const;

  /// {"energy_j": J|null, "j_per_token": J|null, "energy_meter": name} plus
  /// "energy_unavailable": reason when there is no sensor. Calls finish().
  nlohmann::json json();
  /// Stores "energy_j" (J), "prefill_energy_j", "decode_energy_j" and "j_per_token" (J/token)
  /// as run metrics - only values that were measured; nothing without a sensor. Calls finish().
  void store_metrics(storage::RunWriter& run);

 private:
  std::unique_ptr<PowerMeter> meter_;
  std::unique_ptr<EnergySampler> sampler_;
  std::optional<EnergyReport> report_;
};

}  // namespace moelab::session
