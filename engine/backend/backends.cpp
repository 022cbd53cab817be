#include "moelab/core/backends.h"

#include <thread>

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

std::string resolve_backend(const std::string& requested) {
  if (requested == "cpu") return "cpu";
  for (const auto& b : probe_backends()) {
    if (b.name != "cuda") continue;
    if (b.available && (requested == "cuda" || !b.emulated)) return "cuda";
    if (b.available) return "cpu";  // "auto" does not pick the emulator
    if (requested == "cuda" || requested == "auto")
      log(requested == "cuda" ? LogLevel::Warning : LogLevel::Info,
          "CUDA unavailable (" + b.detail + "); running on the CPU");
  }
  return "cpu";
}

}  // namespace moelab
