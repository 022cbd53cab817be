// Store: reading runs back.
#include "moelab/storage/store.h"
#include "store_internal.h"

namespace moelab::storage {

using detail::bytes;
using detail::kTokensText;
using detail::now_ms;
using detail::Stmt;
using detail::tags_from_json;
using detail::tags_to_json;

// A run without a final text (still running, or ended by a failure, a signal or a killed
// process) reads as the text of the tokens it stored, so every reader - reports, views, the
// CLI - shows what was generated. Nothing is copied on write: a full disk cannot stop it.
static const std::string kRunCols =
    std::string("SELECT id, session_id, coalesce(model_id, 0), kind, config_json, prompt, ") +
    "CASE WHEN coalesce(output, '') = '' AND status <> 'complete' THEN " + kTokensText +
    " ELSE output END, status, error, started_at, coalesce(finished_at, 0), n_tokens, "
    "latency_us_total, energy_uj_total FROM runs ";

static RunRecord read_run(const Stmt& s) {
  RunRecord r;
  r.id = s.i64(0);
  r.session_id = s.i64(1);
  r.model_id = s.i64(2);
  r.kind = s.text(3);
  r.config_json = s.text(4);
  r.prompt = s.text(5);
  r.output = s.text(6);
  r.status = parse_status(s.text(7)).value_or(RunStatus::Failed);
  r.error = s.text(8);
  r.started_at = s.i64(9);
  r.finished_at = s.i64(10);
  r.n_tokens = s.i64(11);
  r.latency_us_total = s.i64(12);
  r.energy_uj_total = s.f64(13);
  return r;
}

std::optional<RunRecord> Store::run(int64_t id) const {
  Stmt s(db_, std::string(kRunCols) + "WHERE id = ?1", path_);
  s.bind(1, id);
  if (!s.step("read run")) return std::nullopt;
  RunRecord r = read_run(s);
  if (r.status == RunStatus::Running) {  // aggregates are final only once it finished
    Stmt a(db_,
           "SELECT count(*), coalesce(sum(latency_us), 0), coalesce(sum(energy_uj), 0) "
           "FROM tokens WHERE run_id = ?1",
           path_);
    a.bind(1, id);
    a.step("read run aggregates");
    r.n_tokens = a.i64(0);
    r.latency_us_total = a.i64(1);
    r.energy_uj_total = a.f64(2);
  }
  return r;
}

std::vector<RunRecord> Store::runs(int64_t session_id) const {
  Stmt s(db_, std::string(kRunCols) + "WHERE session_id = ?1 ORDER BY id", path_);
  s.bind(1, session_id);
  std::vector<RunRecord> out;
  while (s.step("list runs")) out.push_back(read_run(s));
  return out;
}

std::vector<TokenRecord> Store::tokens(int64_t run) const {
  Stmt s(db_,
         "SELECT position, token_id, piece, logprob, entropy, latency_us, energy_uj FROM tokens "
         "WHERE run_id = ?1 ORDER BY position",
         path_);
  s.bind(1, run);
  std::vector<TokenRecord> out;
  while (s.step("read tokens")) {
    TokenRecord t;
    t.position = s.i64(0);
    t.id = static_cast<int32_t>(s.i64(1));
    t.piece = s.text(2);
    t.logprob = s.is_null(3) ? NAN : static_cast<float>(s.f64(3));
    t.entropy = s.is_null(4) ? NAN : static_cast<float>(s.f64(4));
    t.latency_us = s.i64(5);
    if (!s.is_null(6)) t.energy_uj = s.f64(6);
    out.push_back(std::move(t));
  }
  return out;
}

int64_t Store::token_count(int64_t run) const {
  Stmt s(db_, "SELECT count(*) FROM tokens WHERE run_id = ?1", path_);
  s.bind(1, run);
  s.step("count tokens");
  return s.i64(0);
}

std::vector<RoutingRecord> Store::routing(int64_t run) const {
  Stmt s(db_,
         "SELECT position, layer_begin, n_layers, data FROM routing WHERE run_id = ?1 "
         "ORDER BY position, layer_begin",
         path_);
  s.bind(1, run);
  std::vector<RoutingRecord> out;
  while (s.step("read routing")) {
    auto part = codec::decode_routing(s.i64(0), static_cast<int32_t>(s.i64(1)),
                                      static_cast<int32_t>(s.i64(2)), s.blob(3));
    for (auto& r : part) out.push_back(std::move(r));
  }
  return out;
}

std::vector<AttentionSnapshot> Store::attention(int64_t run) const {
  Stmt s(db_,
         "SELECT position, layer, head, shape, data FROM attention WHERE run_id = ?1 "
         "ORDER BY position, layer, head, id",
         path_);
  s.bind(1, run);
  std::vector<AttentionSnapshot> out;
  while (s.step("read attention")) {
    AttentionSnapshot a;
    a.position = s.i64(0);
    a.layer = static_cast<int32_t>(s.i64(1));
    a.head = static_cast<int32_t>(s.i64(2));
    std::istringstream shape(s.text(3));
    std::string d;
    while (std::getline(shape, d, ',')) a.shape.push_back(std::stoll(d));
    const std::string raw = codec::decompress(s.blob(4));
    a.data.resize(raw.size() / sizeof(float));
    detail::copy_bytes(a.data.data(), raw.data(), a.data.size() * sizeof(float));
    out.push_back(std::move(a));
  }
  return out;
}

std::vector<MetricRecord> Store::metrics(int64_t run) const {
  Stmt s(db_, "SELECT key, value, unit FROM metrics WHERE run_id = ?1 ORDER BY key", path_);
  s.bind(1, run);
  std::vector<MetricRecord> out;
  while (s.step("read metrics"))
    out.push_back({s.text(0), s.is_null(1) ? NAN : s.f64(1), s.text(2)});
  return out;
}

std::vector<NextTokenDist> Store::next_token_dists(int64_t run) const {
  Stmt s(db_,
         "SELECT position, n_vocab, n_ids, data FROM next_token_dists WHERE run_id = ?1 "
         "ORDER BY position",
         path_);
  s.bind(1, run);
  std::vector<NextTokenDist> out;
  while (s.step("read next-token distributions")) {
    NextTokenDist d;
    d.position = s.i64(0);
    d.n_vocab = static_cast<int32_t>(s.i64(1));
    const size_t n_ids = static_cast<size_t>(s.i64(2));
    const std::string raw = codec::decompress(s.blob(3));
    if (raw.size() < n_ids * 4 || (raw.size() - n_ids * 4) % 4 != 0)
      throw StorageError(StorageErrorKind::Corrupt, "damaged next-token distribution",
                         {path_, "run " + std::to_string(run)});
    d.ids.resize(n_ids);
    detail::copy_bytes(d.ids.data(), raw.data(), n_ids * 4);
    d.probs.resize((raw.size() - n_ids * 4) / 4);
    detail::copy_bytes(d.probs.data(), raw.data() + n_ids * 4, d.probs.size() * 4);
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<EvalResult> Store::eval_results(int64_t run) const {
  Stmt s(db_,
         "SELECT id, metric, method, text_sha256, value, n_tokens, chunk_values FROM eval_results "
         "WHERE run_id = ?1 ORDER BY id",
         path_);
  s.bind(1, run);
  std::vector<EvalResult> out;
  while (s.step("read evaluation results")) {
    EvalResult e;
    e.id = s.i64(0);
    e.metric = s.text(1);
    e.method = s.text(2);
    e.text_sha256 = s.text(3);
    e.value = s.is_null(4) ? NAN : s.f64(4);
    e.n_tokens = s.i64(5);
    const auto b = s.blob(6);
    e.chunk_values.resize(b.size() / sizeof(double));
    detail::copy_bytes(e.chunk_values.data(), b.data(), e.chunk_values.size() * sizeof(double));
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace moelab::storage
