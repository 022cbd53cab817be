// The desktop lab's runs: the Run panel's settings, what the live display gets per token, and
// record_generation(), which runs one generation and stores it through moelab_session's
// GenerationRecorder - the same recording path as `moelab-cli run --db` (session.h), so a run
// from the GUI has exactly the records and metrics of a CLI run: tokens, sparse next-token
// distributions, routing per MoE layer, the prompt's attention, ttft/tokens_per_s/prefill/
// total/prompt_tokens/generated_tokens/model_memory_mib, the policy statistics, and the energy
// metrics (energy_j, prefill_energy_j, decode_energy_j, j_per_token) when a sensor measured
// them - none without one, as the CLI. No Qt: the GUI's worker thread and the headless demo use
// it.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moelab/runtime/generator.h"
#include "moelab/session/session.h"
#include "moelab/storage/writer.h"
#include "moelab/telemetry/power.h"

namespace moelab::lab {

/// Everything the Run panel sets.
struct RunSettings {
  std::string prompt;
  std::string system;
  bool chat = false;
  int32_t max_tokens = 64;
  SamplerParams sampling;
  int threads = 1;
  uint32_t n_ctx = 0;  // 0: min(trained context, 2048)
  bool kv_f16 = false;
  bool ignore_eos = false;  // keep generating after an end-of-generation token
  /// The Run panel's backend choice: "auto" (the fastest available: CUDA with a usable GPU, else
  /// the CPU), "cpu" (the reference) or "cuda". The model is loaded for load_backend_for(backend)
  /// and the run's context is created with ContextParams::backend = backend.
  std::string backend = "auto";
  std::string routing_policy = "default";  // moelab/policies spec
  std::string attention_policy = "full";

  /// n_ctx actually used for a model with `trained` context length.
  uint32_t context_for(uint64_t trained) const;
  /// These settings as the run recipe the CLI's `run` uses too (session::RunRecipe), from
  /// which the context, generation and stored parameters are derived.
  session::RunRecipe recipe() const;
  /// recipe().context_params: policies parsed (throws moelab::Error BadInput for a bad spec).
  ContextParams context_params(uint64_t trained) const;
};

/// One generated token as the display sees it.
struct LiveToken {
  int64_t run_id = 0;
  int32_t index = 0;  // token index in the run; -1 for a closing text-only event
  int32_t id = -1;
  std::string piece;  // the text this token releases (TokenEvent::piece)
  float logprob = 0;
  float entropy = 0;
  int64_t latency_us = 0;
  /// [n_layer] experts of the producing step, as stored (empty: dense layer / no MoE).
  std::vector<std::vector<uint16_t>> experts;
  std::vector<std::vector<float>> weights;  // [n_layer][k] router weights as stored
  /// [n_layer][expert_count] router probabilities as stored (empty where none were recorded).
  std::vector<std::vector<float>> probs;
  /// [n_layer][expert_group_used_count] kept expert groups as stored (group-limited routers;
  /// empty otherwise).
  std::vector<std::vector<uint8_t>> groups;
  /// The attention snapshots stored with this token (GenerationRecorder::last_attention): for
  /// token 0 the prompt's (head mean per layer, every head of the captured layers), later the
  /// decode step's rows per head. Token 0 only: the prompt's token texts (prompt_token_text).
  std::vector<storage::AttentionSnapshot> attention;
  std::vector<std::string> prompt_text;
  /// Wall time of the decode steps so far per [layer][op] (µs, summed; rows 0..n_layer-1 then
  /// one for the layer-less ops; ops in OpKind order) and how many decode steps they cover.
  std::vector<double> op_us;
  int64_t decode_steps = 0;
};

/// The texts of the prompt's tokens as the run evaluates them (chat template applied when
/// `chat`), one per token; empty when the model has no tokenizer or the prompt cannot be
/// tokenized (e.g. no known chat template).
std::vector<std::string> prompt_token_text(const Model& model, const std::string& prompt, bool chat,
                                           const std::string& system);

struct RecordedRun {
  int64_t run_id = 0;
  storage::RunStatus status = storage::RunStatus::Complete;
  std::string error;
  GenerateResult result;
  nlohmann::json config;
  uint64_t routing_records = 0;
  /// The session's energy accounting of the run (session::RunEnergy's report: phases prefill /
  /// decode with joules and tokens; available == false without a sensor). nullopt for a remote
  /// run. Its figures (session::total_energy_j, decode_j_per_token) are the stored ones.
  std::optional<EnergyReport> energy;
};

/// One entry of the Run panel's backend choice.
struct BackendChoice {
  std::string name;       // "auto", "cpu", "cuda"
  bool available = true;  // selectable on this machine
  std::string reason;     // why not (the probe's detail, e.g. "no NVIDIA driver ..."); else empty
};

/// auto, cpu, cuda - CUDA unavailable (with moelab::probe_backends' reason) in a build without
/// the CUDA backend or on a machine without a usable NVIDIA GPU. auto and cpu are always
/// available.
std::vector<BackendChoice> backend_choices();

/// Why CUDA cannot run here ("" when it can): probe_backends' detail of the cuda entry.
std::string cuda_unavailable_reason();

/// The backend the weights are loaded for when the user picks `requested`: resolve_backend's
/// answer ("cuda" for "cuda" or "auto" with a usable GPU, else "cpu"), without its log line when
/// CUDA cannot run (the Run panel asks on every change of the choice and shows the reason).
std::string load_backend_for(const std::string& requested);

/// The backend a run with the choice `requested` computes on, for a model whose weights are on
/// `weights_on` ("cpu"/"cuda", moelab::model_backend): "cpu" -> "cpu"; "auto" -> the model's
/// backend; "cuda" -> "cuda" (Context::create refuses it for a CPU model).
std::string run_backend(const std::string& requested, const std::string& weights_on);

/// One line for the Run panel: "CPU (reference)" / "CUDA (<device>)", and when `requested` was
/// "auto" or "cuda" but the run is on the CPU because CUDA cannot run here,
/// " — CUDA unavailable: <reason>".
std::string backend_line(const std::string& used, const std::string& requested);

/// The identity of the model for the store.
struct ModelIdentity {
  std::string path;
  std::string sha256;  // empty: not hashed yet (hashed on the calling thread before the run)
};

/// Runs one generation and stores it (session `session` created when missing). on_token is
/// called on the calling thread for every event; returning false cancels the run. Energy is
/// measured with engine/telemetry's meter under `powercap_root` (the RAPL sysfs root; the
/// CLI's MOELAB_POWERCAP_ROOT). Never throws for engine errors: a failed run is stored as
/// Failed and returned with the error (storage errors still throw StorageError).
RecordedRun record_generation(Generator& gen, const RunSettings& settings,
                              storage::AsyncWriter& writer, const std::string& session,
                              const ModelIdentity& model,
                              const std::function<bool(const LiveToken&)>& on_token = {},
                              const std::string& powercap_root = "/sys/class/powercap");

/// The powercap root the lab measures energy under: $MOELAB_POWERCAP_ROOT or
/// /sys/class/powercap.
std::string default_powercap_root();

/// True when this build can apply routing/attention policies (always: ContextParams carries
/// them).
bool policies_available();

}  // namespace moelab::lab
