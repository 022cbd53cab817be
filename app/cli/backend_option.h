// --backend cpu|cuda|auto for the commands that run a model (run, perplexity, logits, eval).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "moelab/core/backends.h"
#include "moelab/core/error.h"
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
/// add_backend_option; parsed here, once) resolves to and returns it; *resolved is Cpu or Cuda
/// (for ContextParams::backend). "auto" without a usable GPU runs on the CPU and says why on
/// stderr (resolve_backend's log line); an explicit "cuda" without a usable device (no GPU, no
/// driver, or a build without CUDA) throws moelab::Error (BadInput, exit 2): "--backend cuda: no
/// CUDA device (REASON); use --backend cpu or auto" - it never falls back silently.
inline std::shared_ptr<Model> load_for_backend(const std::string& path,
                                               const std::string& requested,
                                               Backend* resolved = nullptr) {
  const Backend want = parse_backend(requested);
  if (want == Backend::Cuda)
    for (const auto& b : probe_backends())
      if (b.name == "cuda" && !b.available)
        throw Error(ErrorKind::BadInput,
                    "--backend cuda: no CUDA device (" +
                        (b.detail.empty() ? std::string("not built with CUDA") : b.detail) +
                        "); use --backend cpu or auto");
  LoadOptions lo;
  lo.backend = resolve_backend(want);
  auto model = Model::load(path, lo);
  if (resolved) *resolved = parse_backend(model_backend(*model));
  return model;
}

}  // namespace moelab::cli
