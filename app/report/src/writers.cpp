// Output formats: HTML (self-contained, light/dark), Markdown, PDF (QTextDocument on QPdfWriter),
// CSV (RFC 4180) and the PNG encoding of figures.
#include <QBuffer>
#include <QByteArray>
#include <QCryptographicHash>
#include <QPageLayout>
#include <QPageSize>
#include <QPdfWriter>
#include <QTextDocument>
#include <QUrl>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "internal.h"

namespace moelab::report::detail {

namespace {

std::string esc(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&#39;";
        break;
      default:
        // Control characters other than tab/newline are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t' && c != '\r')
          o += "\xEF\xBF\xBD";
        else
          o += c;
    }
  }
  return o;
}

/// Replaces invalid UTF-8 (a token piece may be half a character) by U+FFFD. Valid is RFC 3629:
/// no overlong forms (C0, C1, E0 80..9F, F0 80..8F), no surrogates (ED A0..BF), nothing above
/// U+10FFFF (F4 90.., F5..FF). C0 control characters other than tab, LF and CR, and DEL, become
/// their Unicode control pictures (U+2400..U+241F, U+2421: ESC shows as "␛"): a model's output or
/// a file's metadata must not send terminal escape sequences to whoever cats a Markdown report,
/// and HTML/XML forbid them in text.
std::string valid_utf8(const std::string& s) {
  std::string o;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size() && c != 0xC0 && c != 0xC1 && c <= 0xF4;
    if (ok && n > 1) {  // the second byte's range
      const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      ok = c == 0xE0   ? c1 >= 0xA0
           : c == 0xED ? c1 <= 0x9F
           : c == 0xF0 ? c1 >= 0x90
           : c == 0xF4 ? c1 <= 0x8F
                       : true;
    }
    for (int k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && n == 1 && ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F)) {
      const unsigned cp = c == 0x7F ? 0x2421u : 0x2400u + c;  // three UTF-8 bytes: E2 90 xx
      o += static_cast<char>(0xE2);
      o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      o += static_cast<char>(0x80 | (cp & 0x3F));
      ++i;
    } else if (ok) {
      o.append(s, i, n);
      i += n;
    } else {
      o += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return o;
}

std::string h(const std::string& s) {
  return esc(valid_utf8(s));
}

const char kCss[] = R"css(
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1d1d1f; --muted: #5f6368;
  --border: #d0d4d9; --head: #f1f3f5; --note-bg: #fff8e1; --note-border: #f0c36d;
  --code-bg: #f6f8fa; --del-bg: #ffd7d5; --del-fg: #82071e; --ins-bg: #ccf0d2; --ins-fg: #055d20; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #16181c; --fg: #e6e6e6; --muted: #a0a4aa; --border: #3a3f46; --head: #23272e;
    --note-bg: #2f2a17; --note-border: #8a6d1f; --code-bg: #1f2328; --del-bg: #5a1d1d;
    --del-fg: #ffc1bd; --ins-bg: #17402a; --ins-fg: #b4f1c4; }
}
body { background: var(--bg); color: var(--fg); margin: 0 auto; max-width: 1000px;
  padding: 24px; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
h1 { font-size: 1.7em; margin-bottom: 0.1em; }
h2 { border-bottom: 2px solid var(--border); padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-top: 1.5em; }
.subtitle { color: var(--muted); margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid var(--border); padding: 4px 8px; text-align: left;
  vertical-align: top; overflow-wrap: anywhere; }
th { background: var(--head); }
td.label { font-weight: 600; white-space: nowrap; }
pre { background: var(--code-bg); border: 1px solid var(--border); padding: 8px 10px;
  white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.88em; }
.note { background: var(--note-bg); border-left: 4px solid var(--note-border);
  padding: 6px 10px; margin: 0.6em 0; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--border); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 0.9em; margin-top: 0.3em; }
.diff { background: var(--code-bg); border: 1px solid var(--border); padding: 8px 10px;
  white-space: pre-wrap; overflow-wrap: anywhere; font-family: monospace; font-size: 0.88em; }
del { background: var(--del-bg); color: var(--del-fg); }
ins { background: var(--ins-bg); color: var(--ins-fg); }
)css";

std::string base64(const std::string& bytes) {
  const QByteArray b =
      QByteArray::fromRawData(bytes.data(), static_cast<qsizetype>(bytes.size())).toBase64();
  return std::string(b.constData(), static_cast<size_t>(b.size()));
}

