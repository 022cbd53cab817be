// Byte-level BPE tokenizer ("gpt2" vocabularies).
//
// 1. Pre-tokenization: the text is cut into words by the regular expressions of the
//    pre-tokenizer named by tokenizer.ggml.pre (table below). Each expression is applied in turn
//    to every piece the previous one produced, and text between two matches is kept as a piece
//    of its own (the split semantics of llama.cpp's unicode_regex_split). Matching is done by
//    PCRE2 (JIT), inside each piece only, so a look-ahead never sees past the piece.
// 2. Each word's bytes are mapped to printable code points (GPT-2's bytes_to_unicode) and the
//    adjacent pair with the lowest merge rank (tokenizer.ggml.merges order) is merged,
//    repeatedly (ties: leftmost), until no pair has a rank (Sennrich et al. 2016).
// Cost: linear in the text for the regex passes (the patterns have bounded backtracking) and
// O(m log m) per word of m characters for the merges.
//
// llama.cpp compatibility: llama.cpp runs the GPT-2, Llama-3 and (in later versions) Qwen2
// patterns with hand-written splitters that use real Unicode categories (mode kUnicode here;
// Qwen2 also uses it, as Hugging Face tokenizers and current llama.cpp do). Every other pattern
// that uses \p{L}, \p{N} or \p{P} runs through std::regex on a "collapsed" text in which each
// non-ASCII code point is replaced by a marker of its category, and a code point that is not a
// letter, number, punctuation or whitespace (marks, symbols such as emoji, ...) counts as a LETTER.
// Mode kCollapsed reproduces that: non-ASCII code points are replaced by a representative code
// point of the category llama.cpp gives them before PCRE2 matches (whitespace -> U+000B,
// number -> U+0660, punctuation -> U+00A1, everything else -> U+00C0). Patterns without
// categories (kWide) see non-ASCII whitespace as U+000B and ASCII-only \s, like std::wregex.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <mutex>
#include <queue>

#include "internal.h"
#include "moelab/core/error.h"

