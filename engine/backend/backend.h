// Internal: the backend interface between the model loader / Context::create (engine/models/)
// and the compute backends. The CPU backend is models::CpuModel + CpuContext (cpu_context.cpp);
// the CUDA backend (backend/cuda/cuda_context.cpp, compiled when nvcc is found) wraps a loaded
// CpuModel - it keeps the mapped file, card and tokenizer - and adds device copies of the
// weights. A CUDA model can also run CPU contexts (ContextParams::backend = "cpu") on the host
// weights it wraps.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "models/model_impl.h"
#include "moelab/model/model.h"

namespace moelab::backend {

/// Uploads the weights of `cpu` to the GPU. Throws moelab::Error: Io when the device lacks
/// the memory (the message gives the bytes needed and free) or a CUDA call fails; BadInput
/// when this build has no CUDA backend.
std::shared_ptr<Model> make_cuda_model(std::shared_ptr<const models::CpuModel> cpu,
                                       const LoadOptions& opts);

/// The CpuModel behind `model` (itself for a CPU model, the wrapped one for a CUDA model);
/// null for other Model implementations.
std::shared_ptr<const models::CpuModel> host_model(const std::shared_ptr<const Model>& model);

/// True when `model` holds device weights.
bool is_cuda_model(const Model& model);

/// A CUDA context on a CUDA model (the caller checked is_cuda_model). `shared_stats` as for the
/// CPU context (ContextParams::policy_stats). Throws moelab::Error as Context::create, and Io when
/// the KV cache does not fit in device memory.
std::unique_ptr<Context> make_cuda_context(std::shared_ptr<const Model> model,
                                           const ContextParams& params,
                                           std::shared_ptr<PolicyStats> shared_stats);

/// Guards the shared PolicyStats (ContextParams::policy_stats) across all backends' contexts.
std::mutex& shared_stats_mutex();

}  // namespace moelab::backend
