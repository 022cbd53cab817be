// Helper process for the storage tests (no Qt): streams or writes runs into a database so the
// tests can kill it, race it against another writer, or check that a live owner is respected.
//
//   storage_test_child stream DB LAYERS   stream tokens + routing forever; prints "run ID" once
//                                         and "ack POS" after each commit (POS = highest token
//                                         position committed); SIGKILL it.
//   storage_test_child writer DB NAME RUNS TOKENS BUSY_MS
//                                         write RUNS complete runs of TOKENS tokens, one
//                                         transaction per 10 tokens; prints "ok" or "error: ..."
//   storage_test_child hold DB            begin a run, print "run ID", sleep until killed
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "moelab/storage/writer.h"

using namespace moelab::storage;

namespace {

// Unbuffered line to stdout: what the parent reads survives a SIGKILL right after.
void say(const std::string& line) {
  const std::string s = line + "\n";
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(1, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

TokenRecord make_token(int64_t pos) {
  TokenRecord t;
  t.position = pos;
  t.id = static_cast<int32_t>((pos * 7919) % 32000);
  t.piece = "tok" + std::to_string(pos);
  t.logprob = -0.5f;
  t.entropy = 1.25f;
  t.latency_us = 1000 + pos % 100;
  t.energy_uj = 250.0 + static_cast<double>(pos % 10);
  return t;
}

RoutingRecord make_routing(int64_t pos, int32_t layer) {
  RoutingRecord r;
  r.position = pos;
  r.layer = layer;
  for (int i = 0; i < 8; ++i) {
    r.experts.push_back(static_cast<uint16_t>((pos + layer * 3 + i * 5) % 64));
    r.weights.push_back(0.125f);
  }
  return r;
}

int stream(const std::string& db, int layers) {
  WriterOptions o;
  o.queue_capacity = 4096;
  AsyncWriter w(db, o);
  w.on_commit([](const CommitInfo& c) {
    for (const auto& [run, pos] : c.last_token_position) say("ack " + std::to_string(pos));
  });
  const int64_t session = w.ensure_session("crash");
  RunBegin b;
  b.session_id = session;
  b.config_json = R"({"seed": 42, "routing_policy": "top-k:8", "threads": 1})";
  b.prompt = "a long run";
  const int64_t run = w.begin_run(b);
  say("run " + std::to_string(run));
  for (int64_t pos = 0;; ++pos) {
    // Routing first: a token acknowledged implies its routing is committed too.
    for (int32_t l = 0; l < layers; ++l) w.routing(run, make_routing(pos, l));
    w.token(run, make_token(pos));
    if (pos % 8 == 7) std::this_thread::sleep_for(std::chrono::microseconds(300));
  }
}

int writer(const std::string& db, const std::string& name, int runs, int tokens, int busy_ms) {
  try {
    OpenOptions o;
    o.busy_timeout_ms = busy_ms;
    Store s(db, o);
    const int64_t session = s.ensure_session(name);
    for (int r = 0; r < runs; ++r) {
      RunBegin b;
      b.session_id = session;
      b.config_json = R"({"writer": ")" + name + "\"}";
      const int64_t run = s.begin_run(b);
      for (int t = 0; t < tokens; t += 10) {
        std::vector<TokenRecord> batch;
        for (int i = t; i < std::min(tokens, t + 10); ++i) batch.push_back(make_token(i));
        s.append_tokens(run, batch);
      }
      s.finish_run(run, RunStatus::Complete, "output of " + name);
    }
    say("ok");
    return 0;
  } catch (const StorageError& e) {
    say(std::string("error: ") + kind_name(e.kind()) + ": " + e.what());
    return 1;
  }
}

int hold(const std::string& db) {
  Store s(db);
  RunBegin b;
  b.session_id = s.ensure_session("hold");
  const int64_t run = s.begin_run(b);
  s.append_tokens(run, std::vector<TokenRecord>{make_token(0)});
  say("run " + std::to_string(run));
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "stream" && argc == 4) return stream(argv[2], std::atoi(argv[3]));
    if (mode == "writer" && argc == 7)
      return writer(argv[2], argv[3], std::atoi(argv[4]), std::atoi(argv[5]), std::atoi(argv[6]));
    if (mode == "hold" && argc == 3) return hold(argv[2]);
  } catch (const std::exception& e) {
    say(std::string("error: ") + e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: storage_test_child stream|writer|hold DB ...\n");
  return 2;
}
