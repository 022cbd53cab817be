#include "moelab/remote/sse.h"

namespace moelab::remote {

bool SseParser::line_done(const std::function<bool(const std::string&)>& on_event) {
  if (line_.empty()) {  // blank line: dispatch
    if (!has_data_) return true;
    std::string d;
    d.swap(data_);
    has_data_ = false;
    return on_event(d);
  }
  if (line_[0] != ':') {
    const size_t colon = line_.find(':');
    const std::string_view name = std::string_view(line_).substr(0, colon);
    std::string_view value;
    if (colon != std::string::npos) {
      value = std::string_view(line_).substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    }
    if (name == "data") {
      if (has_data_) data_ += '\n';
      data_ += value;
      has_data_ = true;
      if (data_.size() > max_) {
        overflow_ = true;
        return false;
      }
    }
  }
  line_.clear();
  return true;
}

bool SseParser::feed(std::string_view bytes,
                     const std::function<bool(const std::string&)>& on_event) {
  if (overflow_) return false;
  for (const char c : bytes) {
    if (c == '\n' && after_cr_) {  // the \n of \r\n
      after_cr_ = false;
      continue;
    }
    after_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      if (!line_done(on_event)) return false;
      line_.clear();
      continue;
    }
    line_ += c;
    if (line_.size() + data_.size() > max_) {
      overflow_ = true;
      return false;
    }
  }
  return true;
}

}  // namespace moelab::remote