namespace moelab {
namespace {

using namespace tok_detail;

enum class Mode { kUnicode, kCollapsed, kWide };

struct ExprSpec {
  const char* pattern;
  Mode mode;
};

struct PreSpec {
  std::vector<std::string_view> names;
  std::vector<ExprSpec> exprs;
  bool add_bos = false;
  bool ignore_merges = false;
};

// The GPT-2 pattern (Radford et al. 2019, openai/gpt-2 encoder.py).
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
// Llama 3 (tiktoken cl100k-style): digits in groups of up to three, newlines kept together.
constexpr const char* kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2 / StableLM2: like Llama 3 but single digits.
constexpr const char* kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-4o (tiktoken o200k): case-aware words with attached contractions.
constexpr const char* kGpt4o =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kTekken =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kPoro =
    " ?[^(\\s|.,!?\xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C\xE3\x80\x81\xE0\xA5\xA4\xDB\x94\xD8\x8C)]+";
// DeepSeek LLM: letters of many scripts spelled out as ranges (from its tokenizer.json).
constexpr const char* kDeepseekLetters =
    "\\s?[A-Za-z\xC2\xB5\xC3\x80-\xC3\x96\xC3\x98-\xC3\xB6\xC3\xB8-\xC6\xBA\xC6\xBC-\xC6\xBF"
    "\xC7\x84-\xCA\x93\xCA\x95-\xCA\xAF\xCD\xB0-\xCD\xB3\xCD\xB6\xCD\xB7\xCD\xBB-\xCD\xBD\xCD\xBF"
    "\xCE\x86\xCE\x88-\xCE\x8A\xCE\x8C\xCE\x8E-\xCE\xA1\xCE\xA3-\xCF\xB5\xCF\xB7-\xD2\x81"
    "\xD2\x8A-\xD4\xAF\xD4\xB1-\xD5\x96\xE1\x82\xA0-\xE1\x83\x85\xE1\x8E\xA0-\xE1\x8F\xB5"
    "\xE1\x8F\xB8-\xE1\x8F\xBD\xE1\xB2\x90-\xE1\xB2\xBA\xE1\xB2\xBD-\xE1\xB2\xBF"
    "\xE1\xB4\x80-\xE1\xB4\xAB\xE1\xB5\xAB-\xE1\xB5\xB7\xE1\xB5\xB9-\xE1\xB6\x9A"
    "\xE1\xB8\x80-\xE1\xBC\x95\xE1\xBC\x98-\xE1\xBC\x9D\xE1\xBC\xA0-\xE1\xBD\x85"
    "\xE1\xBD\x88-\xE1\xBD\x8D\xE1\xBD\x90-\xE1\xBD\x97\xE1\xBD\x99\xE1\xBD\x9B\xE1\xBD\x9D"
    "\xE1\xBD\x9F-\xE1\xBD\xBD\xE1\xBE\x80-\xE1\xBE\xB4\xE1\xBE\xB6-\xE1\xBE\xBC\xE1\xBE\xBE"
    "\xE1\xBF\x82-\xE1\xBF\x84\xE1\xBF\x86-\xE1\xBF\x8C\xE1\xBF\x90-\xE1\xBF\x93"
    "\xE1\xBF\x96-\xE1\xBF\x9B\xE1\xBF\xA0-\xE1\xBF\xAC\xE1\xBF\xB2-\xE1\xBF\xB4"
    "\xE1\xBF\xB6-\xE1\xBF\xBC\xE2\x84\x82\xE2\x84\x87\xE2\x84\x8A-\xE2\x84\x93\xE2\x84\x95"
    "\xE2\x84\x99-\xE2\x84\x9D\xE2\x84\xA4\xE2\x84\xA6\xE2\x84\xA8\xE2\x84\xAA-\xE2\x84\xAD"
    "\xE2\x84\xAF-\xE2\x84\xB4\xE2\x84\xB9\xE2\x84\xBC-\xE2\x84\xBF\xE2\x85\x85-\xE2\x85\x89"
    "\xE2\x85\x8E\xE2\x86\x83\xE2\x86\x84\xE2\xB0\x80-\xE2\xB1\xBB\xE2\xB1\xBE-\xE2\xB3\xA4"
    "\xE2\xB3\xAB-\xE2\xB3\xAE\xE2\xB3\xB2\xE2\xB3\xB3\xEA\x99\x80-\xEA\x99\xAD"
    "\xEA\x9A\x80-\xEA\x9A\x9B\xEA\x9C\xA2-\xEA\x9D\xAF\xEA\x9D\xB1-\xEA\x9E\x87"
    "\xEA\x9E\x8B-\xEA\x9E\x8E\xEA\xAD\xB0-\xEA\xAE\xBF\xEF\xAC\x80-\xEF\xAC\x86"
    "\xEF\xAC\x93-\xEF\xAC\x97\xEF\xBC\xA1-\xEF\xBC\xBA\xEF\xBD\x81-\xEF\xBD\x9A"
    "\xF0\x90\x90\x80-\xF0\x90\x91\x8F\xF0\x90\x92\xB0-\xF0\x90\x93\x93"
    "\xF0\x90\x93\x98-\xF0\x90\x93\xBB\xF0\x90\xB2\x80-\xF0\x90\xB2\xB2"
    "\xF0\x90\xB3\x80-\xF0\x90\xB3\xB2\xF0\x91\xA2\xA0-\xF0\x91\xA3\x9F"
    "\xF0\x9E\xA4\x80-\xF0\x9E\xA5\x83]+";
// CJK ideographs, (an over-wide range as in the original), Hangul.
constexpr const char* kCjkHangul =
    "[\xE4\xB8\x80-\xE9\xBE\xA5\xE0\xA0\x80-\xE4\xB8\x80\xEA\xB0\x80-\xED\x9F\xBF]+";

const std::vector<PreSpec>& pre_table() {
  static const std::vector<PreSpec> t = {
      {{"default"},
       {{R"([\p{P}\$\+<=>\^~\|]+)", Mode::kCollapsed},
        {kGpt2, Mode::kUnicode},
        {R"(\p{N}+)", Mode::kCollapsed},
        {R"([0-9][\p{L}]+)", Mode::kCollapsed}}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3"}, {{kLlama3, Mode::kUnicode}}, true, true},
      {{"dbrx", "smaug-bpe", "chatglm-bpe"}, {{kLlama3, Mode::kUnicode}}},
      {{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es",
        "jina-v2-de", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais", "trillion"},
       {{kGpt2, Mode::kUnicode}}},
      {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
       {{R"(\p{N})", Mode::kCollapsed}, {kGpt2, Mode::kUnicode}}},
      {{"falcon"},
       {{R"([\p{P}\$\+<=>\^~\|`]+)", Mode::kCollapsed},
        {kGpt2, Mode::kUnicode},
        {"[0-9][0-9][0-9]", Mode::kWide}}},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan"}, {{kQwen2, Mode::kUnicode}}},
      {{"deepseek-llm"},
       {{"[\r\n]", Mode::kWide},
        {kDeepseekLetters, Mode::kWide},
        {"\\s?[!-/:-~\xEF\xBC\x81-\xEF\xBC\x8F\xEF\xBC\x9A-\xEF\xBD\x9E\xE2\x80\x98-\xE2\x80\x9F"
         "\xE3\x80\x80-\xE3\x80\x82]+",
         Mode::kWide},
        {"\\s+$", Mode::kWide},
        {kCjkHangul, Mode::kWide},
        {R"(\p{N}+)", Mode::kCollapsed}}},
      {{"deepseek-coder"},
       {{"[\r\n]", Mode::kWide},
        {R"(\s?\p{L}+)", Mode::kCollapsed},
        {R"(\s?\p{P}+)", Mode::kCollapsed},
        {kCjkHangul, Mode::kWide},
        {R"(\p{N})", Mode::kCollapsed}}},
      {{"poro-chat", "bloom", "gpt3-finnish"}, {{kPoro, Mode::kWide}}},
      {{"viking"}, {{kPoro, Mode::kWide}, {R"(\p{N})", Mode::kCollapsed}}},
      {{"tekken"}, {{kTekken, Mode::kCollapsed}}, true, true},
      {{"gpt-4o", "gpt4o"}, {{kGpt4o, Mode::kUnicode}}},
  };
  return t;
}

// --- Unicode categories for the collapsed mode ------------------------------------------------

enum : uint8_t { kCatOther = 0, kCatL = 1, kCatN = 2, kCatP = 3, kCatWs = 4 };

bool is_unicode_whitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Category of every code point, computed once with PCRE2's own Unicode tables.
const std::vector<uint8_t>& category_table() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> t(0x110000, kCatOther);
    std::string all;
    std::vector<uint32_t> cp_at;  // byte offset -> code point (only at starts)
    all.reserve(0x110000 * 4);
    for (uint32_t c = 0; c < 0x110000; ++c) {
      if (c >= 0xD800 && c <= 0xDFFF) continue;
      if (cp_at.size() < all.size() + 1) cp_at.resize(all.size() + 1);
      cp_at[all.size()] = c;
      utf8_append(all, c);
    }
    cp_at.resize(all.size() + 1);
    const std::pair<const char*, uint8_t> cats[] = {
        {R"(\p{L}+)", kCatL}, {R"(\p{N}+)", kCatN}, {R"(\p{P}+)", kCatP}};
    for (const auto& [pat, cat] : cats) {
      int err = 0;
      PCRE2_SIZE eoff = 0;
      pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat), PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF, &err, &eoff, nullptr);
      pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
      pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
      size_t pos = 0;
      while (pos < all.size() &&
             pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(all.data()), all.size(), pos,
                         PCRE2_NO_UTF_CHECK, md, nullptr) > 0) {
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        for (size_t b = ov[0]; b < ov[1];) {
          t[cp_at[b]] = cat;
          b += utf8_lead_len(static_cast<uint8_t>(all[b]));
        }
        pos = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
      }
      pcre2_match_data_free(md);
      pcre2_code_free(re);
    }
    for (uint32_t c = 0; c < 0x110000; ++c)
      if (is_unicode_whitespace(c)) t[c] = kCatWs;
    return t;
  }();
  return table;
}

