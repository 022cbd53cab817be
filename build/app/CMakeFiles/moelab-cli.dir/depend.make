# Empty dependencies file for moelab-cli.
# This may be replaced when dependencies are built.
