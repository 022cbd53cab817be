// A fixed pool of worker threads for data-parallel loops (matmuls, attention heads, experts).
// The calling thread takes part, so ThreadPool(1) runs everything inline on the caller.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
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

  /// Splits [0, n) into size() contiguous chunks (some may be empty) and calls
  /// fn(begin, end, thread_index) for each, in parallel; returns when all are done. fn must not
  /// throw. Not re-entrant: do not call parallel_for from inside fn.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void worker(int index);
  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int64_t, int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

}  // namespace moelab
