// Experiment store: schema migrations, round trip of every entity, failure modes (disk full,
// read-only, corrupt, newer schema), the writer thread's batching and back-pressure.
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>

#include "moelab/storage/codec.h"
#include "moelab/storage/writer.h"
#include "store_test_access.h"
#include "test_support.h"

using namespace moelab::storage;

namespace {

// Schema version 1 exactly as released (fixture: kept here, independent of migrations.cpp).
const char* kSchemaV1 = R"sql(
CREATE TABLE models(id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, path TEXT NOT NULL,
  architecture TEXT NOT NULL DEFAULT '', card_json TEXT NOT NULL DEFAULT '{}',
  added_at INTEGER NOT NULL);
CREATE TABLE sessions(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
  notes TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);
CREATE TABLE runs(id INTEGER PRIMARY KEY,
  session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  model_id INTEGER REFERENCES models(id), config_json TEXT NOT NULL,
  prompt TEXT NOT NULL DEFAULT '', output TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL
    CHECK (status IN ('running', 'complete', 'failed', 'cancelled', 'interrupted')),
  error TEXT NOT NULL DEFAULT '', started_at INTEGER NOT NULL, finished_at INTEGER,
  owner_pid INTEGER, owner_boot TEXT, owner_start INTEGER);
CREATE INDEX runs_by_session ON runs(session_id);
CREATE INDEX runs_running ON runs(status) WHERE status = 'running';
CREATE TABLE tokens(run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL, token_id INTEGER NOT NULL, piece BLOB NOT NULL, logprob REAL,
  entropy REAL, latency_us INTEGER, energy_uj REAL,
  PRIMARY KEY (run_id, position)) WITHOUT ROWID;
CREATE TABLE routing(run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL, layer_begin INTEGER NOT NULL, n_layers INTEGER NOT NULL,
  data BLOB NOT NULL, PRIMARY KEY (run_id, position, layer_begin));
CREATE TABLE metrics(run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key TEXT NOT NULL, value REAL, unit TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (run_id, key)) WITHOUT ROWID;
PRAGMA user_version = 1;
PRAGMA application_id = 1297040716;
INSERT INTO models VALUES(1, 'ab12', '/models/a.gguf', 'mixtral', '{"n_layer": 2}', 1000);
INSERT INTO sessions VALUES(1, 'old experiment', 'from v1', 2000);
INSERT INTO runs VALUES(1, 1, 1, '{"seed": 7}', 'Hello', ' world', 'complete', '', 3000, 4000,
  100, 'boot', 5);
INSERT INTO runs VALUES(2, 1, 1, '{"seed": 8}', 'Hi', '', 'running', '', 5000, NULL,
  2147483000, 'another-boot', 5);
INSERT INTO tokens VALUES(1, 0, 10, X'20776f', -0.5, 1.0, 1500, 2.5);
INSERT INTO tokens VALUES(1, 1, 11, X'726c64', -0.25, 0.5, 2500, NULL);
INSERT INTO tokens VALUES(2, 0, 12, X'21', -1.0, 0.1, 700, 1.0);
INSERT INTO metrics VALUES(1, 'ttft_ms', 12.5, 'ms');
)sql";

QString g_dir;

std::string db_path(const char* name) {
  return (g_dir + "/" + name).toStdString();
}

void raw_exec(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  QCOMPARE(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  const QString msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  QVERIFY2(rc == SQLITE_OK, qPrintable(msg));
}

TokenRecord tok(int64_t pos, int32_t id, std::string piece, int64_t lat,
                std::optional<double> e = std::nullopt) {
  TokenRecord t;
  t.position = pos;
  t.id = id;
  t.piece = std::move(piece);
  t.logprob = -0.125f * static_cast<float>(pos + 1);
  t.entropy = 0.5f;
  t.latency_us = lat;
  t.energy_uj = e;
  return t;
}

QByteArray file_bytes(const std::string& p) {
  return moelab::test::read_all(QString::fromStdString(p));
}

template <typename F>
StorageError expect_error(F&& f) {
  try {
    f();
  } catch (const StorageError& e) {
    return e;
  }
  return StorageError(StorageErrorKind::Internal, "no error thrown");
}

}  // namespace

