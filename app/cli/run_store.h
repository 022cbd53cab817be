// Storing a `moelab-cli run` (and each generation of `sweep`) in the experiment database:
// `--db PATH --session NAME`. Kept out of run.cpp so that command stays small.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

#include "moelab/runtime/generator.h"
#include "moelab/session/session.h"
#include "moelab/storage/writer.h"

namespace moelab::cli {

struct RunStoreOptions {
  std::string db;       // empty: the default database (when --session is given)
  std::string session;  // empty and db empty: do not store
  bool enabled() const { return !db.empty() || !session.empty(); }
};

/// Adds --db and --session to `sub`.
void add_run_store_options(CLI::App* sub, RunStoreOptions& o);

/// The session name used when --db is given without --session.
inline constexpr const char* kDefaultSession = "default";

/// The build string recorded with every stored run: "moelab X.Y.Z (build description)".
std::string build_version_string();

/// One generation stored while it runs. The constructor fixes the seed in `gp` (drawing one
/// when none was given), writes the model row and begins the run with the complete config;
/// generate() streams tokens and routing through the writer thread and finishes the run
/// (complete, cancelled, or failed when generation throws - the exception is rethrown).
class RunStore {
 public:
  /// `writer` may be shared by several runs (sweep); `model_row` is computed when empty.
  RunStore(storage::AsyncWriter& writer, const std::string& session, const std::string& model_path,
           Generator& gen, GenerateParams& gp, const ContextParams& cp,
           const std::optional<storage::ModelRecord>& model_row = std::nullopt);
  int64_t id() const { return rec_->id(); }
  GenerateResult generate(const GenerateParams& gp, const TokenCallback& stream);
  session::GenerationRecorder& recorder() { return *rec_; }
  /// Policy statistics of the run: avg_active_experts, failovers and overflows are stored as
  /// metrics when the run finishes (reset the stats before generate()). Without it the
  /// context's Context::policy_stats() are used, reset when generate() starts.
  void set_policy_stats(std::shared_ptr<const PolicyStats> stats) { stats_ = std::move(stats); }

 private:
  Generator& gen_;
  std::unique_ptr<session::GenerationRecorder> rec_;
  std::shared_ptr<const PolicyStats> stats_;
};

/// The writer of `moelab-cli run --db`: opens (creating) the database, translating storage errors.
std::unique_ptr<storage::AsyncWriter> open_writer(const std::string& db);

}  // namespace moelab::cli
