#pragma once
#include <string>

namespace moelab {
extern const char* const kVersion;
/// Build facts for bug reports: compiler, build type, backends compiled in.
std::string build_description();
}  // namespace moelab
