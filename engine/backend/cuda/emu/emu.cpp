// The CUDA emulator's runtime (semantics: include/cuda_runtime.h): device memory with guard
// pages, stream queues run at synchronisation, events, kernel launches executed block by block
// with one fiber per CUDA thread, and an emulated libcublas SGEMM.
#include <cuda_runtime.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define MOELAB_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOELAB_EMU_ASAN 1
#endif
#endif
#ifdef MOELAB_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace moelab::cuda_emu {
namespace {

thread_local uint3 t_thread_idx{0, 0, 0};
thread_local uint3 t_block_idx{0, 0, 0};
thread_local dim3 t_block_dim;
thread_local dim3 t_grid_dim;

using Clock = std::chrono::steady_clock;

bool enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MOELAB_CUDA_EMULATOR");
    return v && std::string(v) == "1";
  }();
  return on;
}

// ---- errors
// --------------------------------------------------------------------------------------

struct ErrorState {
  cudaError_t last = cudaSuccess;  // returned and cleared by cudaGetLastError
  cudaError_t detail_for = cudaSuccess;
  std::string detail;  // the emulator's explanation of the most recent error
  std::string message;
};
thread_local ErrorState t_err;

cudaError_t fail(cudaError_t err, const std::string& detail) {
  t_err.last = err;
  t_err.detail_for = err;
  t_err.detail = detail;
  return err;
}

// ---- memory
// --------------------------------------------------------------------------------------

struct Alloc {
  size_t bytes = 0;
  void* map = nullptr;  // the mmap'd region (device) or malloc'd block (pinned)
  size_t map_bytes = 0;
  bool device = false;
};
std::mutex g_mem_mutex;
std::map<uintptr_t, Alloc> g_allocs;  // by start address
size_t g_device_used = 0;

size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

size_t g_capacity_override = 0;  // set_memory_capacity
size_t device_capacity() {
  if (g_capacity_override) return g_capacity_override;
  static const size_t cap = [] {
    if (const char* v = std::getenv("MOELAB_CUDA_EMULATOR_MEMORY")) {
      char* end = nullptr;
      const unsigned long long b = std::strtoull(v, &end, 10);
      if (end != v) return static_cast<size_t>(b);
    }
    const long pages = sysconf(_SC_AVPHYS_PAGES);
    return pages > 0 ? static_cast<size_t>(pages) * page_size() : size_t{1} << 34;
  }();
  return cap;
}

// The allocation containing [p, p + bytes) (bytes 0: p itself), or null. Caller holds the mutex.
const Alloc* find_alloc(const void* p, size_t bytes, uintptr_t* start = nullptr) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return nullptr;
  --it;
  const uintptr_t end = it->first + it->second.bytes;
  if (a < it->first || a >= end + (bytes == 0 && a == end ? 1 : 0)) return nullptr;
  if (bytes > end - a) return nullptr;
  if (start) *start = it->first;
  return &it->second;
}

enum class Mem { Device, Pinned, Pageable, Partial };
// What [p, p + bytes) is: inside one device / pinned allocation, ordinary host memory, or
// partly inside an allocation (an overrun).
Mem classify(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  if (const Alloc* a = find_alloc(p, bytes)) return a->device ? Mem::Device : Mem::Pinned;
  if (find_alloc(p, 0)) return Mem::Partial;
  // The last byte inside an allocation that does not contain the first: also an overrun.
  if (bytes && find_alloc(static_cast<const char*>(p) + bytes - 1, 1)) return Mem::Partial;
  return Mem::Pageable;
}

std::string hex(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

// ---- streams and events
// --------------------------------------------------------------------------

// A queued operation: returns cudaSuccess or sets `detail`.
using Op = std::function<cudaError_t(std::string& detail)>;

}  // namespace
}  // namespace moelab::cuda_emu

struct CUstream_st {
  std::deque<moelab::cuda_emu::Op> queue;
};
struct CUevent_st {
  bool recorded = false;
  bool done = false;
  int pending = 0;         // queued records not yet run
  bool destroyed = false;  // cudaEventDestroy came first: the last record deletes it
  moelab::cuda_emu::Clock::time_point when{};
};

