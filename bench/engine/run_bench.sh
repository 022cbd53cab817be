#!/usr/bin/env bash
# Engine throughput benchmark: prefill and decode tokens/s for a synthetic Mixtral-shaped model
# (n_embd 1024, 8 layers, 8 experts top-2, expert n_ff 2816) in Q8_0 and Q4_0, at 1 and 2
# threads, with memory bandwidth measured in the same run and decode shown as a fraction of the
# bandwidth roofline. The models are generated into the build folder (never committed).
#
#   bench/engine/run_bench.sh BUILD_DIR [extra model files...]
#
# Needs the targets moelab-cli and bench_engine built in BUILD_DIR. Output: one JSON line per
# (model, threads) on stdout and a summary table on stderr; also written to
# BUILD_DIR/bench-engine/results.jsonl.
set -euo pipefail
build=${1:?usage: run_bench.sh BUILD_DIR [model.gguf ...]}
shift
cli="$build/app/moelab-cli"
bench="$build/bench/engine/bench_engine"
out="$build/bench-engine"
mkdir -p "$out"
models=()
for type in Q8_0 Q4_0; do
  f="$out/mixtral-1024x8-e8k2.$type.gguf"
  if [[ ! -f "$f" ]]; then
    "$cli" make-model -q --arch mixtral --n-embd 1024 --n-layer 8 --n-head 16 --n-head-kv 4 \
      --n-ff 2816 --experts 8 --top-k 2 --n-vocab 32000 --type "$type" --seed 1 -o "$f" >&2
  fi
  models+=("$f")
done
models+=("$@")
: > "$out/results.jsonl"
for m in "${models[@]}"; do
  for t in 1 2; do
    "$bench" "$m" --threads "$t" --prefill 64 --decode 32 --reps 3 | tee -a "$out/results.jsonl"
  done
done
python3 - "$out/results.jsonl" >&2 <<'PY'
import json, sys, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'model':40} {'thr':>3} {'MB':>7} {'GB/s':>6} {'pp tok/s':>9} {'tg tok/s':>9} {'roofline':>9} {'tg/roof':>7}")
for r in rows:
    print(f"{os.path.basename(r['model'])[:40]:40} {r['threads']:>3} {r['file_bytes']/1e6:7.1f} "
          f"{r['bandwidth_gbs']:6.2f} {r['prefill_tok_s']:9.1f} {r['decode_tok_s']:9.2f} "
          f"{r['roofline_tok_s']:9.2f} {100*r['decode_fraction_of_roofline']:6.1f}%")
PY
