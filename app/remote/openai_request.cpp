#include "moelab/remote/openai_request.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace moelab::remote {

const char* routed_format_name(RoutedFormat f) {
  switch (f) {
    case RoutedFormat::SGLang:
      return "sglang";
    case RoutedFormat::VLLM:
      return "vllm";
    case RoutedFormat::None:
      break;
  }
  return "none";
}

std::optional<RoutedFormat> routed_format_from_name(std::string_view name) {
  if (name == "none") return RoutedFormat::None;
  if (name == "sglang") return RoutedFormat::SGLang;
  if (name == "vllm") return RoutedFormat::VLLM;
  return std::nullopt;
}

namespace {
using json = nlohmann::json;

struct Fail {
  RequestError e;
};

[[noreturn]] void fail(const std::string& param, const std::string& what, int status = 400) {
  throw Fail{{status, param.empty() ? what : "'" + param + "' " + what, param}};
}

// Deepest nesting of [ and { outside strings: a cheap bound before the parser builds anything.
int nesting_depth(std::string_view s) {
  int depth = 0, worst = 0;
  bool in_string = false, escaped = false;
  for (const char c : s) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      worst = std::max(worst, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return worst;
}

const json* field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

bool get_bool(const json& j, const char* name, bool dflt) {
  const json* v = field(j, name);
  if (!v) return dflt;
  if (!v->is_boolean()) fail(name, "must be true or false");
  return v->get<bool>();
}

double get_number(const json& j, const char* name, double dflt, double lo, double hi) {
  const json* v = field(j, name);
  if (!v) return dflt;
  if (!v->is_number()) fail(name, "must be a number");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    fail(name, "must be in [" + json(lo).dump() + ", " + json(hi).dump() + "]");
  return x;
}

int64_t get_int(const json& j, const char* name, int64_t dflt, int64_t lo, int64_t hi) {
  const json* v = field(j, name);
  if (!v) return dflt;
  if (!v->is_number_integer()) fail(name, "must be an integer");
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi))
    fail(name, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi)
    fail(name, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

std::string get_string(const json& j, const char* name) {
  const json* v = field(j, name);
  if (!v) return {};
  if (!v->is_string()) fail(name, "must be a string");
  return v->get<std::string>();
}

// Message content: a string, or an array of {"type": "text", "text": "..."} parts (joined).
std::string content_text(const json& c, const std::string& where) {
  if (c.is_null()) return {};
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) fail(where, "must be a string or an array of text parts");
  std::string out;
  for (const auto& part : c) {
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
        !part["text"].is_string())
      fail(where, "parts must be {\"type\": \"text\", \"text\": \"...\"} (only text is supported)");
    out += part["text"].get<std::string>();
  }
  return out;
}