namespace moelab::cuda_emu {
namespace {

// One lock for the queues, the stream list and execution: one kernel at a time per process, and
// host threads that enqueue, synchronise or destroy streams concurrently stay consistent.
std::recursive_mutex g_exec_mutex;
std::vector<CUstream_st*> g_streams;
CUstream_st g_legacy_stream;  // stream 0
// An execution error (a failed launch) is sticky, as on a device: every later call returns it
// until reset_device().
cudaError_t g_sticky = cudaSuccess;
std::string g_sticky_detail;

cudaError_t sticky() {
  std::lock_guard<std::recursive_mutex> lock(g_exec_mutex);
  if (g_sticky != cudaSuccess) fail(g_sticky, g_sticky_detail);
  return g_sticky;
}

CUstream_st* stream_of(cudaStream_t s) {
  return s ? s : &g_legacy_stream;
}
bool valid_stream(cudaStream_t s) {
  if (!s) return true;
  std::lock_guard<std::recursive_mutex> lock(g_exec_mutex);
  return std::find(g_streams.begin(), g_streams.end(), s) != g_streams.end();
}

void enqueue(cudaStream_t s, Op op) {
  std::lock_guard<std::recursive_mutex> lock(g_exec_mutex);
  stream_of(s)->queue.push_back(std::move(op));
}

// Runs the stream's queued work in order. An execution error stops the stream and becomes the
// process's sticky error; returns it (also for work that failed earlier).
cudaError_t run_queue(CUstream_st* st) {
  std::lock_guard<std::recursive_mutex> lock(g_exec_mutex);
  while (!st->queue.empty()) {
    Op op = std::move(st->queue.front());
    st->queue.pop_front();
    if (g_sticky != cudaSuccess) continue;  // a failed device runs nothing more
    std::string detail;
    const cudaError_t err = op(detail);
    if (err != cudaSuccess) {
      g_sticky = err;
      g_sticky_detail = detail;
    }
  }
  return sticky();
}

cudaError_t run_all_queues() {
  std::lock_guard<std::recursive_mutex> lock(g_exec_mutex);
  for (CUstream_st* st : g_streams) run_queue(st);
  run_queue(&g_legacy_stream);
  return sticky();
}

// ---- fibers
// --------------------------------------------------------------------------------------

#if defined(__x86_64__)
// moelab_emu_switch(void** save_sp, void* next_sp): saves the callee-saved registers, MXCSR and
// the x87 control word on the current stack, stores its stack pointer in *save_sp, and resumes
// the context whose stack pointer is next_sp (System V AMD64 ABI).
extern "C" void moelab_emu_switch(void** save_sp, void* next_sp);
asm(R"(
  .text
  .globl moelab_emu_switch
  .type moelab_emu_switch, @function
moelab_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size moelab_emu_switch, .-moelab_emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");
#endif

enum class FState { Ready, Barrier, Done };

struct Fiber {
  char* stack = nullptr;  // usable stack [stack, stack + kStackBytes)
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
  FState state = FState::Ready;
  std::source_location site;
  uint32_t shfl_seq = 0;
  uint3 idx{0, 0, 0};
};

constexpr size_t kStackBytes = 256 * 1024;

struct Executor {
  std::vector<Fiber> fibers;
  std::vector<void*> maps;  // stack mappings
#if defined(__x86_64__)
  void* sched_sp = nullptr;
#else
  ucontext_t sched_ctx;
#endif
  int cur = -1;
  int n = 0;
  void (*thread_fn)(void*) = nullptr;
  void* closure = nullptr;
  std::vector<unsigned char> dyn_shared;
  // Shuffle slots, double-buffered by shuffle sequence number.
  std::vector<uint64_t> slot_bits[2];
  std::vector<uint32_t> slot_seq[2];
  std::vector<unsigned char> slot_set[2];
  std::vector<uint32_t> slot_line[2];  // call site and lane mask: partners must agree
  std::vector<int> slot_mask[2];
  std::string error;  // set by a fiber: the block is abandoned
#ifdef MOELAB_EMU_ASAN
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
#endif

  ~Executor() {
    for (void* m : maps) munmap(m, kStackBytes + page_size());
  }
  void ensure(int count) {
    while (static_cast<int>(fibers.size()) < count) {
      const size_t guard = page_size();
      void* m = mmap(nullptr, kStackBytes + guard, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (m == MAP_FAILED) throw std::bad_alloc();
      mprotect(m, guard, PROT_NONE);  // stack overflow faults
      maps.push_back(m);
      Fiber f;
      f.stack = static_cast<char*>(m) + guard;
      fibers.push_back(f);
    }
    for (int b = 0; b < 2; ++b) {
      slot_bits[b].assign(count, 0);
      slot_seq[b].assign(count, 0);
      slot_set[b].assign(count, 0);
      slot_line[b].assign(count, 0);
      slot_mask[b].assign(count, 0);
    }
  }
};

thread_local Executor* t_exec = nullptr;
// For the fault handler (async-signal-safe reads only).
thread_local const char* volatile t_running_kernel = nullptr;

void switch_to_scheduler();

[[noreturn]] void fiber_main() {
  Executor& ex = *t_exec;
#ifdef MOELAB_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &ex.sched_stack_bottom, &ex.sched_stack_size);
#endif
  try {
    ex.thread_fn(ex.closure);
  } catch (const std::exception& e) {
    ex.error = std::string("exception in device code: ") + e.what();
  } catch (...) {
    ex.error = "exception in device code";
  }
  ex.fibers[ex.cur].state = FState::Done;
  switch_to_scheduler();
  std::abort();  // a finished fiber is never resumed
}

#if !defined(__x86_64__)
void fiber_entry_ucontext() {
  fiber_main();
}
#endif

void start_fiber(Executor& ex, int i) {
  Fiber& f = ex.fibers[i];
  f.state = FState::Ready;
  f.shfl_seq = 0;
#ifdef MOELAB_EMU_ASAN
  // The previous fiber's frames never returned on this stack: clear their redzone marks where
  // the new fiber's first frames go (each instrumented frame marks its own on entry).
  __asan_unpoison_memory_region(f.stack + kStackBytes - 16384, 16384);
#endif
#if defined(__x86_64__)
  // Initial frame as moelab_emu_switch leaves it: [csr][r15..r12][rbx][rbp][return address],
  // the return address slot 16-byte aligned so fiber_main starts with rsp = 8 mod 16.
  auto top = reinterpret_cast<uintptr_t>(f.stack + kStackBytes) & ~uintptr_t{15};
  auto* slot = reinterpret_cast<uint64_t*>(top - 16);
  slot[0] = reinterpret_cast<uint64_t>(&fiber_main);
  slot[1] = 0;
  uint64_t* sp = slot - 7;
  for (int r = 1; r < 7; ++r) sp[r] = 0;  // r15, r14, r13, r12, rbx, rbp
  uint32_t csr[2];
  asm volatile("stmxcsr %0" : "=m"(csr[0]));
  uint16_t cw;
  asm volatile("fnstcw %0" : "=m"(cw));
  csr[1] = cw;
  std::memcpy(sp, csr, 8);
  f.sp = sp;
#else
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack;
  f.ctx.uc_stack.ss_size = kStackBytes;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, &fiber_entry_ucontext, 0);
#endif
}

void resume(Executor& ex, int i) {
  ex.cur = i;
  Fiber& f = ex.fibers[i];
  t_thread_idx = f.idx;
#ifdef MOELAB_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, kStackBytes);
#endif
#if defined(__x86_64__)
  moelab_emu_switch(&ex.sched_sp, f.sp);
#else
  swapcontext(&ex.sched_ctx, &f.ctx);
#endif
#ifdef MOELAB_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

void switch_to_scheduler() {
  Executor& ex = *t_exec;
  Fiber& f = ex.fibers[ex.cur];
#ifdef MOELAB_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(f.state == FState::Done ? nullptr : &fake, ex.sched_stack_bottom,
                                 ex.sched_stack_size);
#endif
#if defined(__x86_64__)
  moelab_emu_switch(&f.sp, ex.sched_sp);
#else
  swapcontext(&f.ctx, &ex.sched_ctx);
#endif
#ifdef MOELAB_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, &ex.sched_stack_bottom, &ex.sched_stack_size);
#endif
}

std::string idx_str(uint3 v) {
  char b[48];
  std::snprintf(b, sizeof b, "(%u,%u,%u)", v.x, v.y, v.z);
  return b;
}
std::string site_str(const std::source_location& s) {
  std::string f = s.file_name();
  const auto slash = f.find_last_of('/');
  if (slash != std::string::npos) f = f.substr(slash + 1);
  return f + ":" + std::to_string(s.line());
}

// Runs one block to completion; returns false with ex.error set on an execution error.
bool run_block(Executor& ex) {
  const int n = ex.n;
  for (int i = 0; i < n; ++i) start_fiber(ex, i);
  for (int b = 0; b < 2; ++b) std::fill(ex.slot_set[b].begin(), ex.slot_set[b].begin() + n, 0);
  int done = 0;
  while (done < n) {
    bool ran = false;
    for (int i = 0; i < n; ++i) {
      if (ex.fibers[i].state != FState::Ready) continue;
      ran = true;
      resume(ex, i);
      if (!ex.error.empty()) return false;
      if (ex.fibers[i].state == FState::Done) ++done;
    }
    if (ran || done == n) continue;
    // Nobody ready: everyone left waits at a barrier. Release it if they agree on the site.
    int first = -1;
    for (int i = 0; i < n; ++i) {
      const Fiber& f = ex.fibers[i];
      if (f.state != FState::Barrier) continue;
      if (first < 0) {
        first = i;
        continue;
      }
      const Fiber& g = ex.fibers[first];
      if (f.site.line() != g.site.line() || std::string(f.site.file_name()) != g.site.file_name()) {
        ex.error = "threads " + idx_str(g.idx) + " and " + idx_str(f.idx) +
                   " wait at different __syncthreads (" + site_str(g.site) + " and " +
                   site_str(f.site) + ")";
        return false;
      }
    }
    if (done > 0) {
      for (int i = 0; i < n; ++i)
        if (ex.fibers[i].state == FState::Done) {
          ex.error = "thread " + idx_str(ex.fibers[i].idx) +
                     " exited while the others wait at __syncthreads (" +
                     site_str(ex.fibers[first].site) + ")";
          return false;
        }
    }
    for (int i = 0; i < n; ++i) ex.fibers[i].state = FState::Ready;
  }
  return true;
}

// ---- the fault handler -------------------------------------------------------------------------

struct sigaction g_prev_segv, g_prev_bus;
std::once_flag g_handler_once;

void write_str(const char* s) {
  ssize_t r = write(2, s, std::strlen(s));
  (void)r;
}
void write_uint(unsigned v) {
  char b[16];
  int i = 15;
  b[i] = 0;
  do {
    b[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v && i > 0);
  write_str(b + i);
}

[[maybe_unused]] void on_fault(int sig, siginfo_t* info, void* uctx) {
  if (const char* k = t_running_kernel) {
    write_str("CUDA emulator: illegal memory access in kernel ");
    write_str(k);
    write_str(" at block (");
    write_uint(t_block_idx.x);
    write_str(",");
    write_uint(t_block_idx.y);
    write_str(",");
    write_uint(t_block_idx.z);
    write_str(") thread (");
    write_uint(t_thread_idx.x);
    write_str(",");
    write_uint(t_thread_idx.y);
    write_str(",");
    write_uint(t_thread_idx.z);
    write_str(")\n");
    t_running_kernel = nullptr;
  }
  const struct sigaction& prev = sig == SIGBUS ? g_prev_bus : g_prev_segv;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) prev.sa_sigaction(sig, info, uctx);
    return;
  }
  if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN && prev.sa_handler) {
    prev.sa_handler(sig);
    return;
  }
  signal(sig, SIG_DFL);  // return: the faulting access repeats and kills the process
}

void install_fault_handler() {
#ifndef MOELAB_EMU_ASAN  // AddressSanitizer reports faults itself, with the stack
  // The handler runs on its own stack: a fiber that overflowed its stack is still named.
  thread_local std::vector<char> alt_stack;
  if (alt_stack.empty()) {
    alt_stack.resize(64 * 1024);
    stack_t ss{};
    ss.ss_sp = alt_stack.data();
    ss.ss_size = alt_stack.size();
    sigaltstack(&ss, nullptr);
  }
  std::call_once(g_handler_once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = &on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_prev_segv);
    sigaction(SIGBUS, &sa, &g_prev_bus);
  });
