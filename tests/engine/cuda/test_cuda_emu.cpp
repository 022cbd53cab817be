// The CUDA emulator's rules (engine/backend/cuda/emu/include/cuda_runtime.h): the bugs that a
// device would show - and that the emulator must show too, or the parity harness run on it
// (test_cuda_parity_emu) would prove little: missing or divergent barriers, shuffles with exited
// lanes, launch limits, host pointers passed to kernels, copies in the wrong direction or past
// an allocation, results read before a synchronisation, uninitialised device memory, reads past
// the end of an allocation, cuBLAS's column-major arguments, events, and running out of device
// memory (at the raw API, at model load and for the KV cache, after which the CPU still works).
#include <cuda_runtime.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <QtTest>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cuda/cuda_ops.h"
#include "moelab/core/error.h"
#include "moelab/model/model.h"
#include "test_support.h"

using namespace moelab;

namespace {

constexpr int kN = 64;

__global__ void k_reverse(const int* in, int* out, bool barrier) {
  __shared__ int buf[kN];
  const int t = static_cast<int>(threadIdx.x);
  buf[t] = in[t];
  if (barrier) __syncthreads();
  out[t] = buf[kN - 1 - t];
}
__global__ void k_divergent_barrier(int* out) {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    __syncthreads();
  out[threadIdx.x] = 1;
}
__global__ void k_exit_before_barrier(int* out) {
  if (threadIdx.x == 5) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}
__global__ void k_warp_sum(const double* in, double* out, int active) {
  if (static_cast<int>(threadIdx.x) >= active) return;
  double v = in[threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  out[threadIdx.x] = v;
}
__global__ void k_split_shuffles(double* out) {
  double v = threadIdx.x;
  if (threadIdx.x < 16)
    v = __shfl_xor_sync(0xffffffffu, v, 16);
  else
    v = __shfl_xor_sync(0xffffffffu, v, 16);
  out[threadIdx.x] = v;
}
__global__ void k_dynamic_shared(const float* in, float* out) {
  MOELAB_DYNAMIC_SHARED(float, s);
  const unsigned t = threadIdx.x;
  s[t] = in[t] * 2.0f;
  __syncthreads();
  out[t] = s[blockDim.x - 1 - t] + static_cast<float>(blockIdx.x);
}
__global__ void k_read(const float* in, float* out, int64_t at) {
  out[0] = in[at];
}

std::string last_error_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

struct DevMem {
  void* p = nullptr;
  explicit DevMem(size_t bytes) {
    if (cudaMalloc(&p, bytes) != cudaSuccess) qFatal("cudaMalloc");
  }
  ~DevMem() { cudaFree(p); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

}  // namespace

class TestCudaEmu : public QObject {
  Q_OBJECT
  cudaStream_t s_ = nullptr;

 private slots:
  void initTestCase() {
    int n = 0;
    QCOMPARE(cudaGetDeviceCount(&n), cudaSuccess);  // ctest sets MOELAB_CUDA_EMULATOR=1
    QCOMPARE(n, 1);
    cudaDeviceProp prop{};
    QCOMPARE(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
    QCOMPARE(QString(prop.name), QString("moelab CUDA emulator (CPU)"));
    QCOMPARE(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), cudaSuccess);
  }
  void cleanupTestCase() { cudaStreamDestroy(s_); }

  // A barrier makes the block's writes visible; without it a thread reads shared memory that
  // later threads have not written yet - as it may on a device.
  void barrier_orders_shared_memory() {
    std::vector<int> in(kN), out(kN, -1);
    for (int i = 0; i < kN; ++i) in[i] = 100 + i;
    DevMem din(kN * 4), dout(kN * 4);
    QCOMPARE(cudaMemcpy(din.p, in.data(), kN * 4, cudaMemcpyHostToDevice), cudaSuccess);
    MOELAB_LAUNCH(1, kN, 0, s_, k_reverse)(din.as<int>(), dout.as<int>(), true);
    QCOMPARE(cudaGetLastError(), cudaSuccess);
    QCOMPARE(cudaMemcpyAsync(out.data(), dout.p, kN * 4, cudaMemcpyDeviceToHost, s_), cudaSuccess);
    for (int i = 0; i < kN; ++i) QCOMPARE(out[i], 100 + kN - 1 - i);
    // Without the barrier thread 0 runs to its end before thread 63 has stored its value: it
    // reads what shared memory held before (the first launch's values, not the new input).
    for (int i = 0; i < kN; ++i) in[i] = 500 + i;
    QCOMPARE(cudaMemcpy(din.p, in.data(), kN * 4, cudaMemcpyHostToDevice), cudaSuccess);
    MOELAB_LAUNCH(1, kN, 0, s_, k_reverse)(din.as<int>(), dout.as<int>(), false);
    QCOMPARE(cudaMemcpyAsync(out.data(), dout.p, kN * 4, cudaMemcpyDeviceToHost, s_), cudaSuccess);
    int wrong = 0;
    for (int i = 0; i < kN; ++i) wrong += out[i] != 500 + kN - 1 - i;
    QVERIFY2(wrong >= kN / 2, qPrintable(QString::number(wrong)));
  }

  void divergent_barriers_fail_the_launch() {
    DevMem d(kN * 4);
    MOELAB_LAUNCH(1, 32, 0, s_, k_divergent_barrier)(d.as<int>());
    QCOMPARE(cudaGetLastError(), cudaSuccess);  // an execution error: reported at the sync
    const cudaError_t e = cudaStreamSynchronize(s_);
    QCOMPARE(e, cudaErrorLaunchFailure);
    QVERIFY2(last_error_text(e).find("wait at different __syncthreads") != std::string::npos,
             last_error_text(e).c_str());
    // Sticky, as on a device: every later call reports the failure until the device is reset.
    void* p = nullptr;
    QCOMPARE(cudaMalloc(&p, 16), cudaErrorLaunchFailure);
    QCOMPARE(cudaStreamSynchronize(s_), cudaErrorLaunchFailure);
    cuda_emu::reset_device();
    MOELAB_LAUNCH(1, 32, 0, s_, k_exit_before_barrier)(d.as<int>());
    const cudaError_t e2 = cudaStreamSynchronize(s_);
    QCOMPARE(e2, cudaErrorLaunchFailure);
    QVERIFY2(last_error_text(e2).find("thread (5,0,0) exited while the others wait") !=
                 std::string::npos,
             last_error_text(e2).c_str());
    cuda_emu::reset_device();
    // The device works again after the reset.
    MOELAB_LAUNCH(1, 32, 0, s_, k_reverse)(d.as<int>(), d.as<int>() + 32, true);
    QCOMPARE(cudaStreamSynchronize(s_), cudaSuccess);
  }

  void warp_shuffles_exchange_between_lanes() {
    std::vector<double> in(64), out(64, 0);
    for (int i = 0; i < 64; ++i) in[i] = i + 0.25;
    DevMem din(64 * 8), dout(64 * 8);
    QCOMPARE(cudaMemcpy(din.p, in.data(), 64 * 8, cudaMemcpyHostToDevice), cudaSuccess);
    MOELAB_LAUNCH(1, 64, 0, s_, k_warp_sum)(din.as<double>(), dout.as<double>(), 64);
    QCOMPARE(cudaMemcpyAsync(out.data(), dout.p, 64 * 8, cudaMemcpyDeviceToHost, s_), cudaSuccess);
    double w0 = 0, w1 = 0;
    for (int i = 0; i < 32; ++i) {
      w0 += in[i];
      w1 += in[32 + i];
    }
    for (int i = 0; i < 64; ++i) QCOMPARE(out[i], i < 32 ? w0 : w1);
    // A lane of the full mask that exited: lane 30 waits for lane 31 in vain.
    MOELAB_LAUNCH(1, 32, 0, s_, k_warp_sum)(din.as<double>(), dout.as<double>(), 31);
    const cudaError_t e = cudaStreamSynchronize(s_);
    QCOMPARE(e, cudaErrorLaunchFailure);
    QVERIFY2(last_error_text(e).find("not at the same __shfl_xor_sync") != std::string::npos,
             last_error_text(e).c_str());
    cuda_emu::reset_device();
    // Lanes at different shuffles (another call site) in the same round.
    MOELAB_LAUNCH(1, 32, 0, s_, k_split_shuffles)(dout.as<double>());
    const cudaError_t e2 = cudaStreamSynchronize(s_);
    QCOMPARE(e2, cudaErrorLaunchFailure);
    QVERIFY2(last_error_text(e2).find("not at the same __shfl_xor_sync") != std::string::npos,
             last_error_text(e2).c_str());
    cuda_emu::reset_device();
  }

  void dynamic_shared_memory_per_launch() {
    const int nt = 128, nb = 3;
    std::vector<float> in(nt), out(nt, 0);
    for (int i = 0; i < nt; ++i) in[i] = static_cast<float>(i);
    DevMem din(nt * 4), dout(nt * 4);
    QCOMPARE(cudaMemcpy(din.p, in.data(), nt * 4, cudaMemcpyHostToDevice), cudaSuccess);
    MOELAB_LAUNCH(nb, nt, nt * sizeof(float), s_, k_dynamic_shared)
    (din.as<float>(), dout.as<float>());
    QCOMPARE(cudaMemcpyAsync(out.data(), dout.p, nt * 4, cudaMemcpyDeviceToHost, s_), cudaSuccess);
    // Every block writes the same outputs; the last block (2) wins.
    for (int i = 0; i < nt; ++i) QCOMPARE(out[i], 2.0f * (nt - 1 - i) + 2.0f);
  }

  void launch_limits_are_configuration_errors() {
    DevMem d(4096);
    MOELAB_LAUNCH(1, 1025, 0, s_, k_read)(d.as<float>(), d.as<float>(), 0);
    QCOMPARE(cudaGetLastError(), cudaErrorInvalidConfiguration);
    MOELAB_LAUNCH(dim3(1, 65536), 32, 0, s_, k_read)(d.as<float>(), d.as<float>(), 0);
    QCOMPARE(cudaGetLastError(), cudaErrorInvalidConfiguration);
    MOELAB_LAUNCH(1, 32, 49 * 1024, s_, k_read)(d.as<float>(), d.as<float>(), 0);
    const cudaError_t e = cudaGetLastError();
    QCOMPARE(e, cudaErrorInvalidConfiguration);
    QVERIFY2(last_error_text(e).find("48 KiB") != std::string::npos, last_error_text(e).c_str());
    QCOMPARE(cudaStreamSynchronize(s_), cudaSuccess);  // nothing was queued
  }

  void host_pointers_are_not_kernel_arguments() {
    DevMem d(4096);
    std::vector<float> host(16, 7.0f);
    MOELAB_LAUNCH(1, 1, 0, s_, k_read)(host.data(), d.as<float>(), 0);
    const cudaError_t e = cudaGetLastError();
    QCOMPARE(e, cudaErrorInvalidDevicePointer);
    QVERIFY2(
        last_error_text(e).find("k_read: argument 0 is not device memory") != std::string::npos,
        last_error_text(e).c_str());
    QCOMPARE(cudaStreamSynchronize(s_), cudaSuccess);
    QCOMPARE(host[0], 7.0f);
  }

  void copies_are_checked_against_allocations() {
    DevMem a(256), b(256);
    std::vector<char> host(512, 1);
    // Device to device declared as host to device.
    cudaError_t e = cudaMemcpy(a.p, b.p, 256, cudaMemcpyHostToDevice);
    QCOMPARE(e, cudaErrorInvalidValue);
    QVERIFY2(last_error_text(e).find("(device memory)") != std::string::npos,
             last_error_text(e).c_str());
    // Past the end of the allocation.
    e = cudaMemcpy(a.p, host.data(), 300, cudaMemcpyHostToDevice);
    QCOMPARE(e, cudaErrorInvalidValue);
    QVERIFY2(last_error_text(e).find("past the end of an allocation") != std::string::npos,
             last_error_text(e).c_str());
    QCOMPARE(cudaMemcpy(a.p, host.data(), 256, cudaMemcpyHostToDevice), cudaSuccess);
  }

  // Device work runs when the host synchronises: a pinned buffer filled by an asynchronous copy
  // holds the old bytes until then; a pinned source is read when the copy executes.
  void results_appear_at_synchronisation() {
    DevMem d(64);
    void* pinned = nullptr;
    QCOMPARE(cudaHostAlloc(&pinned, 64, cudaHostAllocDefault), cudaSuccess);
    std::memset(pinned, 0x11, 64);
    QCOMPARE(cudaMemsetAsync(d.p, 0x22, 64, s_), cudaSuccess);
    QCOMPARE(cudaMemcpyAsync(pinned, d.p, 64, cudaMemcpyDeviceToHost, s_), cudaSuccess);
    QCOMPARE(static_cast<unsigned char*>(pinned)[0], 0x11);  // not yet
    QCOMPARE(cudaStreamSynchronize(s_), cudaSuccess);
    QCOMPARE(static_cast<unsigned char*>(pinned)[63], 0x22);
    // Host to device from pinned memory overwritten before the sync: the device gets the new.
    std::memset(pinned, 0x33, 64);
    QCOMPARE(cudaMemcpyAsync(d.p, pinned, 64, cudaMemcpyHostToDevice, s_), cudaSuccess);
    std::memset(pinned, 0x44, 64);
    std::vector<unsigned char> back(64);
    QCOMPARE(cudaMemcpyAsync(back.data(), d.p, 64, cudaMemcpyDeviceToHost, s_), cudaSuccess);
    QCOMPARE(back[0], 0x44);  // a pageable destination: the copy returned completed
    QCOMPARE(cudaFreeHost(pinned), cudaSuccess);
  }

  void device_memory_starts_as_garbage() {
    DevMem d(16);
    float f[4];
    QCOMPARE(cudaMemcpy(f, d.p, 16, cudaMemcpyDeviceToHost), cudaSuccess);
    for (float v : f) QVERIFY(std::isnan(v));
  }

  // A read past the end of an allocation faults (the page after it is inaccessible), and the
  // emulator names the kernel, block and thread. In a child process: it dies.
  void reads_past_the_end_fault() {
    int fds[2];
    QCOMPARE(pipe(fds), 0);
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(fds[1], 2);
      close(fds[0]);
      void* p = nullptr;
      void* q = nullptr;
      cudaMalloc(&p, 1000);
      cudaMalloc(&q, 16);
      MOELAB_LAUNCH(dim3(2, 3), 1, 0, nullptr, k_read)
      (static_cast<float*>(p), static_cast<float*>(q), 1100);
      cudaDeviceSynchronize();
      _exit(0);  // not reached
    }
    close(fds[1]);
    // The message comes first; a crash handler chained after it (QtTest's) may then take long:
    // read for at most 30 s, then make sure the child is gone.
    std::string err;
    char buf[4096];
    auto complete = [&] {
      const size_t at = err.find("illegal memory access");
      return at != std::string::npos && err.find('\n', at) != std::string::npos;
    };
    for (int waited = 0; waited < 300 && !complete(); ++waited) {
      pollfd pfd{fds[0], POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) continue;
      const ssize_t r = read(fds[0], buf, sizeof buf);
      if (r <= 0) break;
      err.append(buf, static_cast<size_t>(r));
    }
    close(fds[0]);
    kill(pid, SIGKILL);
    int status = 0;
    QCOMPARE(waitpid(pid, &status, 0), pid);
    QVERIFY2(WIFSIGNALED(status), err.c_str());
#if !defined(__SANITIZE_ADDRESS__)
    QVERIFY2(err.find("CUDA emulator: illegal memory access in kernel k_read at block (0,0,0) "
                      "thread (0,0,0)") != std::string::npos,
             err.c_str());
#endif
  }

  void cublas_sgemm_is_column_major() {
    // C (3x2) = A^T (3x4 from A stored 4x3, lda 5) * B (4x2, ldb 4), column-major.
    const int m = 3, n = 2, k = 4, lda = 5, ldb = 4, ldc = 3;
    std::vector<float> A(lda * m), B(ldb * n), C(ldc * n, -1), want(ldc * n);
    for (size_t i = 0; i < A.size(); ++i) A[i] = static_cast<float>(i % 7) - 2.0f;
    for (size_t i = 0; i < B.size(); ++i) B[i] = static_cast<float>(i % 5) * 0.5f;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float acc = 0;
        for (int l = 0; l < k; ++l) acc += A[l + i * lda] * B[l + j * ldb];
        want[i + j * ldc] = 2.0f * acc;
      }
    DevMem dA(A.size() * 4), dB(B.size() * 4), dC(C.size() * 4);
    QCOMPARE(cudaMemcpy(dA.p, A.data(), A.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    QCOMPARE(cudaMemcpy(dB.p, B.data(), B.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    using Create = int (*)(void**);
    using SetStream = int (*)(void*, cudaStream_t);
    using Sgemm = int (*)(void*, int, int, int, int, int, const float*, const float*, int,
                          const float*, int, const float*, float*, int);
    auto create = reinterpret_cast<Create>(cuda_emu::cublas_symbol("cublasCreate_v2"));
    auto set_stream = reinterpret_cast<SetStream>(cuda_emu::cublas_symbol("cublasSetStream_v2"));
    auto sgemm = reinterpret_cast<Sgemm>(cuda_emu::cublas_symbol("cublasSgemm_v2"));
    QVERIFY(create && set_stream && sgemm);
    void* h = nullptr;
    QCOMPARE(create(&h), 0);
    QCOMPARE(set_stream(h, s_), 0);
    const float alpha = 2.0f, beta = 0.0f;
    // beta = 0: C's garbage is not read.
    QCOMPARE(sgemm(h, 1, 0, m, n, k, &alpha, dA.as<float>(), lda, dB.as<float>(), ldb, &beta,
                   dC.as<float>(), ldc),
             0);
    QCOMPARE(cudaStreamSynchronize(s_), cudaSuccess);
    QCOMPARE(cudaMemcpy(C.data(), dC.p, C.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t i = 0; i < C.size(); ++i) QCOMPARE(C[i], want[i]);
    // lda smaller than op(A)'s stored rows: CUBLAS_STATUS_INVALID_VALUE.
    QCOMPARE(sgemm(h, 1, 0, m, n, k, &alpha, dA.as<float>(), k - 1, dB.as<float>(), ldb, &beta,
                   dC.as<float>(), ldc),
             7);
    reinterpret_cast<int (*)(void*)>(cuda_emu::cublas_symbol("cublasDestroy_v2"))(h);
  }

  void events_complete_at_synchronisation() {
    cudaEvent_t a = nullptr, b = nullptr;
    QCOMPARE(cudaEventCreate(&a), cudaSuccess);
    QCOMPARE(cudaEventCreate(&b), cudaSuccess);
    DevMem d(1 << 20);
    QCOMPARE(cudaEventRecord(a, s_), cudaSuccess);
    QCOMPARE(cudaMemsetAsync(d.p, 0, 1 << 20, s_), cudaSuccess);
    QCOMPARE(cudaEventRecord(b, s_), cudaSuccess);
    float ms = -1;
    QCOMPARE(cudaEventElapsedTime(&ms, a, b), cudaErrorNotReady);
    QCOMPARE(cudaStreamSynchronize(s_), cudaSuccess);
    QCOMPARE(cudaEventElapsedTime(&ms, a, b), cudaSuccess);
    QVERIFY(ms >= 0);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    // Destroying an event whose record has not run yet is allowed (resources go later).
    cudaEvent_t c = nullptr;
    QCOMPARE(cudaEventCreate(&c), cudaSuccess);
    QCOMPARE(cudaEventRecord(c, s_), cudaSuccess);
    QCOMPARE(cudaEventDestroy(c), cudaSuccess);
    QCOMPARE(cudaStreamSynchronize(s_), cudaSuccess);
  }

  // Out of device memory: the raw API, the backend's allocator (the message gives the numbers),
  // a model that does not fit (and the CPU still loads it), a KV cache that does not fit (and a
  // CPU context on the same model still runs).
  void out_of_device_memory() {
    cuda_emu::set_memory_capacity(size_t{1} << 20);
    void* p = nullptr;
    QCOMPARE(cudaMalloc(&p, size_t{2} << 20), cudaErrorMemoryAllocation);
    try {
      cuda::dmalloc(size_t{3} << 20, "test buffer");
      QFAIL("no error");
    } catch (const Error& e) {
      const std::string m = e.what();
      QVERIFY2(m.find("out of GPU memory: test buffer needs 3.0 MiB, 1.0 MiB of 1.0 MiB free") !=
                   std::string::npos,
               m.c_str());
    }
    MOELAB_REQUIRE_SHARED("fixtures/models/mixtral-moe");
    const std::string path = test::shared_path("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");
    LoadOptions lo;
    lo.backend = Backend::Cuda;
    try {
      Model::load(path, lo);
      QFAIL("no error");
    } catch (const Error& e) {
      const std::string m = e.what();
      QVERIFY2(m.find("GPU memory") != std::string::npos && m.find("free") != std::string::npos &&
                   m.find("MiB") != std::string::npos,
               m.c_str());
    }
    lo.backend = Backend::Cpu;
    QVERIFY(Model::load(path, lo));
    // Room for the weights (1.8 MiB) but not for a KV cache of 1M tokens.
    cuda_emu::set_memory_capacity(size_t{64} << 20);
    lo.backend = Backend::Cuda;
    auto model = Model::load(path, lo);
    QCOMPARE(QString::fromStdString(model_backend(*model)), QString("cuda"));
    ContextParams cp;
    cp.backend = Backend::Cuda;
    cp.n_ctx = 1 << 20;
    try {
      Context::create(model, cp);
      QFAIL("no error");
    } catch (const Error& e) {
      const std::string m = e.what();
      QVERIFY2(m.find("KV cache of 1048576 tokens needs") != std::string::npos, m.c_str());
    }
    cp.n_ctx = 64;
    auto gpu = Context::create(model, cp);
    cp.backend = Backend::Cpu;
    auto cpu = Context::create(model, cp);
    const std::vector<int32_t> toks = {1, 5, 9, 2};
    gpu->eval(toks);
    cpu->eval(toks);
    const auto a = gpu->logits(), b = cpu->logits();
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::fabs(a[i] - b[i])));
    QVERIFY2(d <= 1e-4, qPrintable(QString::number(d)));
    cuda_emu::set_memory_capacity(0);
  }
};

QTEST_GUILESS_MAIN(TestCudaEmu)
#include "test_cuda_emu.moc"
