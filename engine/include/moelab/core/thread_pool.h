// A fixed pool of worker threads for data-parallel loops (matmuls, attention heads, experts).
// The calling thread takes part, so ThreadPool(1) runs everything inline on the caller.
//
// Dispatch is lock-free: a loop is published by bumping an atomic generation counter, and the
// workers count themselves out on an atomic pending counter. Waiting threads spin briefly (a
// decode token issues tens of loops a few microseconds apart) and then sleep on the atomic
// (futex on Linux), so an idle pool costs no CPU. thread_pool.cpp states the memory ordering.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace moelab {

class ThreadPool {
 public:
  /// n_threads >= 1 (values < 1 are treated as 1); n_threads - 1 workers are started.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  /// Splits [0, n) into size() contiguous chunks (some may be empty; the split depends only on n
  /// and size()) and calls fn(begin, end, thread_index) for each, in parallel; returns when all
  /// are done. fn must not throw. Not re-entrant: do not call parallel_for from inside fn, nor
  /// from two threads at once.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void worker(int index);
  int n_threads_;
  std::vector<std::thread> workers_;
  // Written by the calling thread before it publishes a generation, read by the workers after
  // they have seen it (see thread_pool.cpp).
  const std::function<void(int64_t, int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0;
  bool stop_ = false;
  // On separate cache lines: the workers poll generation_ while they count down pending_.
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int32_t> pending_{0};
};

}  // namespace moelab
