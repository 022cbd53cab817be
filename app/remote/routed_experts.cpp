#include "moelab/remote/routed_experts.h"

#include <array>
#include <cstring>

#include "moelab/core/error.h"

namespace moelab::remote {

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

[[noreturn]] void bad(const std::string& what) {
  throw Error(ErrorKind::BadInput, what, {.subject = "routed_experts"});
}
}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 |
                       uint32_t(uint8_t(in[i + 2]));
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (const size_t rest = in.size() - i; rest > 0) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::array<int, 256> val;
  val.fill(-1);
  for (int i = 0; i < 64; ++i) val[static_cast<uint8_t>(kAlphabet[i])] = i;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    int pad = 0;
    uint32_t v = 0;
    for (size_t j = 0; j < 4; ++j) {
      const char c = in[i + j];
      if (c == '=') {
        if (!last || j < 2) return std::nullopt;
        ++pad;
        v <<= 6;
        continue;
      }
      if (pad > 0) return std::nullopt;  // data after padding
      const int d = val[static_cast<uint8_t>(c)];
      if (d < 0) return std::nullopt;
      v = v << 6 | static_cast<uint32_t>(d);
    }
    out += static_cast<char>((v >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((v >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(v & 0xff);
  }
  return out;
}

std::string encode_sglang(const RoutedExperts& r) {
  std::string bytes(r.ids.size() * 4, '\0');
  for (size_t i = 0; i < r.ids.size(); ++i) {
    const auto u = static_cast<uint32_t>(r.ids[i]);
    for (int b = 0; b < 4; ++b) bytes[i * 4 + b] = static_cast<char>((u >> (8 * b)) & 0xff);
  }
  return base64_encode(bytes);
}

nlohmann::json encode_vllm(const RoutedExperts& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t t = 0; t < r.n_tokens; ++t) {
    nlohmann::json layers = nlohmann::json::array();
    for (int64_t l = 0; l < r.n_layers; ++l) {
      nlohmann::json ks = nlohmann::json::array();
      for (int64_t k = 0; k < r.top_k; ++k) ks.push_back(r.at(t, l, k));
      layers.push_back(std::move(ks));
    }
    rows.push_back(std::move(layers));
  }
  return rows;
}

RoutedExperts decode_sglang(std::string_view b64, int64_t n_tokens, int64_t top_k, int64_t start) {
  const auto bytes = base64_decode(b64);
  if (!bytes) bad("SGLang routed_experts is not valid base64");
  if (bytes->size() % 4 != 0)
    bad("SGLang routed_experts holds " + std::to_string(bytes->size()) +
        " bytes, not a whole number of int32 ids");
  if (top_k <= 0) bad("SGLang routed_experts cannot be decoded without top_k");
  RoutedExperts r;
  r.start = start;
  r.top_k = top_k;
  r.n_tokens = n_tokens;
  const auto n = static_cast<int64_t>(bytes->size() / 4);
  if (n_tokens <= 0 || n % n_tokens != 0 || (n / n_tokens) % top_k != 0 || n == 0)
    bad("SGLang routed_experts holds " + std::to_string(n) + " ids, not " +
        std::to_string(n_tokens) + " tokens x layers x top-k " + std::to_string(top_k));
  r.n_layers = n / n_tokens / top_k;
  r.ids.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u = 0;
    for (int b = 0; b < 4; ++b)
      u |= uint32_t(uint8_t((*bytes)[static_cast<size_t>(i * 4 + b)])) << (8 * b);
    const auto id = static_cast<int32_t>(u);
    if (id < 0)
      bad("SGLang routed_experts holds a negative expert id (" + std::to_string(id) + ")");
    r.ids[static_cast<size_t>(i)] = id;
  }
  return r;
}

RoutedExperts decode_vllm(const nlohmann::json& v, int64_t n_tokens, int64_t start) {
  if (!v.is_array()) bad("vLLM routed_experts must be an array [tokens][layers][top_k]");
  RoutedExperts r;
  r.start = start;
  r.n_tokens = static_cast<int64_t>(v.size());
  if (n_tokens >= 0 && r.n_tokens != n_tokens)
    bad("vLLM routed_experts has " + std::to_string(r.n_tokens) + " token rows, expected " +
        std::to_string(n_tokens));
  for (size_t t = 0; t < v.size(); ++t) {
    if (!v[t].is_array() || v[t].empty())
      bad("vLLM routed_experts[" + std::to_string(t) + "] must be a non-empty array of layers");
    if (t == 0) r.n_layers = static_cast<int64_t>(v[t].size());
    if (static_cast<int64_t>(v[t].size()) != r.n_layers)
      bad("vLLM routed_experts is ragged: token " + std::to_string(t) + " has " +
          std::to_string(v[t].size()) + " layers, token 0 has " + std::to_string(r.n_layers));
    for (size_t l = 0; l < v[t].size(); ++l) {
      const auto& ks = v[t][l];
      if (!ks.is_array() || ks.empty())
        bad("vLLM routed_experts[" + std::to_string(t) + "][" + std::to_string(l) +
            "] must be a non-empty array of expert ids");
      if (t == 0 && l == 0) r.top_k = static_cast<int64_t>(ks.size());
      if (static_cast<int64_t>(ks.size()) != r.top_k)
        bad("vLLM routed_experts is ragged: top-k " + std::to_string(ks.size()) + " at [" +
            std::to_string(t) + "][" + std::to_string(l) + "], " + std::to_string(r.top_k) +
            " at [0][0]");
      for (const auto& id : ks) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
          bad("vLLM routed_experts[" + std::to_string(t) + "][" + std::to_string(l) +
              "] holds something other than a non-negative expert id");
        r.ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
    }
  }
  return r;
}

std::vector<std::vector<int32_t>> generated_rows(const RoutedExperts& r, int64_t prompt_tokens,
                                                 int64_t completion_tokens) {
  const int64_t end = prompt_tokens + completion_tokens - 1;  // seqlen - 1
  if (prompt_tokens < 1 || completion_tokens < 1 || r.start < 0 || r.start > prompt_tokens - 1 ||
      r.start + r.n_tokens != end)
    bad("routed experts cover sequence positions [" + std::to_string(r.start) + ", " +
        std::to_string(r.start + r.n_tokens) + "), expected [" + std::to_string(r.start) + ", " +
        std::to_string(end) + ") for " + std::to_string(prompt_tokens) + " prompt and " +
        std::to_string(completion_tokens) + " generated tokens");
  const int64_t width = r.n_layers * r.top_k;
  std::vector<std::vector<int32_t>> out;
  for (int64_t i = 0; i < completion_tokens; ++i) {
    const int64_t row = prompt_tokens - 1 + i - r.start;
    const auto b = r.ids.begin() + static_cast<std::ptrdiff_t>(row * width);
    out.emplace_back(b, b + static_cast<std::ptrdiff_t>(width));
  }
  return out;
}

}  // namespace moelab::remote