class TestStore : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() { g_dir = moelab::test::temp_dir("test_store"); }

  void f16_conversion() {
    using codec::f16_to_f32;
    using codec::f32_to_f16;
    QCOMPARE(f32_to_f16(1.0f), uint16_t{0x3c00});
    QCOMPARE(f32_to_f16(-2.0f), uint16_t{0xc000});
    QCOMPARE(f32_to_f16(65504.0f), uint16_t{0x7bff});
    QCOMPARE(f32_to_f16(1e6f), uint16_t{0x7c00});                    // overflow -> Inf
    QCOMPARE(f32_to_f16(5.960464477539063e-08f), uint16_t{0x0001});  // smallest subnormal
    QCOMPARE(f32_to_f16(1.0f + 1.0f / 2048), uint16_t{0x3c00});      // tie -> even
    QCOMPARE(f32_to_f16(1.0f + 3.0f / 2048), uint16_t{0x3c02});      // tie -> even (up)
    // Every f16 value survives f16 -> f32 -> f16.
    for (uint32_t h = 0; h < 0x10000; ++h) {
      if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // NaN payloads
      QCOMPARE(f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))), static_cast<uint16_t>(h));
    }
    QVERIFY(std::isnan(f16_to_f32(f32_to_f16(NAN))));
  }

  void routing_blob_of_schema_2_and_damaged_extensions() {
    // A blob as schema 2 wrote it (flags byte 0): k = 1, f32 probs over 2 experts.
    std::string v2;
    const uint16_t k = 1, np = 2, e = 7;
    const float w = 0.5f, p[2] = {0.25f, 0.75f};
    v2.append(reinterpret_cast<const char*>(&k), 2);
    v2 += static_cast<char>(2);  // f32
    v2 += static_cast<char>(0);  // flags
    v2.append(reinterpret_cast<const char*>(&np), 2);
    v2.append(reinterpret_cast<const char*>(&e), 2);
    v2.append(reinterpret_cast<const char*>(&w), 4);
    v2.append(reinterpret_cast<const char*>(p), 8);
    auto bytes = [](const std::string& b) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(b.data()), b.size());
    };
    const auto r = codec::decode_routing(3, 1, 1, bytes(v2));
    QCOMPARE(r.size(), size_t{1});
    QCOMPARE(r[0].experts, std::vector<uint16_t>{7});
    QCOMPARE(r[0].probs, (std::vector<float>{0.25f, 0.75f}));
    QVERIFY(r[0].selection.empty());
    QVERIFY(r[0].groups.empty());
    // Our encoder writes the same bytes for a record without selection scores and groups.
    std::string again;
    codec::encode_routing(r[0], again);
    QCOMPARE(again, v2);
    // Unknown flag bits, a groups flag without its bytes, and selection scores without
    // probabilities are damage, never a crash.
    std::string bad = v2;
    bad[3] = static_cast<char>(4);
    QCOMPARE(expect_error([&] { codec::decode_routing(3, 1, 1, bytes(bad)); }).kind(),
             StorageErrorKind::Corrupt);
    bad[3] = static_cast<char>(2);
    QCOMPARE(expect_error([&] { codec::decode_routing(3, 1, 1, bytes(bad)); }).kind(),
             StorageErrorKind::Corrupt);
    bad += static_cast<char>(3);  // 3 groups announced, one present
    bad += static_cast<char>(1);
    QCOMPARE(expect_error([&] { codec::decode_routing(3, 1, 1, bytes(bad)); }).kind(),
             StorageErrorKind::Corrupt);
    bad = v2;
    bad[2] = static_cast<char>(0);  // no probabilities
    bad[3] = static_cast<char>(1);  // but selection scores
    QCOMPARE(expect_error([&] { codec::decode_routing(3, 1, 1, bytes(bad)); }).kind(),
             StorageErrorKind::Corrupt);
    // Selection scores must match the probabilities in length.
    RoutingRecord mismatch = r[0];
    mismatch.selection = {1.f};
    std::string out;
    QCOMPARE(expect_error([&] { codec::encode_routing(mismatch, out); }).kind(),
             StorageErrorKind::BadInput);
  }

  void migrate_from_empty() {
    const auto p = db_path("empty.db");
    Store s(p);
    QCOMPARE(s.schema_version(), kSchemaVersion);
    QCOMPARE(QString::fromStdString(s.integrity_check()), QString("ok"));
    QVERIFY(s.sessions().empty());
    // WAL is on, synchronous is NORMAL (1), foreign keys on.
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(moelab::storage::detail::StoreTestAccess::handle(s), "PRAGMA journal_mode",
                       -1, &st, nullptr);
    QCOMPARE(sqlite3_step(st), SQLITE_ROW);
    QCOMPARE(QString(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))), QString("wal"));
    sqlite3_finalize(st);
    sqlite3_prepare_v2(moelab::storage::detail::StoreTestAccess::handle(s), "PRAGMA synchronous",
                       -1, &st, nullptr);
    QCOMPARE(sqlite3_step(st), SQLITE_ROW);
    QCOMPARE(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
  }

  void migrate_from_v1() {
    const auto p = db_path("v1.db");
    raw_exec(p, kSchemaV1);
    Store s(p);
    QCOMPARE(s.schema_version(), 2);
    QCOMPARE(QString::fromStdString(s.integrity_check()), QString("ok"));
    // Everything from v1 is there.
    const auto m = s.model(1);
    QVERIFY(m);
    QCOMPARE(QString::fromStdString(m->architecture), QString("mixtral"));
    QCOMPARE(QString::fromStdString(m->card_json), QString(R"({"n_layer": 2})"));
    const auto sess = s.sessions();
    QCOMPARE(sess.size(), size_t{1});
    QCOMPARE(QString::fromStdString(sess[0].name), QString("old experiment"));
    QCOMPARE(QString::fromStdString(sess[0].notes), QString("from v1"));
    QVERIFY(sess[0].tags.empty());
    QCOMPARE(sess[0].run_count, int64_t{2});
    const auto r1 = s.run(1);
    QVERIFY(r1);
    QCOMPARE(r1->status, RunStatus::Complete);
    QCOMPARE(QString::fromStdString(r1->kind), QString("generate"));
    // Aggregates back-filled by the migration from the v1 tokens.
    QCOMPARE(r1->n_tokens, int64_t{2});
    QCOMPARE(r1->latency_us_total, int64_t{4000});
    QCOMPARE(r1->energy_uj_total, 2.5);
    const auto toks = s.tokens(1);
    QCOMPARE(toks.size(), size_t{2});
    QCOMPARE(QString::fromStdString(toks[0].piece + toks[1].piece), QString(" world"));
    QVERIFY(!toks[1].energy_uj);
    QCOMPARE(s.metrics(1).at(0).value, 12.5);
    // The v1 run left running by a process of another boot is interrupted now.
    QCOMPARE(s.interrupted_on_open(), std::vector<int64_t>{2});
    QCOMPARE(s.run(2)->status, RunStatus::Interrupted);
    QCOMPARE(s.run(2)->n_tokens, int64_t{1});
    QVERIFY(s.run(2)->error.find("ended before finishing") != std::string::npos);
    // The v2 tables work on the upgraded file.
    s.append_attention(1, std::vector<AttentionSnapshot>{{0, 0, 0, {1, 2}, {0.25f, 0.75f}}});
    QCOMPARE(s.attention(1).size(), size_t{1});
    s.set_session_tags(1, {"legacy"});
    QCOMPARE(s.session(1)->tags, std::vector<std::string>{"legacy"});
  }

  void refuses_newer_schema() {
    const auto p = db_path("newer.db");
    { Store s(p); }
    raw_exec(p, "PRAGMA user_version = 3");
    const QByteArray before = file_bytes(p);
    const auto e = expect_error([&] { Store s(p); });
    QCOMPARE(e.kind(), StorageErrorKind::Version);
    const QString msg = e.what();
    QVERIFY2(msg.contains("schema version 3") && msg.contains("up to 2") &&
                 msg.contains(QString::fromStdString(p)),
             qPrintable(msg));
    QCOMPARE(file_bytes(p), before);
  }

  void refuses_foreign_database() {
    const auto p = db_path("foreign.db");
    raw_exec(p, "CREATE TABLE notes(x); INSERT INTO notes VALUES(1);");
    const auto e = expect_error([&] { Store s(p); });
    QCOMPARE(e.kind(), StorageErrorKind::BadInput);
    QVERIFY(QString(e.what()).contains("another program"));
  }

  void refuses_corrupt_file() {
    const auto p = db_path("garbage.db");
    {
      QFile f(QString::fromStdString(p));
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(QByteArray(8192, 'x'));
    }
    const QByteArray before = file_bytes(p);
    const auto e = expect_error([&] { Store s(p); });
    QCOMPARE(e.kind(), StorageErrorKind::Corrupt);
    QVERIFY2(QString(e.what()).contains("not a moelab database or is damaged"), e.what());
    QCOMPARE(file_bytes(p), before);
  }

  void round_trip_every_entity() {
    const auto p = db_path("roundtrip.db");
    Store s(p);
    ModelRecord m{0, std::string(64, 'a'), "/m/x.gguf", "qwen2moe", R"({"expert_count":60})", 0};
    const int64_t mid = s.upsert_model(m);
    m.path = "/elsewhere/x.gguf";
    QCOMPARE(s.upsert_model(m), mid);  // same sha256: same row, path updated
    QCOMPARE(QString::fromStdString(s.model(mid)->path), QString("/elsewhere/x.gguf"));
    QCOMPARE(s.models().size(), size_t{1});

    const int64_t sid = s.create_session("routing study", "top-p vs top-k", {"moe", "ab"});
    QCOMPARE(s.create_session("other"), sid + 1);
    QCOMPARE(expect_error([&] { s.create_session("other"); }).kind(), StorageErrorKind::BadInput);
    s.rename_session(sid, "routing study 2");
    s.set_session_notes(sid, "notes v2");
    QCOMPARE(expect_error([&] { s.rename_session(sid, "other"); }).kind(),
             StorageErrorKind::BadInput);
    const auto sess = s.session_by_name("routing study 2");
    QVERIFY(sess);
    QCOMPARE(QString::fromStdString(sess->notes), QString("notes v2"));
    QCOMPARE(sess->tags, (std::vector<std::string>{"moe", "ab"}));
    QCOMPARE(s.ensure_session("routing study 2"), sid);

    RunBegin b{sid, mid, R"({"seed": 3, "sampling": {"top_p": 0.9}})", "The prompt", "generate"};
    QCOMPARE(expect_error([&] {
               RunBegin bad = b;
               bad.config_json = "[1,2]";
               s.begin_run(bad);
             }).kind(),
             StorageErrorKind::BadInput);
    const int64_t rid = s.begin_run(b);
    QCOMPARE(s.run(rid)->status, RunStatus::Running);

    std::vector<TokenRecord> toks{tok(0, 5, "He", 1200, 30.5), tok(1, 6, "llo", 800, 20.0),
                                  tok(2, 7, std::string("\xe2\x82", 2), 1000)};
    toks[2].logprob = NAN;
    s.append_tokens(rid, toks);

    std::vector<RoutingRecord> routing;
    for (int64_t pos = 0; pos < 2; ++pos)
      for (int32_t layer : {0, 1, 2, 5}) {  // a gap: layers 0-2 share a row, 5 its own
        RoutingRecord r;
        r.position = pos;
        r.layer = layer;
        const int k = layer == 2 ? 3 : 2;  // variable k (top-p routing)
        for (int i = 0; i < k; ++i) {
          r.experts.push_back(static_cast<uint16_t>(layer * 10 + i + pos));
          r.weights.push_back(0.1f * static_cast<float>(i + 1) + 0.01f * static_cast<float>(pos));
        }
        if (layer == 1) {
          r.probs_format = ProbFormat::F16;
          r.probs = {0.5f, 0.25f, 0.125f, 0.1f};
          r.selection = {0.75f, 0.5f, -0.125f, 0.375f};  // sigmoid scores + a selection bias
          r.groups = {1, 0};                             // group-limited router
        } else if (layer == 2) {
          r.groups = {3};  // groups without probabilities
        } else if (layer == 5) {
          r.probs_format = ProbFormat::F32;
          r.probs = {0.7f, 0.2f, 0.1f, 1e-7f};
          r.selection = {0.8f, 0.1f, 0.2f, 0.5f};
        }
        routing.push_back(r);
      }
    s.append_routing(rid, routing);

    AttentionSnapshot att{2, 3, 1, {2, 3}, {0.1f, 0.2f, 0.7f, 0.3f, 0.3f, 0.4f}};
    s.append_attention(rid, std::vector<AttentionSnapshot>{att});
    QCOMPARE(expect_error([&] {
               s.append_attention(rid, std::vector<AttentionSnapshot>{{0, 0, 0, {2, 2}, {1.f}}});
             }).kind(),
             StorageErrorKind::BadInput);
    s.append_metrics(rid, std::vector<MetricRecord>{{"ttft_ms", 35.5, "ms"},
                                                    {"tokens_per_s", 12.0, "tokens/s"}});
    s.append_metrics(rid, std::vector<MetricRecord>{{"ttft_ms", 36.0, "ms"}});  // replaces
    NextTokenDist dense{0, 4, {}, {0.5f, 0.25f, 0.125f, 0.125f}};
    NextTokenDist sparse{1, 32000, {17, 4, 900}, {0.6f, 0.3f, 0.05f}};
    s.append_next_token_dists(rid, std::vector<NextTokenDist>{dense, sparse});
    EvalResult ev;
    ev.method = "perplexity ctx=512 score-second-half";
    ev.text_sha256 = std::string(64, 'f');
    ev.value = 6.25;
    ev.n_tokens = 2048;
    ev.chunk_values = {6.0, 6.5, 6.1, 6.4};
    const int64_t eid = s.add_eval_result(rid, ev);
    s.finish_run(rid, RunStatus::Complete, "Hello");

    // Read everything back, from a second connection.
    Store r(p);
    const auto run = r.run(rid);
    QVERIFY(run);
    QCOMPARE(run->status, RunStatus::Complete);
    QCOMPARE(run->session_id, sid);
    QCOMPARE(run->model_id, mid);
    QCOMPARE(QString::fromStdString(run->config_json), QString::fromStdString(b.config_json));
    QCOMPARE(QString::fromStdString(run->prompt), QString("The prompt"));
    QCOMPARE(QString::fromStdString(run->output), QString("Hello"));
    QCOMPARE(run->n_tokens, int64_t{3});
    QCOMPARE(run->latency_us_total, int64_t{3000});
    QCOMPARE(run->energy_uj_total, 50.5);
    QVERIFY(run->finished_at >= run->started_at && run->started_at > 0);
    QCOMPARE(r.runs(sid).size(), size_t{1});

    const auto t2 = r.tokens(rid);
    QCOMPARE(t2.size(), toks.size());
    for (size_t i = 0; i < toks.size(); ++i) {
      QCOMPARE(t2[i].position, toks[i].position);
      QCOMPARE(t2[i].id, toks[i].id);
      QCOMPARE(QByteArray::fromStdString(t2[i].piece), QByteArray::fromStdString(toks[i].piece));
      QCOMPARE(t2[i].latency_us, toks[i].latency_us);
      QCOMPARE(t2[i].energy_uj.has_value(), toks[i].energy_uj.has_value());
      if (toks[i].energy_uj) QCOMPARE(*t2[i].energy_uj, *toks[i].energy_uj);
      if (std::isnan(toks[i].logprob))
        QVERIFY(std::isnan(t2[i].logprob));
      else
        QCOMPARE(t2[i].logprob, toks[i].logprob);
    }

    const auto r2 = r.routing(rid);
    QCOMPARE(r2.size(), routing.size());
    for (size_t i = 0; i < routing.size(); ++i) {
      QCOMPARE(r2[i].position, routing[i].position);
      QCOMPARE(r2[i].layer, routing[i].layer);
      QCOMPARE(r2[i].experts, routing[i].experts);
      QCOMPARE(r2[i].weights, routing[i].weights);  // f32: exact
      QCOMPARE(r2[i].probs_format, routing[i].probs_format);
      QCOMPARE(r2[i].probs.size(), routing[i].probs.size());
      QCOMPARE(r2[i].groups, routing[i].groups);
      QCOMPARE(r2[i].selection, routing[i].selection);  // exact in f16 and f32 (chosen values)
      for (size_t j = 0; j < r2[i].probs.size(); ++j) {
        if (routing[i].probs_format == ProbFormat::F32)
          QCOMPARE(r2[i].probs[j], routing[i].probs[j]);
        else  // f16: relative rounding error at most 2^-11
          QVERIFY(std::fabs(r2[i].probs[j] - routing[i].probs[j]) <=
                  routing[i].probs[j] * (1.0f / 2048));
      }
    }
    QCOMPARE(r2[1].probs[0], 0.5f);  // exactly representable values are exact
    QCOMPARE(r2[1].probs[3], codec::f16_to_f32(codec::f32_to_f16(0.1f)));
    // Rows: per token, layers 0-2 in one row and layer 5 in another.
    {
      sqlite3_stmt* st = nullptr;
      sqlite3_prepare_v2(moelab::storage::detail::StoreTestAccess::handle(r),
                         "SELECT count(*) FROM routing", -1, &st, nullptr);
      sqlite3_step(st);
      QCOMPARE(sqlite3_column_int(st, 0), 4);
      sqlite3_finalize(st);
    }

    const auto a2 = r.attention(rid);
    QCOMPARE(a2.size(), size_t{1});
    QCOMPARE(a2[0].position, att.position);
    QCOMPARE(a2[0].layer, att.layer);
    QCOMPARE(a2[0].head, att.head);
    QCOMPARE(a2[0].shape, att.shape);
    QCOMPARE(a2[0].data, att.data);

    const auto m2 = r.metrics(rid);
    QCOMPARE(m2.size(), size_t{2});
    QCOMPARE(QString::fromStdString(m2[0].key), QString("tokens_per_s"));
    QCOMPARE(m2[0].value, 12.0);
    QCOMPARE(QString::fromStdString(m2[1].key), QString("ttft_ms"));
    QCOMPARE(m2[1].value, 36.0);
    QCOMPARE(QString::fromStdString(m2[1].unit), QString("ms"));

    const auto d2 = r.next_token_dists(rid);
    QCOMPARE(d2.size(), size_t{2});
    QCOMPARE(d2[0].n_vocab, 4);
    QVERIFY(d2[0].ids.empty());
    QCOMPARE(d2[0].probs, dense.probs);
    QCOMPARE(d2[1].ids, sparse.ids);
    QCOMPARE(d2[1].probs, sparse.probs);
    QCOMPARE(d2[1].n_vocab, 32000);

    const auto e2 = r.eval_results(rid);
    QCOMPARE(e2.size(), size_t{1});
    QCOMPARE(e2[0].id, eid);
    QCOMPARE(QString::fromStdString(e2[0].method), QString::fromStdString(ev.method));
    QCOMPARE(QString::fromStdString(e2[0].text_sha256), QString::fromStdString(ev.text_sha256));
    QCOMPARE(e2[0].value, 6.25);
    QCOMPARE(e2[0].n_tokens, int64_t{2048});
    QCOMPARE(e2[0].chunk_values, ev.chunk_values);
    QCOMPARE(QString::fromStdString(r.integrity_check()), QString("ok"));

    // Deleting the session removes its runs and all their records.
    r.delete_session(sid);
    QVERIFY(!r.run(rid));
    QCOMPARE(r.token_count(rid), int64_t{0});
    QVERIFY(r.routing(rid).empty());
    QVERIFY(r.attention(rid).empty());
    QVERIFY(r.eval_results(rid).empty());
    QCOMPARE(r.sessions().size(), size_t{1});
    QCOMPARE(QString::fromStdString(r.integrity_check()), QString("ok"));
  }

  void duplicate_token_is_an_error_and_rolls_back() {
    Store s(db_path("dup.db"));
    const int64_t run = s.begin_run({s.ensure_session("x")});
    s.append_tokens(run, std::vector<TokenRecord>{tok(0, 1, "a", 1)});
    const auto e = expect_error([&] {
      s.append_tokens(run, std::vector<TokenRecord>{tok(1, 2, "b", 1), tok(0, 3, "c", 1)});
    });
    QCOMPARE(e.kind(), StorageErrorKind::BadInput);
    QVERIFY2(QString(e.what()).contains("token 0 of run"), e.what());
    QCOMPARE(s.token_count(run), int64_t{1});  // the whole batch was rolled back
  }

  // A running run's config can be replaced (what a remote server reported arrives during the
  // run); bad JSON, unknown runs and finished runs are refused and leave the row as it was.
  void set_run_config_while_running_only() {
    const auto p = db_path("setconfig.db");
    int64_t run = 0;
    {
      AsyncWriter w(p);
      RunWriter rw(w, "cli", std::nullopt, R"({"seed": 1})", "prompt");
      run = rw.id();
      rw.token(tok(0, 9, "x", 10));
      rw.set_config(R"({"seed": 1, "remote": {"served_model": "m"}})");
      const auto e = expect_error([&] { w.set_run_config(run, "[1]"); });
      QCOMPARE(e.kind(), StorageErrorKind::BadInput);
      QVERIFY2(QString(e.what()).contains("JSON object"), e.what());
      rw.finish(RunStatus::Complete, "x");
    }
    Store s(p);
    QCOMPARE(QString::fromStdString(s.run(run)->config_json),
             QString(R"({"seed": 1, "remote": {"served_model": "m"}})"));
    QCOMPARE(s.token_count(run), int64_t{1});
    auto e = expect_error([&] { s.set_run_config(run, "{}"); });
    QCOMPARE(e.kind(), StorageErrorKind::BadInput);
    QVERIFY2(QString(e.what()).contains("complete"), e.what());
    e = expect_error([&] { s.set_run_config(run + 100, "{}"); });
    QVERIFY2(QString(e.what()).contains("no run with id"), e.what());
    QCOMPARE(QString::fromStdString(s.run(run)->config_json),
             QString(R"({"seed": 1, "remote": {"served_model": "m"}})"));
  }

  void live_owner_pid_reuse_and_reboot() {
    const auto p = db_path("owner.db");
    int64_t mine, reused, rebooted;
    {
      Store s(p);
      const int64_t sid = s.ensure_session("o");
      mine = s.begin_run({sid});
      reused = s.begin_run({sid});
      rebooted = s.begin_run({sid});
      const std::string sql =
          "UPDATE runs SET owner_start = owner_start + 1 WHERE id = " + std::to_string(reused) +
          "; UPDATE runs SET owner_boot = 'x' WHERE id = " + std::to_string(rebooted);
      QCOMPARE(sqlite3_exec(moelab::storage::detail::StoreTestAccess::handle(s), sql.c_str(),
                            nullptr, nullptr, nullptr),
               SQLITE_OK);
    }
    Store s(p);
    // Our own live run stays running; same pid but another start time, or another boot: dead.
    QCOMPARE(s.run(mine)->status, RunStatus::Running);
    QCOMPARE(s.run(reused)->status, RunStatus::Interrupted);
    QCOMPARE(s.run(rebooted)->status, RunStatus::Interrupted);
    QCOMPARE(s.interrupted_on_open(), (std::vector<int64_t>{reused, rebooted}));
  }

  void delete_run_removes_its_records_only() {
    Store s(db_path("delete_run.db"));
    const int64_t sid = s.ensure_session("d");
    auto fill = [&](int64_t run) {
      s.append_tokens(run, std::vector<TokenRecord>{tok(0, 1, "a", 10), tok(1, 2, "b", 20)});
      RoutingRecord r;
      r.position = 0;
      r.layer = 0;
      r.experts = {1, 2};
      r.weights = {0.5f, 0.5f};
      s.append_routing(run, std::vector<RoutingRecord>{r});
      AttentionSnapshot a;
      a.layer = 0;
      a.head = -1;
      a.shape = {1, 2};
      a.data = {0.25f, 0.75f};
      s.append_attention(run, std::vector<AttentionSnapshot>{a});
      s.append_metrics(run, std::vector<MetricRecord>{{"ttft_ms", 1, "ms"}});
      s.append_next_token_dists(run, std::vector<NextTokenDist>{{0, 2, {}, {0.5f, 0.5f}}});
      EvalResult e;
      e.method = "ppl";
      e.text_sha256 = "h";
      e.value = 3;
      s.add_eval_result(run, e);
    };
    const int64_t keep = s.begin_run({sid}), gone = s.begin_run({sid}), live = s.begin_run({sid});
    fill(keep);
    fill(gone);
    s.finish_run(keep, RunStatus::Complete, "kept");
    s.finish_run(gone, RunStatus::Complete, "gone");
    s.delete_run(gone);
    QVERIFY(!s.run(gone));
    QCOMPARE(s.token_count(gone), int64_t{0});
    QVERIFY(s.routing(gone).empty());
    QVERIFY(s.attention(gone).empty());
    QVERIFY(s.metrics(gone).empty());
    QVERIFY(s.next_token_dists(gone).empty());
    QVERIFY(s.eval_results(gone).empty());
    // The other run of the session and the session itself stay whole.
    QCOMPARE(s.run(keep)->output, std::string("kept"));
    QCOMPARE(s.token_count(keep), int64_t{2});
    QCOMPARE(s.routing(keep).size(), size_t{1});
    QCOMPARE(s.attention(keep).size(), size_t{1});
    QCOMPARE(s.metrics(keep).size(), size_t{1});
    QCOMPARE(s.next_token_dists(keep).size(), size_t{1});
    QCOMPARE(s.eval_results(keep).size(), size_t{1});
    QCOMPARE(s.runs(sid).size(), size_t{2});
    // Unknown ids and a run this live process is still writing are refused, with the reason.
    auto e = expect_error([&] { s.delete_run(gone); });
    QCOMPARE(e.kind(), StorageErrorKind::BadInput);
    QVERIFY2(
        std::string(e.what()).find("no run with id " + std::to_string(gone)) != std::string::npos,
        e.what());
    e = expect_error([&] { s.delete_run(live); });
    QCOMPARE(e.kind(), StorageErrorKind::BadInput);
    QVERIFY2(std::string(e.what()).find("still running") != std::string::npos, e.what());
    QCOMPARE(s.run(live)->status, RunStatus::Running);
    s.finish_run(live, RunStatus::Cancelled);
    s.delete_run(live);
    QVERIFY(!s.run(live));
    QCOMPARE(QString::fromStdString(s.integrity_check()), QString("ok"));
  }

  void disk_full_keeps_what_was_committed() {
    const auto p = db_path("full.db");
    int64_t run = 0, committed = 0;
    {
      OpenOptions o;
      o.max_page_count = 48;  // 192 KiB with 4 KiB pages
      Store s(p, o);
      run = s.begin_run({s.ensure_session("full")});
      StorageError err(StorageErrorKind::Internal, "none");
      bool failed = false;
      for (int batch = 0; batch < 1000 && !failed; ++batch) {
        std::vector<TokenRecord> v;
        for (int i = 0; i < 50; ++i) v.push_back(tok(committed + i, i, std::string(40, 'p'), 100));
        try {
          s.append_tokens(run, v);
          committed += 50;
        } catch (const StorageError& e) {
          err = e;
          failed = true;
        }
      }
      QVERIFY(failed);
      QCOMPARE(err.kind(), StorageErrorKind::DiskFull);
      QVERIFY2(QString(err.what()).contains("disk is full") &&
                   QString(err.what()).contains(QString::fromStdString(p)),
               err.what());
      QVERIFY(committed > 100);
      QCOMPARE(s.token_count(run), committed);
      // Small writes still fail cleanly; the connection stays usable for reading.
      QCOMPARE(QString::fromStdString(s.integrity_check()), QString("ok"));
    }
    Store s(p);  // without the limit
    QCOMPARE(s.token_count(run), committed);
    QCOMPARE(QString::fromStdString(s.integrity_check()), QString("ok"));
    s.append_tokens(run, std::vector<TokenRecord>{tok(committed, 1, "more", 1)});
    QCOMPARE(s.token_count(run), committed + 1);
  }

  void disk_full_through_the_writer_stops_the_producer() {
    const auto p = db_path("full_async.db");
    int64_t run = 0, acked = -1;
    WriterOptions o;
    o.open.max_page_count = 48;
    o.queue_capacity = 256;
    StorageError err(StorageErrorKind::Internal, "none");
    {
      AsyncWriter w(p, o);
      std::mutex mu;
      w.on_commit([&](const CommitInfo& c) {
        std::lock_guard lock(mu);
        for (auto& [r, pos] : c.last_token_position) acked = std::max(acked, pos);
      });
      run = w.begin_run({w.ensure_session("full")});
      try {
        for (int64_t pos = 0; pos < 1000000; ++pos)
          w.token(run, tok(pos, 1, std::string(40, 'q'), 10));
        QFAIL("the producer was never stopped");
      } catch (const StorageError& e) {
        err = e;
      }
      QCOMPARE(err.kind(), StorageErrorKind::DiskFull);
      QVERIFY(w.error());
      QVERIFY(w.stats().lost_records > 0);
      QCOMPARE(expect_error([&] { w.flush(); }).kind(), StorageErrorKind::DiskFull);
    }
    Store s(p);
    QVERIFY(acked > 0);
    QCOMPARE(s.token_count(run), acked + 1);
    QCOMPARE(QString::fromStdString(s.integrity_check()), QString("ok"));
  }

  void read_only() {
    const auto p = db_path("ro.db");
    int64_t run;
    {
      Store s(p);
      run = s.begin_run({s.ensure_session("ro")});
      s.append_tokens(run, std::vector<TokenRecord>{tok(0, 1, "a", 1)});
      s.finish_run(run, RunStatus::Complete, "a");
    }
    const QByteArray before = file_bytes(p);
    {
      OpenOptions o;
      o.read_only = true;
      Store s(p, o);
      QCOMPARE(s.token_count(run), int64_t{1});
      const auto e =
          expect_error([&] { s.append_tokens(run, std::vector<TokenRecord>{tok(1, 1, "b", 1)}); });
      QCOMPARE(e.kind(), StorageErrorKind::ReadOnly);
      QVERIFY2(QString(e.what()).contains("read-only"), e.what());
    }
    QCOMPARE(file_bytes(p), before);
    QCOMPARE(chmod(p.c_str(), 0444), 0);
    if (geteuid() == 0) {  // root ignores file modes; the read-only connection was checked
      chmod(p.c_str(), 0644);
      qInfo("running as root: a 0444 file is still writable, its check is left out");
      return;
    }
    const auto e = expect_error([&] { Store s(p); });
    chmod(p.c_str(), 0644);
    QCOMPARE(e.kind(), StorageErrorKind::ReadOnly);
    QVERIFY2(QString(e.what()).contains("read-only"), e.what());
    QCOMPARE(file_bytes(p), before);
  }

  void writer_batches_and_back_pressure() {
    const auto p = db_path("writer.db");
    WriterOptions o;
    o.queue_capacity = 8;  // tiny: the producer must block, and nothing may be dropped
    const int64_t n = 5000;
    int64_t run;
    AsyncWriter::Stats st;
    {
      AsyncWriter w(p, o);
      run = w.begin_run({w.ensure_session("w")});
      for (int64_t pos = 0; pos < n; ++pos) {
        RoutingRecord r;
        r.position = pos;
        r.layer = 0;
        r.experts = {1, 2};
        r.weights = {0.5f, 0.5f};
        w.routing(run, r);
        w.token(run, tok(pos, static_cast<int32_t>(pos), "t", 5));
      }
      w.metric(run, {"tokens_per_s", 42.0, "tokens/s"});
      w.finish_run(run, RunStatus::Complete, "done");
      w.flush();
      st = w.stats();
    }
    QCOMPARE(st.pushed, uint64_t(2 * n + 4));  // + ensure_session, begin, metric, finish
    QCOMPARE(st.committed, st.pushed);
    QCOMPARE(st.lost_records, uint64_t{0});
    QVERIFY(st.blocked_pushes > 0);
    QVERIFY(st.transactions > 1);
    Store s(p);
    QCOMPARE(s.token_count(run), n);
    QCOMPARE(s.routing(run).size(), size_t(n));
    QCOMPARE(s.run(run)->status, RunStatus::Complete);
    QCOMPARE(s.run(run)->n_tokens, n);
    QCOMPARE(s.metrics(run).at(0).value, 42.0);
  }

  void run_writer_and_store_generation() {
    const auto p = db_path("runwriter.db");
    int64_t a, b, c;
    ModelRecord m{0, std::string(64, 'b'), "/m.gguf", "llama", "{}", 0};
    {
      AsyncWriter w(p);
      {
        RunWriter rw(w, "cli", m, R"({"seed": 1})", "prompt");
        a = rw.id();
        rw.token(tok(0, 9, "x", 10));
        rw.metric("ttft_ms", 3.0, "ms");
        rw.finish(RunStatus::Complete, "x");
      }
      {
        RunWriter rw(w, "cli", m, R"({"seed": 2})", "prompt");
        b = rw.id();
        rw.token(tok(0, 9, "y", 10));
      }  // abandoned -> cancelled
    }
    StoredGeneration g;
    g.session_name = "cli";
    g.model = m;
    g.config_json = R"({"seed": 3})";
    g.output = "z";
    g.tokens = {tok(0, 1, "z", 7)};
    g.metrics = {{"tokens_per_s", 9.0, "tokens/s"}};
    g.evals = {EvalResult{}};  // no chunk values: an empty blob, not NULL
    c = store_generation(p, g);
    Store s(p);
    QCOMPARE(s.run(a)->status, RunStatus::Complete);
    QCOMPARE(s.run(b)->status, RunStatus::Cancelled);
    QCOMPARE(s.run(b)->n_tokens, int64_t{1});
    QCOMPARE(s.run(c)->status, RunStatus::Complete);
    QCOMPARE(s.run(c)->latency_us_total, int64_t{7});
    QCOMPARE(s.eval_results(c).size(), size_t{1});
    QVERIFY(s.eval_results(c)[0].chunk_values.empty());
    QCOMPARE(s.models().size(), size_t{1});
    QCOMPARE(s.sessions().size(), size_t{1});
    QCOMPARE(s.sessions()[0].run_count, int64_t{3});
  }

  void default_path_follows_xdg() {
    qputenv("XDG_DATA_HOME", "/tmp/xdg-test");
    QCOMPARE(QString::fromStdString(default_database_path()),
             QString("/tmp/xdg-test/moelab/moelab.db"));
    qputenv("XDG_DATA_HOME", "");
    qputenv("HOME", "/home/someone");
    QCOMPARE(QString::fromStdString(default_database_path()),
             QString("/home/someone/.local/share/moelab/moelab.db"));
  }
};

QTEST_GUILESS_MAIN(TestStore)
#include "test_store.moc"