#endif
}

// ---- kernels
// -------------------------------------------------------------------------------------

struct KernelOp {
  Launch l;
  void (*thread)(void*);
  std::shared_ptr<void> closure;
};

cudaError_t run_kernel(const KernelOp& k, std::string& detail) {
  thread_local Executor ex;
  install_fault_handler();
  Executor* saved = t_exec;
  t_exec = &ex;
  const int n = static_cast<int>(k.l.block.x * k.l.block.y * k.l.block.z);
  ex.ensure(n);
  ex.n = n;
  ex.thread_fn = k.thread;
  ex.closure = k.closure.get();
  ex.error.clear();
  // Dynamic shared memory starts as garbage on a device: 0xFF bytes here.
  ex.dyn_shared.assign(std::max<size_t>(k.l.shared_bytes, 16), 0xFF);
  t_block_dim = k.l.block;
  t_grid_dim = k.l.grid;
  for (int i = 0; i < n; ++i) {
    const unsigned u = static_cast<unsigned>(i);
    ex.fibers[i].idx =
        uint3{u % k.l.block.x, u / k.l.block.x % k.l.block.y, u / (k.l.block.x * k.l.block.y)};
  }
  t_running_kernel = k.l.kernel;
  bool ok = true;
  for (unsigned z = 0; ok && z < k.l.grid.z; ++z)
    for (unsigned y = 0; ok && y < k.l.grid.y; ++y)
      for (unsigned x = 0; ok && x < k.l.grid.x; ++x) {
        t_block_idx = uint3{x, y, z};
        ok = run_block(ex);
      }
  t_running_kernel = nullptr;
  t_exec = saved;
  if (!ok) {
    detail =
        std::string("kernel ") + k.l.kernel + ", block " + idx_str(t_block_idx) + ": " + ex.error;
    return cudaErrorLaunchFailure;
  }
  return cudaSuccess;
}

