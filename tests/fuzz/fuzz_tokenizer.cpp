// Fuzz target for the tokenizers: arbitrary bytes as text through Tokenizer::encode, decode,
// StreamDecoder and display_piece, on the SentencePiece (llama-spm) and byte-level BPE (gpt-2)
// vocabularies of the shared fixtures (MOELAB_FUZZ_VOCAB_DIR).
//
// Input: byte 0 picks the vocabulary (bit 0: 0 SPM, 1 BPE) and add_special (bit 1); the rest is
// the text. Every input is encoded with parse_special off and on. Checked, besides "no crash":
//  - every id is inside [0, n_vocab()); add_special puts BOS first when the vocabulary adds one;
//  - round trip (tokenizer.h, DecodeOptions::strip_dummy_prefix): with parse_special off,
//    decode(encode(text)) == text for well-formed UTF-8 text; SPM excepted where the text holds
//    U+2581 "▁" (SentencePiece reads it as a space), BPE where the text is not valid UTF-8 (the
//    byte-level pre-tokenizer replaces invalid bytes by U+FFFD, documented in the unit tests);
//    BPE also with parse_special on, decoding with render_special;
//  - StreamDecoder: the concatenated pushes and finish() equal decode() with invalid and
//    incomplete sequences replaced (utf8_take_complete), and are valid UTF-8;
//  - display_piece of every produced id is valid UTF-8 and never empty.
// Built as a libFuzzer target with clang (preset "fuzz"); with any compiler also as a replay
// driver over the committed seeds and regressions (label unit).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "moelab/core/error.h"
#include "moelab/gguf/gguf.h"
#include "moelab/tokenizer/tokenizer.h"

namespace {

using moelab::DecodeOptions;
using moelab::Tokenizer;
using moelab::VocabKind;

struct Vocab {
  std::unique_ptr<moelab::gguf::File> file;
  std::unique_ptr<Tokenizer> tok;
};

const Vocab& vocab(int which) {
  static const Vocab v[2] = {
      [] {
        Vocab x;
        x.file = moelab::gguf::File::open(MOELAB_FUZZ_VOCAB_DIR "/ggml-vocab-llama-spm.gguf");
        x.tok = Tokenizer::from_gguf(*x.file);
        return x;
      }(),
      [] {
        Vocab x;
        x.file = moelab::gguf::File::open(MOELAB_FUZZ_VOCAB_DIR "/ggml-vocab-gpt-2.gguf");
        x.tok = Tokenizer::from_gguf(*x.file);
        return x;
      }(),
  };
  return v[which];
}

void check(const Tokenizer& t, std::string_view text, bool add_special, bool parse_special) {
  using moelab::fuzz::valid_utf8;
  const std::vector<int32_t> ids = t.encode(text, add_special, parse_special);
  for (int32_t id : ids) MOELAB_FUZZ_CHECK(id >= 0 && id < t.n_vocab(), text);
  if (add_special && t.add_bos()) MOELAB_FUZZ_CHECK(!ids.empty() && ids[0] == t.bos_id(), text);

  DecodeOptions plain;
  plain.remove_special = add_special;
  const std::string back = t.decode(ids, plain);
  if (!parse_special && valid_utf8(text)) {
    const bool spm_space_char =
        t.kind() == VocabKind::Spm && text.find("\xE2\x96\x81") != std::string_view::npos;
    if (!spm_space_char) MOELAB_FUZZ_CHECK(back == text, text);
  }
  // Byte-level BPE adds no space after a special token: with render_special the special text
  // comes back too.
  if (parse_special && t.kind() == VocabKind::Bpe && valid_utf8(text)) {
    DecodeOptions o = plain;
    o.render_special = true;
    MOELAB_FUZZ_CHECK(t.decode(ids, o) == text, text);
  }

  for (bool render_special : {false, true}) {
    DecodeOptions o;
    o.render_special = render_special;
    const std::string whole = t.decode(ids, o);
    moelab::StreamDecoder sd(t, o);
    std::string streamed;
    for (int32_t id : ids) streamed += sd.push(id);
    streamed += sd.finish();
    MOELAB_FUZZ_CHECK(sd.pending() == 0, text);
    MOELAB_FUZZ_CHECK(valid_utf8(streamed), streamed);
    MOELAB_FUZZ_CHECK(streamed == moelab::utf8_take_complete(whole, false, nullptr), text);
  }

  for (int32_t id : ids) {
    const std::string d = t.display_piece(id);
    MOELAB_FUZZ_CHECK(!d.empty() && valid_utf8(d), d);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Tokenizer& t = *vocab(data[0] & 1).tok;
  const bool add_special = (data[0] & 2) != 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    check(t, text, add_special, false);
    check(t, text, add_special, true);
  } catch (const moelab::Error& e) {
    // encode/decode of ids the tokenizer produced must not fail: any error is a finding.
    moelab::fuzz::fail("moelab::Error from the tokenizer", e.what());
  }
  return 0;
}
