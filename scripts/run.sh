#!/usr/bin/env bash
# The main job: builds moelab, then
#  - without arguments, the built-in demo: fetches SmolLM2-135M-Instruct once
#    (scripts/fetch-demo-model.sh; the demo goes on without it when that fails), converts it
#    once into a Mixture-of-Experts model (moelab-cli moefy, cached beside it) and opens the
#    desktop lab on that MoE (offline: on the random-weight synthetic MoE) with a prompt ready
#    to run; with no display it runs the demo models headless into a session of build/default/demo/demo.db,
#    writes demo-summary.json and an HTML report of the session next to it, and prints the
#    report's path as the last line;
#  - with a model as $1, its model card - in the GUI when a display exists, and headless
#    (moelab-cli inspect, plus a screenshot of the window under Xvfb) otherwise.
# Output goes to build/default/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "${MOELAB_JOBS:-2}" --target moelab moelab-cli

bin=build/default/app
out=build/default/demo
mkdir -p "$out"
model=${1:-}
if [ -z "$model" ] && [ "${MOELAB_DEMO:-1}" = 1 ]; then
  demo=synthetic
  if smol=$(scripts/fetch-demo-model.sh); then
    # The real MoE of the demo: SmolLM2 converted once by moefy (deterministic: the same
    # model, text and parameters give the same bytes), cached beside the model. The name must
    # match kMoefiedName in app/gui/demo.h.
    moe=$(dirname "$smol")/SmolLM2-135M-Instruct.moefied-14x96-s2-top7.gguf
    if [ ! -f "$moe" ]; then
      echo "run.sh: converting SmolLM2-135M-Instruct to a Mixture-of-Experts model (once)" >&2
      "$bin/moelab-cli" moefy --model "$smol" --calib resources/moefy/calib.txt \
        --experts 14 --shared 2 --top-k 7 -o "$moe" >&2 || rm -f "$moe"
    fi
    [ -f "$moe" ] && demo=moefied
  else
    echo "run.sh: SmolLM2-135M-Instruct is not available; the demo uses the random-weight" \
      "synthetic MoE" >&2
  fi
  if [ -n "${DISPLAY:-}" ]; then
    exec "$bin/gui/moelab" --demo "$demo"
  fi
  db=$out/demo.db
  "$bin/gui/moelab" --headless-demo "$out" --db "$db"
  session=$(sed -n 's/^ *"session": *"\(.*\)",\{0,1\} *$/\1/p' "$out/demo-summary.json" | head -1)
  echo "headless demo: session \"$session\" in $db; summary $out/demo-summary.json"
  # The HTML report of the demo session; its path is the last line printed.
  report=$out/demo-report.html
  if ! "$bin/moelab-cli" report --db "$db" --session "$session" -f html -o "$report"; then
    echo "headless demo: the report could not be written (see above)" >&2
    exit 1
  fi
  echo "$(cd "$(dirname "$report")" && pwd)/$(basename "$report")"
  exit 0
fi
if [ -z "$model" ]; then
  fixture=../shared/fixtures/models/stories260K/stories260K.F32.gguf
  if [ -f "$fixture" ]; then
    model=$fixture
  elif "$bin/moelab-cli" --help | grep -q make-model; then
    model=$out/demo-moe.gguf
    "$bin/moelab-cli" make-model --arch mixtral --n-embd 128 --n-layer 4 --n-head 4 \
      --n-head-kv 2 --n-ff 256 --experts 8 --top-k 2 --type Q8_0 --seed 7 -o "$model"
  else
    echo "no model given and none built in: pass a .gguf file" >&2
    exit 2
  fi
fi

"$bin/moelab-cli" inspect "$model" | tee "$out/model-card.txt"
"$bin/moelab-cli" inspect --json "$model" > "$out/model-card.json"

if [ -n "${DISPLAY:-}" ]; then
  exec "$bin/gui/moelab" "$model"
else
  xvfb-run -a -s "-screen 0 1280x800x24" "$bin/gui/moelab" --screenshot "$out/moelab.png" "$model"
  echo "headless: wrote $out/model-card.txt, $out/model-card.json and $out/moelab.png"
fi
