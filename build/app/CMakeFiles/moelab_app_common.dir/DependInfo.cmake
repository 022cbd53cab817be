
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/app/common/card_format.cpp" "app/CMakeFiles/moelab_app_common.dir/common/card_format.cpp.o" "gcc" "app/CMakeFiles/moelab_app_common.dir/common/card_format.cpp.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/engine/CMakeFiles/moelab_engine.dir/DependInfo.cmake"
  "/work/main/build/engine/CMakeFiles/moelab_cuda.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
