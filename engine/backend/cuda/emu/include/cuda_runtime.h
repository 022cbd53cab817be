// The CUDA emulator's runtime header: what cuda_ops.cu and cuda_probe.cu use of the CUDA runtime
// API and of the CUDA C++ kernel language, implemented on the CPU (emu.cpp), so that the CUDA
// backend's own kernels and host code run - and are tested - on machines without a GPU or nvcc.
//
// This file is found as <cuda_runtime.h> only by the emulator's translation units
// (cuda_ops_emu.cpp, cuda_probe_emu.cpp); nvcc builds use the real toolkit header.
//
// Execution model (the semantics real hardware guarantees, and nothing more where that helps
// find bugs):
//   * One thread block runs at a time; its threads are fibers on the launching OS thread, run in
//     turn until each reaches __syncthreads (a block barrier: released when every thread of the
//     block waits at the same call site), __shfl_xor_sync (a warp exchange) or its end. A thread
//     that exits while others wait at a barrier, barriers at different call sites, and a
//     shuffle whose partner lane is not at the same shuffle are execution errors.
//   * `__shared__` variables are function statics (one block at a time makes that the block's
//     shared memory): a block starts with what the previous block left, as stale as a device's
//     uninitialised shared memory (not poisoned). Dynamic shared memory is a per-launch buffer
//     filled with 0xFF bytes (MOELAB_DYNAMIC_SHARED).
//   * An execution error (a failed launch) is sticky as on a device: every later call returns
//     it until cuda_emu::reset_device().
//   * Streams are queues executed when the host synchronises (cudaStreamSynchronize, a copy to
//     pageable host memory, cudaFree), never earlier, so results read before a synchronisation
//     are stale as they may be on a GPU. Asynchronous copies from pinned memory read it when
//     they execute; from pageable memory when enqueued (as the CUDA runtime's staging does).
//   * Device memory comes from its own allocations, filled with 0xFF bytes (NaN floats, -1
//     integers) so reliance on zeroed memory shows, and followed by an inaccessible page so
//     that reads past the end fault; the fault handler names the kernel, block and thread.
//     Kernel pointer arguments and copy directions are checked against the allocation table.
//   * Launch limits of a compute-capability 9.0 device (1024 threads per block, grid.y/z <=
//     65535, 48 KiB of dynamic shared memory) are errors, as on the device.
//
// Enabled only when the environment variable MOELAB_CUDA_EMULATOR=1; otherwise
// cudaGetDeviceCount reports no device with the reason. MOELAB_CUDA_EMULATOR_MEMORY=<bytes>
// sets the emulated device memory (default: the host's available memory), so out-of-memory
// paths can be tested; MOELAB_CUDA_EMULATOR_CUBLAS=0 makes the emulated libcublas unavailable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define MOELAB_CUDA_EMU 1

// ---- kernel language -------------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// One block runs at a time (and kernels one at a time per process), so a function-static
// variable is the running block's shared memory.
#define __shared__ static

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

// The running thread's coordinates (set by the scheduler before it resumes a fiber), read
// through functions: GCC's UBSan null check misfires on a thread_local read directly in
// code that runs on a fiber stack.
namespace moelab::cuda_emu {
const uint3& thread_idx();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
}  // namespace moelab::cuda_emu
#define threadIdx (::moelab::cuda_emu::thread_idx())
#define blockIdx (::moelab::cuda_emu::block_idx())
#define blockDim (::moelab::cuda_emu::block_dim())
#define gridDim (::moelab::cuda_emu::grid_dim())

// ---- runtime API (the subset the backend uses) -------------------------------------------------

enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaHostAllocDefault = 0;

struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major;
  int minor;
  int multiProcessorCount;
  int maxThreadsPerBlock;
  size_t sharedMemPerBlock;
  int warpSize;
};

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t err);
const char* cudaGetErrorString(cudaError_t err);  // with the emulator's detail of the last error

cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s);

cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();

cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);

