file(REMOVE_RECURSE
  "libmoelab_engine.a"
)