enum class Flavor { Web, Qt };

std::string table_html(const Block& b, Flavor f) {
  std::ostringstream o;
  if (f == Flavor::Qt)
    o << "<table border=\"1\" cellspacing=\"0\" cellpadding=\"3\" width=\"100%\">";
  else
    o << "<table>";
  bool header = false;
  for (const auto& c : b.header) header |= !c.empty();
  if (header) {
    o << "<thead><tr>";
    for (const auto& c : b.header)
      o << (f == Flavor::Qt ? "<th bgcolor=\"#eeeeee\" align=\"left\">" : "<th>") << h(c)
        << "</th>";
    o << "</tr></thead>";
  }
  o << "<tbody>";
  for (const auto& row : b.rows) {
    o << "<tr>";
    for (size_t i = 0; i < row.size(); ++i) {
      const bool label = b.first_column_is_label && i == 0;
      o << (label ? (f == Flavor::Qt ? "<td><b>" : "<td class=\"label\">") : "<td>") << h(row[i])
        << (label && f == Flavor::Qt ? "</b>" : "") << "</td>";
    }
    o << "</tr>";
  }
  o << "</tbody></table>\n";
  return o.str();
}

std::string pre_qt(const std::string& text) {
  // QTextDocument's <pre> does not wrap; long lines would run off the page. A monospace
  // paragraph with white-space: pre-wrap keeps indentation and line breaks and wraps.
  return "<p style=\"font-family: 'DejaVu Sans Mono', monospace; font-size: 8pt; "
         "background-color: #f4f4f4; white-space: pre-wrap;\">" +
         h(text) + "</p>\n";
}

std::string body_html(const Document& d, Flavor f, const std::vector<std::string>& img_src,
                      int qt_img_width) {
  std::ostringstream o;
  for (const auto& b : d.blocks) {
    switch (b.kind) {
      case Block::Kind::H1:
        o << "<h1>" << h(b.text) << "</h1>\n";
        break;
      case Block::Kind::H2:
        o << "<h2>" << h(b.text) << "</h2>\n";
        break;
      case Block::Kind::H3:
        o << "<h3>" << h(b.text) << "</h3>\n";
        break;
      case Block::Kind::Para:
        o << "<p>" << h(b.text) << "</p>\n";
        break;
      case Block::Kind::Note:
        if (f == Flavor::Qt)
          o << "<p style=\"background-color: #fff8e1;\"><i>Note: " << h(b.text) << "</i></p>\n";
        else
          o << "<p class=\"note\">" << h(b.text) << "</p>\n";
        break;
      case Block::Kind::Table:
        o << table_html(b, f);
        break;
      case Block::Kind::Pre:
        if (f == Flavor::Qt)
          o << pre_qt(b.text);
        else
          o << "<pre>" << h(b.text) << "</pre>\n";
        break;
      case Block::Kind::Figure: {
        const Figure& fig = d.figures[static_cast<size_t>(b.figure)];
        if (f == Flavor::Qt) {
          const int w = std::min(qt_img_width, fig.image.width());
          // The image carries its own title: a separate title line could be left alone at the
          // bottom of a page when the image moves to the next one.
          o << "<p><img src=\"" << h(img_src[b.figure]) << "\" width=\"" << w << "\" height=\""
            << static_cast<int>(
                   std::lround(static_cast<double>(fig.image.height()) * w / fig.image.width()))
            << "\"/><br/><i>" << h(fig.caption) << "</i></p>\n";
        } else {
          o << "<figure id=\"" << h(fig.id) << "\"><img src=\"" << img_src[b.figure]
            << "\" width=\"" << fig.image.width() << "\" height=\"" << fig.image.height()
            << "\" alt=\"" << h(fig.title) << "\"/><figcaption><strong>" << h(fig.title)
            << ".</strong> " << h(fig.caption) << "</figcaption></figure>\n";
        }
        break;
      }
      case Block::Kind::Diff: {
        o << (f == Flavor::Qt ? "<p style=\"font-family: 'DejaVu Sans Mono', monospace; "
                                "font-size: 8pt; white-space: pre-wrap;\">"
                              : "<div class=\"diff\">");
        for (const auto& s : b.spans) {
          const std::string t = h(s.text);
          if (s.kind == Span::Kind::Plain)
            o << t;
          else if (s.kind == Span::Kind::Deleted)
            o << (f == Flavor::Qt ? "<span style=\"background-color: #ffd7d5; color: #82071e; "
                                    "text-decoration: line-through;\">"
                                  : "<del>")
              << t << (f == Flavor::Qt ? "</span>" : "</del>");
          else
            o << (f == Flavor::Qt ? "<span style=\"background-color: #ccf0d2; color: #055d20; "
                                    "text-decoration: underline;\">"
                                  : "<ins>")
              << t << (f == Flavor::Qt ? "</span>" : "</ins>");
        }
        o << (f == Flavor::Qt ? "</p>\n" : "</div>\n");
        break;
      }
    }
  }
  return o.str();
}

