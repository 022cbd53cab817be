// The device probe (cuda_probe.cu) against the CPU emulator's runtime: it reports the emulated
// device when MOELAB_CUDA_EMULATOR=1, else no device with the reason.
#include "backend/cuda/cuda_probe.cu"
