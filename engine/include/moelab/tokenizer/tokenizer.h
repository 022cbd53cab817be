// Tokenizers built from a GGUF file's tokenizer.ggml.* metadata (and nothing else).
//
// Two vocabulary kinds are supported, chosen by `tokenizer.ggml.model`:
//  - "llama": SentencePiece-style BPE driven by per-token scores (Kudo & Richardson 2018,
//    "SentencePiece", arXiv:1808.06226): dummy-prefix space, spaces escaped as U+2581 "▁",
//    greedy highest-score pair merging, byte fallback to <0xNN> tokens, unknown token.
//  - "gpt2": byte-level BPE (Radford et al. 2019, "Language Models are Unsupervised Multitask
//    Learners"; Sennrich et al. 2016, arXiv:1508.07909): bytes mapped to printable code points,
//    a regex pre-tokenizer chosen by `tokenizer.ggml.pre` (run with PCRE2), merges applied by
//    rank from `tokenizer.ggml.merges`.
// The observable behaviour (ids, special-token splitting, BOS/EOS rules) follows llama.cpp at
// commit c392e50, which the test fixtures come from; the documented deviations are listed in
// engine/tokenizer/README.md.
//
// Thread safety: a Tokenizer is immutable after from_gguf and may be used from any number of
// threads at once. A StreamDecoder is single-threaded.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moelab {

namespace gguf {
class File;
}

/// Vocabulary kind (tokenizer.ggml.model).
enum class VocabKind {
  Spm,  // "llama"
  Bpe,  // "gpt2"
};

/// Per-token attributes, a bit set. The first six come from tokenizer.ggml.token_type
/// (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte); LStrip/RStrip say that a
/// special token swallows adjacent whitespace when special text is parsed.
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrNormal = 1u << 0,
  kAttrUnknown = 1u << 1,
  kAttrControl = 1u << 2,
  kAttrUserDefined = 1u << 3,
  kAttrUnused = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrLStrip = 1u << 6,
  kAttrRStrip = 1u << 7,
};

/// Options for Tokenizer::encode. Unset add_bos/add_eos mean "as the vocabulary says"
/// (tokenizer.ggml.add_bos_token / add_eos_token, or the kind's default).
struct EncodeOptions {
  std::optional<bool> add_bos;
  std::optional<bool> add_eos;
  /// When true, the text of control tokens (`<s>`, `<|im_start|>`) becomes those tokens. When
  /// false user text is literal; user-defined tokens are matched either way (as llama.cpp does).
  bool parse_special = false;
};

/// Options for Tokenizer::decode.
struct DecodeOptions {
  /// Drop a leading BOS and a trailing EOS (when the vocabulary adds them).
  bool remove_special = false;
  /// Render control tokens as their text (otherwise they render as nothing).
  bool render_special = false;
  /// SentencePiece vocabularies with a dummy prefix: drop one leading space of the first piece,
  /// so that decode(encode(text)) == text.
  bool strip_dummy_prefix = true;
};

class Tokenizer {
 public:
  virtual ~Tokenizer();

