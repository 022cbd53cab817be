// A fixed pool of worker threads for data-parallel loops (matmuls, attention heads, experts).
// The calling thread takes part, so ThreadPool(1) runs everything inline on the caller.
//
// Dispatch is lock-free: a loop is published in one atomic word (generation, chunk count, next
// chunk), every thread claims chunks from it, and the caller counts finished chunks. Waiting
// threads spin briefly (a decode token issues tens of loops a few microseconds apart) and then
// sleep on the atomic (futex on Linux), so an idle pool costs no CPU. thread_pool.cpp states the
// memory ordering.
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

  /// Splits [0, n) into contiguous chunks (at most 4 per thread; the split depends only on n and
  /// size()) and calls fn(begin, end, thread_index) for each, in parallel: the threads take the
  /// next chunk as they come free, so a thread the OS has descheduled holds up no more than the
  /// chunk it took. Returns when all are done. fn must not throw, and its result for a range must
  /// not depend on which thread runs it. Not re-entrant: do not call parallel_for from inside fn,
  /// nor from two threads at once.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void worker(int index);
  // Claims and runs chunks of generation `gen` until none is left or a later generation began.
  void run_chunks(uint32_t gen, int index);
  int n_threads_;
  std::vector<std::thread> workers_;
  // Written by the calling thread before it publishes a generation, read by a thread only after
  // it has claimed a chunk of that generation (see thread_pool.cpp).
  const std::function<void(int64_t, int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0;
  bool stop_ = false;
  // work_ = generation << 32 | chunk count << 16 | next chunk; on its own cache line, apart
  // from done_ (chunks finished in the current generation).
  alignas(64) std::atomic<uint64_t> work_{0};
  alignas(64) std::atomic<int32_t> done_{0};
};

}  // namespace moelab
