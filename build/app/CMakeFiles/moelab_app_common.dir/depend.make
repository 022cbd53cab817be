# Empty dependencies file for moelab_app_common.
# This may be replaced when dependencies are built.
