#include "moelab/remote/client.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>

#include "moelab/core/error.h"
#include "moelab/remote/sse.h"

namespace moelab::remote {

using json = nlohmann::json;

namespace {
[[noreturn]] void invalid_url(const std::string& url, const std::string& why) {
  throw Error(ErrorKind::BadInput, "invalid URL '" + url + "': " + why, {.subject = "--remote"});
}

// The authority "host[:port]" or "[v6]:port" of an http(s) URL (RFC 3986, section 3.2):
// a host name of letters, digits, '-', '.', '_' (or a bracketed IPv6 address), and a port
// from 1 to 65535 when one is given.
void check_authority(const std::string& url, const std::string& authority) {
  std::string host = authority, port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) invalid_url(url, "the IPv6 address has no closing ']'");
    host = authority.substr(1, close - 1);
    const std::string rest = authority.substr(close + 1);
    if (!rest.empty() && rest.front() != ':')
      invalid_url(url, "'" + rest + "' after the IPv6 address (expected ':PORT')");
    has_port = !rest.empty();
    if (has_port) port = rest.substr(1);
    for (char c : host)
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
        invalid_url(url,
                    "the IPv6 address '" + host + "' has a character that is not hex, ':' or '.'");
  } else {
    if (const size_t colon = authority.rfind(':'); colon != std::string::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      has_port = true;
    }
    for (char c : host)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_')
        invalid_url(url, "the host '" + host + "' has the character '" + std::string(1, c) +
                             "' (a host name is letters, digits, '-', '.' and '_')");
  }
  if (host.empty()) invalid_url(url, "there is no host (expected http://HOST[:PORT][/PATH])");
  if (has_port) {
    const bool digits =
        !port.empty() && port.size() <= 5 &&
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || std::stoi(port) < 1 || std::stoi(port) > 65535)
      invalid_url(url, "the port '" + port + "' is not a number from 1 to 65535");
  }
}
}  // namespace

ParsedUrl parse_endpoint_url(const std::string& url) {
  const size_t scheme_end = url.find("://");
  const std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https")
    invalid_url(url, scheme.empty() ? "it must start with http:// or https://"
                                    : "the scheme '" + scheme +
                                          "' is not http or https (it must start with http:// "
                                          "or https://)");
  const size_t host_begin = scheme_end + 3;
  const size_t path_begin = url.find('/', host_begin);
  check_authority(
      url, url.substr(host_begin, path_begin == std::string::npos ? std::string::npos
                                                                  : path_begin - host_begin));
  ParsedUrl p;
  p.origin = url.substr(0, path_begin);
  std::string path = path_begin == std::string::npos ? "" : url.substr(path_begin);
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.size() >= 3 && path.compare(path.size() - 3, 3, "/v1") == 0)
    path.resize(path.size() - 3);
  p.prefix = path;
  return p;
}

json request_body(const RemoteRequest& r) {
  json j;
  j["model"] = r.model;
  if (r.chat) {
    json msgs = json::array();
    if (!r.system.empty()) msgs.push_back({{"role", "system"}, {"content", r.system}});
    msgs.push_back({{"role", "user"}, {"content", r.prompt}});
    j["messages"] = std::move(msgs);
  } else {
    j["prompt"] = r.prompt;
  }
  j["max_tokens"] = r.max_tokens;
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  const SamplerParams& s = r.sampling;
  j["temperature"] = s.temperature;
  j["top_p"] = s.top_p;
  j["top_k"] = s.top_k;
  j["min_p"] = s.min_p;
  j["frequency_penalty"] = s.frequency_penalty;
  j["presence_penalty"] = s.presence_penalty;
  j["repetition_penalty"] = s.repeat_penalty;
  if (s.seed) j["seed"] = *s.seed;
  if (!r.stop.empty()) j["stop"] = r.stop;
  if (r.ignore_eos) j["ignore_eos"] = true;
  j["return_token_ids"] = true;
  if (r.routed != RoutedFormat::None) {
    j["return_routed_experts"] = true;
    j["routed_experts_format"] = routed_format_name(r.routed);
  }
  return j;
}

