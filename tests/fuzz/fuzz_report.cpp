// Fuzz target for report rendering of stored strings: fuzzed bytes become everything a store
// holds as text (model card and path, session name/notes/tags, run kind/config/prompt/output/
// error, token pieces, metric keys and units, evaluation names) plus a few numbers (routing,
// latencies, an attention snapshot), in a fresh ":memory:" store with two small runs whose
// configurations differ; then one report (picked by the input) is rendered
// through write_report, the function `moelab-cli report` calls.
//
// Input: byte 0 picks the format (bits 0-2: html, html, md, md, csv, json, json, pdf) and the
// selection (bits 3-4: run, session, compare); the rest is split at 0x1E into fields
// (see Field below; missing fields are empty). Lists inside a field are split at 0x1F.
// Checked, besides "no crash" and "no exception" (every string is legal data):
//  - HTML and Markdown are valid UTF-8 and carry no markup from the input: every '<' opens a
//    tag the writers emit, without on...= handlers or javascript: URLs (Markdown: outside
//    fenced blocks, backslash-escaped '<' is text); Markdown has no carriage return outside
//    fenced blocks (a CR ends a line in CommonMark and would break a table row);
//  - JSON parses with nlohmann::json (which rejects invalid UTF-8) and build_json() agrees;
//  - every CSV file is RFC 4180 with each record as wide as its header;
//  - PDF starts with "%PDF-".
// Built as a libFuzzer target with clang (preset "fuzz"); with any compiler also as a replay
// driver over the committed seeds and regressions (label unit).
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "moelab/core/error.h"
#include "moelab/report/report.h"
#include "moelab/storage/error.h"
#include "moelab/storage/store.h"

namespace {

namespace fs = std::filesystem;
using namespace moelab;
using moelab::fuzz::valid_utf8;
using nlohmann::json;

enum Field {
  kModelName,     // card "name"
  kModelPath,     // ModelRecord::path
  kArch,          // ModelRecord::architecture
  kCard,          // card_json as stored (used when it is a JSON object)
  kSessionName,   //
  kSessionNotes,  //
  kTags,          // 0x1F-separated
  kConfig,        // config_json as stored (used when the store accepts it)
  kConfigValues,  // 0x1F-separated key, value, key, value ... into a config object
  kPrompt,
  kOutputA,
  kOutputB,
  kError,
  kPieces,   // token pieces, 0x1F-separated (at most 12)
  kMetrics,  // key, unit, key, unit ... (0x1F-separated)
  kEval,     // metric, method, text_sha256 (0x1F-separated)
  kKind,     // run kind
  kNumbers,  // bytes: routing experts, latencies, card numbers
  kFieldCount
};

std::vector<std::string> split(std::string_view s, char sep, size_t max) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  for (size_t start = 0; out.size() < max;) {
    const size_t end = s.find(sep, start);
    out.emplace_back(s.substr(start, end == s.npos ? s.npos : end - start));
    if (end == s.npos) break;
    start = end + 1;
  }
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string read(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

// Markup from stored text: every '<' in the document must open one of the tags the writers
// emit (`allowed`), with no event-handler attribute (on...=) and no javascript: URL; in Markdown a
// backslash-escaped '<' is text. Anything else means stored text reached the document unescaped.
void check_markup(std::string_view doc, std::initializer_list<std::string_view> allowed,
                  bool markdown, const char* format) {
  for (size_t i = doc.find('<'); i != std::string_view::npos; i = doc.find('<', i + 1)) {
    if (markdown && i > 0 && doc[i - 1] == '\\') continue;
    size_t j = i + 1;
    if (j < doc.size() && doc[j] == '!') continue;  // <!DOCTYPE html>
    if (j < doc.size() && doc[j] == '/') ++j;
    size_t k = j;
    while (k < doc.size() && std::isalnum(static_cast<unsigned char>(doc[k]))) ++k;
    const std::string name = lower(std::string(doc.substr(j, k - j)));
    const size_t close = doc.find('>', k);
    const std::string tag = lower(std::string(doc.substr(i, close == doc.npos ? 80 : close - i)));
    bool ok = std::find(allowed.begin(), allowed.end(), name) != allowed.end() &&
              close != doc.npos && tag.find("javascript:") == std::string::npos;
    for (size_t a = tag.find(" on"); ok && a != std::string::npos; a = tag.find(" on", a + 1)) {
      size_t b = a + 3;
      while (b < tag.size() && std::isalpha(static_cast<unsigned char>(tag[b]))) ++b;
      if (b < tag.size() && tag[b] == '=') ok = false;
    }
    if (!ok) moelab::fuzz::fail(format, doc.substr(i > 40 ? i - 40 : 0, 120));
  }
}

// RFC 4180 records of a CSV file; false when a quoted field is not closed.
bool csv_widths(const std::string& text, std::vector<size_t>& widths) {
  size_t fields = 1;
  bool in_quotes = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    any = true;
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"')
          ++i;
        else
          in_quotes = false;
      }
    } else if (c == '"') {
      in_quotes = true;
    } else if (c == ',') {
      ++fields;
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      widths.push_back(fields);
      fields = 1;
      any = false;
      ++i;
    }
  }
  if (any) widths.push_back(fields);
  return !in_quotes;
}

