#include "checks.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>

#include "moelab/core/error.h"
#include "moelab/core/files.h"
#include "moelab/model/card.h"
#include "moelab/report/report.h"

namespace moelab::cli {

namespace {

// Quoted for a message, control bytes escaped and at most 40 characters shown.
std::string shown_value(std::string_view s) {
  std::string shown = printable(s.substr(0, 40));
  if (s.size() > 40) shown += "...";
  return "'" + shown + "'";
}

// Strict decimal integer: optional '-', digits only. from_chars reports overflow.
template <typename T>
bool parse_decimal(std::string_view s, T& v) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = b + s.size();
  if (*b == '+') ++b;  // "+5" is five
  if (b == e) return false;
  const auto r = std::from_chars(b, e, v, 10);
  return r.ec == std::errc() && r.ptr == e;
}

}  // namespace

CLI::Validator int_range(int64_t lo, int64_t hi) {
  const std::string range = std::to_string(lo) + " to " + std::to_string(hi);
  return CLI::Validator(
      [lo, hi, range](std::string& s) -> std::string {
        int64_t v = 0;
        if (!parse_decimal(s, v) || v < lo || v > hi)
          return "must be an integer from " + range + ", not " + shown_value(s);
        s = std::to_string(v);
        return {};
      },
      std::to_string(lo) + ".." + std::to_string(hi));
}

CLI::Validator uint_range(uint64_t lo, uint64_t hi) {
  const std::string range = std::to_string(lo) + " to " + std::to_string(hi);
  return CLI::Validator(
      [lo, hi, range](std::string& s) -> std::string {
        uint64_t v = 0;
        if (s.empty() || s[0] == '-' || !parse_decimal(s, v) || v < lo || v > hi)
          return "must be an integer from " + range + ", not " + shown_value(s);
        s = std::to_string(v);
        return {};
      },
      std::to_string(lo) + ".." + std::to_string(hi));
}

CLI::Validator real_range(double lo, double hi) {
  char buf[96], desc[96];
  std::snprintf(buf, sizeof buf, "%g to %g", lo, hi);
  std::snprintf(desc, sizeof desc, "%g..%g", lo, hi);
  const std::string range = buf;
  return CLI::Validator(
      [lo, hi, range](std::string& s) -> std::string {
        double v = 0;
        const char* b = s.data();
        const char* e = b + s.size();
        if (b != e && *b == '+') ++b;
        const auto r = std::from_chars(b, e, v);
        if (b == e || r.ec != std::errc() || r.ptr != e || !std::isfinite(v) || v < lo || v > hi)
          return "must be a number from " + range + ", not " + shown_value(s);
        return {};
      },
      desc);
}

void add_sampling_options(CLI::App* sub, SamplerParams& s, bool penalties) {
  sub->add_option("--temp", s.temperature, "Temperature (0: greedy)")
      ->check(real_range(0, 100))
      ->capture_default_str();
  sub->add_option("--top-k", s.top_k, "Top-k (0: off)")
      ->transform(int_range(0, kMaxTopK))
      ->capture_default_str();
  sub->add_option("--top-p", s.top_p, "Top-p / nucleus (1: off)")
      ->check(real_range(0, 1))
      ->capture_default_str();
  sub->add_option("--min-p", s.min_p, "Min-p (0: off)")
      ->check(real_range(0, 1))
      ->capture_default_str();
  if (!penalties) return;
  sub->add_option("--repeat-penalty", s.repeat_penalty, "Repetition penalty (1: off)")
      ->check(real_range(0.01, 100))
      ->capture_default_str();
  sub->add_option("--repeat-last-n", s.penalty_last_n,
                  "Tokens the penalties look back over (0: off, -1: all)")
      ->transform(int_range(-1, kMaxContext))
      ->capture_default_str();
  sub->add_option("--frequency-penalty", s.frequency_penalty, "Frequency penalty")
      ->check(real_range(-100, 100))
      ->capture_default_str();
  sub->add_option("--presence-penalty", s.presence_penalty, "Presence penalty")
      ->check(real_range(-100, 100))
      ->capture_default_str();
}

void warn_top_k(const ModelCard& card, int32_t top_k, Io io) {
  if (top_k > 0 && card.n_vocab && static_cast<uint32_t>(top_k) >= card.n_vocab)
    io.err << "warning: --top-k " << top_k << " is not below the vocabulary (" << card.n_vocab
           << " tokens): it keeps every token, as --top-k 0\n";
}

