// Internal: the CPU implementation of moelab::Model.
#pragma once

#include <cstdlib>
#include <memory>
#include <vector>

#include "models/arch.h"
#include "moelab/model/model.h"

namespace moelab::models {

class CpuModel final : public Model {
 public:
  CpuModel(std::unique_ptr<gguf::File> file, ModelCard card, ArchConfig config, Weights weights,
           std::shared_ptr<const Tokenizer> tokenizer);
  ~CpuModel() override;

  const ModelCard& card() const override { return card_; }
  const gguf::File& file() const override { return *file_; }
  const Tokenizer* tokenizer() const override { return tokenizer_.get(); }

  const ArchConfig& config() const { return config_; }
  const Weights& weights() const { return weights_; }

  /// Rewrites every layer matrix (and a separate output matrix) that kernels::can_repack allows
  /// and whose products quantize their activations into the repacked layout of
  /// kernels::repack_rows, in memory this model owns, and sets Weight::repacked. The repacked
  /// copy replaces the file's bytes rather than adding to them: each tensor's pages of the
  /// read-only file mapping are released (madvise MADV_DONTNEED) right after its copy is made,
  /// so resident memory holds the weights once (a later read of the file, e.g. the model card or
  /// the non-finite scan, maps them in again from the file). A model opened from memory keeps
  /// that buffer. Call once, before any Context exists; the CPU backend only (the CUDA backend
  /// uploads the plain layout). Returns the bytes repacked.
  uint64_t repack_weights();

 private:
  std::unique_ptr<gguf::File> file_;
  ModelCard card_;
  ArchConfig config_;
  Weights weights_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::vector<std::unique_ptr<uint8_t, FreeDeleter>> repacked_;  // owned repacked weights
};

/// The CPU backend's context (cpu_context.cpp) on `model`; params and shared_stats as
/// Context::create passes them. Throws moelab::Error as Context::create.
std::unique_ptr<Context> make_cpu_context(std::shared_ptr<const CpuModel> model,
                                          const ContextParams& params,
                                          std::shared_ptr<PolicyStats> shared_stats);

}  // namespace moelab::models
