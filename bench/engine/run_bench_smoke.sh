#!/usr/bin/env bash
# ctest bench_run_smoke: runs run_bench.sh on a tiny synthetic Mixtral-layout file (REPS=1, one
# thread, no llama.cpp, no bandwidth measurement) so the script cannot rot, and checks that it
# produced a moelab row with the fields the table and the README use. No timing assertions.
#
#   bench/engine/run_bench_smoke.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run_bench_smoke.sh BUILD_DIR}" && pwd)
dir="$build/bench-smoke"
rm -rf "$dir"
mkdir -p "$dir"
model="$dir/tiny-mixtral.Q8_0.gguf"
"$build/app/moelab-cli" make-model -q --arch mixtral --n-embd 128 --n-layer 2 --n-head 4 \
  --n-head-kv 2 --n-ff 256 --experts 4 --top-k 2 --n-vocab 256 --type Q8_0 -o "$model"
BENCH_OUT="$dir" FILES=none REPS=1 THREADS=1 PREFILL=8 DECODE=4 BANDWIDTH=10 \
  LLAMA_BENCH=/nonexistent LLAMA_PY=/bin/false \
  "$here/run_bench.sh" "$build" "$model" 2>"$dir/table.txt"
cat "$dir/table.txt"
python3 - "$dir/results.jsonl" "$dir/table.txt" "$model" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
me = [r for r in rows if r.get("engine") == "moelab"]
assert len(me) == 1, f"expected one moelab row, got {rows}"
r = me[0]
assert r["model"] == sys.argv[3] and r["case"] == "tiny-mixtral.Q8_0.gguf", r
assert r["threads"] == 1 and r["kv_type"] == "f16" and r["depth"] == 0, r
assert r["prefill_tokens"] == 8 and r["decode_tokens"] == 4, r
assert r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0 and r["peak_rss_mib"] > 0, r
assert r["bandwidth_gbs"] == 10 and r["decode_bytes_per_token"] > 0, r
table = open(sys.argv[2]).read()
assert "tg/roof" in table and "tiny-mixtral.Q8_0." in table, table
print("bench_run_smoke: ok")
PY
