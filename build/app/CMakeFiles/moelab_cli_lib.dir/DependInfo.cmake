
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/app/cli/cli.cpp" "app/CMakeFiles/moelab_cli_lib.dir/cli/cli.cpp.o" "gcc" "app/CMakeFiles/moelab_cli_lib.dir/cli/cli.cpp.o.d"
  "/work/main/app/cli/devices.cpp" "app/CMakeFiles/moelab_cli_lib.dir/cli/devices.cpp.o" "gcc" "app/CMakeFiles/moelab_cli_lib.dir/cli/devices.cpp.o.d"
  "/work/main/app/cli/inspect.cpp" "app/CMakeFiles/moelab_cli_lib.dir/cli/inspect.cpp.o" "gcc" "app/CMakeFiles/moelab_cli_lib.dir/cli/inspect.cpp.o.d"
  "/work/main/build/app/version.cpp" "app/CMakeFiles/moelab_cli_lib.dir/version.cpp.o" "gcc" "app/CMakeFiles/moelab_cli_lib.dir/version.cpp.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/engine/CMakeFiles/moelab_engine.dir/DependInfo.cmake"
  "/work/main/build/app/CMakeFiles/moelab_app_common.dir/DependInfo.cmake"
  "/work/main/build/engine/CMakeFiles/moelab_cuda.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
