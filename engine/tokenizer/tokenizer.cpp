// Tokenizer: vocabulary loading from GGUF, special-token splitting, decoding, display pieces,
// streaming decode. The kind-specific encoders are in spm.cpp and bpe.cpp.
#include "moelab/tokenizer/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "internal.h"
#include "moelab/core/error.h"
#include "moelab/core/log.h"
#include "moelab/gguf/gguf.h"

namespace moelab {

namespace tok_detail {

uint32_t utf8_decode(std::string_view s, size_t i, int* len) {
  const auto c0 = static_cast<uint8_t>(s[i]);
  *len = 1;
  if (c0 < 0x80) return c0;
  int n = utf8_lead_len(c0);
  if (n == 1 || i + n > s.size()) return 0xFFFD;
  uint32_t cp = c0 & (0xFF >> (n + 1));
  for (int k = 1; k < n; ++k) {
    const auto c = static_cast<uint8_t>(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0xFFFD;
    cp = (cp << 6) | (c & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are invalid.
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0xFFFD;
  *len = n;
  return cp;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {
struct ByteMap {
  uint32_t to_cp[256];
  int16_t from_cp[324];  // images are < 256 + 68
  ByteMap() {
    std::fill(std::begin(from_cp), std::end(from_cp), int16_t(-1));
    uint32_t extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cp[b] = printable ? b : 256 + extra++;
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}
}  // namespace

uint32_t byte_to_cp(uint8_t b) {
  return byte_map().to_cp[b];
}
int cp_to_byte(uint32_t cp) {
  return cp < 324 ? byte_map().from_cp[cp] : -1;
}

}  // namespace tok_detail

using namespace tok_detail;

std::string utf8_take_complete(std::string_view bytes, bool hold_incomplete, std::string* rest) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    int len = 0;
    const uint32_t cp = utf8_decode(bytes, i, &len);
    if (cp == 0xFFFD && len == 1 && !(bytes.substr(i, 3) == "\xEF\xBF\xBD")) {
      // Invalid here: is it a prefix that more bytes could complete?
      const auto c0 = static_cast<uint8_t>(bytes[i]);
      const int need = utf8_lead_len(c0);
      if (need > 1 && i + need > bytes.size()) {
        bool prefix_ok = true;
        for (size_t k = i + 1; k < bytes.size(); ++k)
          if ((static_cast<uint8_t>(bytes[k]) & 0xC0) != 0x80) prefix_ok = false;
        if (prefix_ok) {
          if (hold_incomplete && rest) {
            *rest = std::string(bytes.substr(i));
          } else {
            out += "\xEF\xBF\xBD";
          }
          return out;
        }
      }
      out += "\xEF\xBF\xBD";
      i += 1;
      continue;
    }
    out.append(bytes.substr(i, len));
    i += len;
  }
  if (rest) rest->clear();
  return out;
}

Tokenizer::~Tokenizer() = default;

namespace {

std::string key_subject(std::string_view key) {
  return "metadata key '" + std::string(key) + "'";
}

// Reads an optional token id key; -1 for "none" (absent, or -1 / 0xFFFFFFFF).
int32_t read_id(const gguf::File& f, const char* key, int32_t def, uint64_t n_vocab, bool strict) {
  const gguf::Value* v = f.find(key);
  if (!v) return def < 0 || static_cast<uint64_t>(def) >= n_vocab ? -1 : def;
  if (!v->is_integer())
    f.fail("expected an integer token id, found " + std::string(gguf::value_type_name(v->type())),
           key_subject(key));
  if (v->type() == gguf::ValueType::UINT32 && v->as_u64() == 0xffffffffull) return -1;
  if (v->type() == gguf::ValueType::UINT64 && v->as_u64() == ~0ull) return -1;
  const int64_t id =
      v->type() == gguf::ValueType::UINT64 ? static_cast<int64_t>(v->as_u64()) : v->as_i64();
  if (id == -1) return -1;
  if (id < 0 || static_cast<uint64_t>(id) >= n_vocab) {
    if (strict)
      f.fail("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                 std::to_string(n_vocab - 1) + ")",
             key_subject(key));
    log_warning(f.path() + ": " + key + " = " + std::to_string(id) +
                " is outside the vocabulary; ignored");
    return -1;
  }
  return static_cast<int32_t>(id);
}

const gguf::Value* find_array(const gguf::File& f, const char* key, gguf::ValueType et,
                              const char* desc, bool required) {
  const gguf::Value* v = f.find(key);
  if (!v) {
    if (required) f.fail("is missing: the file has no tokenizer of this kind", key_subject(key));
    return nullptr;
  }
  if (v->type() != gguf::ValueType::ARRAY || v->elem_type() != et)
    f.fail(std::string("must be an array of ") + desc + " (" +
               std::string(gguf::value_type_name(et)) + "), found " +
               (v->type() == gguf::ValueType::ARRAY
                    ? "an array of " + std::string(gguf::value_type_name(v->elem_type()))
                    : "a single " + std::string(gguf::value_type_name(v->type()))),
           key_subject(key));
  return v;
}

uint32_t attr_from_type(int64_t t) {
  switch (t) {
    case 1:
      return kAttrNormal;
    case 2:
      return kAttrUnknown;
    case 3:
      return kAttrControl;
    case 4:
      return kAttrUserDefined;
    case 5:
      return kAttrUnused;
    case 6:
      return kAttrByte;
    default:
      return kAttrUndefined;
  }
}

// Well-known end-of-turn token texts (llama.cpp detects them the same way, by text).
constexpr std::string_view kEotTexts[] = {"<|eot_id|>",
                                          "<|im_end|>",
                                          "<|end|>",
                                          "<end_of_turn>",
                                          "<|endoftext|>",
                                          "<EOT>",
                                          "<\xEF\xBD\x9C"
                                          "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"};
constexpr std::string_view kEogTexts[] = {"<|eot_id|>",    "<|im_end|>", "<|end|>", "<end_of_turn>",
                                          "<|endoftext|>", "<|eom_id|>", "<EOT>"};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::File& f) {
  using gguf::ValueType;
  const std::string model = f.get_string("tokenizer.ggml.model", "");
  if (model.empty())
    f.fail("is missing: the file has no tokenizer", key_subject("tokenizer.ggml.model"));
  const gguf::Value* tokens =
      find_array(f, "tokenizer.ggml.tokens", ValueType::STRING, "strings", true);
  const gguf::Value* scores =
      find_array(f, "tokenizer.ggml.scores", ValueType::FLOAT32, "32-bit floats", false);
  const gguf::Value* types =
      find_array(f, "tokenizer.ggml.token_type", ValueType::INT32, "32-bit integers", false);
  const uint64_t n = tokens->size();
  if (n == 0) f.fail("the vocabulary is empty", key_subject("tokenizer.ggml.tokens"));
  if (n > 0x7fffffffull)
    f.fail("the vocabulary is too large", key_subject("tokenizer.ggml.tokens"));
  auto check_len = [&](const gguf::Value* v, const char* key) {
    if (v && v->size() != n)
      f.fail("has " + std::to_string(v->size()) + " entries but the vocabulary has " +
                 std::to_string(n) + " tokens",
             key_subject(key));
  };
  check_len(scores, "tokenizer.ggml.scores");
  check_len(types, "tokenizer.ggml.token_type");

  std::unique_ptr<Tokenizer> tok;
  bool ignore_merges = false;
  bool default_add_bos = false;
  std::string pre_name;
  bool pre_fallback = false;
  if (model == "llama") {
    tok = make_spm();
    tok->kind_ = VocabKind::Spm;
    default_add_bos = true;
  } else if (model == "gpt2") {
    const gguf::Value* merges =
        find_array(f, "tokenizer.ggml.merges", ValueType::STRING, "strings", true);
    std::vector<std::string> m;
    m.reserve(merges->size());
    for (std::string_view s : merges->strings()) m.emplace_back(s);
    const std::string pre = f.get_string("tokenizer.ggml.pre", "");
    tok = make_bpe(pre, std::move(m), &pre_name, &pre_fallback, &default_add_bos, &ignore_merges);
    tok->kind_ = VocabKind::Bpe;
    if (pre_fallback)
      log_warning(f.path() + ": " +
                  (pre.empty() ? std::string("tokenizer.ggml.pre is missing")
                               : "unknown pre-tokenizer tokenizer.ggml.pre = '" + pre + "'") +
                  "; using the 'default' pre-tokenizer: token ids may differ from the model's");
  } else {
    f.fail("tokenizer kind '" + model +
               "' is not supported (supported: 'llama' SentencePiece-style, 'gpt2' byte-level BPE)",
           key_subject("tokenizer.ggml.model"));
  }
  tok->pre_ = pre_name;
  tok->pre_fallback_ = pre_fallback;

  auto v = std::make_unique<Vocab>();
  v->text.reserve(n);
  for (std::string_view s : tokens->strings()) v->text.emplace_back(s);
  v->score.assign(n, 0.0f);
  if (scores) std::memcpy(v->score.data(), scores->raw().data(), n * sizeof(float));
  v->attr.assign(n, kAttrNormal);
  if (types)
    for (uint64_t i = 0; i < n; ++i) v->attr[i] = attr_from_type(types->int_at(i));
  v->to_id.reserve(n);
  for (uint64_t i = 0; i < n; ++i)
    v->to_id.emplace(std::string_view(v->text[i]), static_cast<int32_t>(i));

  const bool spm = tok->kind_ == VocabKind::Spm;
  tok->bos_id_ = read_id(f, "tokenizer.ggml.bos_token_id", spm ? 1 : 11, n, true);
  tok->eos_id_ = read_id(f, "tokenizer.ggml.eos_token_id", spm ? 2 : 11, n, true);
  tok->unk_id_ = read_id(f, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, n, true);
  tok->eot_id_ = read_id(f, "tokenizer.ggml.eot_token_id", -1, n, true);
  const int32_t eom = read_id(f, "tokenizer.ggml.eom_token_id", -1, n, true);
  for (const char* k : {"tokenizer.ggml.padding_token_id", "tokenizer.ggml.seperator_token_id",
                        "tokenizer.ggml.mask_token_id"})
    read_id(f, k, -1, n, false);
  tok->add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token", default_add_bos);
  tok->add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token", false);
  tok->add_space_prefix_ = f.get_bool("tokenizer.ggml.add_space_prefix", spm);
  if (tok->add_bos_ && tok->bos_id_ < 0)
    f.fail("the vocabulary asks for a BOS token but has none",
           key_subject("tokenizer.ggml.add_bos_token"));
  if (tok->add_eos_ && tok->eos_id_ < 0)
    f.fail("the vocabulary asks for an EOS token but has none",
           key_subject("tokenizer.ggml.add_eos_token"));
  tok->chat_template_ = f.get_string("tokenizer.chat_template", "");

  // End-of-turn / end-of-generation tokens recognised by their text; they are control tokens.
  if (tok->eot_id_ < 0)
    for (std::string_view t : kEotTexts)
      if (int32_t id = v->find(t); id >= 0) {
        tok->eot_id_ = id;
        break;
      }
  for (std::string_view t : kEogTexts)
    if (int32_t id = v->find(t); id >= 0) {
      v->eog.insert(id);
      if (!(v->attr[id] & kAttrControl)) v->attr[id] = kAttrControl;
    }
  for (int32_t id : {tok->eos_id_, tok->eot_id_, eom})
    if (id >= 0) v->eog.insert(id);

  // Phi-3 special tokens swallow the whitespace on their right (as in llama.cpp).
  std::string name = f.get_string("general.name", "");
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const bool phi3 =
      name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos;

  for (uint64_t i = 0; i < n; ++i)
    if (v->attr[i] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) {
      if (v->text[i].empty()) continue;
      v->special.push_back(static_cast<int32_t>(i));
      if (phi3) v->attr[i] |= kAttrRStrip;
    }
  if (phi3) {
    for (std::string_view t : {"<unk>", "<s>", "<|endoftext|>"})
      if (int32_t id = v->find(t); id >= 0) v->attr[id] &= ~kAttrRStrip;
    if (int32_t id = v->find("</s>"); id >= 0) v->attr[id] |= kAttrRStrip;
  }
  std::stable_sort(v->special.begin(), v->special.end(),
                   [&](int32_t a, int32_t b) { return v->text[a].size() > v->text[b].size(); });

  for (int32_t id : v->special)
    v->special_by_byte[static_cast<uint8_t>(v->text[id][0])].push_back(id);

  // SPM byte fallback tokens <0xNN>.
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    v->byte_token[b] = v->find(buf);
  }
  tok->vocab_ = std::move(v);
  return tok;
}

int32_t Tokenizer::n_vocab() const {
  return static_cast<int32_t>(vocab_->text.size());
}

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_vocab())
    throw Error(ErrorKind::BadInput, "token id " + std::to_string(id) +
                                         " is outside the vocabulary (0.." +
                                         std::to_string(n_vocab() - 1) + ")");
  return vocab_->text[id];
}

