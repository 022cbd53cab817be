# CUDA detection (see ../shared/design/stack-notes.md). When nvcc is found the CUDA parts compile,
# cudart is linked statically, and a machine without a driver falls back to the CPU at run time.
set(MOELAB_HAVE_CUDA OFF)
if(MOELAB_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # CMake 3.25 knows no CUDA C++20 dialect for nvcc: tell it the flag.
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      # 80: A100, 90: H100/H200. Extend the list for other GPUs.
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(MOELAB_HAVE_CUDA ON)
    message(STATUS "moelab: CUDA backend enabled (nvcc ${CMAKE_CUDA_COMPILER_VERSION})")
  else()
    message(STATUS "moelab: nvcc not found, CPU-only build")
  endif()
endif()
