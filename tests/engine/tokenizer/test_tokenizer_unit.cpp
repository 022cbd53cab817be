// Tokenizer behaviour with strings chosen here: spaces, tabs, CRLF, digits, CJK, emoji, combining
// accents, literal special-token text, the "▁" character, the empty string; round trips,
// streaming decode, display pieces, pre-tokenizer word splits, metadata errors, linear time.
// Vocab-file tests use ../shared/fixtures/vocab (skip when absent); synthetic vocabularies are
// written with gguf::Writer.
#include <QtTest>

#include "moelab/core/error.h"
#include "moelab/gguf/gguf.h"
#include "moelab/gguf/writer.h"
#include "moelab/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace moelab;

namespace {

struct Loaded {
  std::unique_ptr<gguf::File> file;
  std::unique_ptr<Tokenizer> tok;
};
Loaded load_shared(const char* rel) {
  Loaded l;
  l.file = gguf::File::open(test::shared_path(rel));
  l.tok = Tokenizer::from_gguf(*l.file);
  return l;
}

// A synthetic vocabulary in memory (the bytes must outlive the File).
struct Synthetic {
  std::vector<uint8_t> bytes;
  std::unique_ptr<gguf::File> file;
  std::unique_ptr<Tokenizer> tok;
};

std::vector<std::string> texts(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::vector<std::string> v;
  for (int32_t id : ids) v.push_back(t.token_text(id));
  return v;
}

QString show(const std::vector<std::string>& v) {
  QStringList s;
  for (const auto& x : v) s << QString::fromUtf8(x.data(), x.size());
  return "[" + s.join("|") + "]";
}

// Strings every tokenizer kind is checked with (round trip + no crash).
const std::vector<std::string> kStrings = {
    "",
    " ",
    "  two leading spaces",
    "trailing spaces   ",
    "a     b",
    "\t",
    "tab\tseparated\tvalues",
    "windows\r\nline\r\nends\r\n",
    "\n\n\nthree newlines",
    "1234567890",
    "3,14159 and 1.000.000 and 42nd and 2024-01-31",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83"
    "\x88",                                  // 日本語のテキスト
    "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",  // 한국어
    "\xf0\x9f\xa6\x99",                      // 🦙
    "family \xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 emoji",  // ZWJ
    "e\xcc\x81 vs \xc3\xa9",  // combining acute vs precomposed
    "<s> and </s> and <|endoftext|> and <|im_start|>",
    "I'm sure they'll say WE'RE done",
    "x=1+2; y<3> && z|w ~ `code`",
};

}  // namespace

class TestTokenizerUnit : public QObject {
  Q_OBJECT