int32_t Tokenizer::find_token(std::string_view text) const {
  return vocab_->find(text);
}
uint32_t Tokenizer::attr(int32_t id) const {
  token_text(id);
  return vocab_->attr[id];
}
float Tokenizer::score(int32_t id) const {
  token_text(id);
  return vocab_->score[id];
}
bool Tokenizer::is_eog(int32_t id) const {
  return vocab_->eog.count(id) != 0;
}
bool Tokenizer::is_control(int32_t id) const {
  return id >= 0 && id < n_vocab() && (vocab_->attr[id] & (kAttrControl | kAttrUnknown));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  EncodeOptions o;
  o.parse_special = parse_special;
  if (!add_special) o.add_bos = o.add_eos = false;
  return encode(text, o);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& opts) const {
  const Vocab& v = *vocab_;
  // Split the text into raw stretches and special tokens. Each special token is searched in
  // every raw stretch left so far, longest token first (the order llama.cpp uses). A first pass
  // keeps only tokens that occur at all, so the cost stays linear in the text length for
  // vocabularies with many special tokens.
  struct Frag {
    size_t off, len;
    int32_t id;  // -1 for raw text
  };
  std::vector<Frag> frags;
  if (!text.empty()) frags.push_back({0, text.size(), -1});
  if (!text.empty()) {
    // One scan: which special tokens occur at all (grouped by first byte).
    std::unordered_set<int32_t> seen;
    for (size_t i = 0; i < text.size(); ++i) {
      for (int32_t id : v.special_by_byte[static_cast<uint8_t>(text[i])]) {
        if (seen.count(id)) continue;
        const std::string& s = v.text[id];
        if (text.compare(i, s.size(), s) == 0) seen.insert(id);
      }
    }
    std::vector<int32_t> present;
    for (int32_t id : v.special) {
      const uint32_t a = v.attr[id];
      if (!opts.parse_special && (a & (kAttrControl | kAttrUnknown))) continue;
      if (seen.count(id)) present.push_back(id);
    }
    for (int32_t id : present) {
      const std::string& s = v.text[id];
      const uint32_t a = v.attr[id];
      std::vector<Frag> next;
      next.reserve(frags.size());
      for (const Frag& fr : frags) {
        if (fr.id >= 0) {
          next.push_back(fr);
          continue;
        }
        size_t off = fr.off, len = fr.len;
        while (len > 0) {
          const size_t m = text.substr(off, len).find(s);
          if (m == std::string_view::npos) break;
          size_t left_len = m;
          if (a & kAttrLStrip)
            while (left_len > 0 &&
                   std::isspace(static_cast<unsigned char>(text[off + left_len - 1])))
              --left_len;
          if (left_len > 0) next.push_back({off, left_len, -1});
          next.push_back({0, 0, id});
          size_t r_off = off + m + s.size();
          size_t r_len = len - m - s.size();
          if (a & kAttrRStrip)
            while (r_len > 0 && std::isspace(static_cast<unsigned char>(text[r_off]))) {
              ++r_off;
              --r_len;
            }
          off = r_off;
          len = r_len;
        }
        if (len > 0) next.push_back({off, len, -1});
      }
      frags.swap(next);
    }
  }

  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  const bool add_bos = opts.add_bos.value_or(add_bos_);
  const bool add_eos = opts.add_eos.value_or(add_eos_);
  if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);
  bool after_special = true;
  for (const Frag& fr : frags) {
    if (fr.id >= 0) {
      out.push_back(fr.id);
      after_special = true;
    } else {
      encode_text(text.substr(fr.off, fr.len), after_special, out);
      after_special = false;
    }
  }
  if (add_eos && eos_id_ >= 0) out.push_back(eos_id_);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  const std::string& t = token_text(id);
  const uint32_t a = vocab_->attr[id];
  if (a & (kAttrControl | kAttrUnknown)) return render_special ? t : std::string();
  if (a & kAttrUserDefined) return t;
  if (kind_ == VocabKind::Spm) {
    if (a & kAttrByte) {
      // "<0xNN>"
      if (t.size() == 6)
        return std::string(1, static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
      return std::string();
    }
    if (a & kAttrNormal) {
      std::string r;
      r.reserve(t.size());
      for (size_t i = 0; i < t.size(); ++i) {
        if (t.compare(i, 3, "\xE2\x96\x81") == 0) {
          r += ' ';
          i += 2;
        } else {
          r += t[i];
        }
      }
      return r;
    }
    return std::string();
  }
  if (a & kAttrNormal) {
    std::string r;
    r.reserve(t.size());
    for (size_t i = 0; i < t.size();) {
      int len = 0;
      const uint32_t cp = utf8_decode(t, i, &len);
      const int b = cp_to_byte(cp);
      if (b >= 0)
        r += static_cast<char>(b);
      else
        r.append(t, i, len);
      i += len;
    }
    return r;
  }
  return std::string();
}

