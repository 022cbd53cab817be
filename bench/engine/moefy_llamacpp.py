#!/usr/bin/env python3
"""Does llama.cpp load and run a moefied model in the standard layout, and what does it cost?

Converts DENSE with `moelab-cli moefy --layout mixtral` (softmax-gated Mixtral layout: router
ffn_gate_inp, merged ffn_{gate,up,down}_exps, no shared expert, no moelab.* gating key), then
  * measures the perplexity of the dense and the converted file on the same text with llama.cpp's
    own `llama-perplexity` and with `moelab-cli perplexity --json` (the same chunked method:
    non-overlapping chunks of --ctx tokens, each chunk's second half scored), and
  * generates a greedy continuation of a prompt from the converted file through llama.cpp's Python
    binding (llama-cpp-python 0.3.36, `import llama_cpp`) and through `moelab-cli run`.
The quality gap is the converted file's perplexity over the dense one's; the softmax weights (< 1)
make the mixtral layout differ from the unit-gated moelab layout, which reproduces the dense model
at k:N.

llama.cpp comes from bench/llamacpp/build.sh (build/llamacpp/native/bin; `source
build/llamacpp/env.sh` for the binding). Not run in CI. Exit status 0; 77 when llama-perplexity
is not built.

  bench/engine/moefy_llamacpp.py --model SmolLM2-135M-Instruct.Q4_1.gguf --experts 16 --top-k 4
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import json


def llama_ppl(binary, path, text_path, ctx, threads):
    out = subprocess.run([binary, "-m", path, "-f", text_path, "-c", str(ctx), "-t", str(threads)],
                         capture_output=True, text=True)
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", out.stdout + out.stderr)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"llama-perplexity failed on {path}:\n{out.stderr[-2000:]}")
    return float(m.group(1))


def moelab_ppl(cli, path, text_path, ctx, threads):
    out = subprocess.run([cli, "perplexity", "--model", path, "--file", text_path, "--ctx",
                          str(ctx), "-t", str(threads), "--json"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["ppl"]


def llama_greedy(path, prompt, n):
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=256, n_threads=2, verbose=False, seed=1)
    out = llm(prompt, max_tokens=n, temperature=0.0, top_k=1)
    return out["choices"][0]["text"]


def moelab_greedy(cli, path, prompt, n):
    out = subprocess.run([cli, "run", "--model", path, "-p", prompt, "-n", str(n), "--temp", "0",
                          "--seed", "1", "--ignore-eos"],
                         check=True, capture_output=True, text=True)
    return out.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap.add_argument("--cli", default=os.path.join(root, "build/default/app/moelab-cli"))
    ap.add_argument("--llama-bin", default=os.path.join(root, "build/llamacpp/native/bin"))
    ap.add_argument("--model", required=True, help="dense GGUF (architecture llama)")
    ap.add_argument("--calib", default=os.path.join(root, "resources/moefy/calib.txt"))
    ap.add_argument("--text", default=os.path.join(root, "resources/moefy/heldout.txt"))
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default="Once upon a time")
    a = ap.parse_args()
    ppl_bin = os.path.join(a.llama_bin, "llama-perplexity")
    if not os.access(ppl_bin, os.X_OK):
        print(f"skipped: {ppl_bin} not found (run bench/llamacpp/build.sh)", file=sys.stderr)
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        moe = os.path.join(tmp, "moefied-mixtral.gguf")
        subprocess.run([a.cli, "moefy", "--model", a.model, "--calib", a.calib, "--experts",
                        str(a.experts), "--top-k", str(a.top_k), "--layout", "mixtral", "-q",
                        "-o", moe], check=True)
        rows = []
        for name, path in (("dense", a.model), ("moefied mixtral", moe)):
            rows.append((name, llama_ppl(ppl_bin, path, a.text, a.ctx, a.threads),
                         moelab_ppl(a.cli, path, a.text, a.ctx, a.threads)))
        print(f"{'model':<18}{'llama.cpp PPL':>16}{'moelab PPL':>14}")
        for name, lp, mp in rows:
            print(f"{name:<18}{lp:>16.4f}{mp:>14.4f}")
        print(f"quality gap at top-{a.top_k} of {a.experts} (llama.cpp): "
              f"{rows[1][1] / rows[0][1] - 1:+.1%}")
        try:
            text = llama_greedy(moe, a.prompt, 24)
            print(f"llama.cpp (binding) greedy: {a.prompt!r} -> {text!r}")
        except ImportError:
            print("llama_cpp (the Python binding) not importable: `source build/llamacpp/env.sh`",
                  file=sys.stderr)
        print(f"moelab-cli run greedy:      {a.prompt!r} -> "
              f"{moelab_greedy(a.cli, moe, a.prompt, 24)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
