# Empty dependencies file for moelab_engine.
# This may be replaced when dependencies are built.
