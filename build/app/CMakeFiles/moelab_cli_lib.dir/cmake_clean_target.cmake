file(REMOVE_RECURSE
  "libmoelab_cli_lib.a"
)