// ---- the emulated libcublas
// ----------------------------------------------------------------------

struct CublasHandle {
  cudaStream_t stream = nullptr;
};
// cublasStatus_t values the emulator returns. CUBLAS_STATUS_EXECUTION_FAILED (13) is not among
// them: the GEMM runs later on its stream, and a failure there is the stream's error at the next
// synchronisation, as for a kernel.
constexpr int kCublasOk = 0, kCublasNotInitialized = 1, kCublasInvalidValue = 7;

int cublas_create(void** handle) {
  if (!enabled()) return kCublasNotInitialized;
  *handle = new CublasHandle;
  return kCublasOk;
}
int cublas_destroy(void* handle) {
  if (!handle) return kCublasNotInitialized;
  delete static_cast<CublasHandle*>(handle);
  return kCublasOk;
}
int cublas_set_stream(void* handle, cudaStream_t s) {
  if (!handle) return kCublasNotInitialized;
  if (!valid_stream(s)) return kCublasInvalidValue;
  static_cast<CublasHandle*>(handle)->stream = s;
  return kCublasOk;
}
int cublas_get_version(void* handle, int* version) {
  if (!handle) return kCublasNotInitialized;
  *version = 0;  // "cuBLAS 0.0.0": the emulator's
  return kCublasOk;
}
// C = alpha op(A) op(B) + beta C, column-major; op(A) m x k, op(B) k x n, C m x n (cuBLAS v2).
int cublas_sgemm(void* handle, int transa, int transb, int m, int n, int k, const float* alpha,
                 const float* A, int lda, const float* B, int ldb, const float* beta, float* C,
                 int ldc) {
  if (!handle) return kCublasNotInitialized;
  if (transa < 0 || transa > 2 || transb < 0 || transb > 2 || m < 0 || n < 0 || k < 0)
    return kCublasInvalidValue;
  // CUBLAS_OP_C is CUBLAS_OP_T for real data.
  if (transa == 2) transa = 1;
  if (transb == 2) transb = 1;
  if (lda < std::max(1, transa == 0 ? m : k) || ldb < std::max(1, transb == 0 ? k : n) ||
      ldc < std::max(1, m))
    return kCublasInvalidValue;
  if (!alpha || !beta) return kCublasInvalidValue;
  const float a = *alpha, b = *beta;  // host pointer mode: read at the call
  const size_t a_cols = transa == 0 ? static_cast<size_t>(k) : static_cast<size_t>(m);
  const size_t b_cols = transb == 0 ? static_cast<size_t>(n) : static_cast<size_t>(k);
  auto span_ok = [](const void* p, size_t ld, size_t cols, size_t rows) {
    if (cols == 0 || rows == 0) return true;
    return classify(p, ((cols - 1) * ld + rows) * sizeof(float)) == Mem::Device;
  };
  if ((m && n && k && a != 0.0f &&
       (!span_ok(A, lda, a_cols, transa == 0 ? m : k) ||
        !span_ok(B, ldb, b_cols, transb == 0 ? k : n))) ||
      !span_ok(C, ldc, static_cast<size_t>(n), static_cast<size_t>(m)))
    return kCublasInvalidValue;
  CublasHandle* h = static_cast<CublasHandle*>(handle);
  enqueue(h->stream, [=](std::string&) {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float acc = 0.0f;
        for (int l = 0; a != 0.0f && l < k; ++l) {  // alpha 0: A and B are not read
          const float av = transa == 0 ? A[i + static_cast<size_t>(l) * lda]
                                       : A[l + static_cast<size_t>(i) * lda];
          const float bv = transb == 0 ? B[l + static_cast<size_t>(j) * ldb]
                                       : B[j + static_cast<size_t>(l) * ldb];
          acc += av * bv;
        }
        float& c = C[i + static_cast<size_t>(j) * ldc];
        // beta 0: C is not read (may be garbage); alpha 0: C = beta C.
        c = b == 0.0f ? (a == 0.0f ? 0.0f : a * acc) : (a == 0.0f ? b * c : a * acc + b * c);
      }
    return cudaSuccess;
  });
  return kCublasOk;
}

}  // namespace

