#include "power_monitor.h"

#include "moelab/session/energy.h"

PowerMonitor::PowerMonitor(const std::string& powercapRoot, QObject* parent, int intervalMs)
    : PowerMonitor(moelab::open_power_meter(false, powercapRoot), parent, intervalMs) {}

PowerMonitor::PowerMonitor(std::unique_ptr<moelab::PowerMeter> meter, QObject* parent,
                           int intervalMs)
    : QObject(parent), meter_(std::move(meter)) {
  text_ = meter_->available() ? tr("power: – W") : tr("power: no sensor");
  timer_.setInterval(intervalMs);
  connect(&timer_, &QTimer::timeout, this, [this] {
    sample();
    emit traceChanged();
  });
}

QString PowerMonitor::toolTip() const {
  if (!meter_->available())
    return tr("No power or energy is shown: %1")
        .arg(QString::fromStdString(meter_->unavailable_reason()));
  return tr("Power draw during generation (W) and energy per generated token of the last "
            "run: J/token as stored (decode energy / decode tokens, the j_per_token every "
            "report and Compare show), else the run's joules; sensor %1: %2")
      .arg(QString::fromStdString(meter_->name()), QString::fromStdString(meter_->resolution()));
}

void PowerMonitor::setText(const QString& text) {
  text_ = text;
  emit textChanged(text_);
}

void PowerMonitor::start() {
  trace_ = {};
  tokens_ = 0;
  lastE_.reset();
  timer_.stop();
  if (meter_->available()) {
    clock_.start();
    lastT_ = 0;
    lastE_ = meter_->energy_j();
    setText(tr("power: – W"));
    timer_.start();
  }
  emit traceChanged();
}

void PowerMonitor::sample() {
  if (!meter_->available() || !clock_.isValid()) return;
  const double t = clock_.nsecsElapsed() * 1e-9;
  const double dt = t - lastT_;
  std::optional<double> w = meter_->power_w();
  if (!w) {
    const auto e = meter_->energy_j();
    if (e && lastE_ && dt > 0) w = (*e - *lastE_) / dt;
    if (e) lastE_ = e;
  }
  lastT_ = t;
  if (!w) return;
  trace_.t_s.push_back(t);
  trace_.watts.push_back(*w);
  trace_.n_tokens = tokens_;
  setText(tr("power: %1 W").arg(*w, 0, 'f', 1));
  emit sampled(*w);
}

void PowerMonitor::finish(int nTokens, const moelab::EnergyReport* energy) {
  if (!meter_->available()) {
    emit traceChanged();
    return;
  }
  sample();
  timer_.stop();
  trace_.n_tokens = nTokens;
  if (energy) {
    trace_.joules = moelab::session::total_energy_j(*energy);
    trace_.joules_per_token = moelab::session::decode_j_per_token(*energy);
  }
  if (trace_.joules_per_token)
    setText(tr("power: %1 J/token").arg(*trace_.joules_per_token, 0, 'g', 3));
  else if (trace_.joules)
    setText(tr("power: %1 J this run").arg(*trace_.joules, 0, 'g', 3));
  emit traceChanged();
}