int64_t max_tokens_margin(int64_t max_tokens) {
  return std::max<int64_t>(16, max_tokens / 4);
}

namespace {
using Clock = std::chrono::steady_clock;

std::string where_of(size_t event) {
  return "stream event " + std::to_string(event);
}

// One parsed JSON object of the response (an SSE event, or the whole non-streamed body).
// Returns an error text, empty when fine.
std::string take_object(const json& j, RemoteResult& r, double t_ms, const std::string& where,
                        const std::function<bool(const RemoteChunk&)>& on_chunk,
                        int64_t max_tokens) {
  if (!j.is_object()) return where + " is not a JSON object";
  if (j.contains("error")) {
    const json& e = j["error"];
    std::string m = e.is_object() && e.contains("message") && e["message"].is_string()
                        ? e["message"].get<std::string>()
                        : e.dump(-1, ' ', false, json::error_handler_t::replace);
    return "the server reported an error: " + m;
  }
  if (j.contains("model") && j["model"].is_string()) r.served_model = j["model"];
  if (j.contains("usage") && j["usage"].is_object()) {
    const json& u = j["usage"];
    if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
      r.prompt_tokens = u["prompt_tokens"].get<int64_t>();
    if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
      r.completion_tokens = u["completion_tokens"].get<int64_t>();
  }
  // vLLM >= 0.21 (docs "Routed Experts Replay"): the prompt tokens' routing on the response,
  // [prompt_len, num_moe_layers, top_k]; the generated tokens' on each choice.
  if (j.contains("prompt_routed_experts") && !j["prompt_routed_experts"].is_null())
    r.prompt_routed_raw = j["prompt_routed_experts"];
  if (!j.contains("choices") || j["choices"].is_null()) return {};
  if (!j["choices"].is_array()) return where + ": 'choices' is not an array";
  for (const json& c : j["choices"]) {
    if (!c.is_object()) return where + ": a choice is not an object";
    if (c.value("index", 0) != 0) continue;
    RemoteChunk chunk;
    chunk.t_ms = t_ms;
    const json* text = nullptr;
    if (c.contains("text")) text = &c["text"];
    if (c.contains("delta") && c["delta"].is_object() && c["delta"].contains("content"))
      text = &c["delta"]["content"];
    if (c.contains("message") && c["message"].is_object() && c["message"].contains("content"))
      text = &c["message"]["content"];
    if (text && !text->is_null()) {
      if (!text->is_string()) return where + ": the choice's text is not a string";
      chunk.text = text->get<std::string>();
    }
    if (c.contains("token_ids") && !c["token_ids"].is_null()) {
      if (!c["token_ids"].is_array()) return where + ": token_ids is not an array";
      for (const json& id : c["token_ids"]) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
          return where + ": token_ids holds something other than a token id";
        chunk.token_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
    }
    if (c.contains("finish_reason") && c["finish_reason"].is_string())
      r.finish_reason = c["finish_reason"];
    const json* start = nullptr;
    if (c.contains("sgl_ext") && c["sgl_ext"].is_object()) {
      const json& ext = c["sgl_ext"];
      if (ext.contains("routed_experts") && !ext["routed_experts"].is_null()) {
        r.routed_raw = ext["routed_experts"];
        r.routed_format = RoutedFormat::SGLang;
      }
      if (ext.contains("routed_experts_start_len")) start = &ext["routed_experts_start_len"];
    }
    if (c.contains("routed_experts") && !c["routed_experts"].is_null()) {
      r.routed_raw = c["routed_experts"];
      r.routed_format = c["routed_experts"].is_string() ? RoutedFormat::SGLang : RoutedFormat::VLLM;
    }
    if (c.contains("routed_experts_start_len")) start = &c["routed_experts_start_len"];
    if (start) {
      if (!start->is_number_integer() || start->get<int64_t>() < 0)
        return where + ": routed_experts_start_len is not a non-negative integer";
      r.routed_start = start->get<int64_t>();
    }
    if (!chunk.text.empty() || !chunk.token_ids.empty()) {
      if (r.chunks.empty()) {
        r.ttft_ms = t_ms;
        r.token_ids_reported = !chunk.token_ids.empty();
      } else if (chunk.token_ids.empty()) {
        r.token_ids_reported = false;
      }
      r.text += chunk.text;
      r.tokens_streamed += std::max<int64_t>(1, static_cast<int64_t>(chunk.token_ids.size()));
      // A server that ignores max_tokens is not read on to the byte cap: a margin for servers
      // that count differently (a character's bytes as several ids), then a clear error.
      if (max_tokens > 0 && r.tokens_streamed > max_tokens + max_tokens_margin(max_tokens))
        return "the server sent " + std::to_string(r.tokens_streamed) + " tokens for max_tokens " +
               std::to_string(max_tokens) + " (it ignores max_tokens); stopped reading";
      r.chunks.push_back(chunk);
      if (on_chunk && !on_chunk(r.chunks.back())) return "cancelled";
    }
  }
  return {};
}

std::string http_error_text(httplib::Error e, const std::string& origin, double read_timeout) {
  switch (e) {
    case httplib::Error::Connection:
      return "cannot connect to " + origin + " (refused, unreachable or timed out)";
    case httplib::Error::Read:
      return "reading the response from " + origin +
             " failed (the connection closed, or no "
             "data for " +
             std::to_string(static_cast<int>(read_timeout)) + " s)";
    case httplib::Error::Write:
      return "sending the request to " + origin + " failed";
    case httplib::Error::ConnectionTimeout:
      return "connecting to " + origin + " timed out";
    default:
      return "request to " + origin + " failed: " + httplib::to_string(e);
  }
}
}  // namespace

