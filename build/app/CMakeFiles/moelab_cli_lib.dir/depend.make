# Empty dependencies file for moelab_cli_lib.
# This may be replaced when dependencies are built.
