#include "moelab/core/error.h"

#include <cstdio>

namespace moelab {

namespace {
std::string compose(const std::string& detail, const ErrorWhere& where) {
  // "file: subject (byte N): detail", leaving out the parts that are not known.
  std::string out = where.file;
  if (!where.subject.empty()) out += (out.empty() ? "" : ": ") + where.subject;
  if (where.offset)
    out += (out.empty()             ? "at byte "
            : where.subject.empty() ? ", byte "
                                    : " (byte ") +
           std::to_string(*where.offset) + (where.subject.empty() ? "" : ")");
  if (!out.empty()) out += ": ";
  return out + detail;
}
}  // namespace

Error::Error(ErrorKind kind, std::string detail, ErrorWhere where)
    : std::runtime_error(compose(detail, where)),
      kind_(kind),
      detail_(std::move(detail)),
      where_(std::move(where)) {}

std::string format_bytes(uint64_t bytes) {
  char buf[64];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else if (bytes < (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  } else if (bytes < (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / 1073741824.0);
  }
  return buf;
}

}  // namespace moelab
