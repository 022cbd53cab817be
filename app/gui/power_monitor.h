// PowerMonitor: the power meter (engine/telemetry: NVML, RAPL or "no sensor") sampled while a run
// streams, for the status bar and the Power page. Watts come from the meter's power reading when
// it has one (NVML), else from differences of its energy counter between samples (RAPL); the
// run's energy is the counter difference over the run (or the trapezoid integral of the samples
// for power-only meters). Without a sensor nothing is sampled and reason() says why - never an
// invented number. The stored per-run energy metrics (energy_j, j_per_token, ...) come from
// moelab_session's RunEnergy on the worker thread; this monitor is the live display of the same
// meter. GUI thread only.
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QTimer>
#include <memory>
#include <optional>
#include <vector>

#include "moelab/telemetry/power.h"

class PowerMonitor : public QObject {
  Q_OBJECT
 public:
  /// Samples of the current / last run: seconds since its start and watts (empty without a
  /// sensor), the tokens generated, and its energy (J) and joules per generated token once it
  /// finished (nullopt without a sensor or while running).
  struct Trace {
    std::vector<double> t_s, watts;
    int n_tokens = 0;
    std::optional<double> joules, joules_per_token;
  };

  /// Opens the meter under the powercap sysfs root `powercapRoot` (RAPL; NVML is not asked for:
  /// the lab's runs are measured on the CPU package). `intervalMs`: sampling period.
  explicit PowerMonitor(const std::string& powercapRoot, QObject* parent = nullptr,
                        int intervalMs = 100);

  const moelab::PowerMeter& meter() const { return *meter_; }
  bool available() const { return meter_->available(); }
  const Trace& trace() const { return trace_; }

  /// A run starts: clears the trace and samples every interval (with a sensor).
  void start();
  /// Tokens generated so far (recorded with each sample).
  void setTokens(int n) { tokens_ = n; }
  /// The run ended with `nTokens` tokens: a last sample, the run's joules and J/token.
  void finish(int nTokens);
  /// The run could not start: stops sampling.
  void stop() { timer_.stop(); }

 signals:
  /// A new sample (watts) was taken.
  void sampled(double watts);
  /// The trace changed (start, sample, finish): the Power page republishes it.
  void traceChanged();

 private:
  void sample();
  std::unique_ptr<moelab::PowerMeter> meter_;
  QTimer timer_;
  QElapsedTimer clock_;
  Trace trace_;
  int tokens_ = 0;
  std::optional<double> e0_, lastE_;  // counter at the run start / at the last sample (J)
  double lastT_ = 0;
  double integral_ = 0;  // power-only meters: trapezoid integral over the samples (J)
};
