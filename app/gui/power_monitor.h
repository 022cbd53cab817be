// PowerMonitor: the live power display of a run (status bar field, Power page). While a run
// streams it samples the power meter (engine/telemetry: NVML, RAPL or "no sensor") for watts over
// time: the meter's power reading when it has one (NVML), else the difference of its energy
// counter between two samples (RAPL). It integrates no energy itself: the run's joules and its
// J/token come from the session's energy accounting (moelab_session's RunEnergy on the worker
// thread, handed over as the run's EnergyReport) through session::total_energy_j and
// session::decode_j_per_token - the figures stored as "energy_j" / "j_per_token" and shown by
// Compare, moelab-cli and the reports. "J/token" is decode energy per decode token (tokens after
// the first) everywhere. Without a sensor nothing is sampled and text() says "no sensor" - never
// an invented number. GUI thread only.
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QString>
#include <QTimer>
#include <memory>
#include <optional>
#include <vector>

#include "moelab/telemetry/power.h"

class PowerMonitor : public QObject {
  Q_OBJECT
 public:
  /// Samples of the current / last run: seconds since its start and watts (empty without a
  /// sensor), the tokens generated, and - once it finished with the session's EnergyReport - its
  /// energy (J, prefill + decode) and decode J/token (nullopt without a sensor, while running,
  /// without a report, or, J/token, without a decode token).
  struct Trace {
    std::vector<double> t_s, watts;
    int n_tokens = 0;
    std::optional<double> joules, joules_per_token;
  };

  /// Opens the meter under the powercap sysfs root `powercapRoot` (RAPL; NVML is not asked for:
  /// the lab's runs are measured on the CPU package). `intervalMs`: sampling period.
  explicit PowerMonitor(const std::string& powercapRoot, QObject* parent = nullptr,
                        int intervalMs = 100);
  /// Samples `meter` (tests pass a fake one); must not be null.
  PowerMonitor(std::unique_ptr<moelab::PowerMeter> meter, QObject* parent, int intervalMs = 100);

  const moelab::PowerMeter& meter() const { return *meter_; }
  bool available() const { return meter_->available(); }
  const Trace& trace() const { return trace_; }

  /// The status bar's field: "power: no sensor" without a sensor; else "power: – W" at the
  /// start of a run, "power: <W> W" while it runs, "power: <J/token> J/token" after it (the
  /// stored j_per_token), or "power: <J> J this run" when the run had no decode token.
  QString text() const { return text_; }
  /// The field's tooltip: what the figures are and the sensor (or why there is none).
  QString toolTip() const;

  /// A run starts: clears the trace and samples every interval (with a sensor).
  void start();
  /// Tokens generated so far (recorded with each sample).
  void setTokens(int n) { tokens_ = n; }
  /// The run ended with `nTokens` tokens: a last sample, then its joules and J/token from
  /// `energy`, the session's energy accounting of the run (null: none, e.g. a failed start).
  void finish(int nTokens, const moelab::EnergyReport* energy);
  /// The run could not start: stops sampling.
  void stop() { timer_.stop(); }
  /// Takes one sample now (the timer does this every interval while a run streams).
  void sample();

 signals:
  /// A new sample (watts) was taken.
  void sampled(double watts);
  /// The trace changed (start, sample, finish): the Power page republishes it.
  void traceChanged();
  /// text() changed.
  void textChanged(const QString& text);

 private:
  void setText(const QString& text);
  std::unique_ptr<moelab::PowerMeter> meter_;
  QTimer timer_;
  QElapsedTimer clock_;
  Trace trace_;
  QString text_;
  int tokens_ = 0;
  std::optional<double> lastE_;  // energy counter at the last sample (J), for watts
  double lastT_ = 0;
};