// ---- device-side primitives ---------------------------------------------------------------------

const uint3& thread_idx() {
  return t_thread_idx;
}
const uint3& block_idx() {
  return t_block_idx;
}
const dim3& block_dim() {
  return t_block_dim;
}
const dim3& grid_dim() {
  return t_grid_dim;
}

void sync_threads(std::source_location where) {
  Executor& ex = *t_exec;
  Fiber& f = ex.fibers[ex.cur];
  f.state = FState::Barrier;
  f.site = where;
  switch_to_scheduler();
}

uint64_t shfl_xor(unsigned mask, uint64_t bits, int lane_mask, int width,
                  std::source_location where) {
  Executor& ex = *t_exec;
  const int me = ex.cur;
  Fiber& f = ex.fibers[me];
  const int lane = static_cast<int>(static_cast<unsigned>(me) % 32u);
  const int warp0 = me - lane;
  const uint32_t seq = f.shfl_seq++;
  const int b = seq & 1;
  ex.slot_bits[b][me] = bits;
  ex.slot_seq[b][me] = seq;
  ex.slot_set[b][me] = 1;
  ex.slot_line[b][me] = where.line();
  ex.slot_mask[b][me] = lane_mask;
  // Wait one round: every converged lane of the warp writes its value in the same round.
  f.state = FState::Ready;
  switch_to_scheduler();
  if (!ex.error.empty()) return bits;
  if (width != 32 || mask != 0xffffffffu) {
    ex.error = "__shfl_xor_sync with mask/width other than full warp is not emulated";
    switch_to_scheduler();
  }
  const int partner = warp0 + ((lane ^ lane_mask) & 31);
  if (partner >= ex.n || !ex.slot_set[b][partner] || ex.slot_seq[b][partner] != seq ||
      ex.slot_line[b][partner] != where.line() || ex.slot_mask[b][partner] != lane_mask) {
    ex.error = "thread " + idx_str(f.idx) + " shuffles with lane " + std::to_string(partner % 32) +
               ", which is not at the same __shfl_xor_sync (" + site_str(where) +
               ", same lane mask): a lane of the full mask exited or diverged";
    f.state = FState::Done;
    switch_to_scheduler();
  }
  return ex.slot_bits[b][partner];
}

