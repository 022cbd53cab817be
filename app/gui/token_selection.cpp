#include "token_selection.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace moelab::lab {

void TokenSelectionModel::set(TokenSelection s) {
  if (s == sel_) return;
  sel_ = s;
  for (const auto& l : listeners_) l(sel_);
}

void TokenSelectionModel::select_generated(int64_t position) {
  if (position < 0) return clear();
  set({TokenSelection::Part::kGenerated, position});
}

void TokenSelectionModel::select_prompt(int64_t position) {
  if (position < 0) return clear();
  set({TokenSelection::Part::kPrompt, position});
}

void TokenSelectionModel::clear() {
  set({});
}

int64_t parse_token_id(const std::string& text) {
  size_t a = text.find_first_not_of(" \t");
  if (a == std::string::npos) return -1;
  const size_t b = text.find_last_not_of(" \t") + 1;
  int64_t v = 0;
  for (size_t i = a; i < b; ++i) {
    if (text[i] < '0' || text[i] > '9') return -1;
    v = v * 10 + (text[i] - '0');
    if (v > INT32_MAX) return -1;
  }
  return v;
}

namespace {

char fold(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool contains(const std::string& hay, const std::string& needle, bool case_sensitive) {
  if (case_sensitive) return hay.find(needle) != std::string::npos;
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                     [](char x, char y) { return fold(x) == fold(y); }) != hay.end();
}

}  // namespace

std::vector<int64_t> find_tokens(const std::vector<LiveToken>& tokens, const TokenQuery& q,
                                 size_t from) {
  std::vector<int64_t> hits;
  const int64_t id = q.by_id ? parse_token_id(q.text) : -1;
  if (q.by_id ? id < 0 : q.text.empty()) return hits;
  for (size_t i = from; i < tokens.size(); ++i) {
    const LiveToken& t = tokens[i];
    if (t.index < 0) continue;
    if (q.by_id ? t.id == id : contains(t.piece, q.text, q.case_sensitive)) hits.push_back(t.index);
  }
  return hits;
}

std::string printable_piece(const std::string& piece) {
  std::string out;
  out.reserve(piece.size());
  for (const char ch : piece) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out;
}

std::string describe_token(const LiveToken& t, int layer) {
  std::string s = "token " + std::to_string(t.index) + " '" + printable_piece(t.piece) + "'";
  if (t.id >= 0) s += " (id " + std::to_string(t.id) + ")";
  if (t.experts.empty()) return s;
  s += " \u2014 layer " + std::to_string(layer) + ": ";
  if (layer < 0 || static_cast<size_t>(layer) >= t.experts.size() ||
      t.experts[static_cast<size_t>(layer)].empty())
    return s + "not routed";
  const auto& e = t.experts[static_cast<size_t>(layer)];
  const std::vector<float> none;
  const auto& w =
      static_cast<size_t>(layer) < t.weights.size() ? t.weights[static_cast<size_t>(layer)] : none;
  std::string ids, ws;
  for (size_t k = 0; k < e.size(); ++k) {
    if (k) {
      ids += ", ";
      ws += ", ";
    }
    ids += std::to_string(e[k]);
    char buf[32] = "n/a";
    if (k < w.size() && std::isfinite(w[k])) std::snprintf(buf, sizeof buf, "%.2f", double(w[k]));
    ws += buf;
  }
  return s + (e.size() == 1 ? "expert " : "experts ") + ids + " (" + ws + ")";
}

std::vector<std::pair<int, int>> expert_cells(const LiveToken& t) {
  std::vector<std::pair<int, int>> cells;
  for (size_t l = 0; l < t.experts.size(); ++l)
    for (const uint16_t e : t.experts[l]) cells.emplace_back(static_cast<int>(l), int(e));
  return cells;
}

}  // namespace moelab::lab
