#!/usr/bin/env python3
"""Bit-level agreement of moelab's logits with llama.cpp on the same GGUF files.

For every fixture model file given (default: every *.gguf under <shared>/fixtures/models), the
prompt of its oracle.json is evaluated as ONE batch with the fixtures' settings (n_ctx 64,
n_batch 64, F32 KV cache, flash attention off, 2 threads) by
  * llama.cpp through llama-cpp-python (`import llama_cpp`; a separately built libllama through
    LLAMA_CPP_LIB_PATH works, as run_bench.sh sets up), and
  * `moelab-cli logits`,
and the script prints, per file: how many of the n_pos x n_vocab logits differ in any bit, the
max |difference|, and both programs' max |difference| to the fixture's reference logits (which
came from llama.cpp c392e50). This separates "moelab differs from llama.cpp" from "this
llama.cpp build differs from the one that wrote the fixtures".

llama.cpp's CPU kernels depend on the instruction set it was built for; the fixtures come from
an AVX2/FMA/F16C build, so build libllama with GGML_NATIVE=OFF GGML_AVX2=ON GGML_AVX512=OFF.

Exit status: 0 when every F32 file is bit-identical, 1 otherwise, 77 when llama_cpp or the
fixtures are missing.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def llama_logits(L, path, tokens, n_vocab):
    L.llama_backend_init()
    model = L.llama_model_load_from_file(path.encode(), L.llama_model_default_params())
    cp = L.llama_context_default_params()
    cp.n_ctx = 64
    cp.n_batch = cp.n_ubatch = 64
    cp.n_threads = cp.n_threads_batch = 2
    cp.type_k = cp.type_v = 0  # GGML_TYPE_F32
    if hasattr(cp, "flash_attn_type"):
        cp.flash_attn_type = 0
    else:
        cp.flash_attn = False
    ctx = L.llama_init_from_model(model, cp)
    batch = L.llama_batch_init(len(tokens), 0, 1)
    for i, t in enumerate(tokens):
        batch.token[i] = t
        batch.pos[i] = i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1
    batch.n_tokens = len(tokens)
    if L.llama_decode(ctx, batch) != 0:
        raise RuntimeError("llama_decode failed for " + path)
    out = np.array([np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,))
                    for i in range(len(tokens))], dtype=np.float32)
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build/default", help="moelab build directory")
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "../../../shared"))
    ap.add_argument("files", nargs="*", help="GGUF files with a .oracle.json beside them")
    a = ap.parse_args()
    try:
        import llama_cpp as L
    except ImportError:
        print("skipped: llama_cpp (llama-cpp-python) is not importable")
        return 77
    files = a.files or sorted(glob.glob(os.path.join(a.shared, "fixtures/models/*/*.gguf")))
    if not files:
        print("skipped: fixtures not found at " + os.path.abspath(a.shared))
        return 77
    cli = os.path.join(a.build, "app", "moelab-cli")
    ok = True
    print(f"{'file':28s} {'bits differ':>14s} {'max|moelab-llama|':>18s} "
          f"{'moelab-ref':>11s} {'llama-ref':>11s}")
    for path in files:
        base = path[:-5]
        o = json.load(open(base + ".oracle.json"))
        toks = o["prompt_tokens"]
        n_vocab = o["n_vocab"]
        ll = llama_logits(L, path, toks, n_vocab)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "logits.f32")
            subprocess.run([cli, "logits", "--model", path, "--tokens",
                            ",".join(map(str, toks)), "--out", out, "--threads", "2"],
                           check=True, stdout=subprocess.DEVNULL)
            ours = np.fromfile(out, dtype=np.float32).reshape(len(toks), n_vocab)
        ref = np.fromfile(base + ".logits.f32", dtype=np.float32).reshape(-1, n_vocab)[:len(toks)]
        nd = int((ours != ll).sum())
        name = os.path.basename(base)
        print(f"{name:28s} {nd:>7d}/{ours.size:<6d} {np.abs(ours - ll).max():18.3g} "
              f"{np.abs(ours - ref).max():11.3g} {np.abs(ll - ref).max():11.3g}")
        if name.endswith(".F32") and nd:
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
