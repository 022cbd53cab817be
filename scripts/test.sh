#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine: installs missing packages, configures and builds
# the default preset (Release, tests on), runs ctest (GUI tests under Xvfb when there is no
# display), then a bounded libFuzzer run of the GGUF reader (clang, preset "fuzz").
#
# Environment: MOELAB_JOBS (default 2), MOELAB_FUZZ_SECONDS (default 60; 0 skips fuzzing),
#              MOELAB_SKIP_SLOW=1 (skip the slow label),
#              MOELAB_SHARED_DIR (default ../shared), MOELAB_ASAN=1 also runs the asan preset.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${MOELAB_JOBS:-2}
fuzz_seconds=${MOELAB_FUZZ_SECONDS:-60}
shared=${MOELAB_SHARED_DIR:-$(pwd)/../shared}

scripts/deps.sh

run_ctest() {
  if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
    xvfb-run -a -s "-screen 0 1280x800x24" ctest "$@"
  else
    ctest "$@"
  fi
}

cmake --preset default -DMOELAB_SHARED_DIR="$shared"
cmake --build --preset default -j "$jobs"
# Everything but the fuzzer (which runs below for a bounded time). MOELAB_SKIP_SLOW=1 leaves out
# the slow label (crash loops, packaging) for a quick local run.
exclude='fuzz'
if [ "${MOELAB_SKIP_SLOW:-0}" = 1 ]; then exclude='fuzz|slow'; fi
run_ctest --preset default -j "$jobs" --label-exclude "$exclude"

if [ "${MOELAB_ASAN:-0}" = 1 ]; then
  cmake --preset asan -DMOELAB_SHARED_DIR="$shared"
  cmake --build --preset asan -j "$jobs"
  run_ctest --preset asan -j "$jobs" --label-exclude 'fuzz|slow|ui'
fi

if [ "$fuzz_seconds" != 0 ]; then
  cmake --preset fuzz -DMOELAB_SHARED_DIR="$shared" -DMOELAB_FUZZ_SECONDS="$fuzz_seconds"
  cmake --build --preset fuzz --target fuzz_gguf
  ctest --test-dir build/fuzz -L fuzz --output-on-failure
fi
