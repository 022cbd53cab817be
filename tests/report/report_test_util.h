// Helpers of the report tests: a synthetic store, an RFC 4180 CSV reader, a JSON Schema
// validator for the subset of draft 2020-12 the report schema uses, and external tools.
#pragma once

#include <QByteArray>
#include <QImage>
#include <QProcess>
#include <QStandardPaths>
#include <QString>
#include <QStringList>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "moelab/storage/store.h"

namespace moelab::test {

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

/// RFC 4180: fields separated by ',', records by CRLF, quoted fields may hold ',', '"' (doubled)
/// and line breaks.
inline std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, in_quotes = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        field += c;
      }
      continue;
    }
    if (c == '"' && field.empty() && !quoted) {
      in_quotes = quoted = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
      quoted = false;
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      row.push_back(field);
      rows.push_back(row);
      row.clear();
      field.clear();
      quoted = false;
      ++i;
    } else {
      field += c;
    }
  }
  if (!field.empty() || !row.empty()) {
    row.push_back(field);
    rows.push_back(row);
  }
  return rows;
}

/// Validates `v` against `schema` (keywords: type, enum, const, required, properties,
/// additionalProperties: false, items, minimum, $ref to "#/$defs/NAME"). Appends problems
/// ("/runs/0/id: expected integer") to `errors`.
inline void validate_schema(const nlohmann::json& root, const nlohmann::json& schema,
                            const nlohmann::json& v, const std::string& at,
                            std::vector<std::string>& errors) {
  using nlohmann::json;
  if (schema.contains("$ref")) {
    const std::string ref = schema["$ref"];
    const std::string prefix = "#/$defs/";
    if (ref.rfind(prefix, 0) != 0) {
      errors.push_back(at + ": unsupported $ref " + ref);
    } else if (!(v.is_null() && schema.contains("type") && schema["type"].is_array() &&
                 std::find(schema["type"].begin(), schema["type"].end(), "null") !=
                     schema["type"].end())) {
      validate_schema(root, root["$defs"][ref.substr(prefix.size())], v, at, errors);
    }
  }
  auto type_ok = [&](const std::string& t) {
    if (t == "object") return v.is_object();
    if (t == "array") return v.is_array();
    if (t == "string") return v.is_string();
    if (t == "integer") return v.is_number_integer() || v.is_number_unsigned();
    if (t == "number") return v.is_number();
    if (t == "boolean") return v.is_boolean();
    if (t == "null") return v.is_null();
    return false;
  };
  if (schema.contains("type")) {
    bool ok = false;
    std::string names;
    if (schema["type"].is_array()) {
      for (const auto& t : schema["type"]) {
        ok |= type_ok(t);
        names += t.get<std::string>() + " ";
      }
    } else {
      ok = type_ok(schema["type"]);
      names = schema["type"];
    }
    if (!ok) {
      errors.push_back(at + ": expected " + names + "got " + v.dump().substr(0, 60));
      return;
    }
  }
  if (schema.contains("const") && v != schema["const"])
    errors.push_back(at + ": expected const " + schema["const"].dump());
  if (schema.contains("enum") &&
      std::find(schema["enum"].begin(), schema["enum"].end(), v) == schema["enum"].end())
    errors.push_back(at + ": " + v.dump() + " not in enum");
  if (schema.contains("minimum") && v.is_number() &&
      v.get<double>() < schema["minimum"].get<double>())
    errors.push_back(at + ": below minimum");
  if (v.is_object()) {
    if (schema.contains("required"))
      for (const auto& k : schema["required"])
        if (!v.contains(k.get<std::string>()))
          errors.push_back(at + ": missing required " + k.get<std::string>());
    if (schema.contains("properties"))
      for (const auto& [k, sub] : schema["properties"].items())
        if (v.contains(k)) validate_schema(root, sub, v[k], at + "/" + k, errors);
    if (schema.contains("additionalProperties") && schema["additionalProperties"] == false)
      for (const auto& [k, _] : v.items())
        if (!schema["properties"].contains(k)) errors.push_back(at + ": unexpected key " + k);
  }
  if (v.is_array() && schema.contains("items"))
    for (size_t i = 0; i < v.size(); ++i)
      validate_schema(root, schema["items"], v[i], at + "/" + std::to_string(i), errors);
}

/// Runs a program; returns its exit code (-1 when it did not start), stdout in `out`.
inline int run_tool(const QString& program, const QStringList& args, QByteArray* out = nullptr,
                    int timeout_ms = 120000) {
  QProcess p;
  p.setProcessChannelMode(QProcess::SeparateChannels);
  p.start(program, args);
  if (!p.waitForStarted(10000)) return -1;
  if (!p.waitForFinished(timeout_ms)) {
    p.kill();
    p.waitForFinished();
    return -2;
  }
  if (out) *out = p.readAllStandardOutput();
  return p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -3;
}

inline QString chromium_path() {
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    const QString p = QStandardPaths::findExecutable(QString::fromLatin1(name));
    if (!p.isEmpty()) return p;
  }
  return {};
}

/// Headless Chromium screenshot of a local HTML file (no network: --host-resolver-rules maps
/// every name to nothing, so a report that needed the network would show broken images).
inline QImage chromium_screenshot(const QString& chromium, const QString& html, const QString& png,
                                  int width, int height, bool dark = false) {
  QStringList args = {"--headless",
                      "--no-sandbox",
                      "--disable-gpu",
                      "--hide-scrollbars",
                      "--no-first-run",
                      "--disable-extensions",
                      "--host-resolver-rules=MAP * ~NOTFOUND",
                      QStringLiteral("--window-size=%1,%2").arg(width).arg(height),
                      "--screenshot=" + png};
  if (dark)
    args << "--force-dark-mode"
         << "--blink-settings=preferredColorScheme=0";
  args << ("file://" + html);
  const int rc = run_tool(chromium, args, nullptr, 180000);
  if (rc != 0) return {};
  return QImage(png);
}

/// Pixels of `img` whose colour is exactly one of `colours` (RGB).
inline int count_colours(const QImage& img, const std::vector<QRgb>& colours) {
  int n = 0;
  const QImage im = img.convertToFormat(QImage::Format_RGB32);
  for (int y = 0; y < im.height(); ++y) {
    const QRgb* line = reinterpret_cast<const QRgb*>(im.constScanLine(y));
    for (int x = 0; x < im.width(); ++x)
      for (QRgb c : colours)
        if ((line[x] & 0xFFFFFF) == (c & 0xFFFFFF)) {
          ++n;
          break;
        }
  }
  return n;
}

/// Strongly coloured pixels (max - min channel > 90): figure content, not text or table lines
/// (black/grey) and not the pastel backgrounds of notes and diffs.
inline int count_saturated(const QImage& img) {
  int n = 0;
  const QImage im = img.convertToFormat(QImage::Format_RGB32);
  for (int y = 0; y < im.height(); ++y) {
    const QRgb* line = reinterpret_cast<const QRgb*>(im.constScanLine(y));
    for (int x = 0; x < im.width(); ++x) {
      const int r = qRed(line[x]), g = qGreen(line[x]), b = qBlue(line[x]);
      n += std::max({r, g, b}) - std::min({r, g, b}) > 90;
    }
  }
  return n;
}

}  // namespace moelab::test
