// Store: beginning, writing and finishing runs.
#include "moelab/storage/store.h"
#include "process_owner.h"
#include "store_internal.h"

namespace moelab::storage {

using detail::bytes;
using detail::kAggregates;
using detail::now_ms;
using detail::Stmt;
using detail::tags_from_json;
using detail::tags_to_json;

namespace {
void check_config(const std::string& config_json, const std::string& path,
                  const std::string& where) {
  try {
    const auto j = nlohmann::json::parse(config_json);
    if (!j.is_object()) throw nlohmann::json::type_error::create(302, "not an object", nullptr);
  } catch (const nlohmann::json::exception& e) {
    throw StorageError(StorageErrorKind::BadInput,
                       std::string("the run config must be a JSON object: ") + e.what(),
                       {path, where});
  }
}
}  // namespace

int64_t Store::begin_run(const RunBegin& b) {
  check_config(b.config_json, path_, "begin run");
  detail::Transaction tx(db_, path_, "begin run");
  if (!session(b.session_id))
    throw StorageError(StorageErrorKind::BadInput,
                       "no session with id " + std::to_string(b.session_id), {path_, "begin run"});
  if (b.model_id != 0 && !model(b.model_id))
    throw StorageError(StorageErrorKind::BadInput, "no model with id " + std::to_string(b.model_id),
                       {path_, "begin run"});
  const detail::Owner& me = detail::self_owner();
  Stmt s(
      db_,
      "INSERT INTO runs(session_id, model_id, kind, config_json, prompt, status, started_at, "
      "owner_pid, owner_boot, owner_start) VALUES(?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9)",
      path_);
  s.bind(1, b.session_id);
  if (b.model_id)
    s.bind(2, b.model_id);
  else
    s.bind_null(2);
  s.bind(3, b.kind).bind(4, b.config_json).bind(5, b.prompt).bind(6, now_ms());
  s.bind(7, me.pid).bind(8, me.boot).bind(9, me.start);
  s.run("begin run");
  const int64_t id = sqlite3_last_insert_rowid(db_);
  tx.commit();
  return id;
}

void Store::write_tokens(int64_t run, std::span<const TokenRecord> tokens) {
  auto& s = stmt(
      "INSERT INTO tokens(run_id, position, token_id, piece, logprob, entropy, latency_us, "
      "energy_uj) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  for (const auto& t : tokens) {
    s.bind(1, run).bind(2, t.position).bind(3, static_cast<int64_t>(t.id));
    s.bind_blob(4, t.piece);
    s.bind(5, static_cast<double>(t.logprob)).bind(6, static_cast<double>(t.entropy));
    s.bind(7, t.latency_us);
    if (t.energy_uj)
      s.bind(8, *t.energy_uj);
    else
      s.bind_null(8);
    s.run("store token " + std::to_string(t.position) + " of run " + std::to_string(run));
  }
}

void Store::write_routing(int64_t run, std::span<const RoutingRecord> routing) {
  auto& s = stmt(
      "INSERT INTO routing(run_id, position, layer_begin, n_layers, data) "
      "VALUES(?1, ?2, ?3, ?4, ?5)");
  std::string blob;
  size_t i = 0;
  while (i < routing.size()) {
    // One row per token and run of consecutive layers.
    size_t j = i + 1;
    while (j < routing.size() && routing[j].position == routing[i].position &&
           routing[j].layer == routing[j - 1].layer + 1)
      ++j;
    blob.clear();
    for (size_t x = i; x < j; ++x) codec::encode_routing(routing[x], blob);
    s.bind(1, run).bind(2, routing[i].position).bind(3, static_cast<int64_t>(routing[i].layer));
    s.bind(4, static_cast<int64_t>(j - i)).bind_blob(5, blob);
    s.run("store routing of token " + std::to_string(routing[i].position) + " of run " +
          std::to_string(run));
    i = j;
  }
}

void Store::write_attention(int64_t run, std::span<const AttentionSnapshot> snapshots) {
  auto& s = stmt(
      "INSERT INTO attention(run_id, position, layer, head, shape, data) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  for (const auto& a : snapshots) {
    int64_t n = a.shape.empty() ? 0 : 1;
    std::string shape;
    for (int64_t d : a.shape) {
      n *= d;
      if (!shape.empty()) shape += ',';
      shape += std::to_string(d);
    }
    if (n != static_cast<int64_t>(a.data.size()) || n < 0)
      throw StorageError(StorageErrorKind::BadInput,
                         "attention snapshot of shape [" + shape + "] holds " +
                             std::to_string(a.data.size()) + " values",
                         {path_, "store attention of run " + std::to_string(run)});
    const auto blob = codec::compress(
        {reinterpret_cast<const uint8_t*>(a.data.data()), a.data.size() * sizeof(float)});
    s.bind(1, run).bind(2, a.position).bind(3, static_cast<int64_t>(a.layer));
    s.bind(4, static_cast<int64_t>(a.head)).bind(5, shape).bind_blob(6, blob);
    s.run("store attention of run " + std::to_string(run));
  }
}

void Store::write_metrics(int64_t run, std::span<const MetricRecord> metrics) {
  auto& s = stmt("INSERT OR REPLACE INTO metrics(run_id, key, value, unit) VALUES(?1, ?2, ?3, ?4)");
  for (const auto& m : metrics) {
    s.bind(1, run).bind(2, m.key).bind(3, m.value).bind(4, m.unit);
    s.run("store metric '" + m.key + "' of run " + std::to_string(run));
  }
}

void Store::write_dists(int64_t run, std::span<const NextTokenDist> dists) {
  auto& s = stmt(
      "INSERT INTO next_token_dists(run_id, position, n_vocab, n_ids, data) "
      "VALUES(?1, ?2, ?3, ?4, ?5)");
  std::string raw;
  for (const auto& d : dists) {
    if (!d.ids.empty() && d.ids.size() != d.probs.size())
      throw StorageError(StorageErrorKind::BadInput, "sparse distribution: ids and probs differ",
                         {path_, "store next-token distribution"});
    raw.assign(reinterpret_cast<const char*>(d.ids.data()), d.ids.size() * 4);
    raw.append(reinterpret_cast<const char*>(d.probs.data()), d.probs.size() * 4);
    const auto blob = codec::compress(bytes(raw));
    s.bind(1, run).bind(2, d.position).bind(3, static_cast<int64_t>(d.n_vocab));
    s.bind(4, static_cast<int64_t>(d.ids.size())).bind_blob(5, blob);
    s.run("store next-token distribution of run " + std::to_string(run));
  }
}

int64_t Store::write_eval(int64_t run, const EvalResult& e) {
  auto& s = stmt(
      "INSERT INTO eval_results(run_id, metric, method, text_sha256, value, n_tokens, "
      "chunk_values) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  s.bind(1, run).bind(2, e.metric).bind(3, e.method).bind(4, e.text_sha256).bind(5, e.value);
  s.bind(6, e.n_tokens);
  s.bind_blob(7, {reinterpret_cast<const uint8_t*>(e.chunk_values.data()),
                  e.chunk_values.size() * sizeof(double)});
  s.run("store evaluation result of run " + std::to_string(run));
  return sqlite3_last_insert_rowid(db_);
}

void Store::write(const Batch& b) {
  if (b.empty()) return;
  detail::Transaction tx(db_, path_, "write records");
  for (const auto& x : b.tokens) write_tokens(x.run_id, x.items);
  for (const auto& x : b.routing) write_routing(x.run_id, x.items);
  for (const auto& x : b.attention) write_attention(x.run_id, x.items);
  for (const auto& x : b.metrics) write_metrics(x.run_id, x.items);
  for (const auto& x : b.dists) write_dists(x.run_id, x.items);
  for (const auto& x : b.evals)
    for (const auto& e : x.items) write_eval(x.run_id, e);
  tx.commit();
}

#define MOELAB_SINGLE(name, field, type)                                     \
  void Store::name(int64_t run, std::span<const type> items) {               \
    Batch b;                                                                 \
    b.field.push_back({run, std::vector<type>(items.begin(), items.end())}); \
    write(b);                                                                \
  }
MOELAB_SINGLE(append_tokens, tokens, TokenRecord)
MOELAB_SINGLE(append_routing, routing, RoutingRecord)
MOELAB_SINGLE(append_attention, attention, AttentionSnapshot)
MOELAB_SINGLE(append_metrics, metrics, MetricRecord)
MOELAB_SINGLE(append_next_token_dists, dists, NextTokenDist)
#undef MOELAB_SINGLE

int64_t Store::add_eval_result(int64_t run, const EvalResult& e) {
  detail::Transaction tx(db_, path_, "store evaluation result");
  const int64_t id = write_eval(run, e);
  tx.commit();
  return id;
}

void Store::set_run_config(int64_t run, const std::string& config_json) {
  const std::string where = "set config of run " + std::to_string(run);
  check_config(config_json, path_, where);
  detail::Transaction tx(db_, path_, where);
  const auto r = this->run(run);
  if (!r)
    throw StorageError(StorageErrorKind::BadInput, "no run with id " + std::to_string(run),
                       {path_, where});
  if (r->status != RunStatus::Running)
    throw StorageError(StorageErrorKind::BadInput,
                       "run " + std::to_string(run) + " is " + status_name(r->status) +
                           ": only a running run's config can change",
                       {path_, where});
  Stmt s(db_, "UPDATE runs SET config_json = ?1 WHERE id = ?2", path_);
  s.bind(1, config_json).bind(2, run);
  s.run(where);
  tx.commit();
}

void Store::finish_run(int64_t run, RunStatus status, const std::string& output,
                       const std::string& error) {
  if (status == RunStatus::Running)
    throw StorageError(StorageErrorKind::BadInput, "finish_run needs a final status",
                       {path_, "finish run " + std::to_string(run)});
  detail::Transaction tx(db_, path_, "finish run " + std::to_string(run));
  const std::string sql =
      std::string("UPDATE runs SET status = ?1, output = ?2, error = ?3, finished_at = ?4, ") +
      kAggregates + " WHERE id = ?5";
  Stmt s(db_, sql, path_);
  s.bind(1, status_name(status)).bind(2, output).bind(3, error).bind(4, now_ms()).bind(5, run);
  s.run("finish run " + std::to_string(run));
  if (sqlite3_changes(db_) == 0)
    throw StorageError(StorageErrorKind::BadInput, "no run with id " + std::to_string(run),
                       {path_, "finish run"});
  tx.commit();
}

}  // namespace moelab::storage
