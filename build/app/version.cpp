#include "version.h"

#include "moelab/core/backends.h"

namespace moelab {
const char* const kVersion = "0.1.0";
std::string build_description() {
  std::string s = "build: Release, GNU 12.2.0";
  for (const auto& b : probe_backends())
    s += "\nbackend " + b.name + ": " + (b.compiled ? "" : "not ") + "compiled" +
         (b.compiled ? (b.available ? ", available - " : ", unavailable - ") : " - ") + b.detail;
  return s;
}
}  // namespace moelab