RemoteResult stream_completion(const Endpoint& ep, const RemoteRequest& req,
                               const std::function<bool(const RemoteChunk&)>& on_chunk,
                               const std::atomic<bool>* cancel) {
  RemoteResult r;
  ParsedUrl url;
  try {
    url = parse_endpoint_url(ep.url);
  } catch (const Error& e) {
    r.error = e.what();
    return r;
  }
  httplib::Client cli(url.origin);
  const auto secs = [](double s, auto fn) {
    const auto whole = static_cast<time_t>(s);
    fn(whole, static_cast<time_t>((s - static_cast<double>(whole)) * 1e6));
  };
  secs(ep.connect_timeout_s, [&](time_t a, time_t b) { cli.set_connection_timeout(a, b); });
  secs(ep.read_timeout_s, [&](time_t a, time_t b) { cli.set_read_timeout(a, b); });
  secs(ep.read_timeout_s, [&](time_t a, time_t b) { cli.set_write_timeout(a, b); });

  httplib::Request hreq;
  hreq.method = "POST";
  hreq.path = url.prefix + (req.chat ? "/v1/chat/completions" : "/v1/completions");
  hreq.headers.emplace("Content-Type", "application/json");
  hreq.headers.emplace("Accept", "text/event-stream");
  if (!ep.api_key.empty()) hreq.headers.emplace("Authorization", "Bearer " + ep.api_key);
  hreq.body = request_body(req).dump();

  const auto t0 = Clock::now();
  const auto now_ms = [&] {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  SseParser sse(ep.max_response_bytes);
  bool is_sse = true;
  std::string plain;  // non-SSE body (errors, non-streamed answers), bounded
  size_t events = 0;
  std::string stream_error;
  bool oversized = false;
  hreq.response_handler = [&](const httplib::Response& res) {
    r.http_status = res.status;
    is_sse = res.get_header_value("Content-Type").rfind("text/event-stream", 0) == 0;
    return true;
  };
  hreq.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    r.bytes += n;
    if (r.bytes > ep.max_response_bytes) {
      oversized = true;
      return false;
    }
    if (cancel && cancel->load()) {
      stream_error = "cancelled";
      return false;
    }
    if (r.http_status != 200 || !is_sse) {
      plain.append(data, n);
      return true;
    }
    return sse.feed(std::string_view(data, n), [&](const std::string& ev) {
      ++events;
      if (ev == "[DONE]") {
        r.done = true;
        return true;
      }
      const json j = json::parse(ev, nullptr, false);
      if (j.is_discarded()) {
        stream_error = "malformed JSON in " + where_of(events) + ": " + ev.substr(0, 120);
        return false;
      }
      stream_error = take_object(j, r, now_ms(), where_of(events), on_chunk, req.max_tokens);
      return stream_error.empty();
    });
  };
  httplib::Response hres;
  httplib::Error herr = httplib::Error::Success;
  const bool ok = cli.send(hreq, hres, herr);
  r.total_ms = now_ms();
  const std::string origin = url.origin;
  if (oversized) {
    r.error = "the response from " + origin + " is larger than " +
              std::to_string(ep.max_response_bytes) + " bytes";
  } else if (sse.overflow()) {
    r.error = "a stream event from " + origin + " is larger than " +
              std::to_string(ep.max_response_bytes) + " bytes";
  } else if (!stream_error.empty()) {
    r.error = stream_error;
  } else if (!ok) {
    r.error = http_error_text(herr, origin, ep.read_timeout_s);
  } else if (r.http_status != 200) {
    std::string msg = plain.substr(0, 300);
    const json j = json::parse(plain, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("error")) {
      const json& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string())
        msg = e["message"].get<std::string>();
      else if (e.is_string())
        msg = e.get<std::string>();
    }
    r.error = "the server answered HTTP " + std::to_string(r.http_status) + ": " + msg;
  } else if (!is_sse) {
    const json j = json::parse(plain, nullptr, false);
    if (j.is_discarded())
      r.error = "the response from " + origin + " is not JSON: " + plain.substr(0, 120);
    else
      r.error = take_object(j, r, r.total_ms, "the response", on_chunk, req.max_tokens);
    if (r.error.empty() && r.finish_reason.empty())
      r.error = "the response from " + origin + " has no finish_reason";
  } else if (!r.done && r.finish_reason.empty()) {
    r.error = "the stream from " + origin + " ended before the response was complete (" +
              std::to_string(r.chunks.size()) + " chunks arrived)";
  } else if (r.finish_reason.empty()) {
    r.error = "the stream from " + origin + " ended without a finish_reason";
  }
  return r;
}