std::string Tokenizer::decode(std::span<const int32_t> ids, const DecodeOptions& opts) const {
  if (opts.remove_special) {
    if (add_bos_ && !ids.empty() && ids.front() == bos_id_) ids = ids.subspan(1);
    if (add_eos_ && !ids.empty() && ids.back() == eos_id_) ids = ids.first(ids.size() - 1);
  }
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    std::string p = token_to_piece(id, opts.render_special);
    if (first && !p.empty()) {
      if (opts.strip_dummy_prefix && add_space_prefix_ && kind_ == VocabKind::Spm && p[0] == ' ')
        p.erase(0, 1);
      first = false;
    }
    out += p;
  }
  return out;
}

std::string Tokenizer::display_piece(int32_t id) const {
  const std::string& t = token_text(id);
  const uint32_t a = vocab_->attr[id];
  if (kind_ == VocabKind::Spm && (a & kAttrByte)) return t;  // "<0xNN>"
  const bool as_text = a & (kAttrControl | kAttrUnknown | kAttrUnused) || a == kAttrUndefined;
  const std::string bytes = as_text ? t : token_to_piece(id);
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    const auto c = static_cast<uint8_t>(bytes[i]);
    int len = 0;
    const uint32_t cp = utf8_decode(bytes, i, &len);
    char buf[8];
    if (c == ' ') {
      out += "\xE2\x90\xA3";  // ␣
    } else if (c == '\n') {
      out += "\xE2\x86\xB5";  // ↵
    } else if (c == '\t') {
      out += "\xE2\x87\xA5";  // ⇥
    } else if (c == '\r') {
      out += "\xE2\x90\x8D";  // ␍
    } else if (c < 0x20 || c == 0x7F ||
               (cp == 0xFFFD && len == 1 && bytes.compare(i, 3, "\xEF\xBF\xBD") != 0)) {
      std::snprintf(buf, sizeof buf, "<0x%02X>", c);
      out += buf;
      len = 1;
    } else {
      out.append(bytes, i, len);
    }
    i += len;
  }
  return out.empty() ? "<empty>" : out;
}

StreamDecoder::StreamDecoder(const Tokenizer& tok, DecodeOptions opts) : tok_(&tok), opts_(opts) {}

std::string StreamDecoder::push(int32_t id) {
  std::string p = tok_->token_to_piece(id, opts_.render_special);
  if (first_ && !p.empty()) {
    if (opts_.strip_dummy_prefix && tok_->add_space_prefix() && tok_->kind() == VocabKind::Spm &&
        p[0] == ' ')
      p.erase(0, 1);
    first_ = false;
  }
  pending_ += p;
  std::string rest;
  std::string out = utf8_take_complete(pending_, true, &rest);
  pending_ = std::move(rest);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = utf8_take_complete(pending_, false, nullptr);
  pending_.clear();
  return out;
}

void StreamDecoder::reset() {
  pending_.clear();
  first_ = true;
}

}  // namespace moelab
