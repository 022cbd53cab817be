// StatusFields: the main window's permanent status bar fields, each a QLabel named
// "status_<name>": backend (compute backend and device, or the remote endpoint), threads (CPU
// threads of the forward pass), memory (weights + KV cache of the loaded model, MiB), tps
// (decode tokens/s), ttft (time to first token, ms) and power (PowerMonitor::text(), or "not
// available from this engine" for a remote run). The figures of a finished run come from its
// stored tokens through compare::latency_figures - the one definition of TTFT and decode
// tokens/s that the Latency view, Compare, moelab-cli compare and the reports use. GUI thread.
#pragma once

#include <QLabel>
#include <QMap>
#include <QObject>
#include <QString>
#include <span>

#include "moelab/compare/compare.h"
#include "moelab/storage/records.h"

class QStatusBar;
class PowerMonitor;

class StatusFields : public QObject {
  Q_OBJECT
 public:
  /// Adds the fields to `bar` (permanent widgets, in the order above) and parents them to it.
  explicit StatusFields(QStatusBar* bar);

  /// The field `name` ("backend", "threads", "memory", "tps", "ttft", "power"); null for others.
  QLabel* field(const QString& name) const { return fields_.value(name); }

  void setBackend(const QString& text, const QString& toolTip);
  /// "<n> threads"; remote: "threads: the server's".
  void setThreads(int n);
  void setThreadsRemote();
  /// "model <MiB> MiB" (one decimal).
  void setModelMemory(double mib);
  /// A run starts: "– tok/s" and "TTFT –" until it has figures.
  void clearRunFigures();
  /// The decode rate while a run streams (tokens/s, one decimal).
  void setLiveRate(double tokensPerSecond);
  /// A finished run's TTFT (ms) and decode tokens/s from its stored tokens
  /// (compare::latency_figures, returned); a figure the tokens do not define shows as 0.
  moelab::compare::LatencyFigures setRunFigures(
      std::span<const moelab::storage::TokenRecord> tokens);
  /// The same fields from numbers the store could not give (a run that stored no tokens).
  void setRunFigures(double ttftMs, double tokensPerSecond);
  /// The power field follows `monitor` (text and tooltip; "power: no sensor" without one).
  void followPower(PowerMonitor* monitor);
  /// A remote run: "power: not available from this engine" until the next local run.
  void setPowerRemote();

 private:
  QLabel* add(QStatusBar* bar, const QString& name, const QString& text, const QString& tip);
  QMap<QString, QLabel*> fields_;
};
