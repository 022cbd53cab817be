#include <cuda_runtime.h>

#include <cstdio>

#include "cuda_probe.h"

namespace moelab {

CudaProbe cuda_probe() {
  CudaProbe p;
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    // Without a driver this is cudaErrorInsufficientDriver, not cudaErrorNoDevice.
    p.detail = std::string("no usable NVIDIA GPU: ") + cudaGetErrorString(err);
    cudaGetLastError();
    return p;
  }
  if (n == 0) {
    p.detail = "no NVIDIA GPU found";
    return p;
  }
  p.device_count = n;
#ifdef MOELAB_CUDA_EMU
  p.emulated = true;
#endif
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    char buf[512];
    std::snprintf(buf, sizeof buf, "%s%s (sm_%d%d, %.1f GiB)", i ? "; " : "", prop.name, prop.major,
                  prop.minor, prop.totalGlobalMem / 1073741824.0);
    p.detail += buf;
  }
  return p;
}

}  // namespace moelab
