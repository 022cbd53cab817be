// The backend interface (backend.h): what every build has, and the CUDA entry points of a
// build without nvcc (they say why there is no CUDA).
#include "backend/backend.h"

#include "moelab/core/error.h"

namespace moelab::backend {

std::mutex& shared_stats_mutex() {
  static std::mutex m;
  return m;
}

#ifndef MOELAB_HAVE_CUDA
std::shared_ptr<Model> make_cuda_model(std::shared_ptr<const models::CpuModel>,
                                       const LoadOptions&) {
  throw Error(ErrorKind::BadInput,
              "this build has no CUDA backend (configured without nvcc or with MOELAB_CUDA=OFF)",
              {.subject = "backend 'cuda'"});
}

std::shared_ptr<const models::CpuModel> host_model(const std::shared_ptr<const Model>& model) {
  return std::dynamic_pointer_cast<const models::CpuModel>(model);
}

bool is_cuda_model(const Model&) {
  return false;
}

std::unique_ptr<Context> make_cuda_context(std::shared_ptr<const Model>, const ContextParams&,
                                           std::shared_ptr<PolicyStats>) {
  throw Error(ErrorKind::BadInput,
              "this build has no CUDA backend (configured without nvcc or with MOELAB_CUDA=OFF)",
              {.subject = "backend 'cuda'"});
}
#endif

}  // namespace moelab::backend
