# Empty dependencies file for moelab_cuda.
# This may be replaced when dependencies are built.