// A private folder for one input's report files, removed when the input is done (a crash
// leaves it behind with the files that were written).
struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "moelab-fuzz-report-XXXXXX").string();
    if (!mkdtemp(t.data())) moelab::fuzz::fail("mkdtemp", t);
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const unsigned flags = data[0];
  const std::vector<std::string> parts = split(
      std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), '\x1E', kFieldCount);
  auto F = [&](Field f) { return f < parts.size() ? parts[f] : std::string(); };
  const std::string nums = F(kNumbers);
  auto num = [&](size_t i) {
    return nums.empty() ? 0u : static_cast<uint8_t>(nums[i % nums.size()]);
  };

  storage::Store store(":memory:");
  // Model: the card as stored when it is a JSON object, else one made of the fuzzed strings.
  storage::ModelRecord m;
  m.sha256 = std::string(64, 'a');
  m.path = F(kModelPath);
  m.architecture = F(kArch);
  {
    json card = json::parse(F(kCard), nullptr, false);
    if (card.is_object()) {
      m.card_json = F(kCard);
    } else {
      card = json::object();
      card["name"] = F(kModelName);
      card["expert_count"] = num(0) % 9;
      card["expert_used_count"] = 2;
      card["n_layer"] = num(1);
      m.card_json = card.dump(-1, ' ', false, json::error_handler_t::replace);
    }
  }
  const int64_t model_id = store.upsert_model(m);

  int64_t session_id = 0;
  try {
    session_id =
        store.create_session(F(kSessionName), F(kSessionNotes), split(F(kTags), '\x1F', 8));
  } catch (const storage::StorageError&) {
    session_id = store.create_session("fuzz", F(kSessionNotes));  // e.g. an empty name
  }
  const std::string session_name = store.session(session_id)->name;

  storage::RunBegin b;
  b.session_id = session_id;
  b.model_id = flags & 0x20 ? 0 : model_id;
  b.prompt = F(kPrompt);
  b.kind = F(kKind).empty() ? "generate" : F(kKind);
  b.config_json = F(kConfig);
  std::vector<int64_t> runs;
  for (int r = 0; r < 2; ++r) {
    int64_t id = 0;
    try {
      id = store.begin_run(b);
    } catch (const storage::StorageError&) {
      // Not a JSON object: a config made of the fuzzed keys and values instead.
      json c = json::object();
      const auto kv = split(F(kConfigValues), '\x1F', 16);
      for (size_t i = 0; i + 1 < kv.size(); i += 2) c[kv[i]] = kv[i + 1];
      if (kv.size() % 2) c["model"] = kv.back();
      c["seed"] = num(2);
      c["stop"] = split(F(kPrompt), '\x1F', 3);
      b.config_json = c.dump(-1, ' ', false, json::error_handler_t::replace);
      id = store.begin_run(b);
    }
    runs.push_back(id);
    if (r == 0) {
      // Run B differs from A in its configuration (the A/B report diffs it): a changed seed
      // and one key A does not have, named and valued by fuzzed text.
      json c = json::parse(b.config_json);
      c["seed"] = num(16);
      c[F(kKind)] = F(kError);
      b.config_json = c.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    const auto pieces = split(F(kPieces), '\x1F', 12);
    std::vector<storage::TokenRecord> toks;
    for (size_t i = 0; i < pieces.size(); ++i) {
      storage::TokenRecord t;
      t.position = static_cast<int64_t>(i);
      t.id = num(3 + i);
      t.piece = pieces[i];
      t.logprob = num(4 + i) == 0 ? NAN : -num(4 + i) / 16.0f;
      t.entropy = num(5 + i) / 32.0f;
      t.latency_us = 1000 + 37 * num(6 + i) + r;
      if (num(7 + i) & 1) t.energy_uj = num(8 + i) * 10.0;
      toks.push_back(t);
    }
    store.append_tokens(id, toks);
    std::vector<storage::RoutingRecord> routing;
    for (size_t i = 0; i < pieces.size() && (flags & 0x40); ++i)
      for (int32_t layer = 0; layer < 2; ++layer) {
        storage::RoutingRecord rr;
        rr.position = static_cast<int64_t>(i);
        rr.layer = layer;
        rr.experts = {static_cast<uint16_t>(num(9 + i + layer) % 8),
                      static_cast<uint16_t>(num(10 + i + layer) % 8 + 8 * r)};
        rr.weights = {num(11 + i) / 255.0f, 1.0f - num(11 + i) / 255.0f};
        routing.push_back(rr);
      }
    store.append_routing(id, routing);
    if (num(17) & 1) {
      // One attention snapshot (drawn as a figure): values from the input, NaN included.
      storage::AttentionSnapshot a;
      a.shape = {2, 1 + num(18) % 4};
      for (int64_t i = 0; i < a.shape[0] * a.shape[1]; ++i)
        a.data.push_back(num(19 + i) == 255 ? NAN : num(19 + i) / 128.0f - 0.5f);
      store.append_attention(id, std::vector<storage::AttentionSnapshot>{a});
    }
    const auto mk = split(F(kMetrics), '\x1F', 8);
    std::vector<storage::MetricRecord> metrics;
    for (size_t i = 0; i < mk.size(); i += 2)
      metrics.push_back({mk[i], num(12 + i) * 1.5, i + 1 < mk.size() ? mk[i + 1] : ""});
    try {
      store.append_metrics(id, metrics);
    } catch (const storage::StorageError&) {
      // The same key twice in one call replaces; an empty key may be refused: no metrics then.
    }
    const auto ev = split(F(kEval), '\x1F', 3);
    if (!ev.empty()) {
      storage::EvalResult e;
      e.metric = ev[0];
      e.method = ev.size() > 1 ? ev[1] : "";
      e.text_sha256 = ev.size() > 2 ? ev[2] : "";
      e.value = 1 + num(13);
      e.n_tokens = num(14);
      e.chunk_values = {1.0 + num(15), 2.0};
      try {
        store.add_eval_result(id, e);
      } catch (const storage::StorageError&) {
      }
    }
    store.finish_run(
        id, r == 0 && (flags & 0x80) ? storage::RunStatus::Failed : storage::RunStatus::Complete,
        F(r == 0 ? kOutputA : kOutputB), F(kError));
  }

  static const report::Format kFormats[] = {report::Format::Html,     report::Format::Html,
                                            report::Format::Markdown, report::Format::Markdown,
                                            report::Format::Csv,      report::Format::Json,
                                            report::Format::Json,     report::Format::Pdf};
  report::Options o;
  o.format = kFormats[flags & 7];
  o.generated_at_ms = 1700000000000;
  o.machine = report::MachineInfo{"fuzz cpu", 2, "none", 1u << 30, "fuzz os"};
  o.max_detail_tokens = 8;
  o.max_series_points = 16;
  o.max_attention_figures = 1;
  o.bootstrap_resamples = 50;
  o.title = (flags & 0x18) == 0 ? "" : F(kModelName);
  const unsigned which = (flags >> 3) & 3;
  const report::Selection sel = which == 1   ? report::Selection::whole_session(session_name)
                                : which == 2 ? report::Selection::compare(runs[0], runs[1])
                                             : report::Selection::one_run(runs[0]);

  const char* ext = report::format_name(o.format);
  const TempDir tmp;
  const fs::path& dir = tmp.path;
  const fs::path out = dir / (std::string("r.") + ext);
  report::Written w;
  try {
    w = report::write_report(store, sel, out.string(), o);
  } catch (const Error& e) {
    moelab::fuzz::fail("write_report threw", e.what());
  }
  MOELAB_FUZZ_CHECK(!w.files.empty() && w.files[0] == out.string(), ext);
  const std::string doc = read(out);
  switch (o.format) {
    case report::Format::Html:
      MOELAB_FUZZ_CHECK(valid_utf8(doc), "html");
      check_markup(doc, {"html", "head", "meta", "title", "style",  "body",  "h1",
                         "h2",   "h3",   "p",    "div",   "table",  "thead", "tbody",
                         "tr",   "th",   "td",   "pre",   "figure", "img",   "figcaption",
                         "del",  "ins",  "i",    "b",     "strong", "span",  "br"},
                   false, "html: markup from stored text");
      break;
    case report::Format::Markdown: {
      MOELAB_FUZZ_CHECK(valid_utf8(doc), "markdown");
      bool fenced = false, in_pre = false;
      std::string fence;
      for (size_t start = 0; start < doc.size();) {
        size_t end = doc.find('\n', start);
        if (end == std::string::npos) end = doc.size();
        const std::string_view line(doc.data() + start, end - start);
        if (in_pre) {
          // The output diff is an HTML <pre> block: a CR there is a line end inside the block.
          check_markup(line, {"pre", "del", "ins"}, true, "markdown: markup from stored text");
          in_pre = line.find("</pre>") == std::string_view::npos;
        } else if (!fenced && line.substr(0, 5) == "<pre>") {
          check_markup(line, {"pre", "del", "ins"}, true, "markdown: markup from stored text");
          in_pre = line.find("</pre>") == std::string_view::npos;
        } else if (!fenced && line.substr(0, 3) == "```") {
          fence = std::string(line.substr(0, line.find_first_not_of('`')));
          fenced = true;
        } else if (fenced && line == fence) {
          fenced = false;
        } else if (!fenced) {
          MOELAB_FUZZ_CHECK(line.find('\r') == std::string_view::npos, line);
          check_markup(line, {"pre", "del", "ins"}, true, "markdown: markup from stored text");
        }
        start = end + 1;
      }
      break;
    }
    case report::Format::Json: {
      const json j = json::parse(doc, nullptr, false);
      MOELAB_FUZZ_CHECK(!j.is_discarded() && j.is_object(), doc);
      const json built = report::build_json(store, sel, o);
      MOELAB_FUZZ_CHECK(built.dump(-1, ' ', false, json::error_handler_t::replace) ==
                            j.dump(-1, ' ', false, json::error_handler_t::replace),
                        "json file differs from build_json()");
      break;
    }
    case report::Format::Csv:
      for (const auto& f : w.files) {
        std::vector<size_t> widths;
        MOELAB_FUZZ_CHECK(csv_widths(read(f), widths), f);
        MOELAB_FUZZ_CHECK(!widths.empty(), f);
        for (size_t n : widths) MOELAB_FUZZ_CHECK(n == widths[0], f);
      }
      break;
    case report::Format::Pdf:
      MOELAB_FUZZ_CHECK(doc.rfind("%PDF-", 0) == 0, "pdf");
      break;
  }
  return 0;
}
