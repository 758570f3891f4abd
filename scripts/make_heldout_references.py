#!/usr/bin/env python3
"""Record Hugging Face transformers' own translations of held-out sentences for the trained test
fixtures: what the quantized-fidelity tests (tests/parity.rs) compare q8 and q4 packages against.

Usage (from the repository root):

    .venv/bin/python scripts/make_heldout_references.py            # every fixture
    .venv/bin/python scripts/make_heldout_references.py tiny-opus  # one of them
    .venv/bin/python scripts/make_heldout_references.py path/to/checkpoint  # any folder

Reads the first COUNT (default 1000) lines of $MARIAN_DATA/multi30k/test_2016_flickr.en (default
MARIAN_DATA=../shared/data; never seen in the fixtures' training) in place and writes
tests/fixtures/<name>/heldout.json: the source ids (MarianTokenizer), and transformers' generate
output ids, greedy and beam 4, one sentence at a time (no padding), float32, eval mode, one CPU
thread. Only derived ids are written, never the text.
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
COUNT = int(os.environ.get("COUNT", "1000"))


def data_file() -> Path:
    raw = Path(os.environ.get("MARIAN_DATA", "../shared/data"))
    p = raw if raw.is_absolute() else (ROOT / raw).resolve()
    f = p / "multi30k" / "test_2016_flickr.en"
    if not f.is_file():
        sys.exit(f"error: {f} not found: set MARIAN_DATA to the directory holding multi30k/")
    return f


def hf_dir(name: str) -> Path:
    d = FIXTURES / name
    return d / "hf" if (d / "hf" / "config.json").is_file() else d


def main() -> int:
    import torch
    import transformers
    from transformers import MarianMTModel, MarianTokenizer

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    src = data_file()
    lines = [l.strip() for l in src.read_text(encoding="utf-8").split("\n") if l.strip()][:COUNT]
    names = sys.argv[1:] or sorted(
        p.name for p in FIXTURES.iterdir() if (hf_dir(p.name) / "config.json").is_file()
    )
    for name in names:
        d = Path(name) if ("/" in name and Path(name).is_dir()) else hf_dir(name)
        tok = MarianTokenizer.from_pretrained(str(d))
        model = MarianMTModel.from_pretrained(str(d), dtype=torch.float32).eval()
        out = {
            "source": "multi30k/test_2016_flickr.en",
            "count": len(lines),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "src_ids": [],
            "greedy": [],
            "beam4": [],
        }
        with torch.no_grad():
            for i, line in enumerate(lines):
                enc = tok(line, return_tensors="pt")
                out["src_ids"].append(enc.input_ids[0].tolist())
                for key, beams in (("greedy", 1), ("beam4", 4)):
                    ids = model.generate(**enc, num_beams=beams, do_sample=False)[0].tolist()
                    out[key].append(ids)
                if (i + 1) % 200 == 0:
                    print(f"  {name}: {i + 1}/{len(lines)}", file=sys.stderr, flush=True)
        path = (d if "/" in name else FIXTURES / name) / "heldout.json"
        path.write_text(json.dumps(out, separators=(",", ":")) + "\n", encoding="utf-8")
        print(f"wrote {path} ({len(lines)} sentences)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