json list_models(const Endpoint& ep) {
  const ParsedUrl url = parse_endpoint_url(ep.url);
  httplib::Client cli(url.origin);
  cli.set_connection_timeout(static_cast<time_t>(ep.connect_timeout_s), 0);
  cli.set_read_timeout(static_cast<time_t>(ep.read_timeout_s), 0);
  httplib::Headers h;
  if (!ep.api_key.empty()) h.emplace("Authorization", "Bearer " + ep.api_key);
  auto res = cli.Get(url.prefix + "/v1/models", h);
  if (!res) throw Error(ErrorKind::Io, http_error_text(res.error(), url.origin, ep.read_timeout_s));
  if (res->status != 200)
    throw Error(ErrorKind::BadInput, "GET /v1/models answered HTTP " + std::to_string(res->status) +
                                         ": " + res->body.substr(0, 200));
  if (res->body.size() > ep.max_response_bytes)
    throw Error(ErrorKind::BadInput, "GET /v1/models answered more than " +
                                         std::to_string(ep.max_response_bytes) + " bytes");
  const json j = json::parse(res->body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("data") || !j["data"].is_array())
    throw Error(ErrorKind::BadInput,
                "GET /v1/models did not answer {\"data\": [...]}: " + res->body.substr(0, 120));
  return j["data"];
}

}  // namespace moelab::remote
