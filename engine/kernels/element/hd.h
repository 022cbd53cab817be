// MOELAB_HD marks element functions shared by the CPU kernels and the (future) CUDA backend:
// `__host__ __device__` when compiled by nvcc, nothing otherwise.
//
// The element headers put their functions in the inline namespace MOELAB_EL_ABI (default
// `generic`). Translation units compiled with other instruction-set flags (AVX2, AVX-512) define
// MOELAB_EL_ABI to their own name before including, so the linker can never pick an AVX-512
// compiled copy of an inline function for the portable code (a one-definition-rule trap that
// would crash older CPUs with SIGILL).
#pragma once

#if defined(__CUDACC__)
#define MOELAB_HD __host__ __device__
#else
#define MOELAB_HD
#endif

#ifndef MOELAB_EL_ABI
#define MOELAB_EL_ABI generic
#endif
