file(REMOVE_RECURSE
  "CMakeFiles/moelab_cli_lib.dir/cli/cli.cpp.o"
  "CMakeFiles/moelab_cli_lib.dir/cli/cli.cpp.o.d"
  "CMakeFiles/moelab_cli_lib.dir/cli/devices.cpp.o"
  "CMakeFiles/moelab_cli_lib.dir/cli/devices.cpp.o.d"
  "CMakeFiles/moelab_cli_lib.dir/cli/inspect.cpp.o"
  "CMakeFiles/moelab_cli_lib.dir/cli/inspect.cpp.o.d"
  "CMakeFiles/moelab_cli_lib.dir/version.cpp.o"
  "CMakeFiles/moelab_cli_lib.dir/version.cpp.o.d"
  "libmoelab_cli_lib.a"
  "libmoelab_cli_lib.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/moelab_cli_lib.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
