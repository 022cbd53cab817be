#include "moelab/core/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace moelab {

namespace {
std::mutex g_mutex;
LogSink g_sink;
std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};

const char* prefix(LogLevel l) {
  switch (l) {
    case LogLevel::Debug:
      return "debug: ";
    case LogLevel::Info:
      return "";
    case LogLevel::Warning:
      return "warning: ";
    case LogLevel::Error:
      return "error: ";
  }
  return "";
}
}  // namespace

void set_log_sink(LogSink sink) {
  std::lock_guard lock(g_mutex);
  g_sink = std::move(sink);
}

void set_log_level(LogLevel l) {
  g_level = static_cast<int>(l);
}

void log(LogLevel level, const std::string& message) {
  if (static_cast<int>(level) < g_level.load()) return;
  std::lock_guard lock(g_mutex);
  if (g_sink) {
    g_sink(level, message);
  } else {
    std::fprintf(stderr, "moelab: %s%s\n", prefix(level), message.c_str());
  }
}

}  // namespace moelab
