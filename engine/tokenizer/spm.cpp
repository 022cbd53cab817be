// SentencePiece-style tokenizer ("llama" vocabularies).
//
// Algorithm (SentencePiece BPE model, Kudo & Richardson 2018): the text gets a dummy-prefix
// space (at the start and after each special token, when add_space_prefix), spaces become
// U+2581, the text is split into UTF-8 characters, and the adjacent pair whose concatenation is
// the vocabulary token with the highest score is merged, repeatedly (ties: leftmost pair), until
// no pair forms a token. A final symbol that is not a token is emitted as byte-fallback tokens
// <0xNN> (or the unknown token when the vocabulary has no byte tokens).
// Cost: O(n log n) with a heap of candidate pairs and a linked list of symbols.
#include <queue>

#include "internal.h"

namespace moelab {
namespace {

class SpmTokenizer final : public Tokenizer {
 protected:
  void encode_text(std::string_view raw, bool after_special,
                   std::vector<int32_t>& out) const override;
};

struct Symbol {
  int32_t prev, next;
  uint32_t off, len;  // bytes in the escaped text; len 0 = merged away
};

struct Pair {
  float score;
  int32_t left, right;
  uint32_t len;  // combined length when queued (stale check)
};
struct PairLess {
  bool operator()(const Pair& a, const Pair& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

void SpmTokenizer::encode_text(std::string_view raw, bool after_special,
                               std::vector<int32_t>& out) const {
  const Vocab& v = *vocab_;
  std::string text;
  text.reserve(raw.size() + raw.size() / 4 + 4);
  if (add_space_prefix_ && after_special) text += "\xE2\x96\x81";
  for (char c : raw) {
    if (c == ' ')
      text += "\xE2\x96\x81";
    else
      text += c;
  }
  if (text.empty()) return;

  std::vector<Symbol> sym;
  sym.reserve(text.size());
  for (size_t off = 0; off < text.size();) {
    const size_t len = std::min<size_t>(tok_detail::utf8_lead_len(static_cast<uint8_t>(text[off])),
                                        text.size() - off);
    const auto i = static_cast<int32_t>(sym.size());
    sym.push_back({i - 1, off + len == text.size() ? -1 : i + 1, static_cast<uint32_t>(off),
                   static_cast<uint32_t>(len)});
    off += len;
  }

  std::priority_queue<Pair, std::vector<Pair>, PairLess> heap;
  auto try_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const uint32_t len = sym[l].len + sym[r].len;
    const int32_t id = v.find(std::string_view(text).substr(sym[l].off, len));
    // Control and unknown pieces are never produced from text (SentencePiece semantics).
    if (id < 0 || (v.attr[id] & (kAttrControl | kAttrUnknown))) return;
    heap.push({v.score[id], l, r, len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_pair(i - 1, i);

  while (!heap.empty()) {
    const Pair p = heap.top();
    heap.pop();
    Symbol& l = sym[p.left];
    Symbol& r = sym[p.right];
    if (l.len == 0 || r.len == 0 || l.next != p.right || l.len + r.len != p.len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = p.left;
    try_pair(l.prev, p.left);
    try_pair(p.left, l.next);
  }

  for (int32_t i = 0; i != -1; i = sym[i].next) {
    const std::string_view piece = std::string_view(text).substr(sym[i].off, sym[i].len);
    const int32_t id = v.find(piece);
    if (id >= 0 && !(v.attr[id] & (kAttrControl | kAttrUnknown))) {
      out.push_back(id);
      continue;
    }
    bool all_bytes = true;
    for (char c : piece) all_bytes = all_bytes && v.byte_token[static_cast<uint8_t>(c)] >= 0;
    if (all_bytes) {
      for (char c : piece) out.push_back(v.byte_token[static_cast<uint8_t>(c)]);
    } else if (unk_id_ >= 0) {
      out.push_back(unk_id_);  // no byte fallback: one unknown token per character
    }
  }
}

}  // namespace

std::unique_ptr<Tokenizer> tok_detail::make_spm() {
  return std::make_unique<SpmTokenizer>();
}

}  // namespace moelab
