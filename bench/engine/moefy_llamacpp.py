#!/usr/bin/env python3
"""Does llama.cpp load and run a moefied model in the standard layout, and what does it cost?

Converts DENSE with `moelab-cli moefy --layout mixtral` (softmax-gated Mixtral layout: router
ffn_gate_inp, merged ffn_{gate,up,down}_exps, no shared expert, no moelab.* gating key), then
measures the perplexity of the dense and the converted file on the same text with
  * llama.cpp through llama-cpp-python (`import llama_cpp`), and
  * `moelab-cli perplexity --json`,
both with non-overlapping chunks of --ctx tokens scoring each chunk's second half (llama.cpp's
perplexity method; llama-cpp-python has no perplexity call, so the chunks are scored here from
its logits). The quality gap is the converted file's perplexity over the dense one's; the
softmax weights (< 1) make the mixtral layout differ from the unit-gated moelab layout, which
reproduces the dense model at k:N.

Not run in CI. Exit status 0, 77 when llama_cpp is not installed.

  bench/engine/moefy_llamacpp.py --cli build/default/app/moelab-cli \
      --model SmolLM2-135M-Instruct.Q4_1.gguf --experts 16 --top-k 4
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile


def llama_ppl(path, text, ctx):
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=ctx, n_batch=ctx, logits_all=True, n_threads=2,
                verbose=False)
    toks = llm.tokenize(text.encode("utf-8"), add_bos=False)
    nll, n = 0.0, 0
    bos = llm.token_bos()
    for start in range(0, len(toks) - ctx + 1, ctx):
        chunk = [bos] + toks[start + 1:start + ctx]
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:ctx], dtype=np.float64)
        for i in range(ctx // 2, ctx - 1):
            row = logits[i]
            m = row.max()
            lse = m + math.log(np.exp(row - m).sum())
            nll += lse - row[chunk[i + 1]]
            n += 1
    return math.exp(nll / n) if n else float("nan")


def moelab_ppl(cli, path, text_path, ctx):
    out = subprocess.run([cli, "perplexity", "--model", path, "--file", text_path, "--ctx",
                          str(ctx), "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["ppl"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap.add_argument("--cli", default=os.path.join(root, "build/default/app/moelab-cli"))
    ap.add_argument("--model", required=True, help="dense GGUF (architecture llama)")
    ap.add_argument("--calib", default=os.path.join(root, "resources/moefy/calib.txt"))
    ap.add_argument("--text", default=os.path.join(root, "resources/moefy/heldout.txt"))
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=128)
    a = ap.parse_args()
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("skipped: llama_cpp (llama-cpp-python) is not installed", file=sys.stderr)
        return 77
    text = open(a.text, encoding="utf-8").read()
    with tempfile.TemporaryDirectory() as tmp:
        moe = os.path.join(tmp, "moefied-mixtral.gguf")
        subprocess.run([a.cli, "moefy", "--model", a.model, "--calib", a.calib, "--experts",
                        str(a.experts), "--top-k", str(a.top_k), "--layout", "mixtral", "-q",
                        "-o", moe], check=True)
        rows = []
        for name, path in (("dense", a.model), ("moefied mixtral", moe)):
            rows.append((name, llama_ppl(path, text, a.ctx), moelab_ppl(a.cli, path, a.text, a.ctx)))
    print(f"{'model':<18}{'llama.cpp PPL':>16}{'moelab PPL':>14}")
    for name, lp, mp in rows:
        print(f"{name:<18}{lp:>16.4f}{mp:>14.4f}")
    print(f"quality gap (llama.cpp): {rows[1][1] / rows[0][1] - 1:+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
