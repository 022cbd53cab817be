file(REMOVE_RECURSE
  "CMakeFiles/moelab_app_common.dir/common/card_format.cpp.o"
  "CMakeFiles/moelab_app_common.dir/common/card_format.cpp.o.d"
  "libmoelab_app_common.a"
  "libmoelab_app_common.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/moelab_app_common.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
