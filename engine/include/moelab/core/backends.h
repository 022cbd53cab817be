// Which compute backends this build has and which of them can run on this machine.
#pragma once

#include <string>
#include <vector>

namespace moelab {

struct BackendStatus {
  std::string name;        // "cpu", "cuda"
  bool compiled = false;   // built into this binary
  bool available = false;  // usable on this machine now
  std::string detail;      // device names, or why it is unavailable ("no NVIDIA driver ...")
  bool emulated = false;   // "cuda" on the CPU emulator (MOELAB_CUDA_EMULATOR=1): slow, for
                           // testing; "auto" never picks it, only an explicit "cuda"
};

/// Probes every backend (cheap; the CUDA probe runs once per process and is cached).
std::vector<BackendStatus> probe_backends();

/// The backend a run gets when the user asks for `requested` ("auto", "cpu", "cuda"): falls
/// back to "cpu" when CUDA is unavailable and logs one line saying why.
std::string resolve_backend(const std::string& requested);

}  // namespace moelab
