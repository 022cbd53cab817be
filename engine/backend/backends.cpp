#include "moelab/core/backends.h"

#include <thread>

#include "moelab/core/error.h"
#include "moelab/core/log.h"

#include "cuda/cuda_probe.h"

namespace moelab {

std::vector<BackendStatus> probe_backends() {
  std::vector<BackendStatus> out;
  out.push_back({"cpu", true, true,
                 std::to_string(std::thread::hardware_concurrency()) + " hardware threads"});
  static const BackendStatus cuda = [] {
    BackendStatus s{"cuda", true, false, {}};
    const auto p = cuda_probe();
    s.available = p.device_count > 0;
    s.detail = p.detail;
    s.emulated = p.emulated;
    return s;
  }();
  out.push_back(cuda);
  return out;
}

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::Cpu:
      return "cpu";
    case Backend::Cuda:
      return "cuda";
    case Backend::Auto:
      return "auto";
  }
  return "?";
}

const std::vector<std::string>& backend_names() {
  static const std::vector<std::string> v = {"cpu", "cuda", "auto"};
  return v;
}

Backend parse_backend(std::string_view name) {
  for (const Backend b : {Backend::Cpu, Backend::Cuda, Backend::Auto})
    if (name == backend_name(b)) return b;
  throw Error(ErrorKind::BadInput,
              "unknown backend '" + std::string(name) + "' (expected cpu, cuda or auto)");
}

Backend resolve_backend(Backend requested) {
  if (requested == Backend::Cpu) return Backend::Cpu;
  for (const auto& b : probe_backends()) {
    if (b.name != "cuda") continue;
    if (b.available && (requested == Backend::Cuda || !b.emulated)) return Backend::Cuda;
    if (b.available) return Backend::Cpu;  // auto does not pick the emulator
    log(requested == Backend::Cuda ? LogLevel::Warning : LogLevel::Info,
        "CUDA unavailable (" + b.detail + "); running on the CPU");
  }
  return Backend::Cpu;
}

std::string resolve_backend(const std::string& requested) {
  for (const Backend b : {Backend::Cpu, Backend::Cuda, Backend::Auto})
    if (requested == backend_name(b)) return backend_name(resolve_backend(b));
  return "cpu";
}

}  // namespace moelab
