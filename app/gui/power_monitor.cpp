#include "power_monitor.h"

PowerMonitor::PowerMonitor(const std::string& powercapRoot, QObject* parent, int intervalMs)
    : QObject(parent), meter_(moelab::open_power_meter(false, powercapRoot)) {
  timer_.setInterval(intervalMs);
  connect(&timer_, &QTimer::timeout, this, [this] {
    sample();
    emit traceChanged();
  });
}

void PowerMonitor::start() {
  trace_ = {};
  tokens_ = 0;
  e0_.reset();
  lastE_.reset();
  integral_ = 0;
  timer_.stop();
  if (meter_->available()) {
    clock_.start();
    lastT_ = 0;
    e0_ = lastE_ = meter_->energy_j();
    timer_.start();
  }
  emit traceChanged();
}

void PowerMonitor::sample() {
  if (!meter_->available() || !clock_.isValid()) return;
  const double t = clock_.nsecsElapsed() * 1e-9;
  const double dt = t - lastT_;
  std::optional<double> w = meter_->power_w();
  if (w) {
    if (!trace_.watts.empty()) integral_ += 0.5 * (trace_.watts.back() + *w) * dt;
  } else if (const auto e = meter_->energy_j(); e && lastE_ && dt > 0) {
    w = (*e - *lastE_) / dt;
    lastE_ = e;
  } else if (e) {
    lastE_ = e;
  }
  lastT_ = t;
  if (!w) return;
  trace_.t_s.push_back(t);
  trace_.watts.push_back(*w);
  trace_.n_tokens = tokens_;
  emit sampled(*w);
}

void PowerMonitor::finish(int nTokens) {
  if (!meter_->available()) {
    emit traceChanged();
    return;
  }
  sample();
  timer_.stop();
  trace_.n_tokens = nTokens;
  const auto e = meter_->energy_j();
  if (e && e0_)
    trace_.joules = *e - *e0_;
  else if (trace_.watts.size() >= 2)
    trace_.joules = integral_;
  if (trace_.joules && nTokens > 0) trace_.joules_per_token = *trace_.joules / nTokens;
  emit traceChanged();
}
