#include "moelab/core/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

// Memory ordering (what ThreadSanitizer checks). work_ packs generation (high 32 bits), chunk
// count (16 bits) and next unclaimed chunk (16 bits).
//  * parallel_for writes job_, job_n_ and done_ = 0, then publishes the generation with a
//    release store of work_. A thread claims a chunk with a CAS on work_ that succeeds only while
//    work_ still holds that generation (acquire): the CASes continue the release sequence of the
//    store, so the claimer sees job_ / job_n_ / done_ as written. A thread reads job_ and job_n_
//    only after such a successful claim of a chunk that exists (index < count).
//  * After running a chunk the thread adds 1 to done_ (release). The caller returns only after
//    an acquire load of done_ reads the chunk count, so every chunk's writes, and every read of
//    job_ (each made before that thread's release add), happen-before the return - before the
//    caller's fn (on its stack) goes away and before the next loop overwrites job_.
//  * A worker that wakes late sees either the new generation or, after the caller has moved on,
//    a later one: its CAS fails on a changed generation and it claims nothing of the old loop, so
//    it never reads job_ of a finished loop.
//  * stop_ is written before the destructor's release bump of the generation and read after an
//    acquire load that sees it.
//  * Sleeping uses std::atomic::wait/notify on work_ and done_ (a futex on Linux); wait
//    re-checks the value, so a notify before the wait is not lost. notify_* on an atomic nobody
//    sleeps on costs no system call (libstdc++ counts sleepers).
namespace moelab {

namespace {
void chunk(int64_t n, int64_t parts, int64_t i, int64_t* b, int64_t* e) {
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

constexpr uint32_t gen_of(uint64_t w) {
  return static_cast<uint32_t>(w >> 32);
}
constexpr int64_t count_of(uint64_t w) {
  return static_cast<int64_t>((w >> 16) & 0xffff);
}
constexpr int64_t next_of(uint64_t w) {
  return static_cast<int64_t>(w & 0xffff);
}
// Chunks per thread: enough that a thread the OS deschedules for a while delays the loop by
// one chunk, few enough that each chunk is long (a decode matvec: tens of row groups).
constexpr int64_t kChunksPerThread = 4;

// How long a waiting thread polls before it sleeps. The gaps between the loops of one decode
// token (norms, RoPE, routing on the calling thread) are microseconds; the gap between tokens or
// requests is usually longer. Spinning past this only burns a core another process could use.
constexpr auto kSpinFor = std::chrono::microseconds(150);

// Polls until changed(value) holds or kSpinFor has passed; returns the last value read.
template <class T, class Changed>
T spin_until(const std::atomic<T>& a, Changed changed) {
  T v = a.load(std::memory_order_acquire);
  if (changed(v)) return v;
  const auto until = std::chrono::steady_clock::now() + kSpinFor;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      cpu_relax();
      v = a.load(std::memory_order_acquire);
      if (changed(v)) return v;
    }
    if (std::chrono::steady_clock::now() >= until) return v;
  }
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_ = true;
  const uint64_t w = work_.load(std::memory_order_relaxed);
  work_.store(static_cast<uint64_t>(gen_of(w) + 1) << 32, std::memory_order_release);
  work_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks(uint32_t gen, int index) {
  uint64_t w = work_.load(std::memory_order_acquire);
  for (;;) {
    if (gen_of(w) != gen || next_of(w) >= count_of(w)) return;
    if (!work_.compare_exchange_weak(w, w + 1, std::memory_order_acquire,
                                     std::memory_order_acquire))
      continue;  // w reloaded
    int64_t b, e;
    chunk(job_n_, count_of(w), next_of(w), &b, &e);
    if (b < e) (*job_)(b, e, index);
    if (done_.fetch_add(1, std::memory_order_release) + 1 == count_of(w)) done_.notify_one();
    w = work_.load(std::memory_order_acquire);
  }
}

void ThreadPool::worker(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint64_t w = spin_until(work_, [&](uint64_t v) { return gen_of(v) != seen; });
    while (gen_of(w) == seen) {
      work_.wait(w, std::memory_order_acquire);
      w = work_.load(std::memory_order_acquire);
    }
    seen = gen_of(w);
    if (stop_) return;
    run_chunks(seen, index);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  if (n_threads_ == 1 || n == 1) {
    fn(0, n, 0);
    return;
  }
  // (the count has 16 bits in work_, and the next-chunk field reaches at most the count)
  const int64_t count = std::min<int64_t>({n, kChunksPerThread * n_threads_, 0xffff});
  job_ = &fn;
  job_n_ = n;
  done_.store(0, std::memory_order_relaxed);
  const uint32_t gen = gen_of(work_.load(std::memory_order_relaxed)) + 1;
  work_.store(static_cast<uint64_t>(gen) << 32 | static_cast<uint64_t>(count) << 16,
              std::memory_order_release);
  work_.notify_all();
  run_chunks(gen, 0);
  int32_t d = spin_until(done_, [&](int32_t v) { return v == count; });
  while (d != count) {
    done_.wait(d, std::memory_order_acquire);
    d = done_.load(std::memory_order_acquire);
  }
  job_ = nullptr;
}

}  // namespace moelab
