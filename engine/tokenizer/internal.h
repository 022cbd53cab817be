// Internals shared by the tokenizer sources (not installed).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "moelab/tokenizer/tokenizer.h"

namespace moelab {

/// The vocabulary as read from tokenizer.ggml.*.
struct Tokenizer::Vocab {
  std::vector<std::string> text;                        // tokenizer.ggml.tokens
  std::vector<float> score;                             // tokenizer.ggml.scores (0 when absent)
  std::vector<uint32_t> attr;                           // TokenAttr bits
  std::unordered_map<std::string_view, int32_t> to_id;  // views into `text`
  /// Tokens matched in raw text before tokenization (control, user-defined, unknown), longest
  /// text first (ties: lower id first).
  std::vector<int32_t> special;
  /// `special` grouped by first byte (same order inside each group).
  std::vector<int32_t> special_by_byte[256];
  std::unordered_set<int32_t> eog;
  /// SPM: id of <0xNN> for each byte (-1 when absent).
  int32_t byte_token[256];

  int32_t find(std::string_view s) const {
    auto it = to_id.find(s);
    return it == to_id.end() ? -1 : it->second;
  }
};

namespace tok_detail {

/// Decodes one UTF-8 sequence at s[i]; returns the code point and sets len (1..4). An invalid
/// or truncated sequence gives U+FFFD with len 1.
uint32_t utf8_decode(std::string_view s, size_t i, int* len);
void utf8_append(std::string& out, uint32_t cp);
/// Length of the sequence a lead byte announces (1 for bytes that are not lead bytes).
inline int utf8_lead_len(uint8_t c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}

std::unique_ptr<Tokenizer> make_spm();
/// pre: the tokenizer.ggml.pre value ("" when absent). Sets the resolved name and whether it is a
/// fallback through the out parameters. merges: tokenizer.ggml.merges.
std::unique_ptr<Tokenizer> make_bpe(const std::string& pre, std::vector<std::string> merges,
                                    std::string* resolved, bool* fallback, bool* default_add_bos,
                                    bool* ignore_merges);

/// GPT-2 byte <-> code point mapping (the printable-unicode trick of byte-level BPE).
uint32_t byte_to_cp(uint8_t b);
/// -1 when cp is not the image of a byte.
int cp_to_byte(uint32_t cp);

}  // namespace tok_detail
}  // namespace moelab
