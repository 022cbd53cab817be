
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/engine/backend/backends.cpp" "engine/CMakeFiles/moelab_engine.dir/backend/backends.cpp.o" "gcc" "engine/CMakeFiles/moelab_engine.dir/backend/backends.cpp.o.d"
  "/work/main/engine/core/error.cpp" "engine/CMakeFiles/moelab_engine.dir/core/error.cpp.o" "gcc" "engine/CMakeFiles/moelab_engine.dir/core/error.cpp.o.d"
  "/work/main/engine/core/log.cpp" "engine/CMakeFiles/moelab_engine.dir/core/log.cpp.o" "gcc" "engine/CMakeFiles/moelab_engine.dir/core/log.cpp.o.d"
  "/work/main/engine/gguf/gguf.cpp" "engine/CMakeFiles/moelab_engine.dir/gguf/gguf.cpp.o" "gcc" "engine/CMakeFiles/moelab_engine.dir/gguf/gguf.cpp.o.d"
  "/work/main/engine/gguf/types.cpp" "engine/CMakeFiles/moelab_engine.dir/gguf/types.cpp.o" "gcc" "engine/CMakeFiles/moelab_engine.dir/gguf/types.cpp.o.d"
  "/work/main/engine/gguf/writer.cpp" "engine/CMakeFiles/moelab_engine.dir/gguf/writer.cpp.o" "gcc" "engine/CMakeFiles/moelab_engine.dir/gguf/writer.cpp.o.d"
  "/work/main/engine/model/card.cpp" "engine/CMakeFiles/moelab_engine.dir/model/card.cpp.o" "gcc" "engine/CMakeFiles/moelab_engine.dir/model/card.cpp.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/engine/CMakeFiles/moelab_cuda.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
