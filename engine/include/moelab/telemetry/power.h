// Power and energy telemetry. A PowerMeter reads a real sensor or says why it cannot; it never
// invents a number. EnergySampler integrates a meter over the phases of a run (prefill,
// decode) and per token.
//
// Sensors:
//  * NVML (NVIDIA Management Library), loaded at run time with dlopen("libnvidia-ml.so.1") so
//    moelab neither links nor needs the driver: nvmlDeviceGetPowerUsage (mW) and
//    nvmlDeviceGetTotalEnergyConsumption (mJ since driver load, Volta and newer). Resolution:
//    1 mJ counter, 1 mW power reading; the driver refreshes them every few ms to ~100 ms
//    depending on the GPU (NVML API reference, "Device Queries").
//  * RAPL via the Linux powercap sysfs (Documentation/power/powercap/powercap.rst):
//    <root>/intel-rapl:N/energy_uj for each top-level package zone (sub-zones such as
//    intel-rapl:0:0 are parts of the package and are not added again). The counter wraps at
//    max_energy_range_uj; a reading lower than the previous one is taken as one wrap. The
//    sysfs root is configurable (tests use a fake tree). Resolution: 1 µJ in sysfs (the
//    hardware energy unit is coarser, typically 15.3-61 µJ; MSRs update about every 1 ms).
//    Reading energy_uj needs root on kernels >= 5.10 (CVE-2020-8694): the meter then says so.
//  * Unavailable: every call fails with the reasons the others gave.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace moelab {

class PowerMeter {
 public:
  virtual ~PowerMeter() = default;
  /// "nvml", "rapl", "unavailable".
  virtual std::string name() const = 0;
  virtual bool available() const = 0;
  /// Why the meter cannot measure (empty when available).
  virtual std::string unavailable_reason() const = 0;
  /// Monotonic cumulative energy in joules since the meter was opened (wrap-around handled);
  /// nullopt when the sensor has no energy counter or a read failed. Call at least once per
  /// counter wrap period (RAPL: minutes) - EnergySampler does.
  virtual std::optional<double> energy_j() = 0;
  /// Instantaneous power in watts; nullopt when the sensor does not report it.
  virtual std::optional<double> power_w() = 0;
  /// The sensor's resolution and update behaviour, in words.
  virtual std::string resolution() const = 0;
};

/// NVML meter for GPU `device` (index). `library` is the soname to dlopen (tests pass a fake).
/// Never throws: an unusable library gives a meter with available() == false.
std::unique_ptr<PowerMeter> open_nvml_meter(const std::string& library = "libnvidia-ml.so.1",
                                            unsigned device = 0);
/// RAPL meter over the package zones under `sysfs_root`. Never throws.
std::unique_ptr<PowerMeter> open_rapl_meter(const std::string& sysfs_root = "/sys/class/powercap");
/// A meter that measures nothing and says why.
std::unique_ptr<PowerMeter> unavailable_meter(std::string reason);
/// NVML when the backend is a GPU (gpu = true), otherwise RAPL; when the chosen sensor is not
/// usable, an unavailable meter whose reason lists what was tried and why it failed.
std::unique_ptr<PowerMeter> open_power_meter(bool gpu,
                                             const std::string& sysfs_root = "/sys/class/powercap");

/// Energy of one phase or token.
struct EnergySpan {
  std::string phase;  // "prefill", "decode", ...
  double seconds = 0;
  double joules = 0;  // NaN when unavailable
  int64_t tokens = 0;
  double joules_per_token() const { return tokens > 0 ? joules / static_cast<double>(tokens) : 0; }
};

struct EnergyReport {
  bool available = false;
  std::string meter;       // PowerMeter::name()
  std::string reason;      // unavailable_reason() when !available
  std::string resolution;  // PowerMeter::resolution()
  std::string method;      // "energy counter" or "power samples integrated (trapezoid)"
  std::vector<EnergySpan> phases;
  std::vector<double> token_joules;  // per mark_token(): energy since the previous mark
  double sample_interval_ms = 0;
  uint64_t samples = 0;
};

/// Samples a PowerMeter on its own thread (every interval) and attributes energy to phases and
/// tokens. With an energy counter, phase and token energies are counter differences read at
/// the boundaries (the thread only keeps the counter from wrapping unseen); with power only, it
/// integrates the samples over time (trapezoid rule). Thread-safe.
class EnergySampler {
 public:
  EnergySampler(PowerMeter& meter, std::chrono::milliseconds interval);
  ~EnergySampler();  // stops the thread
  /// Starts a phase (ending the current one).
  void begin_phase(const std::string& phase);
  /// Ends a token of the current phase: its energy is the difference to the previous mark.
  void mark_token();
  /// Ends the current phase and the thread; returns the report (idempotent).
  EnergyReport finish();

 private:
  void loop();
  double now_energy_locked();  // NaN when unavailable
  void close_phase_locked();
  PowerMeter& meter_;
  std::chrono::milliseconds interval_;
  bool counter_ = false;
  std::mutex mutex_;
  std::thread thread_;
  bool stop_ = false;
  std::chrono::steady_clock::time_point phase_t0_, last_t_;
  double integral_j_ = 0;  // power-only: running integral
  double last_w_ = 0;
  bool have_last_w_ = false;
  double phase_e0_ = 0, token_e0_ = 0;
  bool in_phase_ = false, finished_ = false;
  EnergySpan cur_;
  EnergyReport report_;
};

}  // namespace moelab
