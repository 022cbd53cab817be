file(REMOVE_RECURSE
  "CMakeFiles/moelab_cuda.dir/backend/cuda/cuda_probe.cu.o"
  "CMakeFiles/moelab_cuda.dir/backend/cuda/cuda_probe.cu.o.d"
  "libmoelab_cuda.a"
  "libmoelab_cuda.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CUDA)
  include(CMakeFiles/moelab_cuda.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
