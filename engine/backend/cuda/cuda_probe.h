// Plain C++ interface to the CUDA runtime probe (compiled by nvcc, callable from g++ code).
#pragma once

#include <string>

namespace moelab {

struct CudaProbe {
  int device_count = 0;   // 0 when there is no usable device or no driver
  std::string detail;     // "NVIDIA H200 (sm_90, 139.8 GiB)" or why none is usable
  bool emulated = false;  // the CPU emulator's device (emu/), not a GPU
};

/// Never throws: every runtime error (no driver, no device, driver too old) means "no CUDA".
CudaProbe cuda_probe();

}  // namespace moelab
