// moelab-cli sessions list|show ID [--json] [--db PATH]: what the experiment store holds.
#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>

#include "checks.h"
#include "cli.h"
#include "moelab/compare/compare.h"
#include "store_cli.h"

namespace moelab::cli {

namespace {

struct SessionsOptions {
  std::string db;
  std::string id;  // session id or name (show)
  bool json = false;
};

std::string format_time(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

nlohmann::json session_json(const storage::SessionRecord& s) {
  return {{"id", s.id},
          {"name", s.name},
          {"notes", s.notes},
          {"tags", s.tags},
          {"created_at_ms", s.created_at},
          {"run_count", s.run_count}};
}

nlohmann::json run_json(const storage::RunRecord& r) {
  nlohmann::json config = nlohmann::json::parse(r.config_json, nullptr, false);
  if (config.is_discarded()) config = r.config_json;
  nlohmann::json j = {{"id", r.id},
                      {"kind", r.kind},
                      {"status", storage::status_name(r.status)},
                      {"model_id", r.model_id},
                      {"config", config},
                      {"prompt", r.prompt},
                      {"output", r.output},
                      {"error", r.error},
                      {"started_at_ms", r.started_at},
                      {"finished_at_ms", r.finished_at},
                      {"n_tokens", r.n_tokens},
                      {"latency_us_total", r.latency_us_total}};
  if (r.energy_uj_total > 0) j["energy_uj_total"] = r.energy_uj_total;
  return j;
}

// One line of at most n bytes of stored text, control bytes escaped (printable()).
std::string preview(std::string s, size_t n) {
  for (char& c : s)
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  return printable(s.size() > n ? s.substr(0, n - 3) + "..." : s);
}

int list(const SessionsOptions& o, Io io) {
  const std::string path = db_or_default(o.db);
  // A missing database is an error (exit 2, the path named), as in sessions show, compare and
  // report: a typo in --db must not read as "no sessions".
  const auto store = open_existing_store(path);
  const auto sessions = store->sessions();
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& s : sessions) j.push_back(session_json(s));
    io.out << json_text(j) << '\n';
    return kOk;
  }
  if (sessions.empty()) {
    io.out << "no sessions in " << path << '\n';
    return kOk;
  }
  io.out << std::left << std::setw(6) << "id" << std::setw(28) << "name" << std::setw(6) << "runs"
         << std::setw(21) << "created"
         << "tags / notes\n";
  for (const auto& s : sessions) {
    std::string tags;
    for (const auto& t : s.tags) tags += (tags.empty() ? "[" : ", ") + printable(t);
    if (!tags.empty()) tags += "] ";
    io.out << std::left << std::setw(6) << s.id << std::setw(28) << preview(s.name, 27)
           << std::setw(6) << s.run_count << std::setw(21) << format_time(s.created_at) << tags
           << preview(s.notes, 40) << '\n';
  }
  return kOk;
}

// One line on what a remote run's server reported (config.remote, app/remote/remote_run.h);
// empty for other runs.
std::string remote_line(const storage::RunRecord& r) {
  const nlohmann::json c = nlohmann::json::parse(r.config_json, nullptr, false);
  if (!c.is_object() || c.value("engine", std::string()) != "remote" || !c.contains("remote") ||
      !c["remote"].is_object())
    return {};
  const nlohmann::json& rm = c["remote"];
  const auto text = [](const nlohmann::json& j, const char* key) {
    return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>()
                                                                  : std::string();
  };
  std::string line = "remote " + text(rm, "url") + ", served model " + text(rm, "served_model");
  if (!rm.contains("reported") || !rm["reported"].is_object())
    return line + " (nothing reported: the run did not finish)";
  const nlohmann::json& rep = rm["reported"];
  line += std::string(", token ids ") + (rep.value("token_ids", false) ? "yes" : "no");
  const nlohmann::json usage = rep.value("usage", nlohmann::json::object());
  const nlohmann::json server = usage.value("server", nlohmann::json());
  const nlohmann::json client = usage.value("client", nlohmann::json::object());
  if (server.is_object() && server.contains("prompt_tokens") &&
      server.contains("completion_tokens"))
    line +=
        ", usage " + server["prompt_tokens"].dump() + " + " + server["completion_tokens"].dump();
  else
    line += ", usage not reported";
  if (client.contains("completion_tokens"))
    line += " (client counted " + client["completion_tokens"].dump() + ")";
  const nlohmann::json re = rep.value("routed_experts", nlohmann::json::object());
  if (text(re, "format") == "none" || text(re, "format").empty()) {
    line += ", routed experts: " + text(re, "note");
  } else {
    line += ", routed experts " + text(re, "format") + " (" +
            re.value("layers", nlohmann::json()).dump() + " layers, top-" +
            re.value("top_k", nlohmann::json()).dump() + "; " +
            re.value("prompt_rows_returned", nlohmann::json()).dump() +
            " prompt rows returned, not stored; weights not reported by this engine)";
  }
  return line;
}

int show(const SessionsOptions& o, Io io) {
  const std::string path = db_or_default(o.db);
  const auto store = open_existing_store(path);
  std::optional<storage::SessionRecord> s;
  // A number is an id when it fits one (ids are int64); anything else is a name.
  int64_t id = 0;
  const auto [end, ec] = std::from_chars(o.id.data(), o.id.data() + o.id.size(), id);
  if (!o.id.empty() && ec == std::errc() && end == o.id.data() + o.id.size() && id > 0)
    s = store->session(id);
  if (!s) s = store->session_by_name(o.id);
  if (!s)
    throw Error(ErrorKind::BadInput, "no session with id or name '" + o.id + "'",
                {path, std::nullopt, "sessions show"});
  const auto runs = store->runs(s->id);
  if (o.json) {
    nlohmann::json j = session_json(*s);
    j["runs"] = nlohmann::json::array();
    for (const auto& r : runs) {
      auto rj = run_json(r);
      nlohmann::json metrics = nlohmann::json::object();
      for (const auto& m : store->metrics(r.id))
        metrics[m.key] = std::isfinite(m.value) ? nlohmann::json(m.value) : nlohmann::json();
      rj["metrics"] = metrics;
      // Decode tokens/s as run prints it and compare and the reports use it
      // (compare::latency_figures); null without two tokens.
      const auto f = compare::latency_figures(store->tokens(r.id));
      rj["decode_tokens_per_s"] =
          f.decode_tokens_per_s ? nlohmann::json(*f.decode_tokens_per_s) : nlohmann::json();
      j["runs"].push_back(rj);
    }
    io.out << json_text(j) << '\n';
    return kOk;
  }
  io.out << "session " << s->id << ": " << printable(s->name) << '\n';
  if (!s->tags.empty()) {
    io.out << "  tags:    ";
    for (size_t i = 0; i < s->tags.size(); ++i) io.out << (i ? ", " : "") << printable(s->tags[i]);
    io.out << '\n';
  }
  if (!s->notes.empty()) io.out << "  notes:   " << printable(s->notes) << '\n';
  io.out << "  created: " << format_time(s->created_at) << '\n';
  io.out << "  runs:    " << runs.size() << '\n';
  if (runs.empty()) return kOk;
  io.out << '\n'
         << std::left << std::setw(6) << "run" << std::setw(13) << "kind" << std::setw(12)
         << "status" << std::right << std::setw(7) << "tokens" << std::setw(11) << "decode t/s"
         << "  " << std::left << std::setw(21) << "started"
         << "output\n";
  for (const auto& r : runs) {
    // Decode tokens/s as compare, the reports and the lab define it (compare::latency_figures:
    // the decode tokens 1..n-1, without the first token's prefill).
    std::ostringstream tps;
    if (const auto f = compare::latency_figures(store->tokens(r.id)); f.decode_tokens_per_s)
      tps << std::fixed << std::setprecision(2) << *f.decode_tokens_per_s;
    else
      tps << "-";
    io.out << std::left << std::setw(6) << r.id << std::setw(13) << preview(r.kind, 12)
           << std::setw(12) << storage::status_name(r.status) << std::right << std::setw(7)
           << r.n_tokens << std::setw(11) << tps.str() << "  " << std::left << std::setw(21)
           << format_time(r.started_at) << preview(r.output, 40) << '\n';
    if (const std::string rl = remote_line(r); !rl.empty())
      io.out << "      " << printable(rl) << '\n';
  }
  return kOk;
}

}  // namespace

void add_sessions(CLI::App& app, Io io, Action& action) {
  auto o = std::make_shared<SessionsOptions>();
  auto* sub = app.add_subcommand("sessions", "List stored experiment sessions and their runs");
  sub->require_subcommand(1);
  auto* ls = sub->add_subcommand("list", "List sessions (id, name, runs, tags, notes)");
  add_db_option(ls, o->db);
  ls->add_flag("--json", o->json, "Print JSON");
  ls->callback([o, io, &action] {
    action = [o, io] { return with_store_errors([&] { return list(*o, io); }); };
  });
  auto* sh = sub->add_subcommand("show", "Show one session with its runs");
  sh->add_option("ID", o->id, "Session id or name")->required();
  add_db_option(sh, o->db);
  sh->add_flag("--json", o->json, "Print JSON (with each run's config and metrics)");
  sh->callback([o, io, &action] {
    action = [o, io] { return with_store_errors([&] { return show(*o, io); }); };
  });
}

}  // namespace moelab::cli
