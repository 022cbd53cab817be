// LiveFeed: the bounded, lossy-for-display hand-off from the generation worker to the GUI.
//
// The worker push()es one item per token and never waits: when the feed already holds
// `capacity` items, the OLDEST item is dropped and counted (dropped()). The GUI drains it on a
// timer at its own pace. Only the display may lose items this way; the store receives every
// record through its own (blocking, never lossy) writer queue, so a display that fell behind
// re-reads the finished run from the run result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

namespace moelab::lab {

template <typename T>
class LiveFeed {
 public:
  explicit LiveFeed(size_t capacity = 4096) : capacity_(capacity ? capacity : 1) {}

  /// Any thread. Never blocks on the consumer; drops the oldest item when full.
  void push(T item) {
    std::lock_guard<std::mutex> lock(mu_);
    if (items_.size() >= capacity_) {
      items_.pop_front();
      ++dropped_;
    }
    items_.push_back(std::move(item));
    ++pushed_;
  }

  /// Takes up to `max` of the oldest items (all when max == 0).
  std::vector<T> drain(size_t max = 0) {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t n = (max == 0 || max > items_.size()) ? items_.size() : max;
    std::vector<T> out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
    }
    return out;
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    items_.clear();
    dropped_ = pushed_ = 0;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return items_.size();
  }
  size_t capacity() const { return capacity_; }
  /// Items discarded because the consumer was behind (since the last clear()).
  uint64_t dropped() const {
    std::lock_guard<std::mutex> lock(mu_);
    return dropped_;
  }
  uint64_t pushed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pushed_;
  }

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::deque<T> items_;
  uint64_t dropped_ = 0;
  uint64_t pushed_ = 0;
};

}  // namespace moelab::lab