CompletionRequest parse(std::string_view body, bool chat, const RequestLimits& lim) {
  if (body.size() > lim.max_body_bytes)
    fail("",
         "request body is " + std::to_string(body.size()) + " bytes; at most " +
             std::to_string(lim.max_body_bytes) + " are accepted",
         413);
  if (nesting_depth(body) > lim.max_depth)
    fail("", "request body nests JSON deeper than " + std::to_string(lim.max_depth) + " levels");
  const json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail("", "request body is not valid JSON");
  if (!j.is_object()) fail("", "request body must be a JSON object");

  CompletionRequest r;
  r.chat = chat;
  r.model = get_string(j, "model");
  if (get_int(j, "n", 1, 1, 1) != 1) fail("n", "must be 1");

  if (chat) {
    const json* m = field(j, "messages");
    if (!m) fail("messages", "is required");
    if (!m->is_array() || m->empty()) fail("messages", "must be a non-empty array");
    if (m->size() > lim.max_messages)
      fail("messages", "has " + std::to_string(m->size()) + " entries; at most " +
                           std::to_string(lim.max_messages));
    for (size_t i = 0; i < m->size(); ++i) {
      const json& msg = (*m)[i];
      const std::string where = "messages[" + std::to_string(i) + "]";
      if (!msg.is_object()) fail(where, "must be an object");
      const json* role = field(msg, "role");
      if (!role || !role->is_string()) fail(where + ".role", "must be a string");
      const std::string rs = role->get<std::string>();
      if (rs != "system" && rs != "user" && rs != "assistant")
        fail(where + ".role", "must be system, user or assistant");
      r.messages.push_back({rs, content_text(msg.value("content", json()), where + ".content")});
    }
    r.max_tokens = lim.max_tokens;
    const char* mt = field(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    r.max_tokens = static_cast<int32_t>(get_int(j, mt, lim.max_tokens, 1, lim.max_tokens));
  } else {
    const json* p = field(j, "prompt");
    if (!p) fail("prompt", "is required");
    if (p->is_string()) {
      r.prompt = p->get<std::string>();
    } else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
      r.prompt = (*p)[0].get<std::string>();
    } else if (p->is_array() && p->size() > 1) {
      fail("prompt", "holds several prompts; send one prompt per request");
    } else {
      fail("prompt", "must be a string (token id prompts are not supported)");
    }
    if (r.prompt.empty()) fail("prompt", "must not be empty");
    r.max_tokens = static_cast<int32_t>(
        get_int(j, "max_tokens", std::min<int64_t>(16, lim.max_tokens), 1, lim.max_tokens));
  }

  SamplerParams& s = r.sampling;
  s.temperature = static_cast<float>(get_number(j, "temperature", 1.0, 0.0, 2.0));
  s.top_p = static_cast<float>(get_number(j, "top_p", 1.0, 0.0, 1.0));
  s.top_k = static_cast<int32_t>(get_int(j, "top_k", 0, -1, 1 << 20));
  s.min_p = static_cast<float>(get_number(j, "min_p", 0.0, 0.0, 1.0));
  s.frequency_penalty = static_cast<float>(get_number(j, "frequency_penalty", 0.0, -2.0, 2.0));
  s.presence_penalty = static_cast<float>(get_number(j, "presence_penalty", 0.0, -2.0, 2.0));
  s.repeat_penalty = static_cast<float>(get_number(j, "repetition_penalty", 1.0, 0.01, 10.0));
  if (s.repeat_penalty <= 0.f) fail("repetition_penalty", "must be > 0");
  if (const json* seed = field(j, "seed")) {
    if (!seed->is_number_integer()) fail("seed", "must be an integer");
    if (seed->is_number_unsigned())
      s.seed = seed->get<uint64_t>();
    else if (seed->get<int64_t>() < 0)
      fail("seed", "must be >= 0");
    else
      s.seed = static_cast<uint64_t>(seed->get<int64_t>());
  }

  if (const json* st = field(j, "stop")) {
    std::vector<std::string> v;
    if (st->is_string()) {
      v.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      for (const auto& x : *st) {
        if (!x.is_string()) fail("stop", "must be a string or an array of strings");
        v.push_back(x.get<std::string>());
      }
    } else {
      fail("stop", "must be a string or an array of strings");
    }
    if (v.size() > lim.max_stop)
      fail("stop",
           "has " + std::to_string(v.size()) + " strings; at most " + std::to_string(lim.max_stop));
    for (const auto& x : v)
      if (x.size() > lim.max_stop_bytes)
        fail("stop", "strings must be at most " + std::to_string(lim.max_stop_bytes) + " bytes");
    r.stop = std::move(v);
  }

  r.stream = get_bool(j, "stream", false);
  if (const json* so = field(j, "stream_options")) {
    if (!so->is_object()) fail("stream_options", "must be an object");
    r.include_usage = get_bool(*so, "include_usage", false);
  }
  r.ignore_eos = get_bool(j, "ignore_eos", false);
  r.return_token_ids = get_bool(j, "return_token_ids", false);
  if (get_bool(j, "return_routed_experts", false)) r.routed = RoutedFormat::SGLang;
  if (const json* f = field(j, "routed_experts_format")) {
    const auto fmt = f->is_string() ? routed_format_from_name(f->get<std::string>()) : std::nullopt;
    if (!fmt) fail("routed_experts_format", "must be \"sglang\", \"vllm\" or \"none\"");
    r.routed = *fmt;
  }
  r.routed_experts_start_len = get_int(j, "routed_experts_start_len", 0, 0, INT32_MAX);
  return r;
}
}  // namespace

ParsedRequest parse_completion_request(std::string_view body, bool chat,
                                       const RequestLimits& limits) {
  ParsedRequest out;
  try {
    out.request = parse(body, chat, limits);
  } catch (const Fail& f) {
    out.error = f.e;
  } catch (const nlohmann::json::exception& e) {
    out.error = {400, std::string("request body could not be read: ") + e.what(), ""};
  }
  return out;
}

std::string error_body(const RequestError& e) {
  const char* type = e.status == 401   ? "authentication_error"
                     : e.status == 404 ? "not_found_error"
                     : e.status == 429 ? "rate_limit_error"
                     : e.status >= 500 ? "server_error"
                                       : "invalid_request_error";
  json j = {{"error",
             {{"message", e.message},
              {"type", type},
              {"param", e.param.empty() ? json() : json(e.param)},
              {"code", e.status}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace moelab::remote
