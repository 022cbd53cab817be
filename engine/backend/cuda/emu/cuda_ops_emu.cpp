// The CUDA backend's kernels and runtime wrappers (cuda_ops.cu), compiled by the host compiler
// against the CPU emulator's runtime (include/cuda_runtime.h, emu.cpp): the same source that nvcc
// compiles for the device, so the tests that run the emulator test the backend's own code.
#include "backend/cuda/cuda_ops.cu"
