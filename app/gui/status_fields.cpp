#include "status_fields.h"

#include <QStatusBar>

#include "power_monitor.h"

StatusFields::StatusFields(QStatusBar* bar) : QObject(bar) {
  add(bar, "backend", tr("CPU"), tr("Compute backend and device the runs use"));
  add(bar, "threads", tr("– threads"), tr("CPU threads of the forward pass"));
  add(bar, "memory", tr("model: –"), tr("Weights plus KV cache of the loaded model (MiB)"));
  add(bar, "tps", tr("– tok/s"),
      tr("Decode rate of the last run after its first token (tokens/s)"));
  add(bar, "ttft", tr("TTFT –"),
      tr("Time to first token of the last run: prompt prefill plus first sampling (ms)"));
  add(bar, "power", tr("power: no sensor"), tr("No power or energy is shown"));
}

QLabel* StatusFields::add(QStatusBar* bar, const QString& name, const QString& text,
                          const QString& tip) {
  auto* l = new QLabel(text, bar);
  l->setObjectName("status_" + name);
  l->setToolTip(tip);
  bar->addPermanentWidget(l);
  fields_[name] = l;
  return l;
}

void StatusFields::setBackend(const QString& text, const QString& toolTip) {
  fields_["backend"]->setText(text);
  fields_["backend"]->setToolTip(toolTip);
}

void StatusFields::setThreads(int n) {
  fields_["threads"]->setText(tr("%1 threads").arg(n));
}

void StatusFields::setThreadsRemote() {
  fields_["threads"]->setText(tr("threads: the server's"));
}

void StatusFields::setModelMemory(double mib) {
  fields_["memory"]->setText(tr("model %1 MiB").arg(mib, 0, 'f', 1));
}

void StatusFields::clearRunFigures() {
  fields_["tps"]->setText(tr("– tok/s"));
  fields_["ttft"]->setText(tr("TTFT –"));
}

void StatusFields::setLiveRate(double tokensPerSecond) {
  fields_["tps"]->setText(tr("%1 tok/s").arg(tokensPerSecond, 0, 'f', 1));
}

moelab::compare::LatencyFigures StatusFields::setRunFigures(
    std::span<const moelab::storage::TokenRecord> tokens) {
  auto f = moelab::compare::latency_figures(tokens);
  setRunFigures(f.ttft_ms.value_or(0.0), f.decode_tokens_per_s.value_or(0.0));
  return f;
}

void StatusFields::setRunFigures(double ttftMs, double tokensPerSecond) {
  fields_["tps"]->setText(tr("%1 tok/s").arg(tokensPerSecond, 0, 'f', 1));
  fields_["ttft"]->setText(tr("TTFT %1 ms").arg(ttftMs, 0, 'f', 1));
}

void StatusFields::followPower(PowerMonitor* monitor) {
  QLabel* l = fields_["power"];
  l->setText(monitor->text());
  l->setToolTip(monitor->toolTip());
  connect(monitor, &PowerMonitor::textChanged, l, &QLabel::setText);
}

void StatusFields::setPowerRemote() {
  fields_["power"]->setText(tr("power: not available from this engine"));
}
