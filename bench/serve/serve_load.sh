#!/usr/bin/env bash
# Load acceptance check for `moelab-cli serve` (issue 21): bench-serve against serve at
# concurrency 1, 2, 4, 8, then REQUESTS (default 1000) more requests while the server's resident
# memory (VmRSS from /proc/PID/status) is sampled every BATCH requests. A benchmark, not a test:
# it prints numbers and asserts nothing timed. Exit 2 for bad arguments, 1 when the server or a
# request fails.
#
#   bench/serve/serve_load.sh BUILD_DIR MODEL.gguf [REQUESTS] [MAX_TOKENS] [PARALLEL]
#
# BUILD_DIR holds app/moelab-cli (e.g. build/default); MODEL: a GGUF file, e.g. the fixture
# ../shared/fixtures/models/mixtral-moe/mixtral-moe.F32.gguf. PARALLEL generators (default 2),
# a queue of 16, so concurrency 8 queues requests rather than refusing them.
set -euo pipefail
usage() { echo "usage: $0 BUILD_DIR MODEL.gguf [REQUESTS] [MAX_TOKENS] [PARALLEL]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cli="$1/app/moelab-cli"
model="$2"
requests="${3:-1000}"
max_tokens="${4:-16}"
parallel="${5:-2}"
batch=100
[ -x "$cli" ] || { echo "$0: no moelab-cli at $cli" >&2; exit 2; }
[ -f "$model" ] || { echo "$0: no model file at $model" >&2; exit 2; }
[[ "$requests" =~ ^[0-9]+$ && "$requests" -ge "$batch" ]] || { echo "$0: REQUESTS must be >= $batch" >&2; exit 2; }
[[ "$max_tokens" =~ ^[0-9]+$ && "$max_tokens" -ge 1 ]] || { echo "$0: MAX_TOKENS must be >= 1" >&2; exit 2; }
[[ "$parallel" =~ ^[0-9]+$ && "$parallel" -ge 1 ]] || { echo "$0: PARALLEL must be >= 1" >&2; exit 2; }

work=$(mktemp -d)
srv_pid=""
cleanup() {
  if [ -n "$srv_pid" ] && kill -0 "$srv_pid" 2>/dev/null; then
    kill -TERM "$srv_pid"
    wait "$srv_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
printf 'Once upon a time\nThe cat sat on\nIn a distant galaxy\nThe capital of France is\n' \
  >"$work/prompts.txt"

"$cli" serve --model "$model" --port 0 --port-file "$work/port" --parallel "$parallel" \
  --queue 16 --served-name moe 2>"$work/serve.err" &
srv_pid=$!
for _ in $(seq 1 600); do
  [ -s "$work/port" ] && break
  kill -0 "$srv_pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
  sleep 0.1
done
[ -s "$work/port" ] || { echo "$0: serve did not start" >&2; exit 1; }
url="http://127.0.0.1:$(cat "$work/port")"
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$srv_pid/status"; }
field() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores visible"
echo "model: $model, max_tokens $max_tokens (--ignore-eos), serve --parallel $parallel"
echo "server RSS after start: $(rss_kib) KiB"
echo
printf '%-4s %6s %6s %9s %11s %10s %10s %10s %10s %10s\n' c n failed 'req/s' 'out tok/s' \
  'ttft p50' 'ttft p90' 'tpot p50' 'tpot p90' 'RSS KiB'
for c in 1 2 4 8; do
  n=$((c * 8))
  "$cli" bench-serve "$url" --model moe -n "$n" -c "$c" --prompts "$work/prompts.txt" \
    --max-tokens "$max_tokens" --ignore-eos --seed 1 --json >"$work/c$c.json"
  printf '%-4s %6s %6s %9.2f %11.1f %10.2f %10.2f %10.2f %10.2f %10s\n' "$c" "$n" \
    "$(field "$work/c$c.json" 'j["failed"]')" "$(field "$work/c$c.json" 'j["requests_per_s"]')" \
    "$(field "$work/c$c.json" 'j["output_tokens_per_s"]')" \
    "$(field "$work/c$c.json" 'j["ttft_ms"]["p50"]')" "$(field "$work/c$c.json" 'j["ttft_ms"]["p90"]')" \
    "$(field "$work/c$c.json" 'j["tpot_ms"]["p50"]')" "$(field "$work/c$c.json" 'j["tpot_ms"]["p90"]')" \
    "$(rss_kib)"
done
echo
echo "memory over $requests requests at concurrency 8 (server VmRSS after each batch of $batch):"
failed_total=0
first=""
for ((done_n = batch; done_n <= requests; done_n += batch)); do
  "$cli" bench-serve "$url" --model moe -n "$batch" -c 8 --prompts "$work/prompts.txt" \
    --max-tokens "$max_tokens" --ignore-eos --seed "$done_n" --json >"$work/b.json"
  f=$(field "$work/b.json" 'j["failed"]')
  failed_total=$((failed_total + f))
  rss=$(rss_kib)
  [ -n "$first" ] || first=$rss
  printf '  after %5d requests: RSS %8s KiB (%+d KiB since the first batch), %s failed\n' \
    "$done_n" "$rss" $((rss - first)) "$f"
done
echo "failed requests in the memory run: $failed_total"
[ "$failed_total" -eq 0 ] || exit 1