uint32_t collapse(uint32_t c, const std::vector<uint8_t>& cat) {
  if (c < 0x80) return c;
  switch (cat[c]) {
    case kCatWs:
      return 0x0B;
    case kCatN:
      return 0x0660;
    case kCatP:
      return 0x00A1;
    default:
      return 0x00C0;  // letters and everything llama.cpp treats as a letter
  }
}

struct Regex {
  pcre2_code* code = nullptr;
  Mode mode = Mode::kUnicode;
};

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(const PreSpec& spec, std::vector<std::string> merges)
      : merges_(std::move(merges)), ignore_merges_(spec.ignore_merges) {
    for (const ExprSpec& e : spec.exprs) {
      int err = 0;
      PCRE2_SIZE eoff = 0;
      const uint32_t flags =
          PCRE2_UTF | PCRE2_DOLLAR_ENDONLY | (e.mode == Mode::kUnicode ? PCRE2_UCP : 0);
      pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(e.pattern), PCRE2_ZERO_TERMINATED,
                                     flags, &err, &eoff, nullptr);
      if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        throw Error(ErrorKind::Internal, "pre-tokenizer pattern does not compile at offset " +
                                             std::to_string(eoff) + ": " +
                                             reinterpret_cast<const char*>(msg));
      }
      pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
      regex_.push_back({re, e.mode});
      if (e.mode == Mode::kCollapsed) need_categories_ = true;
    }
    rank_.reserve(merges_.size());
    for (size_t i = 0; i < merges_.size(); ++i)
      rank_.emplace(std::string_view(merges_[i]), static_cast<int32_t>(i));
  }
  ~BpeTokenizer() override {
    for (Regex& r : regex_) pcre2_code_free(r.code);
  }

  std::vector<std::string_view> split_words(std::string_view raw, std::string& clean) const;

 protected:
  void encode_text(std::string_view raw, bool after_special,
                   std::vector<int32_t>& out) const override;

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out, std::string& key) const;

  std::vector<Regex> regex_;
  std::vector<std::string> merges_;
  std::unordered_map<std::string_view, int32_t> rank_;
  bool ignore_merges_ = false;
  bool need_categories_ = false;
};