namespace moelab::cuda_emu {

// ---- device-side primitives --------------------------------------------------------------------

/// __syncthreads at `where` (the call site: barriers at different sites are an error).
void sync_threads(std::source_location where = std::source_location::current());
/// Warp exchange of up to 8 bytes: returns lane (lane ^ lane_mask)'s `bits`. The partner must be
/// at the same call site with the same lane mask in the same round.
uint64_t shfl_xor(unsigned mask, uint64_t bits, int lane_mask, int width,
                  std::source_location where);
/// The running launch's dynamic shared memory (its size was the launch's third argument).
void* dynamic_shared_memory();

// ---- launches ----------------------------------------------------------------------------------

/// True when p is null or points into device memory (a cudaMalloc allocation).
bool is_device_pointer_or_null(const void* p);
/// Records a launch error (returned by the next cudaGetLastError) with its detail.
void set_launch_error(cudaError_t err, const char* kernel, const char* detail);

struct Launch {
  dim3 grid, block;
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
  const char* kernel = "";
};
/// Enqueues a kernel: `thread` runs one CUDA thread (called for every thread of every block with
/// threadIdx / blockIdx set); validates the configuration first (errors: cudaGetLastError).
void enqueue_kernel(const Launch& l, void (*thread)(void* closure), void* closure,
                    void (*destroy)(void* closure));

// Kernel arguments that hold device pointers inside a struct declare them through an ADL hook
// `emu_device_pointers(const T&)` returning {name, pointer} pairs (cuda_ops.cu: AttnArgs).
/// Checks one kernel argument: a pointer must be null or device memory. Returns false after
/// recording the error (the launch is then not made, as a failed launch on a device).
template <typename T>
bool check_argument(const T& v, int index, const char* kernel) {
  if constexpr (std::is_pointer_v<T>) {
    if (!is_device_pointer_or_null(v)) {
      const std::string detail = "argument " + std::to_string(index) + " is not device memory";
      set_launch_error(cudaErrorInvalidDevicePointer, kernel, detail.c_str());
      return false;
    }
  } else if constexpr (requires { emu_device_pointers(v); }) {
    // Structs holding device pointers declare them through this ADL hook (cuda_ops.cu: AttnArgs).
    for (const auto& [name, p] : emu_device_pointers(v))
      if (!is_device_pointer_or_null(p)) {
        const std::string detail =
            "argument " + std::to_string(index) + "." + name + " is not device memory";
        set_launch_error(cudaErrorInvalidDevicePointer, kernel, detail.c_str());
        return false;
      }
  }
  return true;
}

template <typename... P>
struct Launcher {
  Launch launch;
  void (*kernel)(P...);
  template <typename... A>
  void operator()(A&&... a) const {
    // Arguments are converted to the parameter types and copied at launch, as CUDA does.
    using Args = std::tuple<std::decay_t<P>...>;
    struct Closure {
      void (*kernel)(P...);
      Args args;
    };
    auto* c = new Closure{kernel, Args(std::forward<A>(a)...)};
    const bool ok = std::apply(
        [&](const auto&... v) {
          int i = 0;
          return (check_argument(v, i++, launch.kernel) && ...);
        },
        c->args);
    if (!ok) {
      delete c;
      return;
    }
    enqueue_kernel(
        launch,
        [](void* p) {
          auto* cl = static_cast<Closure*>(p);
          std::apply(cl->kernel, cl->args);
        },
        c, [](void* p) { delete static_cast<Closure*>(p); });
  }
};

template <typename... P>
Launcher<P...> launch(dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t s, const char* name,
                      void (*kernel)(P...)) {
  return Launcher<P...>{Launch{grid, block, shared_bytes, s, name}, kernel};
}

/// Clears a failed device (the sticky error of a failed launch, and all queued work), as
/// cudaDeviceReset does; for tests that provoke execution errors.
void reset_device();

/// Sets the emulated device memory in bytes (tests of out-of-memory paths); 0 restores the
/// default (MOELAB_CUDA_EMULATOR_MEMORY, else the host's available memory at first use).
void set_memory_capacity(size_t bytes);

/// The emulated libcublas's entry points by name (cublasCreate_v2, cublasDestroy_v2,
/// cublasSetStream_v2, cublasGetVersion_v2, cublasSgemm_v2), or null where
/// MOELAB_CUDA_EMULATOR_CUBLAS=0. Sgemm runs on the handle's stream with cuBLAS's column-major
/// semantics and argument checks (status 7 = CUBLAS_STATUS_INVALID_VALUE).
void* cublas_symbol(const char* name);

}  // namespace moelab::cuda_emu

inline void __syncthreads(std::source_location where = std::source_location::current()) {
  moelab::cuda_emu::sync_threads(where);
}

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                         std::source_location where = std::source_location::current()) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  bits = moelab::cuda_emu::shfl_xor(mask, bits, lane_mask, width, where);
  T out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

// `MOELAB_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...)` is
// `kernel<<<grid, block, shared_bytes, stream>>>(args...)` (cuda_ops.cu defines it for nvcc).
#define MOELAB_LAUNCH(g, b, m, s, ...) \
  ::moelab::cuda_emu::launch((g), (b), (m), (s), #__VA_ARGS__, __VA_ARGS__)
#define MOELAB_DYNAMIC_SHARED(T, name) \
  T* name = static_cast<T*>(::moelab::cuda_emu::dynamic_shared_memory())
