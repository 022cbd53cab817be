#include <cmath>

#include "moelab/telemetry/power.h"

namespace moelab {

EnergySampler::EnergySampler(PowerMeter& meter, std::chrono::milliseconds interval)
    : meter_(meter), interval_(interval.count() > 0 ? interval : std::chrono::milliseconds(1)) {
  report_.meter = meter_.name();
  report_.available = meter_.available();
  report_.reason = meter_.unavailable_reason();
  report_.resolution = meter_.resolution();
  report_.sample_interval_ms = static_cast<double>(interval_.count());
  if (report_.available) {
    counter_ = meter_.energy_j().has_value();
    report_.method = counter_ ? "energy counter differences at phase/token boundaries"
                              : "power samples integrated over time (trapezoid rule)";
    last_t_ = std::chrono::steady_clock::now();
    thread_ = std::thread([this] { loop(); });
  }
}

EnergySampler::~EnergySampler() {
  finish();
}

double EnergySampler::now_energy_locked() {
  if (!report_.available) return NAN;
  if (counter_) {
    const auto e = meter_.energy_j();
    ++report_.samples;
    return e ? *e : NAN;
  }
  const auto t = std::chrono::steady_clock::now();
  const auto w = meter_.power_w();
  ++report_.samples;
  if (w) {
    const double dt = std::chrono::duration<double>(t - last_t_).count();
    if (have_last_w_) integral_j_ += 0.5 * (last_w_ + *w) * dt;
    last_w_ = *w;
    have_last_w_ = true;
  }
  last_t_ = t;
  return integral_j_;
}

void EnergySampler::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    lock.unlock();
    std::this_thread::sleep_for(interval_);
    lock.lock();
    if (!stop_) now_energy_locked();
  }
}

void EnergySampler::close_phase_locked() {
  if (!in_phase_) return;
  const double e = now_energy_locked();
  cur_.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - phase_t0_).count();
  cur_.joules = e - phase_e0_;
  report_.phases.push_back(cur_);
  in_phase_ = false;
}

void EnergySampler::begin_phase(const std::string& phase) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  close_phase_locked();
  cur_ = EnergySpan{};
  cur_.phase = phase;
  phase_t0_ = std::chrono::steady_clock::now();
  phase_e0_ = token_e0_ = now_energy_locked();
  in_phase_ = true;
}

void EnergySampler::mark_token() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  const double e = now_energy_locked();
  report_.token_joules.push_back(e - token_e0_);
  token_e0_ = e;
  if (in_phase_) ++cur_.tokens;
}

EnergyReport EnergySampler::finish() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_) return report_;
    close_phase_locked();
    stop_ = true;
    finished_ = true;
  }
  if (thread_.joinable()) thread_.join();
  return report_;
}

}  // namespace moelab