struct MatchData {
  explicit MatchData(const pcre2_code* re)
      : md(pcre2_match_data_create_from_pattern(re, nullptr)) {}
  ~MatchData() { pcre2_match_data_free(md); }
  pcre2_match_data* md;
};

// Returns the words (views into `clean`, the text with invalid UTF-8 replaced by U+FFFD).
std::vector<std::string_view> BpeTokenizer::split_words(std::string_view raw,
                                                        std::string& clean) const {
  // Code points and their byte offsets in the clean text.
  std::vector<uint32_t> cps;
  cps.reserve(raw.size());
  clean.clear();
  clean.reserve(raw.size());
  std::vector<uint32_t> coff;  // code point index -> byte offset in clean
  coff.reserve(raw.size() + 1);
  for (size_t i = 0; i < raw.size();) {
    int len = 0;
    const uint32_t cp = utf8_decode(raw, i, &len);
    coff.push_back(static_cast<uint32_t>(clean.size()));
    cps.push_back(cp);
    if (cp == 0xFFFD && len == 1)
      clean += "\xEF\xBF\xBD";
    else
      clean.append(raw.substr(i, len));
    i += len;
  }
  coff.push_back(static_cast<uint32_t>(clean.size()));
  const size_t n = cps.size();

  // Subject strings per mode, built on first use: bytes + cp->byte offsets + byte->cp index.
  struct Subject {
    bool built = false;
    std::string bytes;
    std::vector<uint32_t> off;    // cp index -> byte offset
    std::vector<uint32_t> cp_of;  // byte offset -> cp index (valid at starts and the end)
  };
  Subject subj[3];
  auto get = [&](Mode m) -> const Subject& {
    Subject& s = subj[static_cast<int>(m)];
    if (s.built) return s;
    s.built = true;
    const std::vector<uint8_t>* cat = m == Mode::kCollapsed ? &category_table() : nullptr;
    if (m == Mode::kUnicode) {
      s.bytes = clean;
      s.off = coff;
    } else {
      s.bytes.reserve(clean.size());
      s.off.reserve(n + 1);
      for (size_t i = 0; i < n; ++i) {
        s.off.push_back(static_cast<uint32_t>(s.bytes.size()));
        uint32_t c = cps[i];
        if (m == Mode::kCollapsed)
          c = collapse(c, *cat);
        else if (c >= 0x80 && is_unicode_whitespace(c))
          c = 0x0B;
        utf8_append(s.bytes, c);
      }
      s.off.push_back(static_cast<uint32_t>(s.bytes.size()));
    }
    s.cp_of.assign(s.bytes.size() + 1, 0);
    for (size_t i = 0; i <= n; ++i) s.cp_of[s.off[i]] = static_cast<uint32_t>(i);
    return s;
  };

  std::vector<std::pair<uint32_t, uint32_t>> pieces, next;  // [begin, end) code point indices
  if (n > 0) pieces.push_back({0, static_cast<uint32_t>(n)});
  for (const Regex& re : regex_) {
    const Subject& s = get(re.mode);
    MatchData md(re.code);
    next.clear();
    next.reserve(pieces.size() * 2);
    for (const auto& [b, e] : pieces) {
      const char* base = s.bytes.data() + s.off[b];
      const size_t len = s.off[e] - s.off[b];
      size_t pos = 0, last = 0;  // bytes relative to base
      while (pos < len) {
        const int rc = pcre2_match(re.code, reinterpret_cast<PCRE2_SPTR>(base), len, pos,
                                   PCRE2_NO_UTF_CHECK, md.md, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
          PCRE2_UCHAR msg[256];
          pcre2_get_error_message(rc, msg, sizeof msg);
          throw Error(ErrorKind::Internal, std::string("pre-tokenizer regex failed: ") +
                                               reinterpret_cast<const char*>(msg));
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.md);
        const size_t ms = ov[0], me = ov[1];
        if (me == ms) {  // empty match: step over one character
          pos = ms + utf8_lead_len(static_cast<uint8_t>(base[ms]));
          continue;
        }
        const uint32_t cb = s.cp_of[s.off[b] + ms], ce = s.cp_of[s.off[b] + me];
        if (ms > last) next.push_back({s.cp_of[s.off[b] + last], cb});
        next.push_back({cb, ce});
        last = pos = me;
      }
      if (last < len) next.push_back({s.cp_of[s.off[b] + last], e});
    }
    pieces.swap(next);
  }
  std::vector<std::string_view> words;
  words.reserve(pieces.size());
  for (const auto& [b, e] : pieces)
    words.push_back(std::string_view(clean).substr(coff[b], coff[e] - coff[b]));
  return words;
}

