// The backend interface (backend.h): what every build has. The CUDA entry points are in
// backend/cuda/cuda_context.cpp (every build compiles it; builds without nvcc link the CPU
// emulator's cuda_ops, which reports no device unless MOELAB_CUDA_EMULATOR=1).
#include "backend/backend.h"

#include "moelab/core/error.h"

namespace moelab::backend {

std::mutex& shared_stats_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace moelab::backend
