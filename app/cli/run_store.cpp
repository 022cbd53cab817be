#include "run_store.h"

#include "store_cli.h"
#include "version.h"

namespace moelab::cli {

void add_run_store_options(CLI::App* sub, RunStoreOptions& o) {
  sub->add_option("--db", o.db,
                  "Store the run in this experiment database (default with --session: "
                  "$XDG_DATA_HOME/moelab/moelab.db); prints the run id");
  sub->add_option("--session", o.session,
                  std::string("Session (experiment) the stored run belongs to (created when "
                              "missing; default '") +
                      kDefaultSession + "')");
}

std::string build_version_string() {
  std::string d = build_description();
  if (auto nl = d.find('\n'); nl != std::string::npos) d.resize(nl);
  return std::string("moelab ") + kVersion + " (" + d + ")";
}

std::unique_ptr<storage::AsyncWriter> open_writer(const std::string& db) {
  const std::string path = db_or_default(db);
  check_database_path(path, false);  // a device or folder is refused; a missing file is created
  return with_store_errors([&] { return std::make_unique<storage::AsyncWriter>(path); });
}

RunStore::RunStore(storage::AsyncWriter& writer, const std::string& session,
                   const std::string& model_path, Generator& gen, GenerateParams& gp,
                   const ContextParams& cp, const std::optional<storage::ModelRecord>& model_row)
    : gen_(gen) {
  session::ensure_seed(gp.sampling);
  const storage::ModelRecord m =
      model_row ? *model_row : session::model_record(gen.model(), model_path);
  // cp.backend is the resolved one (load_for_backend): what the forward pass runs on.
  auto config = session::generate_config_json(
      session::generate_config(cp, gp, backend_name(cp.backend), build_version_string()));
  config["model"] = session::model_json(m, gen.model());
  rec_ = with_store_errors([&] {
    return std::make_unique<session::GenerationRecorder>(
        writer, session.empty() ? kDefaultSession : session, m, config, gp.prompt, gen);
  });
}

GenerateResult RunStore::generate(const GenerateParams& gp, const TokenCallback& stream) {
  // The recording (tokens, routing, attention, metrics incl. policy statistics and energy) is
  // session::GenerationRecorder's, shared with the desktop lab.
  if (stats_) rec_->set_policy_stats(stats_);
  try {
    return rec_->generate(gp, stream);
  } catch (const storage::StorageError& e) {
    rethrow_as_moelab(e);  // the store failed: the run record cannot be finished either
  }
}

}  // namespace moelab::cli
