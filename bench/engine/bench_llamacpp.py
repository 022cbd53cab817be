#!/usr/bin/env python3
"""llama.cpp's prefill / decode tokens/s on a GGUF file, measured like bench_engine.

    bench_llamacpp.py MODEL.gguf --threads N [--prefill 64] [--decode 32] [--reps 3]

Same prompt ids as bench_engine (the same LCG over the vocabulary), one batch of --prefill
tokens from an empty KV cache, then --decode single-token evaluations; best of --reps after one
warm-up repetition. Prints one JSON object. Needs llama-cpp-python (import llama_cpp); with a
llama-cpp-python whose own wheel build did not finish, point LLAMA_CPP_LIB_PATH at its libllama
and PYTHONPATH at its package (see run_bench.sh).
"""
import argparse
import json
import os
import sys
import time

import llama_cpp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prefill", type=int, default=64)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=a.prefill + a.decode + 8, n_batch=a.prefill,
                          n_ubatch=a.prefill, n_threads=a.threads, n_threads_batch=a.threads,
                          verbose=False)
    n_vocab = llm.n_vocab()
    prompt, x = [], 12345
    for _ in range(a.prefill):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        prompt.append((x >> 33) % n_vocab)
    best_pp = best_tg = 0.0
    for rep in range(a.reps + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        pp = a.prefill / (time.perf_counter() - t0)
        tok = prompt[-1]
        t0 = time.perf_counter()
        for _ in range(a.decode):
            llm.eval([tok])
            tok = (tok * 31 + 7) % n_vocab
        tg = a.decode / (time.perf_counter() - t0)
        if rep > 0 or a.reps == 0:
            best_pp, best_tg = max(best_pp, pp), max(best_tg, tg)
    print(json.dumps({"engine": "llama.cpp", "llama_cpp_python": llama_cpp.__version__,
                      "system_info": llama_cpp.llama_print_system_info().decode().strip(),
                      "model": a.model, "threads": a.threads, "prefill_tokens": a.prefill,
                      "prefill_tok_s": round(best_pp, 1), "decode_tokens": a.decode,
                      "decode_tok_s": round(best_tg, 2)}))


if __name__ == "__main__":
    sys.exit(main())
