#include "moelab/core/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

// Memory ordering (what ThreadSanitizer checks):
//  * parallel_for writes job_, job_n_ and pending_ (relaxed), then bumps generation_ with a
//    release RMW. A worker reads job_ / job_n_ only after an acquire load of generation_ has
//    returned the new value, so those plain writes happen-before its reads. stop_ is published the
//    same way by the destructor.
//  * A worker reads job_ / job_n_ and runs its chunk before its acq_rel fetch_sub on pending_.
//    The caller returns only after an acquire load of pending_ reads 0; the fetch_subs form one
//    release sequence, so every worker's chunk (its writes to the outputs) and its reads of job_
//    happen-before the caller's return - and so before the next loop overwrites job_ and the
//    caller's fn (on its stack) goes away.
//  * pending_ is stored before the release bump of generation_, so a worker's fetch_sub (after
//    its acquire of that generation) reads that store or a later decrement, never an older value.
//  * Sleeping uses std::atomic::wait/notify on the same variables (a futex on Linux); wait
//    re-checks the value, so a notify before the wait is not lost. notify_* on an atomic nobody
//    sleeps on costs no system call (libstdc++ counts sleepers).
namespace moelab {

namespace {
void chunk(int64_t n, int parts, int i, int64_t* b, int64_t* e) {
  const int64_t per = n / parts, rem = n % parts;
  *b = i * per + std::min<int64_t>(i, rem);
  *e = *b + per + (i < rem ? 1 : 0);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// How long a waiting thread polls before it sleeps. The gaps between the loops of one decode
// token (norms, RoPE, routing on the calling thread) are microseconds; the gap between tokens or
// requests is usually longer. Spinning past this only burns a core another process could use.
constexpr auto kSpinFor = std::chrono::microseconds(150);

// Polls until changed(value) holds or kSpinFor has passed; returns the last value read.
template <class T, class Changed>
T spin_until(const std::atomic<T>& a, T value, Changed changed) {
  T v = a.load(std::memory_order_acquire);
  if (changed(v)) return v;
  const auto until = std::chrono::steady_clock::now() + kSpinFor;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      cpu_relax();
      v = a.load(std::memory_order_acquire);
      if (changed(v)) return v;
    }
    if (std::chrono::steady_clock::now() >= until) return value;
  }
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_ = true;
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = spin_until(generation_, seen, [&](uint32_t v) { return v != seen; });
    while (g == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_) return;
    const auto* job = job_;
    int64_t b, e;
    chunk(job_n_, n_threads_, index, &b, &e);
    if (b < e) (*job)(b, e, index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  if (n_threads_ == 1 || n == 1) {
    fn(0, n, 0);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  int64_t b, e;
  chunk(n, n_threads_, 0, &b, &e);
  if (b < e) fn(b, e, 0);
  int32_t p = spin_until(pending_, 1, [](int32_t v) { return v == 0; });
  while (p != 0) {
    pending_.wait(p, std::memory_order_acquire);
    p = pending_.load(std::memory_order_acquire);
  }
  job_ = nullptr;
}

}  // namespace moelab
