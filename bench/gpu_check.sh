#!/usr/bin/env bash
# The CUDA backend's check on a machine with an NVIDIA GPU, in one log and within 5 minutes:
#   1. configure + build (Release, -j16, only the targets needed; CUDA architecture from
#      nvidia-smi, or CUDA_ARCH=90 etc.),
#   2. the parity harness (tests/engine/cuda/test_cuda_parity: every device op x every weight
#      type vs the CPU reference, then every fixture model end to end on CUDA vs llama.cpp's
#      reference logits and vs the CPU context, probes and op timing),
#   3. prefill / decode tokens/s and J/token (NVML on the GPU, RAPL on the CPU when readable)
#      of the synthetic Mixtral-shaped model (n_embd 1024, 8 layers, 8 experts top-2,
#      expert n_ff 2816; Q8_0 and Q4_0) on CUDA vs CPU (tests/engine/cuda/cuda_bench).
# Usage: bench/gpu_check.sh            (log: $OUT/gpu_check.log when OUT is set, else
#                                       build-gpu-check/gpu_check.log)
# Environment: BUILD (build dir), CUDA_ARCH, MOELAB_SHARED (folder holding fixtures/; default
# ../shared or ./shared next to the repository), JOBS (default 16), SKIP_BENCH=1 (stop after
# the parity harness: a dry run of the script on a machine without a GPU).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build-gpu-check}
mkdir -p "$build"
log=$build/gpu_check.log
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  log=$OUT/gpu_check.log
fi
exec > >(tee "$log") 2>&1
t0=$(date +%s)
step() { echo; echo "== $* (t+$(( $(date +%s) - t0 )) s)"; }
status=0
fail() { echo "FAILED: $*"; status=1; }

step "machine"
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,compute_cap --format=csv \
  || echo "nvidia-smi not available"
echo "cpus: $(nproc)"
command -v nvcc >/dev/null && nvcc --version | tail -1 || echo "nvcc not found: no CUDA backend"

arch=${CUDA_ARCH:-}
if [[ -z "$arch" ]]; then
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
  arch=${cc:-90}
fi
shared=${MOELAB_SHARED:-}
for cand in "$root/../shared" "$root/shared"; do
  [[ -z "$shared" && -d "$cand/fixtures" ]] && shared=$cand
done
if [[ -n "$shared" ]]; then
  echo "fixtures: $shared/fixtures"
else
  echo "fixtures: not found (end-to-end fixture checks will report 'skipped: fixtures not found')"
fi

step "configure (CUDA architecture $arch)"
cfg=(-DCMAKE_BUILD_TYPE=Release -DMOELAB_BUILD_GUI=OFF -DCMAKE_CUDA_ARCHITECTURES="$arch")
[[ -n "$shared" ]] && cfg+=(-DMOELAB_SHARED_DIR="$shared")
timeout 90 cmake -S "$root" -B "$build" "${cfg[@]}" > "$build/configure.log" 2>&1 \
  || { tail -30 "$build/configure.log"; fail "configure"; exit 1; }
grep -E "moelab: (CUDA|nvcc)" "$build/configure.log"

step "build"
timeout 170 cmake --build "$build" -j "${JOBS:-16}" --target test_cuda_parity test_cuda_element \
  cuda_bench > "$build/build.log" 2>&1 \
  || { grep -E "error|Error" -A3 "$build/build.log" | head -60; fail "build"; exit 1; }
grep -c "warning" "$build/build.log" | sed 's/^/compiler warnings: /'
bench=$build/tests/engine/cuda/cuda_bench
"$bench" --devices || true

# The synthetic models (= moelab-cli make-model --arch mixtral --n-embd 1024 --n-layer 8
# --n-head 16 --n-head-kv 4 --n-ff 2816 --experts 8 --top-k 2 --n-vocab 32000 --type T --seed 1)
# are written in the background while the tests run.
make_pids=()
if [[ -z "${SKIP_BENCH:-}" ]]; then
  for type in Q8_0 Q4_0; do
    f="$build/mixtral-1024x8-e8k2.$type.gguf"
    [[ -f "$f" ]] && continue
    timeout 90 "$bench" --make-mixtral "$f" "$type" > "$build/make-$type.log" 2>&1 &
    make_pids+=($!)
  done
fi

step "element math on the CPU (test_cuda_element)"
timeout 30 "$build/tests/engine/cuda/test_cuda_element" 2>&1 | grep -E "^(PASS|FAIL|SKIP|XFAIL)|Totals|Loc" \
  || fail "test_cuda_element"

step "parity harness (test_cuda_parity)"
timeout 120 "$build/tests/engine/cuda/test_cuda_parity" -maxwarnings 0 > "$build/parity.log" 2>&1
prc=$?
grep -E "^(PASS|FAIL|SKIP|XFAIL|QINFO|QWARN)|Totals|Loc:|Actual|Expected" "$build/parity.log"
[[ $prc -eq 0 ]] || fail "test_cuda_parity (exit $prc)"
if grep -q "skipped: no CUDA device" "$build/parity.log" && command -v nvidia-smi >/dev/null; then
  fail "the parity harness found no usable device on a machine with nvidia-smi"
fi

if [[ -n "${SKIP_BENCH:-}" ]]; then
  step "done (SKIP_BENCH set: no speed and energy runs)"
  [[ $status -eq 0 ]] && echo "gpu_check: OK" || echo "gpu_check: FAILURES (see above)"
  exit $status
fi

step "synthetic Mixtral-shaped models (written while the parity harness ran)"
[[ ${#make_pids[@]} -gt 0 ]] && wait "${make_pids[@]}"
models=()
for type in Q8_0 Q4_0; do
  f="$build/mixtral-1024x8-e8k2.$type.gguf"
  cat "$build/make-$type.log" 2>/dev/null
  if [[ -f "$f" ]]; then models+=("$f"); else fail "make model $type"; fi
done

step "speed and energy: CUDA vs CPU"
for f in "${models[@]}"; do
  timeout 45 "$bench" "$f" --backend cuda --prefill 512 --decode 128 --reps 3 \
    || fail "cuda_bench cuda $(basename "$f")"
  timeout 45 "$bench" "$f" --backend cpu --threads "$(nproc)" --prefill 128 --decode 32 --reps 2 \
    || fail "cuda_bench cpu $(basename "$f")"
done

step "done"
if [[ $status -eq 0 ]]; then echo "gpu_check: OK"; else echo "gpu_check: FAILURES (see above)"; fi
echo "log: $log"
exit $status