std::string md_escape(const std::string& s) {
  std::string o;
  for (char c : valid_utf8(s)) {
    if (c == '|' || c == '*' || c == '_' || c == '`' || c == '[' || c == ']' || c == '<' ||
        c == '>' || c == '#' || c == '\\')
      o += '\\';
    // A CR ends a line in CommonMark as a LF does: either would split a table row or heading.
    o += c == '\n' || c == '\r' ? ' ' : c;
  }
  return o;
}

std::string fence_for(const std::string& s) {
  std::string f = "```";
  while (s.find(f) != std::string::npos) f += '`';
  return f;
}

}  // namespace

std::string png_bytes(const QImage& img) {
  QByteArray ba;
  QBuffer buf(&ba);
  buf.open(QIODevice::WriteOnly);
  img.save(&buf, "PNG", 9);
  return std::string(ba.constData(), static_cast<size_t>(ba.size()));
}

std::string write_html(const Document& d) {
  std::vector<std::string> src;
  for (const auto& f : d.figures)
    src.push_back("data:image/png;base64," + base64(png_bytes(f.image)));
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n"
    << "<meta name=\"generator\" content=\"moelab " << h(version_string()) << "\"/>\n"
    << "<title>" << h(d.title) << "</title>\n<style>" << kCss << "</style>\n</head>\n<body>\n"
    << "<h1>" << h(d.title) << "</h1>\n<p class=\"subtitle\">" << h(d.subtitle) << "</p>\n"
    << body_html(d, Flavor::Web, src, 0) << "</body>\n</html>\n";
  return o.str();
}

std::string write_markdown(const Document& d, const std::string& image_dir) {
  std::ostringstream o;
  o << "# " << md_escape(d.title) << "\n\n_" << md_escape(d.subtitle) << "_\n\n";
  for (const auto& b : d.blocks) {
    switch (b.kind) {
      case Block::Kind::H1:
        o << "# " << md_escape(b.text) << "\n\n";
        break;
      case Block::Kind::H2:
        o << "## " << md_escape(b.text) << "\n\n";
        break;
      case Block::Kind::H3:
        o << "### " << md_escape(b.text) << "\n\n";
        break;
      case Block::Kind::Para:
        o << md_escape(b.text) << "\n\n";
        break;
      case Block::Kind::Note:
        o << "> **Note:** " << md_escape(b.text) << "\n\n";
        break;
      case Block::Kind::Table: {
        o << "|";
        for (const auto& c : b.header) o << ' ' << (c.empty() ? " " : md_escape(c)) << " |";
        o << "\n|";
        for (size_t i = 0; i < b.header.size(); ++i) o << " --- |";
        o << '\n';
        for (const auto& r : b.rows) {
          o << '|';
          for (size_t i = 0; i < r.size(); ++i)
            o << ' '
              << (b.first_column_is_label && i == 0 ? "**" + md_escape(r[i]) + "**"
                                                    : md_escape(r[i]))
              << " |";
          o << '\n';
        }
        o << '\n';
        break;
      }
      case Block::Kind::Pre: {
        const std::string t = valid_utf8(b.text);
        const std::string f = fence_for(t);
        o << f << "text\n" << t << (t.empty() || t.back() != '\n' ? "\n" : "") << f << "\n\n";
        break;
      }
      case Block::Kind::Figure: {
        const Figure& fig = d.figures[static_cast<size_t>(b.figure)];
        o << "![" << md_escape(fig.title) << "](" << image_dir << '/' << fig.id << ".png)\n\n*"
          << md_escape(fig.caption) << "*\n\n";
        break;
      }
      case Block::Kind::Diff: {
        o << "<pre>";
        for (const auto& s : b.spans) {
          const std::string t = h(s.text);
          if (s.kind == Span::Kind::Plain)
            o << t;
          else if (s.kind == Span::Kind::Deleted)
            o << "<del>" << t << "</del>";
          else
            o << "<ins>" << t << "</ins>";
        }
        o << "</pre>\n\n";
        break;
      }
    }
  }
  return o.str();
}