  /// Builds the tokenizer from tokenizer.ggml.* metadata. The result does not reference the
  /// File (the vocabulary is copied). Throws moelab::Error (BadInput) whose message names the
  /// metadata key when the metadata is missing, of the wrong type or inconsistent (array lengths,
  /// special ids outside the vocabulary, an unsupported tokenizer.ggml.model). An unknown
  /// tokenizer.ggml.pre is not an error: it logs a warning and uses the "default" pre-tokenizer
  /// (pre_fallback() is then true).
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& file);

  /// Token ids for `text` (UTF-8; invalid bytes are tolerated). add_special: add BOS/EOS as the
  /// vocabulary says. parse_special: see EncodeOptions. Cost: O(n log n) in the text length.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& opts) const;

  /// Bytes a token contributes to decoded text (may be an incomplete UTF-8 sequence for byte
  /// tokens). Control and unknown tokens give "" unless render_special. Throws moelab::Error for
  /// an id outside [0, n_vocab()).
  std::string token_to_piece(int32_t id, bool render_special = false) const;
  /// Concatenated pieces (see DecodeOptions); the bytes are returned as they are, so the result
  /// may contain invalid UTF-8 when the ids do.
  std::string decode(std::span<const int32_t> ids, const DecodeOptions& opts = {}) const;
  /// The piece for labelling a token in the views, always valid UTF-8 and never empty:
  /// space -> "␣", newline -> "↵", tab -> "⇥", carriage return -> "␍", other control bytes and
  /// bytes that are not complete UTF-8 -> "<0xNN>", control/unknown tokens -> their text.
  std::string display_piece(int32_t id) const;
  /// The raw vocabulary string of a token (tokenizer.ggml.tokens[id]).
  const std::string& token_text(int32_t id) const;
  /// Id of a vocabulary string, or -1.
  int32_t find_token(std::string_view text) const;

  int32_t n_vocab() const;
  VocabKind kind() const { return kind_; }
  /// The pre-tokenizer actually used (BPE only; "" for SPM) and whether it is a fallback for an
  /// unknown tokenizer.ggml.pre value.
  const std::string& pre() const { return pre_; }
  bool pre_fallback() const { return pre_fallback_; }

  int32_t bos_id() const { return bos_id_; }  // -1 when none
  int32_t eos_id() const { return eos_id_; }  // -1 when none
  int32_t eot_id() const { return eot_id_; }  // -1 when none
  int32_t unk_id() const { return unk_id_; }  // -1 when none
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  /// SentencePiece dummy prefix (tokenizer.ggml.add_space_prefix, default true for SPM).
  bool add_space_prefix() const { return add_space_prefix_; }
  /// End of generation: EOS, EOT, EOM and the well-known end-of-turn tokens of the vocabulary.
  bool is_eog(int32_t id) const;
  /// Control or unknown token (rendered as nothing in plain decoding).
  bool is_control(int32_t id) const;
  uint32_t attr(int32_t id) const;
  float score(int32_t id) const;
  /// tokenizer.chat_template ("" when absent).
  const std::string& chat_template() const { return chat_template_; }

 protected:
  Tokenizer() = default;
  VocabKind kind_ = VocabKind::Spm;
  std::string pre_;
  bool pre_fallback_ = false;
  int32_t bos_id_ = -1, eos_id_ = -1, eot_id_ = -1, unk_id_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
  std::string chat_template_;

  // Encodes one stretch of ordinary text (no special tokens), appending to out.
  // `after_special` is true at the start of the text and right after a special token.
  virtual void encode_text(std::string_view text, bool after_special,
                           std::vector<int32_t>& out) const = 0;
  struct Vocab;
  std::unique_ptr<Vocab> vocab_;
  friend struct TokenizerBuilder;
};

/// Token-by-token decoding for streaming output: push() returns only complete UTF-8 text and
/// holds back the bytes of a sequence that a later token may complete, so a stream never shows
/// U+FFFD for a character split across tokens. Bytes that can never become valid UTF-8 are
/// replaced by U+FFFD at once; finish() replaces whatever is still held back.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, DecodeOptions opts = {});
  /// Appends a token; returns the text that became complete. Throws moelab::Error for an id
  /// outside the vocabulary.
  std::string push(int32_t id);
  /// Ends the stream: returns the held-back bytes (each incomplete sequence as U+FFFD).
  std::string finish();
  /// Bytes currently held back.
  size_t pending() const { return pending_.size(); }
  void reset();

 private:
  const Tokenizer* tok_;
  DecodeOptions opts_;
  std::string pending_;
  bool first_ = true;
};

/// The words the byte-level BPE pre-tokenizer named `pre` (a tokenizer.ggml.pre value; unknown
/// names use "default") cuts `text` into, before byte mapping and merges: for showing word
/// boundaries and for testing the pre-tokenizer table. Invalid UTF-8 becomes U+FFFD.
std::vector<std::string> bpe_pre_tokenize(std::string_view pre, std::string_view text);

/// Splits `bytes` into the longest prefix that is complete, valid UTF-8 (invalid sequences
/// replaced by U+FFFD) and returns it; `rest` receives a trailing incomplete sequence (at most 3
/// bytes) when hold_incomplete is true, otherwise it is replaced too.
std::string utf8_take_complete(std::string_view bytes, bool hold_incomplete, std::string* rest);

}  // namespace moelab
