// Helpers shared by the fuzz targets: a strict UTF-8 check and a check that fails loudly.
// A failed check prints what broke and aborts, which libFuzzer reports as a crash (and the
// replay drivers as a failed test).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace moelab::fuzz {

[[noreturn]] inline void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz check failed: %s", what);
  if (!detail.empty()) {
    std::fprintf(stderr, " [");
    for (unsigned char c : detail.substr(0, 200)) {
      if (c >= 0x20 && c < 0x7F)
        std::fputc(c, stderr);
      else
        std::fprintf(stderr, "\\x%02x", c);
    }
    std::fprintf(stderr, "%s]", detail.size() > 200 ? "..." : "");
  }
  std::fprintf(stderr, "\n");
  std::abort();
}

#define MOELAB_FUZZ_CHECK(cond, detail)                 \
  do {                                                  \
    if (!(cond)) ::moelab::fuzz::fail(#cond, (detail)); \
  } while (0)

/// Well-formed UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates (U+D800..U+DFFF),
/// nothing above U+10FFFF, no truncated sequences.
inline bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated
    const auto c1 = static_cast<unsigned char>(s[i + 1]);
    if (c1 < lo || c1 > hi) return false;
    for (int k = 2; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n + 1;
  }
  return true;
}

}  // namespace moelab::fuzz
