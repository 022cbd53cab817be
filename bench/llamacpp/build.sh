#!/usr/bin/env bash
# Builds llama.cpp the way users get it, for the benchmarks and the optional interoperability
# checks (bench/engine/run_bench.sh, bench/engine/moefy_llamacpp.py, the `llamacpp` ctest label).
# Nothing of llama.cpp is committed: the source is the llama.cpp tree vendored in
# llama-cpp-python 0.3.36's source distribution (llama.cpp 0c1e570, the build the fixtures in
# ../shared/fixtures/models-0c1e570 come from), downloaded from PyPI and sha256-checked.
#
#   bench/llamacpp/build.sh [VARIANT...]     VARIANT: native (default) | avx2
#
#   native  GGML_NATIVE=ON (-march=native: what a user building llama.cpp on this machine gets)
#   avx2    GGML_NATIVE=OFF with AVX, AVX2, FMA, F16C and no AVX-512 (the AVX2-only comparison)
#
# Output, under build/llamacpp/ (BUILD_ROOT to change):
#   <variant>/bin/{llama-bench,llama-server,llama-perplexity,llama-cli,llama-quantize}
#   <variant>/bin/libllama.so, libggml*.so   (shared: the Python binding loads them)
#   py/llama_cpp/                            the binding's pure-Python package from the same sdist
#   env.sh                                   `source` it: PYTHONPATH and LLAMA_CPP_LIB_PATH for native
# The binding needs numpy, jinja2, diskcache and typing-extensions (pip-installed when missing).
# Environment: JOBS (default: nproc), BUILD_ROOT.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${BUILD_ROOT:-$here/../../build/llamacpp}
jobs=${JOBS:-$(nproc)}
version=0.3.36
sdist=llama_cpp_python-$version.tar.gz
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(native)
for v in "${variants[@]}"; do
  case $v in native | avx2) ;; *) echo "build.sh: unknown variant '$v' (native or avx2)" >&2; exit 2 ;; esac
done
mkdir -p "$root"
root=$(cd "$root" && pwd)

if [ ! -f "$root/$sdist" ]; then
  echo "build.sh: downloading $sdist from PyPI"
  python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$root"
fi
got=$(sha256sum "$root/$sdist" | cut -d' ' -f1)
if [ "$got" != "$sha256" ]; then
  echo "build.sh: $root/$sdist has sha256 $got, expected $sha256" >&2
  exit 2
fi
src=$root/llama_cpp_python-$version
if [ ! -d "$src/vendor/llama.cpp/ggml" ]; then
  tar -xzf "$root/$sdist" -C "$root"
fi
llama=$src/vendor/llama.cpp

for v in "${variants[@]}"; do
  flags=(-DGGML_NATIVE=ON)
  if [ "$v" = avx2 ]; then
    flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
           -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF)
  fi
  echo "build.sh: building llama.cpp ($v) in $root/$v"
  cmake -S "$llama" -B "$root/$v/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DGGML_OPENMP=ON \
    "${flags[@]}" >"$root/$v.configure.log" 2>&1 ||
    { tail -20 "$root/$v.configure.log" >&2; echo "build.sh: configure failed ($root/$v.configure.log)" >&2; exit 1; }
  cmake --build "$root/$v/build" -j "$jobs" \
    --target llama-bench llama-server llama-perplexity llama-cli llama-quantize llama >"$root/$v.build.log" 2>&1 ||
    { tail -30 "$root/$v.build.log" >&2; echo "build.sh: build failed ($root/$v.build.log)" >&2; exit 1; }
  ln -sfn build/bin "$root/$v/bin"  # llama.cpp puts every binary and library in build/bin
  "$root/$v/bin/llama-bench" --version 2>&1 | tail -1
done

mkdir -p "$root/py"
rm -rf "$root/py/llama_cpp"
cp -r "$src/llama_cpp" "$root/py/llama_cpp"
python3 -c "import numpy, jinja2, diskcache, typing_extensions" 2>/dev/null ||
  python3 -m pip install --quiet numpy jinja2 diskcache typing-extensions
cat >"$root/env.sh" <<ENV
# source me: the llama.cpp Python binding (llama-cpp-python $version) over the native build
export PYTHONPATH="$root/py\${PYTHONPATH:+:\$PYTHONPATH}"
export LLAMA_CPP_LIB_PATH="$root/native/bin"
ENV
echo "build.sh: done; binaries in $root/<variant>/bin, 'source $root/env.sh' for the Python binding"
