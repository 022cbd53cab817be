// Engine logging: one process-wide sink the app can redirect (the GUI shows it in a log panel,
// the CLI prints to stderr). Thread-safe.
#pragma once

#include <functional>
#include <string>

namespace moelab {

enum class LogLevel { Debug, Info, Warning, Error };

using LogSink = std::function<void(LogLevel, const std::string&)>;

/// Replaces the sink (nullptr restores the default: Info and above to stderr).
void set_log_sink(LogSink sink);
/// Only messages at or above this level reach the sink (default Info).
void set_log_level(LogLevel min_level);
void log(LogLevel level, const std::string& message);
inline void log_info(const std::string& m) {
  log(LogLevel::Info, m);
}
inline void log_warning(const std::string& m) {
  log(LogLevel::Warning, m);
}

}  // namespace moelab
