// Server-sent events (WHATWG HTML Living Standard, "Server-sent events", section "Parsing an
// event stream"), the framing OpenAI-compatible servers stream completions in: lines
// "data: <payload>", an empty line ends an event, lines starting with ':' are comments. Only the
// data field matters here (event/id/retry are ignored). Bounded: an event larger than
// max_event_bytes is an error, so a server that never ends a line cannot grow memory.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace moelab::remote {

class SseParser {
 public:
  explicit SseParser(size_t max_event_bytes = size_t(16) << 20) : max_(max_event_bytes) {}
  /// Feeds bytes as they arrive; calls on_event(data) for each complete event (data lines
  /// joined with '\n'). Returns false (and stops) when on_event returns false or an event
  /// exceeds the bound (overflow() is then true).
  bool feed(std::string_view bytes, const std::function<bool(const std::string&)>& on_event);
  bool overflow() const { return overflow_; }
  /// Bytes of an unfinished line or event (a stream cut mid-event leaves some).
  bool pending() const { return !line_.empty() || has_data_; }

 private:
  bool line_done(const std::function<bool(const std::string&)>& on_event);
  size_t max_;
  std::string line_, data_;
  bool has_data_ = false;
  bool overflow_ = false;
  bool after_cr_ = false;
};

}  // namespace moelab::remote
