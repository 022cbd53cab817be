#include "moelab/probes/probes.h"

namespace moelab {

TimingProbe::TimingProbe(int n_layer) : n_layer_(n_layer), layer_us_(n_layer + 1) {
  for (auto& a : layer_us_) a.fill(0);
}

Subscription TimingProbe::subscription() const {
  Subscription s;
  s.timing = true;
  return s;
}

void TimingProbe::on_op_time(const OpTime& t) {
  const double us = static_cast<double>(t.ns) / 1000.0;
  const int row = t.layer >= 0 && t.layer < n_layer_ ? t.layer : n_layer_;
  layer_us_[row][static_cast<int>(t.op)] += us;
  cur_.op_us[static_cast<int>(t.op)] += us;
}

void TimingProbe::on_eval(uint32_t pos0, int64_t n, int64_t ns) {
  cur_.pos0 = pos0;
  cur_.n_tokens = n;
  cur_.total_us = static_cast<double>(ns) / 1000.0;
  evals_.push_back(cur_);
  cur_ = EvalTiming{};
}

double TimingProbe::tpot_us() const {
  double sum = 0;
  int cnt = 0;
  for (size_t i = 1; i < evals_.size(); ++i)
    if (evals_[i].n_tokens == 1) {
      sum += evals_[i].total_us;
      ++cnt;
    }
  return cnt ? sum / cnt : 0.0;
}

}  // namespace moelab
