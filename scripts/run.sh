#!/usr/bin/env bash
# The main job on a built-in default: builds moelab, then shows the model card of a model -
# the one given as $1, else the stories260K fixture from ../shared, else a small synthetic
# Mixture-of-Experts model generated on the spot - in the GUI when a display exists, and
# headless (moelab-cli inspect, plus a screenshot of the window under Xvfb) otherwise.
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
