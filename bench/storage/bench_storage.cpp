// bench_storage [DIR] [TOKENS]: how fast the experiment store takes routing records and how big
// the database gets per generated token, for a 64-layer x 64-expert model with top-8 routing.
// Baseline measured in the same run: encoding the same routing blobs in memory (no SQLite), so
// the table shows which fraction of the pure encode rate survives the database.
// Target from issue 6: >= 500,000 token x layer records/s through the writer.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "moelab/storage/codec.h"
#include "moelab/storage/writer.h"

using namespace moelab::storage;
namespace fs = std::filesystem;

namespace {

constexpr int kLayers = 64, kExperts = 64, kTopK = 8;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Routing of one token (all layers), deterministic pseudo-random experts and softmax weights.
std::vector<RoutingRecord> token_routing(int64_t pos, std::mt19937& rng, ProbFormat probs) {
  std::vector<RoutingRecord> out(kLayers);
  std::uniform_real_distribution<float> u(0.01f, 1.0f);
  for (int l = 0; l < kLayers; ++l) {
    auto& r = out[static_cast<size_t>(l)];
    r.position = pos;
    r.layer = l;
    float sum = 0;
    for (int i = 0; i < kTopK; ++i) {
      r.experts.push_back(static_cast<uint16_t>((rng() % (kExperts / kTopK)) * kTopK + i));
      r.weights.push_back(u(rng));
      sum += r.weights.back();
    }
    for (auto& w : r.weights) w /= sum;
    if (probs != ProbFormat::None) {
      r.probs_format = probs;
      r.probs.resize(kExperts);
      float s = 0;
      for (auto& p : r.probs) s += (p = u(rng));
      for (auto& p : r.probs) p /= s;
    }
  }
  return out;
}

TokenRecord make_token(int64_t pos) {
  TokenRecord t;
  t.position = pos;
  t.id = static_cast<int32_t>(pos * 31 % 32000);
  t.piece = " tok";
  t.logprob = -1.5f;
  t.entropy = 2.0f;
  t.latency_us = 25000;
  t.energy_uj = 1.2e6;
  return t;
}

uint64_t db_bytes(const std::string& p) {
  uint64_t n = 0;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    const auto s = fs::file_size(p + suffix, ec);
    if (!ec && std::string(suffix) != "-shm") n += s;
  }
  return n;
}

struct Row {
  const char* name;
  double records_per_s;
  double producer_records_per_s;
  uint64_t blocked;
  double bytes_per_token;
};

Row run_writer(const std::string& path, int tokens, ProbFormat probs, const char* name) {
  fs::remove(path);
  fs::remove(path + "-wal");
  fs::remove(path + "-shm");
  std::mt19937 rng(1);
  // Pre-generate so the measurement is the store, not the random numbers.
  std::vector<std::vector<RoutingRecord>> routing;
  for (int t = 0; t < tokens; ++t) routing.push_back(token_routing(t, rng, probs));
  uint64_t empty_bytes;
  {
    Store s(path);
    s.checkpoint();
    empty_bytes = db_bytes(path);
  }
  WriterOptions o;
  Row row{name, 0, 0, 0, 0};
  double produce_s = 0;
  {
    AsyncWriter w(path, o);
    const int64_t run = w.begin_run({w.ensure_session("bench")});
    const auto t0 = Clock::now();
    for (int t = 0; t < tokens; ++t) {
      for (auto& r : routing[static_cast<size_t>(t)]) w.routing(run, std::move(r));
      w.token(run, make_token(t));
    }
    produce_s = seconds_since(t0);
    w.finish_run(run, RunStatus::Complete, "");
    w.flush();
    const double total_s = seconds_since(t0);
    const double records = double(tokens) * kLayers;
    row.records_per_s = records / total_s;
    row.producer_records_per_s = records / produce_s;
    row.blocked = w.stats().blocked_pushes;
  }
  {
    Store s(path);
    s.checkpoint();
  }
  row.bytes_per_token = double(db_bytes(path) - empty_bytes) / tokens;
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : fs::temp_directory_path().string();
  const int tokens = argc > 2 ? std::atoi(argv[2]) : 8000;
  const std::string path = dir + "/moelab-bench-" + std::to_string(getpid()) + ".db";

  // Baseline: encode the same blobs in memory.
  std::mt19937 rng(1);
  std::vector<std::vector<RoutingRecord>> routing;
  for (int t = 0; t < 2000; ++t) routing.push_back(token_routing(t, rng, ProbFormat::None));
  std::string blob;
  size_t sink = 0;
  const auto t0 = Clock::now();
  for (int rep = 0; rep < 5; ++rep)
    for (const auto& tok : routing) {
      blob.clear();
      for (const auto& r : tok) codec::encode_routing(r, blob);
      sink += blob.size();
    }
  const double encode_rate = 5.0 * 2000 * kLayers / seconds_since(t0);

  std::printf("moelab store benchmark: %d layers x %d experts, top-%d, %d tokens, file %s\n",
              kLayers, kExperts, kTopK, tokens, path.c_str());
  std::printf("baseline: in-memory routing encode %.2f M records/s (blob %zu B/token)\n\n",
              encode_rate / 1e6, sink / (5 * 2000));
  std::printf("%-34s %14s %10s %16s %9s %12s\n", "case", "records/s", "vs encode", "producer rec/s",
              "blocked", "bytes/token");
  const Row rows[] = {
      run_writer(path, tokens, ProbFormat::None, "experts+weights (top-8)"),
      run_writer(path, tokens / 2, ProbFormat::F16, "+ full router probs f16"),
      run_writer(path, tokens / 4, ProbFormat::F32, "+ full router probs f32"),
  };
  for (const auto& r : rows)
    std::printf("%-34s %14.0f %9.1f%% %16.0f %9llu %12.0f\n", r.name, r.records_per_s,
                100.0 * r.records_per_s / encode_rate, r.producer_records_per_s,
                static_cast<unsigned long long>(r.blocked), r.bytes_per_token);
  std::printf("\ntarget: >= 500000 records/s (%s for the top-8 case)\n",
              rows[0].records_per_s >= 500000 ? "met" : "NOT met");
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
  return 0;
}
