// memcpy that accepts empty ranges: an empty std::vector's data() may be null, and memcpy with
// a null pointer is undefined even for 0 bytes (UBSan flags it).
#pragma once

#include <cstddef>
#include <cstring>

namespace moelab::storage::detail {
inline void copy_bytes(void* dst, const void* src, std::size_t n) {
  if (n) std::memcpy(dst, src, n);
}
}  // namespace moelab::storage::detail
