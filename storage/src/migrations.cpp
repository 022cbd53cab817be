// Schema history. NEVER edit a released migration: append a new one and bump kSchemaVersion in
// store.h. Each migration runs inside the upgrade transaction (BEGIN IMMEDIATE), so a crash
// during an upgrade leaves the file at the previous version.
#include "migrations.h"

#include "moelab/storage/store.h"

namespace moelab::storage::detail {

const char* const kMigrations[] = {
    // 0 -> 1: initial schema.
    R"sql(
CREATE TABLE models(
  id INTEGER PRIMARY KEY,
  sha256 TEXT NOT NULL UNIQUE,
  path TEXT NOT NULL,
  architecture TEXT NOT NULL DEFAULT '',
  card_json TEXT NOT NULL DEFAULT '{}',
  added_at INTEGER NOT NULL);
CREATE TABLE sessions(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  notes TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL);
CREATE TABLE runs(
  id INTEGER PRIMARY KEY,
  session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  model_id INTEGER REFERENCES models(id),
  config_json TEXT NOT NULL,
  prompt TEXT NOT NULL DEFAULT '',
  output TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL
    CHECK (status IN ('running', 'complete', 'failed', 'cancelled', 'interrupted')),
  error TEXT NOT NULL DEFAULT '',
  started_at INTEGER NOT NULL,
  finished_at INTEGER,
  owner_pid INTEGER,
  owner_boot TEXT,
  owner_start INTEGER);
CREATE INDEX runs_by_session ON runs(session_id);
CREATE INDEX runs_running ON runs(status) WHERE status = 'running';
CREATE TABLE tokens(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  token_id INTEGER NOT NULL,
  piece BLOB NOT NULL,
  logprob REAL,
  entropy REAL,
  latency_us INTEGER,
  energy_uj REAL,
  PRIMARY KEY (run_id, position)) WITHOUT ROWID;
CREATE TABLE routing(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  layer_begin INTEGER NOT NULL,
  n_layers INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (run_id, position, layer_begin));
CREATE TABLE metrics(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value REAL,
  unit TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (run_id, key)) WITHOUT ROWID;
)sql",
    // 1 -> 2: session tags; run kind and aggregates (back-filled from the stored tokens);
    // attention snapshots, evaluation results, next-token distributions.
    R"sql(
ALTER TABLE sessions ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'generate';
ALTER TABLE runs ADD COLUMN n_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN latency_us_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN energy_uj_total REAL NOT NULL DEFAULT 0;
UPDATE runs SET
  n_tokens = (SELECT count(*) FROM tokens t WHERE t.run_id = runs.id),
  latency_us_total = (SELECT coalesce(sum(latency_us), 0) FROM tokens t WHERE t.run_id = runs.id),
  energy_uj_total = (SELECT coalesce(sum(energy_uj), 0) FROM tokens t WHERE t.run_id = runs.id);
CREATE TABLE attention(
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  layer INTEGER NOT NULL,
  head INTEGER NOT NULL,
  shape TEXT NOT NULL,
  data BLOB NOT NULL);
CREATE INDEX attention_by_run ON attention(run_id, position, layer, head);
CREATE TABLE eval_results(
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  metric TEXT NOT NULL,
  method TEXT NOT NULL,
  text_sha256 TEXT NOT NULL DEFAULT '',
  value REAL,
  n_tokens INTEGER NOT NULL DEFAULT 0,
  chunk_values BLOB NOT NULL);
CREATE INDEX eval_results_by_run ON eval_results(run_id);
CREATE TABLE next_token_dists(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  n_vocab INTEGER NOT NULL,
  n_ids INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (run_id, position));
)sql",
};

const int kMigrationCount = static_cast<int>(sizeof(kMigrations) / sizeof(kMigrations[0]));
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == kSchemaVersion,
              "one migration per schema version");

}  // namespace moelab::storage::detail
