file(REMOVE_RECURSE
  "libmoelab_cuda.a"
)