std::string write_pdf(const Document& d, PageSize page, int64_t generated_at_ms) {
  QByteArray bytes;
  {
    QBuffer buf(&bytes);
    buf.open(QIODevice::WriteOnly);
    QPdfWriter w(&buf);
    w.setPageSize(QPageSize(page == PageSize::A4 ? QPageSize::A4 : QPageSize::Letter));
    w.setPageMargins(QMarginsF(15, 15, 15, 15), QPageLayout::Millimeter);
    w.setResolution(300);
    w.setTitle(QString::fromStdString(d.title));
    w.setCreator(QStringLiteral("moelab %1").arg(QString::fromStdString(version_string())));
    QTextDocument doc;
    QFont base(QStringLiteral("DejaVu Sans"));
    base.setPointSizeF(9);
    // No shaping for scripts that do not need it turns off ligatures, so that "fi" stays two
    // letters and text copied (or pdftotext'ed) from the PDF reads "confidence", not "conﬁdence".
    base.setStyleStrategy(QFont::PreferNoShaping);
    doc.setDefaultFont(base);
    doc.setDefaultStyleSheet(
        "h1 { font-size: 16pt; } h2 { font-size: 13pt; } h3 { font-size: 11pt; } "
        "th { font-weight: bold; }");
    std::vector<std::string> names;
    for (size_t i = 0; i < d.figures.size(); ++i) {
      names.push_back("moelab-figure-" + std::to_string(i) + ".png");
      doc.addResource(QTextDocument::ImageResource, QUrl(QString::fromStdString(names.back())),
                      QVariant(d.figures[i].image));
    }
    const std::string html = "<html><body><h1>" + h(d.title) + "</h1><p><i>" + h(d.subtitle) +
                             "</i></p>" + body_html(d, Flavor::Qt, names, 640) + "</body></html>";
    doc.setHtml(QString::fromStdString(html));
    doc.print(&w);
  }
  std::string pdf(bytes.constData(), static_cast<size_t>(bytes.size()));
  // Determinism: QPdfWriter stamps the current time into /CreationDate and derives the
  // document /ID from it. Replace both in place (same lengths, so the xref offsets stay right)
  // with the report's generation time and a hash of the content.
  auto replace_between = [&pdf](const std::string& open, char close, const std::string& value) {
    size_t p = pdf.find(open);
    while (p != std::string::npos) {
      const size_t b = p + open.size();
      const size_t e = pdf.find(close, b);
      if (e == std::string::npos) return;
      std::string v = value.substr(0, e - b);
      v.resize(e - b, '0');
      pdf.replace(b, e - b, v);
      p = pdf.find(open, e);
    }
  };
  {
    const std::time_t t = static_cast<std::time_t>(generated_at_ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char date[64];
    std::strftime(date, sizeof date, "D:%Y%m%d%H%M%S", &tm);
    // Qt writes "(D:YYYYMMDDHHmmSS+HH'mm')" in local time; keep the length, state UTC.
    const size_t p = pdf.find("/CreationDate (");
    if (p != std::string::npos) {
      const size_t b = p + 15, e = pdf.find(')', b);
      if (e != std::string::npos) {
        std::string v = std::string(date) + "Z";
        const size_t len = e - b;
        if (v.size() < len) v += std::string(len - v.size(), ' ');
        if (v.size() > len) v = v.substr(0, len);
        pdf.replace(b, len, v);
      }
    }
  }
  {
    // Hash of everything except the /ID value itself.
    std::string masked = pdf;
    const size_t p = masked.find("/ID [<");
    if (p != std::string::npos) {
      const size_t e = masked.find(']', p);
      if (e != std::string::npos) masked.replace(p, e - p, e - p, 'x');
    }
    const QByteArray md5 =
        QCryptographicHash::hash(
            QByteArray::fromRawData(masked.data(), static_cast<qsizetype>(masked.size())),
            QCryptographicHash::Md5)
            .toHex();
    const std::string hex(md5.constData(), static_cast<size_t>(md5.size()));
    std::string many;
    while (many.size() < 256) many += hex;
    replace_between("/ID [<", '>', many);
    size_t q = pdf.find("/ID [<");
    if (q != std::string::npos) {
      q = pdf.find("> <", q);
      if (q != std::string::npos) {
        const size_t b = q + 3, e = pdf.find('>', b);
        if (e != std::string::npos) pdf.replace(b, e - b, many.substr(0, e - b));
      }
    }
  }
  return pdf;
}

// ---------------------------------------------------------------- CSV (RFC 4180)

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) {
    if (c == '"') o += '"';
    o += c;
  }
  return o + '"';
}

