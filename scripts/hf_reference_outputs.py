#!/usr/bin/env python3
"""Translate a file with Hugging Face transformers itself, for comparing marian-wasm against it.

Usage: .venv/bin/python scripts/hf_reference_outputs.py HF_DIR SRC.txt OUT_PREFIX [--beams N]
Writes OUT_PREFIX.txt (decoded text, one line per input line) and OUT_PREFIX.ids (the generated
ids space-separated, decoder start token first, as `marian-wasm translate --ids` prints them).
Sentences are translated one at a time (no padding), in float32, eval mode.
"""
import argparse
import sys

import torch
from transformers import MarianMTModel, MarianTokenizer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("src")
    ap.add_argument("out_prefix")
    ap.add_argument("--beams", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(2)
    tok = MarianTokenizer.from_pretrained(a.hf_dir)
    model = MarianMTModel.from_pretrained(a.hf_dir, dtype=torch.float32).eval()
    lines = open(a.src, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    texts, ids = [], []
    with torch.no_grad():
        for line in lines:
            if not line.strip():
                texts.append("")
                ids.append("")
                continue
            enc = tok(line, return_tensors="pt")
            out = model.generate(**enc, num_beams=a.beams, do_sample=False)[0].tolist()
            texts.append(tok.decode(out, skip_special_tokens=True))
            ids.append(" ".join(map(str, out)))
    with open(a.out_prefix + ".txt", "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in texts))
    with open(a.out_prefix + ".ids", "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in ids))
    print(f"wrote {a.out_prefix}.txt/.ids ({len(lines)} lines)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
