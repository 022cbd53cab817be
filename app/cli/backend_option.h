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

/// Loads `path` for the backend `requested` (an --backend value, checked by
/// add_backend_option; parsed here, once) resolves to (resolve_backend logs why CUDA is not
/// used, once) and returns it; *resolved is Cpu or Cuda (for ContextParams::backend).
inline std::shared_ptr<Model> load_for_backend(const std::string& path,
                                               const std::string& requested,
                                               Backend* resolved = nullptr) {
  LoadOptions lo;
  lo.backend = resolve_backend(parse_backend(requested));
  auto model = Model::load(path, lo);
  if (resolved) *resolved = parse_backend(model_backend(*model));
  return model;
}

}  // namespace moelab::cli
