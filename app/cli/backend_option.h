// --backend cpu|cuda|auto for the commands that run a model (run, perplexity, logits, eval).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "moelab/core/backends.h"
#include "moelab/model/model.h"

namespace moelab::cli {

inline void add_backend_option(CLI::App* sub, std::string& backend) {
  sub->add_option("--backend", backend,
                  "Compute backend: cpu, cuda, or auto (the fastest available; without a usable "
                  "GPU the CPU, with a one-line reason)")
      ->check(CLI::IsMember(backend_names()))
      ->capture_default_str();
}

/// Loads `path` for the backend `requested` resolves to (resolve_backend logs why CUDA is not
/// used, once) and returns it; *resolved is "cpu" or "cuda" (for ContextParams::backend).
inline std::shared_ptr<Model> load_for_backend(const std::string& path,
                                               const std::string& requested,
                                               std::string* resolved = nullptr) {
  LoadOptions lo;
  lo.backend = resolve_backend(requested);
  auto model = Model::load(path, lo);
  if (resolved) *resolved = model_backend(*model);
  return model;
}

}  // namespace moelab::cli