std::string csv_row(const std::vector<std::string>& f) {
  std::string o;
  for (size_t i = 0; i < f.size(); ++i) {
    if (i) o += ',';
    o += csv_field(f[i]);
  }
  o += "\r\n";
  return o;
}

/// Round-trip text of a double (shortest of %.15g / %.17g that parses back exactly).
std::string exact(double v) {
  if (std::isnan(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  if (std::strtod(buf, nullptr) != v) std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
std::string exactf(float v) {
  if (std::isnan(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

}  // namespace

void write_csv(const Report& r, std::vector<std::pair<std::string, std::string>>& files,
               const std::string& stem) {
  // Metrics: one row per run and metric, stored metrics exactly as stored plus the derived ones.
  std::string m = csv_row({"run_id", "key", "value", "unit", "source"});
  for (const auto& d : r.runs) {
    const std::string id = std::to_string(d.run.id);
    for (const auto& x : d.metrics) m += csv_row({id, x.key, exact(x.value), x.unit, "stored"});
    const auto& s = d.stats;
    m += csv_row({id, "n_tokens", std::to_string(s.n_tokens), "tokens", "derived"});
    if (s.tpot_n) {
      m += csv_row({id, "tpot_ms_mean", exact(s.tpot_mean), "ms", "derived"});
      m += csv_row({id, "tpot_ms_p50", exact(s.tpot_p50), "ms", "derived"});
      m += csv_row({id, "tpot_ms_p90", exact(s.tpot_p90), "ms", "derived"});
      m += csv_row({id, "tpot_ms_p99", exact(s.tpot_p99), "ms", "derived"});
    }
    if (s.j_per_token) m += csv_row({id, "j_per_token", exact(*s.j_per_token), "J", "derived"});
    for (const auto& e : d.evals)
      m += csv_row({id, e.metric, exact(e.value), "", "eval: " + e.method});
  }
  files.push_back({stem + ".csv", m});
  // Tokens: every token of every run (data export: not sampled).
  std::string t = csv_row(
      {"run_id", "position", "token_id", "piece", "logprob", "entropy", "latency_us", "energy_uj"});
  for (const auto& d : r.runs)
    for (const auto& x : d.tokens)
      t += csv_row({std::to_string(d.run.id), std::to_string(x.position), std::to_string(x.id),
                    valid_utf8(x.piece), exactf(x.logprob), exactf(x.entropy),
                    std::to_string(x.latency_us), x.energy_uj ? exact(*x.energy_uj) : ""});
  files.push_back({stem + ".tokens.csv", t});
  // Routing aggregates: per run, layer and expert.
  std::string ro =
      csv_row({"run_id", "layer", "expert", "selections", "share", "mean_weight", "tokens_routed"});
  for (const auto& d : r.runs) {
    const auto& rt = d.routing;
    const size_t E = static_cast<size_t>(rt.expert_count);
    for (size_t l = 0; l < rt.layers.size(); ++l)
      for (size_t e = 0; e < E; ++e) {
        const int64_t c = rt.selections[l * E + e];
        ro += csv_row({std::to_string(d.run.id), std::to_string(rt.layers[l]), std::to_string(e),
                       std::to_string(c), exact(rt.share(l, static_cast<int>(e))),
                       !c ? std::string()
                       : !rt.weights_reported
                           ? std::string("weights not reported by this engine")
                           : exact(rt.weight_sum[l * E + e] / static_cast<double>(c)),
                       std::to_string(rt.tokens[l])});
      }
  }
  files.push_back({stem + ".routing.csv", ro});
}

}  // namespace moelab::report::detail

namespace moelab::report {

std::string visible_text(const std::string& s) {
  return detail::valid_utf8(s);
}

}  // namespace moelab::report