struct Sym {
  int32_t prev, next;
  uint32_t off, len;
};
struct Cand {
  int32_t rank, left, right;
  uint32_t len;
};
struct CandGreater {
  bool operator()(const Cand& a, const Cand& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

void BpeTokenizer::merge_word(std::string_view word, std::vector<int32_t>& out,
                              std::string& key) const {
  const Vocab& v = *vocab_;
  // Byte-level encoding of the word.
  std::string enc;
  enc.reserve(word.size() * 2);
  for (char c : word) utf8_append(enc, byte_to_cp(static_cast<uint8_t>(c)));
  if (ignore_merges_) {
    if (int32_t id = v.find(enc); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<Sym> sym;
  sym.reserve(enc.size());
  for (size_t off = 0; off < enc.size();) {
    const size_t len =
        std::min<size_t>(utf8_lead_len(static_cast<uint8_t>(enc[off])), enc.size() - off);
    const auto i = static_cast<int32_t>(sym.size());
    sym.push_back({i - 1, off + len == enc.size() ? -1 : i + 1, static_cast<uint32_t>(off),
                   static_cast<uint32_t>(len)});
    off += len;
  }
  std::priority_queue<Cand, std::vector<Cand>, CandGreater> heap;
  auto try_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    key.assign(enc, sym[l].off, sym[l].len);
    key += ' ';
    key.append(enc, sym[r].off, sym[r].len);
    auto it = rank_.find(key);
    if (it == rank_.end()) return;
    heap.push({it->second, l, r, sym[l].len + sym[r].len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_pair(i - 1, i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& l = sym[c.left];
    Sym& r = sym[c.right];
    if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    try_pair(l.prev, c.left);
    try_pair(c.left, l.next);
  }
  for (int32_t i = sym.empty() ? -1 : 0; i != -1; i = sym[i].next) {
    const std::string_view s = std::string_view(enc).substr(sym[i].off, sym[i].len);
    if (int32_t id = v.find(s); id >= 0) {
      out.push_back(id);
      continue;
    }
    // Not a token: one token per byte-level character, else the unknown token.
    for (size_t k = 0; k < s.size();) {
      const size_t len = std::min<size_t>(utf8_lead_len(static_cast<uint8_t>(s[k])), s.size() - k);
      const int32_t id = v.find(s.substr(k, len));
      if (id >= 0)
        out.push_back(id);
      else if (unk_id_ >= 0)
        out.push_back(unk_id_);
      k += len;
    }
  }
}

void BpeTokenizer::encode_text(std::string_view raw, bool /*after_special*/,
                               std::vector<int32_t>& out) const {
  std::string clean;
  const std::vector<std::string_view> words = split_words(raw, clean);
  // Words repeat a lot in real text: remember each word's tokens for this call.
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;
  std::vector<int32_t> cached;
  std::string key;
  for (std::string_view w : words) {
    if (w.size() <= 64) {
      auto it = cache.find(w);
      if (it != cache.end()) {
        out.insert(out.end(), cached.begin() + it->second.first,
                   cached.begin() + it->second.first + it->second.second);
        continue;
      }
      const size_t before = out.size();
      merge_word(w, out, key);
      const auto start = static_cast<uint32_t>(cached.size());
      cached.insert(cached.end(), out.begin() + before, out.end());
      cache.emplace(w, std::make_pair(start, static_cast<uint32_t>(out.size() - before)));
    } else {
      merge_word(w, out, key);
    }
  }
}

}  // namespace

std::unique_ptr<Tokenizer> tok_detail::make_bpe(const std::string& pre,
                                                std::vector<std::string> merges,
                                                std::string* resolved, bool* fallback,
                                                bool* default_add_bos, bool* ignore_merges) {
  const auto& table = pre_table();
  const PreSpec* spec = &table[0];
  *fallback = true;
  for (const PreSpec& s : table)
    for (std::string_view name : s.names)
      if (name == pre) {
        spec = &s;
        *fallback = false;
      }
  *resolved = *fallback ? std::string("default") : pre;
  *default_add_bos = spec->add_bos;
  *ignore_merges = spec->ignore_merges;
  return std::make_unique<BpeTokenizer>(*spec, std::move(merges));
}

std::vector<std::string> bpe_pre_tokenize(std::string_view pre, std::string_view text) {
  const auto& table = pre_table();
  const PreSpec* spec = &table[0];
  for (const PreSpec& s : table)
    for (std::string_view name : s.names)
      if (name == pre) spec = &s;
  BpeTokenizer t(*spec, {});
  std::string clean;
  std::vector<std::string> out;
  for (std::string_view w : t.split_words(text, clean)) out.emplace_back(w);
  return out;
}

}  // namespace moelab