void* dynamic_shared_memory() {
  return t_exec->dyn_shared.data();
}

bool is_device_pointer_or_null(const void* p) {
  if (!p) return true;
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  const Alloc* a = find_alloc(p, 0);
  return a && a->device;
}

void set_launch_error(cudaError_t err, const char* kernel, const char* detail) {
  fail(err, std::string("kernel ") + kernel + ": " + detail);
}

void enqueue_kernel(const Launch& l, void (*thread)(void*), void* closure, void (*destroy)(void*)) {
  std::shared_ptr<void> owned(closure, destroy);
  const uint64_t threads = uint64_t{l.block.x} * l.block.y * l.block.z;
  std::string bad;
  if (!enabled())
    bad = "no device (MOELAB_CUDA_EMULATOR is not 1)";
  else if (l.block.x == 0 || l.block.y == 0 || l.block.z == 0 || l.grid.x == 0 || l.grid.y == 0 ||
           l.grid.z == 0)
    bad = "a zero grid or block dimension";
  else if (threads > 1024 || l.block.x > 1024 || l.block.y > 1024 || l.block.z > 64)
    bad = "block " + idx_str({l.block.x, l.block.y, l.block.z}) + " exceeds 1024 threads";
  else if (l.grid.x > 2147483647u || l.grid.y > 65535 || l.grid.z > 65535)
    bad = "grid " + idx_str({l.grid.x, l.grid.y, l.grid.z}) + " exceeds the limits";
  else if (l.shared_bytes > 48 * 1024)
    bad = std::to_string(l.shared_bytes) + " bytes of dynamic shared memory (limit 48 KiB)";
  else if (!valid_stream(l.stream))
    bad = "an invalid stream";
  if (bad.empty() && sticky() != cudaSuccess) return;  // a failed device launches nothing
  if (!bad.empty()) {
    set_launch_error(enabled() ? cudaErrorInvalidConfiguration : cudaErrorNoDevice, l.kernel,
                     bad.c_str());
    return;
  }
  KernelOp op{l, thread, std::move(owned)};
  enqueue(l.stream, [op](std::string& detail) { return run_kernel(op, detail); });
}

void reset_device() {
  std::lock_guard<std::recursive_mutex> lock(g_exec_mutex);
  for (CUstream_st* st : g_streams) st->queue.clear();
  g_legacy_stream.queue.clear();
  g_sticky = cudaSuccess;
  g_sticky_detail.clear();
  t_err = ErrorState{};
}

void set_memory_capacity(size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_capacity_override = bytes;
}

void* cublas_symbol(const char* name) {
  if (const char* v = std::getenv("MOELAB_CUDA_EMULATOR_CUBLAS"); v && std::string(v) == "0")
    return nullptr;
  const std::string n = name;
  if (n == "cublasCreate_v2") return reinterpret_cast<void*>(&cublas_create);
  if (n == "cublasDestroy_v2") return reinterpret_cast<void*>(&cublas_destroy);
  if (n == "cublasSetStream_v2") return reinterpret_cast<void*>(&cublas_set_stream);
  if (n == "cublasGetVersion_v2") return reinterpret_cast<void*>(&cublas_get_version);
  if (n == "cublasSgemm_v2") return reinterpret_cast<void*>(&cublas_sgemm);
  return nullptr;
}

}  // namespace moelab::cuda_emu

// ---- the runtime API ---------------------------------------------------------------------------

using namespace moelab::cuda_emu;

namespace {
const char* kOffReason =
    "no CUDA-capable device is detected (this build has no nvcc-compiled CUDA backend; "
    "MOELAB_CUDA_EMULATOR=1 runs it on the CPU emulator, for testing)";
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return fail(cudaErrorInvalidValue, "count is null");
  *count = 0;
  if (!enabled()) return fail(cudaErrorNoDevice, kOffReason);
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (!enabled()) return fail(cudaErrorNoDevice, kOffReason);
  if (device != 0) return fail(cudaErrorInvalidValue, "device " + std::to_string(device));
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!enabled()) return fail(cudaErrorNoDevice, kOffReason);
  if (!prop || device != 0) return fail(cudaErrorInvalidValue, "bad device or null prop");
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "moelab CUDA emulator (CPU)");
  prop->totalGlobalMem = device_capacity();
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 1;
  prop->maxThreadsPerBlock = 1024;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->warpSize = 32;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (!enabled()) return fail(cudaErrorNoDevice, kOffReason);
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  const size_t cap = device_capacity();
  if (free_bytes) *free_bytes = cap > g_device_used ? cap - g_device_used : 0;
  if (total_bytes) *total_bytes = cap;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = t_err.last;
  t_err.last = cudaSuccess;
  return e;
}
namespace {
struct ErrorText {
  cudaError_t err;
  const char* name;
  const char* text;  // the CUDA runtime's wording
};
constexpr ErrorText kErrorTexts[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration",
     "invalid configuration argument"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection",
     "invalid copy direction for memcpy"},
    {cudaErrorInsufficientDriver, "cudaErrorInsufficientDriver",
     "CUDA driver version is insufficient for CUDA runtime version"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress",
     "an illegal memory access was encountered"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
};
const ErrorText* error_text(cudaError_t err) {
  for (const ErrorText& e : kErrorTexts)
    if (e.err == err) return &e;
  return nullptr;
}
}  // namespace

