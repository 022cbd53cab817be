// Internal: the CPU implementation of moelab::Model.
#pragma once

#include <memory>

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

 private:
  std::unique_ptr<gguf::File> file_;
  ModelCard card_;
  ArchConfig config_;
  Weights weights_;
  std::shared_ptr<const Tokenizer> tokenizer_;
};

/// The CPU backend's context (cpu_context.cpp) on `model`; params and shared_stats as
/// Context::create passes them. Throws moelab::Error as Context::create.
std::unique_ptr<Context> make_cpu_context(std::shared_ptr<const CpuModel> model,
                                          const ContextParams& params,
                                          std::shared_ptr<PolicyStats> shared_stats);

}  // namespace moelab::models
