file(REMOVE_RECURSE
  "CMakeFiles/moelab-cli.dir/cli/main.cpp.o"
  "CMakeFiles/moelab-cli.dir/cli/main.cpp.o.d"
  "moelab-cli"
  "moelab-cli.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/moelab-cli.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