const char* cudaGetErrorName(cudaError_t err) {
  const ErrorText* e = error_text(err);
  return e ? e->name : "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t err) {
  const ErrorText* e = error_text(err);
  const char* base = e ? e->text : "unknown error";
  if (err == cudaErrorNoDevice && !enabled()) return kOffReason;
  if (err != cudaSuccess && err == t_err.detail_for && !t_err.detail.empty()) {
    t_err.message = std::string(base) + " (CUDA emulator: " + t_err.detail + ")";
    return t_err.message.c_str();
  }
  return base;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (!p) return fail(cudaErrorInvalidValue, "cudaMalloc: null result pointer");
  *p = nullptr;
  if (!enabled()) return fail(cudaErrorNoDevice, kOffReason);
  if (const cudaError_t err = sticky(); err != cudaSuccess) return err;
  if (bytes == 0) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  if (bytes > device_capacity() - std::min(device_capacity(), g_device_used))
    return fail(cudaErrorMemoryAllocation,
                "cudaMalloc of " + std::to_string(bytes) + " bytes with " +
                    std::to_string(device_capacity() - g_device_used) + " free");
  // The buffer ends 16 bytes or less before an inaccessible page: overruns fault.
  const size_t ps = page_size();
  const size_t body = (bytes + 15) / 16 * 16;
  const size_t pages = (body + ps - 1) / ps * ps;
  void* m = mmap(nullptr, pages + ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return fail(cudaErrorMemoryAllocation, "mmap of " + std::to_string(pages + ps) + " bytes");
  mprotect(static_cast<char*>(m) + pages, ps, PROT_NONE);
  char* start = static_cast<char*>(m) + (pages - body);
  std::memset(start, 0xFF, body);  // uninitialised device memory is not zero
  g_allocs[reinterpret_cast<uintptr_t>(start)] = Alloc{bytes, m, pages + ps, true};
  g_device_used += bytes;
  *p = start;
  return cudaSuccess;
}
namespace {
// cudaFree / cudaFreeHost: both synchronise the device first; on a failed device the memory is
// still released and the sticky error returned.
cudaError_t release(void* p, bool device, const char* api) {
  if (!p) return cudaSuccess;
  const cudaError_t err = run_all_queues();
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  auto it = g_allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_allocs.end() || it->second.device != device)
    return fail(cudaErrorInvalidValue, std::string(api) + " of " + hex(p) + ", not a " +
                                           (device ? "device" : "pinned") + " allocation");
  if (device) {
    munmap(it->second.map, it->second.map_bytes);
    g_device_used -= it->second.bytes;
  } else {
    std::free(it->second.map);
  }
  g_allocs.erase(it);
  return err;
}
}  // namespace

cudaError_t cudaFree(void* p) {
  return release(p, true, "cudaFree");
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  if (!p) return fail(cudaErrorInvalidValue, "cudaHostAlloc: null result pointer");
  if (!enabled()) return fail(cudaErrorNoDevice, kOffReason);
  void* m = std::malloc(bytes ? bytes : 1);
  if (!m) return fail(cudaErrorMemoryAllocation, "cudaHostAlloc of " + std::to_string(bytes));
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_allocs[reinterpret_cast<uintptr_t>(m)] = Alloc{bytes ? bytes : 1, m, bytes, false};
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  return release(p, false, "cudaFreeHost");
}