std::vector<int32_t> parse_token_ids(std::string_view s, std::string_view option,
                                     uint32_t n_vocab) {
  const int64_t hi = n_vocab ? int64_t{n_vocab} - 1 : int64_t{0x7fffffff};
  std::vector<int32_t> ids;
  size_t i = 0;
  auto sep = [](char c) {
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '[' || c == ']';
  };
  while (i < s.size()) {
    if (sep(s[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && !sep(s[j])) ++j;
    const std::string_view piece = s.substr(i, j - i);
    int64_t v = -1;
    if (!parse_decimal(piece, v) || v < 0 || v > hi)
      throw Error(ErrorKind::BadInput,
                  shown_value(piece) + " is not a token id (an integer from 0 to " +
                      std::to_string(hi) + (n_vocab ? ", the model's vocabulary)" : ")"),
                  {.subject = std::string(option)});
    ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  if (ids.empty())
    throw Error(ErrorKind::BadInput, "no token ids given", {.subject = std::string(option)});
  return ids;
}

namespace {
template <typename T>
void unique_impl(const std::vector<T>& ids, std::string_view option, std::string_view what) {
  std::set<T> seen;
  for (T id : ids)
    if (!seen.insert(id).second)
      throw Error(ErrorKind::BadInput,
                  std::string(what) + " " + std::to_string(id) +
                      " is given twice; each must appear once (a repeat would count the same "
                      "result twice)",
                  {.subject = std::string(option)});
}
}  // namespace

void require_unique(const std::vector<int64_t>& ids, std::string_view option,
                    std::string_view what) {
  unique_impl(ids, option, what);
}
void require_unique(const std::vector<uint64_t>& ids, std::string_view option,
                    std::string_view what) {
  unique_impl(ids, option, what);
}

uint64_t memory_available() {
  if (const char* env = std::getenv("MOELAB_MEMORY_AVAILABLE")) {
    uint64_t v = 0;
    if (parse_decimal(std::string_view(env), v)) return v;
  }
  uint64_t avail = 0;
  {
    std::ifstream in("/proc/meminfo");
    std::string key;
    uint64_t kib = 0;
    std::string unit;
    while (in >> key >> kib) {
      std::getline(in, unit);
      if (key == "MemAvailable:") {
        avail = kib * 1024;
        break;
      }
    }
  }
  // cgroup v2 limit of this process, when one is set.
  std::ifstream max("/sys/fs/cgroup/memory.max"), cur("/sys/fs/cgroup/memory.current");
  std::string m;
  uint64_t used = 0;
  if (max >> m && m != "max" && cur >> used) {
    uint64_t limit = 0;
    if (parse_decimal(std::string_view(m), limit)) {
      const uint64_t room = limit > used ? limit - used : 0;
      if (avail == 0 || room < avail) avail = room;
    }
  }
  return avail;
}

uint64_t context_bytes(const ModelCard& c, uint64_t n_ctx, uint32_t kv_bytes, bool all_logits) {
  // long double: crafted metadata or a huge n_ctx must saturate, never wrap.
  // As ModelCard::kv_cache_bytes (MLA: one row per token and layer, V inside it).
  long double b = static_cast<long double>(c.n_layer) * n_ctx * c.n_head_kv *
                  (static_cast<long double>(c.head_dim) + (c.is_mla() ? 0 : c.head_dim_v)) *
                  kv_bytes;
  if (all_logits) b += static_cast<long double>(n_ctx) * c.n_vocab * sizeof(float);
  constexpr long double kMax = static_cast<long double>(std::numeric_limits<uint64_t>::max());
  return b >= kMax ? std::numeric_limits<uint64_t>::max() : static_cast<uint64_t>(b);
}

void preflight_context(const ModelCard& card, uint64_t n_ctx, uint32_t kv_bytes, bool all_logits,
                       std::string_view backend, std::string_view option, Io io, bool offer_f16) {
  const std::string opt = std::string(option) + " " + std::to_string(n_ctx);
  if (card.context_length && n_ctx > card.context_length)
    io.err << "warning: " << opt << " is beyond the model's trained context length ("
           << card.context_length << " tokens); output past it is usually degraded\n";
  if (backend == "cuda") return;  // device memory; the CUDA context reports its own failure
  const uint64_t need = context_bytes(card, n_ctx, kv_bytes, all_logits);
  const uint64_t avail = memory_available();
  if (avail && need > avail)
    throw Error(ErrorKind::BadInput,
                opt + ": the context needs " + format_bytes(need) + " (KV cache" +
                    (all_logits ? " and logits" : "") + "), but only " + format_bytes(avail) +
                    " of memory is available; use a smaller " + std::string(option) +
                    (offer_f16 && kv_bytes > 2 ? " or --kv-f16" : ""));
}

std::string read_utf8_text(const std::string& path) {
  return read_utf8_text_file(path, "text file");
}

std::string json_text(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto esc = [&out](unsigned char c) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02X", c);
    out += buf;
  };
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F)
        esc(c);
      else
        out += static_cast<char>(c);
      ++i;
      continue;
    }
    const size_t bad = first_non_text_byte(s.substr(i, 4));
    // Length of the sequence starting at i.
    const int n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    if (n == 1 || i + n > s.size() ||
        (bad != std::string_view::npos && bad < static_cast<size_t>(n))) {
      esc(c);
      ++i;
      continue;
    }
    if (n == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) {  // C1 control
      esc(c);
      esc(static_cast<unsigned char>(s[i + 1]));
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  return out;
}

namespace {
// Bytes at the end of `s` that begin a UTF-8 sequence the next piece completes (a token piece
// may be part of a character).
size_t incomplete_utf8_tail(const std::string& s) {
  for (size_t back = 1; back <= std::min<size_t>(3, s.size()); ++back) {
    const auto c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t need = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    return need > back ? back : 0;
  }
  return 0;
}
}  // namespace

void GeneratedText::write(std::string_view piece) {
  if (!escape_) {
    out_ << piece << std::flush;
    return;
  }
  pending_ += piece;
  const size_t keep = incomplete_utf8_tail(pending_);
  out_ << report::visible_text(pending_.substr(0, pending_.size() - keep)) << std::flush;
  pending_.erase(0, pending_.size() - keep);
}

void GeneratedText::finish() {
  if (!pending_.empty()) out_ << report::visible_text(pending_) << std::flush;
  pending_.clear();
}

}  // namespace moelab::cli
