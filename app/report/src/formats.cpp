// Format names and the JSON Schema: the part of the report API that needs neither Qt nor the
// views (also built when moelab_views is unavailable).
#include "moelab/report/report.h"

namespace moelab::report {

extern const char* const kSchemaText;  // report_schema.cpp, generated from report.schema.json

std::optional<Format> parse_format(std::string_view n) {
  if (n == "html" || n == "htm") return Format::Html;
  if (n == "pdf") return Format::Pdf;
  if (n == "md" || n == "markdown") return Format::Markdown;
  if (n == "csv") return Format::Csv;
  if (n == "json") return Format::Json;
  return std::nullopt;
}

const char* format_name(Format f) noexcept {
  switch (f) {
    case Format::Html:
      return "html";
    case Format::Pdf:
      return "pdf";
    case Format::Markdown:
      return "md";
    case Format::Csv:
      return "csv";
    case Format::Json:
      return "json";
  }
  return "?";
}

const std::string& json_schema() {
  static const std::string s = kSchemaText;
  return s;
}

}  // namespace moelab::report