namespace {
// Checks a copy's direction against what the pointers are; "" when it is right.
std::string check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const Mem d = classify(dst, bytes), s = classify(src, bytes);
  auto name = [](Mem m) {
    switch (m) {
      case Mem::Device:
        return "device memory";
      case Mem::Pinned:
        return "pinned host memory";
      case Mem::Pageable:
        return "pageable host memory";
      default:
        return "a range running past the end of an allocation";
    }
  };
  const bool dst_dev = d == Mem::Device, src_dev = s == Mem::Device;
  const bool dst_host = d == Mem::Pinned || d == Mem::Pageable;
  const bool src_host = s == Mem::Pinned || s == Mem::Pageable;
  bool ok = false;
  switch (kind) {
    case cudaMemcpyHostToDevice:
      ok = dst_dev && src_host;
      break;
    case cudaMemcpyDeviceToHost:
      ok = dst_host && src_dev;
      break;
    case cudaMemcpyDeviceToDevice:
      ok = dst_dev && src_dev;
      break;
    case cudaMemcpyHostToHost:
      ok = dst_host && src_host;
      break;
    case cudaMemcpyDefault:
      ok = d != Mem::Partial && s != Mem::Partial;
      break;
  }
  if (ok) return "";
  return "copy of " + std::to_string(bytes) + " bytes to " + hex(dst) + " (" + name(d) + ") from " +
         hex(src) + " (" + name(s) + "), kind " + std::to_string(kind);
}
}  // namespace

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (!enabled()) return fail(cudaErrorNoDevice, kOffReason);
  if (bytes == 0) return cudaSuccess;
  if (const std::string bad = check_copy(dst, src, bytes, kind); !bad.empty())
    return fail(cudaErrorInvalidValue, bad);
  if (const cudaError_t err = run_queue(&g_legacy_stream); err != cudaSuccess) return err;
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s) {
  if (!enabled()) return fail(cudaErrorNoDevice, kOffReason);
  if (const cudaError_t err = sticky(); err != cudaSuccess) return err;
  if (!valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync stream");
  if (bytes == 0) return cudaSuccess;
  if (const std::string bad = check_copy(dst, src, bytes, kind); !bad.empty())
    return fail(cudaErrorInvalidValue, bad);
  const Mem d = classify(dst, bytes), sm = classify(src, bytes);
  if (sm == Mem::Pageable) {
    // Staged at the call (the runtime copies pageable sources before returning).
    auto staged = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + bytes);
    enqueue(s, [=](std::string&) {
      std::memcpy(dst, staged->data(), bytes);
      return cudaSuccess;
    });
  } else {
    enqueue(s, [=](std::string&) {
      std::memcpy(dst, src, bytes);
      return cudaSuccess;
    });
  }
  // A copy into pageable host memory returns when it has completed.
  if (d == Mem::Pageable) return run_queue(stream_of(s));
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s) {
  if (!enabled()) return fail(cudaErrorNoDevice, kOffReason);
  if (const cudaError_t err = sticky(); err != cudaSuccess) return err;
  if (!valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaMemsetAsync stream");
  if (bytes == 0) return cudaSuccess;
  if (classify(dst, bytes) != Mem::Device)
    return fail(cudaErrorInvalidValue, "cudaMemsetAsync of " + std::to_string(bytes) +
                                           " bytes at " + hex(dst) + ": not device memory");
  enqueue(s, [=](std::string&) {
    std::memset(dst, value, bytes);
    return cudaSuccess;
  });
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* s) {
  return cudaStreamCreateWithFlags(s, 0);
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  if (!s) return fail(cudaErrorInvalidValue, "null stream pointer");
  if (!enabled()) return fail(cudaErrorNoDevice, kOffReason);
  *s = new CUstream_st;
  std::lock_guard<std::recursive_mutex> lock(g_exec_mutex);
  g_streams.push_back(*s);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s || !valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy");
  std::lock_guard<std::recursive_mutex> lock(g_exec_mutex);
  const cudaError_t err = run_queue(s);  // pending work completes before the stream goes
  g_streams.erase(std::find(g_streams.begin(), g_streams.end(), s));
  delete s;
  return err;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (!valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize");
  return run_queue(stream_of(s));
}
cudaError_t cudaDeviceSynchronize() {
  return run_all_queues();
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  if (!e) return fail(cudaErrorInvalidValue, "null event pointer");
  if (!enabled()) return fail(cudaErrorNoDevice, kOffReason);
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy of a null event");
  std::lock_guard<std::recursive_mutex> lock(g_exec_mutex);
  if (e->pending > 0)
    e->destroyed = true;  // CUDA allows it: the resources go once the record has run
  else
    delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (const cudaError_t err = sticky(); err != cudaSuccess) return err;
  if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord of a null event");
  if (!valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord stream");
  std::lock_guard<std::recursive_mutex> lock(g_exec_mutex);
  e->recorded = true;
  e->done = false;
  ++e->pending;
  enqueue(s, [e](std::string&) {
    e->when = Clock::now();
    e->done = true;
    if (--e->pending == 0 && e->destroyed) delete e;
    return cudaSuccess;
  });
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!ms || !a || !b) return fail(cudaErrorInvalidValue, "cudaEventElapsedTime: null argument");
  if (!a->recorded || !b->recorded)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: event never recorded");
  if (!a->done || !b->done)
    return fail(cudaErrorNotReady,
                "cudaEventElapsedTime: an event has not completed (synchronise first)");
  *ms = std::chrono::duration<float, std::milli>(b->when - a->when).count();
  return cudaSuccess;
}
