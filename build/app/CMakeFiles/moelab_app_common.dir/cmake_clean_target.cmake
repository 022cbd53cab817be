file(REMOVE_RECURSE
  "libmoelab_app_common.a"
)
