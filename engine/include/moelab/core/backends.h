// Which compute backends this build has and which of them can run on this machine.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moelab {

/// A compute backend as a user names it (--backend, LoadOptions::backend,
/// ContextParams::backend): the CPU, CUDA, or auto (the fastest available).
enum class Backend : uint8_t { Cpu, Cuda, Auto };

/// "cpu", "cuda", "auto".
const char* backend_name(Backend b);
/// The names parse_backend accepts: cpu, cuda, auto (for option checks and help texts).
const std::vector<std::string>& backend_names();
/// Parses a backend name. Throws moelab::Error (BadInput): "unknown backend 'NAME' (expected
/// cpu, cuda or auto)".
Backend parse_backend(std::string_view name);

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

/// The backend a run gets when the user asks for `requested`: Cpu or Cuda; falls back to Cpu
/// when CUDA is unavailable and logs one line saying why (auto never picks the emulator).
Backend resolve_backend(Backend requested);
/// resolve_backend on a name ("auto", "cpu", "cuda"), as "cpu" / "cuda"; an unknown name
/// resolves to "cpu" (callers validate names with parse_backend first).
std::string resolve_backend(const std::string& requested);

}  // namespace moelab