 private:
  static Synthetic make_spm_vocab(bool byte_tokens, bool user_defined) {
    // <unk> <s> </s> [<0x00>..<0xFF>] ▁ a b c ▁a ab ▁ab [<tool>] <ctl>
    std::vector<std::string> toks = {"<unk>", "<s>", "</s>"};
    std::vector<int32_t> type = {2, 3, 3};
    if (byte_tokens)
      for (int b = 0; b < 256; ++b) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        toks.push_back(buf);
        type.push_back(6);
      }
    for (const char* t : {"\xe2\x96\x81", "a", "b", "c",
                          "\xe2\x96\x81"
                          "a",
                          "ab",
                          "\xe2\x96\x81"
                          "ab"}) {
      toks.push_back(t);
      type.push_back(1);
    }
    if (user_defined) {
      toks.push_back("<tool>");
      type.push_back(4);
    }
    toks.push_back("<ctl>");
    type.push_back(3);
    std::vector<float> scores(toks.size(), 0.0f);
    // Higher score wins: "ab" (-1) beats "▁a" (-2) so "▁ab" forms through "▁"+"ab".
    for (size_t i = 0; i < toks.size(); ++i) {
      if (toks[i] == "ab") scores[i] = -1;
      if (toks[i] ==
          "\xe2\x96\x81"
          "a")
        scores[i] = -2;
      if (toks[i] ==
          "\xe2\x96\x81"
          "ab")
        scores[i] = -3;
    }
    gguf::Writer w;
    w.set_string("general.architecture", "llama");
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_array_string("tokenizer.ggml.tokens", toks);
    w.set_array_f32("tokenizer.ggml.scores", scores);
    w.set_array_i32("tokenizer.ggml.token_type", type);
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    Synthetic s;
    s.bytes = w.to_bytes();
    s.file = gguf::File::from_memory(s.bytes.data(), s.bytes.size(), "synthetic-spm");
    s.tok = Tokenizer::from_gguf(*s.file);
    return s;
  }

 private slots:
  // ---- SentencePiece-style (llama-spm 32000) -------------------------------------------------
  void spmWordsAndSpaces() {
    MOELAB_REQUIRE_SHARED("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    auto l = load_shared("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    const Tokenizer& t = *l.tok;
    QCOMPARE(t.kind(), VocabKind::Spm);
    QCOMPARE(t.n_vocab(), 32000);
    QCOMPARE(t.bos_id(), 1);
    QCOMPARE(t.eos_id(), 2);
    QVERIFY(t.add_bos());
    QVERIFY(t.add_space_prefix());
    QCOMPARE(t.encode("Hello world", true, false), (std::vector<int32_t>{1, 15043, 3186}));
    QCOMPARE(texts(t, t.encode("Hello world", false, false)),
             (std::vector<std::string>{"\xe2\x96\x81Hello", "\xe2\x96\x81world"}));
    // Empty string: just BOS, or nothing.
    QCOMPARE(t.encode("", true, false), (std::vector<int32_t>{1}));
    QVERIFY(t.encode("", false, false).empty());
    // EOS on request.
    const auto with_eos = t.encode("Hello", EncodeOptions{std::nullopt, true, false});
    QCOMPARE(with_eos.back(), 2);
    QCOMPARE(with_eos.front(), 1);
    // Every text here survives as the concatenation of its token texts (▁ for spaces), except
    // byte-fallback pieces.
    for (const std::string& s : {std::string("  two leading spaces"), std::string("a     b"),
                                 std::string("trailing spaces   ")}) {
      std::string joined;
      for (const auto& x : texts(t, t.encode(s, false, false))) joined += x;
      std::string esc = "\xe2\x96\x81";
      for (char c : s) esc += c == ' ' ? std::string("\xe2\x96\x81") : std::string(1, c);
      QCOMPARE(QString::fromStdString(joined), QString::fromStdString(esc));
    }
  }

  void spmByteFallbackAndSpecials() {
    MOELAB_REQUIRE_SHARED("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    auto l = load_shared("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    const Tokenizer& t = *l.tok;
    // Tab: byte fallback <0x09> (id 12 = 3 + 9).
    QCOMPARE(texts(t, t.encode("\t", false, false)),
             (std::vector<std::string>{"\xe2\x96\x81", "<0x09>"}));
    // Emoji not in the vocabulary: four byte tokens after the dummy-prefix piece.
    const auto llama = t.encode("\xf0\x9f\xa6\x99", false, false);
    QCOMPARE(texts(t, llama),
             (std::vector<std::string>{"\xe2\x96\x81", "<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"}));
    QCOMPARE(llama[1], 3 + 0xF0);
    // Literal special-token text is literal unless asked.
    const auto lit = t.encode("<s>", false, false);
    QVERIFY(std::find(lit.begin(), lit.end(), 1) == lit.end());
    QCOMPARE(t.decode(lit), std::string("<s>"));
    QCOMPARE(t.encode("<s>", false, true), (std::vector<int32_t>{1}));
    // After a special token the dummy prefix comes back.
    const auto after = t.encode("</s>Hi", false, true);
    QCOMPARE(after.front(), 2);
    QCOMPARE(t.token_text(after[1]).rfind("\xe2\x96\x81", 0), size_t(0));
    // The "▁" character itself is a space for SentencePiece: same ids as a space.
    QCOMPARE(t.encode("a\xe2\x96\x81"
                      "b",
                      false, false),
             t.encode("a b", false, false));
    // CRLF: "\r" is a vocabulary token, "\n" is byte fallback.
    QCOMPARE(texts(t, t.encode("a\r\nb", false, false)),
             (std::vector<std::string>{"\xe2\x96\x81"
                                       "a",
                                       "\r", "<0x0A>", "b"}));
  }

  void spmRoundTrip() {
    MOELAB_REQUIRE_SHARED("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    auto l = load_shared("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    const Tokenizer& t = *l.tok;
    for (const std::string& s : kStrings) {
      const auto ids = t.encode(s, true, false);
      DecodeOptions o;
      o.remove_special = true;
      QCOMPARE(QString::fromStdString(t.decode(ids, o)), QString::fromStdString(s));
    }
  }

  void spmSynthetic() {
    auto s = make_spm_vocab(true, true);
    const Tokenizer& t = *s.tok;
    // "ab" merges first (score -1), then "▁"+"ab" -> "▁ab".
    QCOMPARE(texts(t, t.encode("ab", false, false)), (std::vector<std::string>{"\xe2\x96\x81"
                                                                               "ab"}));
    // c is a token, d is not -> byte fallback <0x64>.
    QCOMPARE(texts(t, t.encode("abd", false, false)), (std::vector<std::string>{"\xe2\x96\x81"
                                                                                "ab",
                                                                                "<0x64>"}));
    // User-defined tokens are matched even without parse_special; control tokens only with it.
    const auto ud = texts(t, t.encode("a<tool>b", false, false));
    QCOMPARE(ud, (std::vector<std::string>{"\xe2\x96\x81"
                                           "a",
                                           "<tool>", "\xe2\x96\x81", "b"}));
    QVERIFY(t.encode("<ctl>", false, false).size() > 1);
    QCOMPARE(t.encode("<ctl>", false, true).size(), size_t(1));
    // Without byte tokens, an unknown character is <unk>.
    auto nb = make_spm_vocab(false, false);
    QCOMPARE(nb.tok->encode("ad", false, false),
             (std::vector<int32_t>{nb.tok->find_token("\xe2\x96\x81"
                                                      "a"),
                                   0}));
  }

  // ---- Byte-level BPE (gpt-2 50257) ------------------------------------------------------------
  void bpeBasics() {
    MOELAB_REQUIRE_SHARED("fixtures/vocab/ggml-vocab-gpt-2.gguf");
    auto l = load_shared("fixtures/vocab/ggml-vocab-gpt-2.gguf");
    const Tokenizer& t = *l.tok;
    QCOMPARE(t.kind(), VocabKind::Bpe);
    QCOMPARE(t.n_vocab(), 50257);
    QCOMPARE(t.pre(), std::string("gpt-2"));
    QVERIFY(!t.add_bos());
    QCOMPARE(t.encode("Hello world", true, false), (std::vector<int32_t>{15496, 995}));
    QVERIFY(t.encode("", true, false).empty());
    // Special-token text: literal by default, the control token when asked.
    QCOMPARE(t.encode("<|endoftext|>", false, true), (std::vector<int32_t>{50256}));
    const auto lit = t.encode("<|endoftext|>", false, false);
    QVERIFY(lit.size() > 1);
    QCOMPARE(t.decode(lit), std::string("<|endoftext|>"));
    QVERIFY(t.is_eog(50256));
    // Leading spaces: GPT-2 keeps a lone space as its own word before " two".
    QCOMPARE(texts(t, t.encode("  two", false, false)),
             (std::vector<std::string>{"\xc4\xa0", "\xc4\xa0two"}));
    // The "▁" character is ordinary text for byte-level BPE: exact round trip.
    QCOMPARE(t.decode(t.encode("a\xe2\x96\x81"
                               "b",
                               false, false)),
             std::string("a\xe2\x96\x81"
                         "b"));
    for (const std::string& s : kStrings)
      QCOMPARE(QString::fromStdString(t.decode(t.encode(s, true, false))),
               QString::fromStdString(s));
    // Invalid UTF-8 input does not crash; it becomes U+FFFD.
    QCOMPARE(t.decode(t.encode("a\xff"
                               "b",
                               false, false)),
             std::string("a\xef\xbf\xbd"
                         "b"));
  }

  void bpePreTokenizers() {
    auto words = [](const char* pre, std::string_view text) {
      return show(bpe_pre_tokenize(pre, text));
    };
    // GPT-2: runs of digits, contractions lower case only, spaces before words.
    QCOMPARE(words("gpt-2", "12345 I'm WE'RE"), QString("[12345| I|'m| WE|'|RE]"));
    QCOMPARE(words("gpt-2", "a   b"), QString("[a|  | b]"));
    // \s+(?!\S) gives back the last whitespace character before a word.
    QCOMPARE(words("gpt-2", "x\r\n\r\ny"), QString("[x|\r\n\r|\n|y]"));
    // Llama 3: digits in groups of three, case-insensitive contractions, newlines kept together.
    QCOMPARE(words("llama-bpe", "1234567 I'M"), QString("[123|456|7| I|'M]"));
    QCOMPARE(words("llama-bpe", "x\r\n\r\ny"), QString("[x|\r\n\r\n|y]"));
    QCOMPARE(words("llama-bpe", "a...\n\nb"), QString("[a|...\n\n|b]"));
    // Qwen2 and SmolLM: one digit per word.
    QCOMPARE(words("qwen2", "2024"), QString("[2|0|2|4]"));
    QCOMPARE(words("smollm", "v2024 x"), QString("[v|2|0|2|4| x]"));
    QCOMPARE(words("starcoder", "a12"), QString("[a|1|2]"));
    // Real Unicode categories: an emoji is not a letter (Qwen2 and GPT-2 alike)...
    QCOMPARE(words("qwen2", "a\xf0\x9f\xa6\x99"), QString::fromUtf8("[a|\xf0\x9f\xa6\x99]"));
    // ...but the collapsed-category patterns of llama.cpp count it as one (StarCoder's \p{N} pass
    // leaves it alone; DeepSeek-coder's \s?\p{L}+ takes it with the letters).
    QCOMPARE(words("deepseek-coder", "a\xf0\x9f\xa6\x99"),
             QString::fromUtf8("[a\xf0\x9f\xa6\x99]"));
    QCOMPARE(words("gpt-2", "a\xf0\x9f\xa6\x99"), QString::fromUtf8("[a|\xf0\x9f\xa6\x99]"));
    // DeepSeek coder: CJK runs and single digits.
    QCOMPARE(words("deepseek-coder", "ab12\xe4\xbd\xa0\xe5\xa5\xbd"),
             QString::fromUtf8("[ab|1|2|\xe4\xbd\xa0\xe5\xa5\xbd]"));
    // Falcon: punctuation first, then GPT-2, then groups of three digits.
    QCOMPARE(words("falcon", "x+=123456"), QString("[x|+=|123|456]"));
    // Default: punctuation runs are cut out first.
    QCOMPARE(words("default", "a,b"), QString("[a|,|b]"));
    // GPT-4o: case-aware words.
    QCOMPARE(words("gpt-4o", "HelloWorld's 12345"), QString("[Hello|World's| |123|45]"));
    QCOMPARE(words("gpt-4o", "HelloWorld's"), QString("[Hello|World's]"));
    // Empty input.
    QCOMPARE(words("gpt-2", ""), QString("[]"));
  }

  // ---- Streaming decode and display pieces ------------------------------------------------------
  void streamingHoldsBackIncompleteUtf8() {
    MOELAB_REQUIRE_SHARED("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    auto l = load_shared("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    const Tokenizer& t = *l.tok;
    const std::string text = "ok \xf0\x9f\xa6\x99 \xe4\xbd\xa0\xe5\xa5\xbd!";
    const auto ids = t.encode(text, true, false);
    StreamDecoder d(t);
    std::string out;
    for (int32_t id : ids) {
      const std::string piece = d.push(id);
      QVERIFY2(piece.find("\xef\xbf\xbd") == std::string::npos, "U+FFFD mid-stream");
      out += piece;
    }
    out += d.finish();
    QCOMPARE(QString::fromStdString(out), QString::fromStdString(text));
    // An incomplete sequence at the end becomes U+FFFD only at finish().
    StreamDecoder d2(t);
    QCOMPARE(d2.push(3 + 0xF0), std::string());
    QCOMPARE(d2.push(3 + 0x9F), std::string());
    QCOMPARE(d2.pending(), size_t(2));
    QCOMPARE(d2.finish(), std::string("\xef\xbf\xbd"));
    // A byte that can never start a sequence is replaced at once.
    StreamDecoder d3(t);
    QCOMPARE(d3.push(3 + 0x80), std::string("\xef\xbf\xbd"));
  }

  void streamingBpe() {
    MOELAB_REQUIRE_SHARED("fixtures/vocab/ggml-vocab-gpt-2.gguf");
    auto g = load_shared("fixtures/vocab/ggml-vocab-gpt-2.gguf");
    const Tokenizer& t = *g.tok;
    const std::string text =
        "llama \xf0\x9f\xa6\x99 and \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd";
    const auto ids = t.encode(text, false, false);
    StreamDecoder d(t);
    std::string out;
    int held = 0;
    for (int32_t id : ids) {
      const std::string piece = d.push(id);
      QVERIFY2(piece.find("\xef\xbf\xbd") == std::string::npos, "U+FFFD mid-stream");
      if (d.pending() > 0) ++held;
      out += piece;
    }
    QVERIFY(held > 0);  // some characters really were split across tokens
    out += d.finish();
    QCOMPARE(QString::fromStdString(out), QString::fromStdString(text));
  }

  void displayPieces() {
    MOELAB_REQUIRE_SHARED("fixtures/vocab/ggml-vocab-gpt-2.gguf");
    auto g = load_shared("fixtures/vocab/ggml-vocab-gpt-2.gguf");
    auto s = load_shared("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    QCOMPARE(s.tok->display_piece(15043), std::string("\xe2\x90\xa3Hello"));  // ␣Hello
    QCOMPARE(s.tok->display_piece(1), std::string("<s>"));
    QCOMPARE(s.tok->display_piece(3 + '\n'), std::string("<0x0A>"));
    QCOMPARE(g.tok->display_piece(g.tok->find_token("\xc4\x8a")), std::string("\xe2\x86\xb5"));
    QCOMPARE(g.tok->display_piece(g.tok->find_token("\xc4\x89")), std::string("\xe2\x87\xa5"));
    QCOMPARE(g.tok->display_piece(50256), std::string("<|endoftext|>"));
    // A lone byte of a multi-byte character: hex, never invalid UTF-8.
    QCOMPARE(g.tok->display_piece(g.tok->find_token("\xc3\xb0")), std::string("<0xF0>"));
    for (int32_t id = 0; id < g.tok->n_vocab(); id += 97) {
      const std::string p = g.tok->display_piece(id);
      QVERIFY(!p.empty());
      std::string rest;
      QCOMPARE(utf8_take_complete(p, false, &rest), p);
    }
  }

  // ---- Metadata errors name the key ---------------------------------------------------------
  void metadataErrors() {
    auto expect_error = [](gguf::Writer& w, const char* key) {
      const auto bytes = w.to_bytes();
      auto f = gguf::File::from_memory(bytes.data(), bytes.size(), "bad");
      try {
        Tokenizer::from_gguf(*f);
        QFAIL("no error");
      } catch (const Error& e) {
        QVERIFY2(std::string(e.what()).find(key) != std::string::npos, e.what());
      }
    };
    {
      gguf::Writer w;
      w.set_string("tokenizer.ggml.model", "llama");
      w.set_array_string("tokenizer.ggml.tokens", {"a", "b", "c"});
      w.set_array_f32("tokenizer.ggml.scores", std::vector<float>{0, 0});
      expect_error(w, "tokenizer.ggml.scores");
    }
    {
      gguf::Writer w;
      w.set_string("tokenizer.ggml.model", "llama");
      w.set_array_string("tokenizer.ggml.tokens", {"a", "b", "c"});
      w.set_array_u32("tokenizer.ggml.token_type", std::vector<uint32_t>{1, 1, 1});
      expect_error(w, "tokenizer.ggml.token_type");
    }
    {
      gguf::Writer w;
      w.set_string("tokenizer.ggml.model", "llama");
      w.set_array_string("tokenizer.ggml.tokens", {"a", "b", "c"});
      w.set_u32("tokenizer.ggml.eos_token_id", 7);
      expect_error(w, "tokenizer.ggml.eos_token_id");
    }
    {
      gguf::Writer w;
      w.set_string("tokenizer.ggml.model", "gpt2");
      w.set_array_string("tokenizer.ggml.tokens", {"a", "b"});
      expect_error(w, "tokenizer.ggml.merges");
    }
    {
      gguf::Writer w;
      w.set_string("tokenizer.ggml.model", "t5");
      w.set_array_string("tokenizer.ggml.tokens", {"a", "b"});
      expect_error(w, "tokenizer.ggml.model");
    }
    {
      gguf::Writer w;
      w.set_array_string("tokenizer.ggml.tokens", {"a", "b"});
      expect_error(w, "tokenizer.ggml.model");
    }
    // cases/gguf/g12: scores of the wrong element type.
    if (test::have_shared("cases/gguf/g12_scores_wrong_elem_type.gguf")) {
      try {
        auto f = gguf::File::open(test::shared_path("cases/gguf/g12_scores_wrong_elem_type.gguf"));
        Tokenizer::from_gguf(*f);
        QFAIL("g12 accepted");
      } catch (const Error& e) {
        QVERIFY2(std::string(e.what()).find("tokenizer.ggml.scores") != std::string::npos,
                 e.what());
      }
    }
  }

  void unknownPreIsAFallbackWithWarning() {
    gguf::Writer w;
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", "no-such-pre");
    std::vector<std::string> toks;
    for (int b = 0; b < 256; ++b) {
      std::string s;
      const char* printable = nullptr;
      (void)printable;
      toks.push_back(std::to_string(b));  // placeholder texts; the test only loads
    }
    w.set_array_string("tokenizer.ggml.tokens", toks);
    w.set_array_string("tokenizer.ggml.merges", {});
    const auto bytes = w.to_bytes();
    auto f = gguf::File::from_memory(bytes.data(), bytes.size(), "pre");
    auto t = Tokenizer::from_gguf(*f);
    QVERIFY(t->pre_fallback());
    QCOMPARE(t->pre(), std::string("default"));
  }

  // ---- Long inputs ---------------------------------------------------------------------------
  // One 80,000-character word and 80,000 spaces before a word: both encode, and decoding gives the
  // text back. How the cost grows with the length is measured in bench/tokenizer (the "scaling"
  // rows: 4x the input against 4x the time), not asserted here: tests never time.
  void longInputsRoundTrip() {
    MOELAB_REQUIRE_SHARED("fixtures/vocab/ggml-vocab-gpt-2.gguf");
    auto g = load_shared("fixtures/vocab/ggml-vocab-gpt-2.gguf");
    auto s = load_shared("fixtures/vocab/ggml-vocab-llama-spm.gguf");
    for (const Tokenizer* t : {g.tok.get(), s.tok.get()}) {
      for (const std::string& text : {std::string(80000, 'x'), std::string(80000, ' ') + "x"}) {
        const auto ids = t->encode(text, false, false);
        QVERIFY(!ids.empty());
        QVERIFY(ids.size() <= text.size());
        // decode(encode(text)) == text (DecodeOptions strips SPM's dummy prefix).
        QVERIFY(t->decode(ids) == text);
      }
    }
  }
};

QTEST_GUILESS_MAIN(TestTokenizerUnit)
#include "test_tokenizer_unit.moc"
