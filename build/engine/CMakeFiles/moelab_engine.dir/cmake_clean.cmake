file(REMOVE_RECURSE
  "CMakeFiles/moelab_engine.dir/backend/backends.cpp.o"
  "CMakeFiles/moelab_engine.dir/backend/backends.cpp.o.d"
  "CMakeFiles/moelab_engine.dir/core/error.cpp.o"
  "CMakeFiles/moelab_engine.dir/core/error.cpp.o.d"
  "CMakeFiles/moelab_engine.dir/core/log.cpp.o"
  "CMakeFiles/moelab_engine.dir/core/log.cpp.o.d"
  "CMakeFiles/moelab_engine.dir/gguf/gguf.cpp.o"
  "CMakeFiles/moelab_engine.dir/gguf/gguf.cpp.o.d"
  "CMakeFiles/moelab_engine.dir/gguf/types.cpp.o"
  "CMakeFiles/moelab_engine.dir/gguf/types.cpp.o.d"
  "CMakeFiles/moelab_engine.dir/gguf/writer.cpp.o"
  "CMakeFiles/moelab_engine.dir/gguf/writer.cpp.o.d"
  "CMakeFiles/moelab_engine.dir/model/card.cpp.o"
  "CMakeFiles/moelab_engine.dir/model/card.cpp.o.d"
  "libmoelab_engine.a"
  "libmoelab_engine.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/moelab_engine.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
