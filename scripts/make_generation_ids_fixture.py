#!/usr/bin/env python3
"""Record transformers' generated ids for a checkpoint whose generation_config.json names other
special ids than its config.json (tests/fixtures/generation-ids; tests/convert.rs reads it).

Usage (from the repository root): .venv/bin/python scripts/make_generation_ids_fixture.py

The checkpoint is tests/fixtures/tiny-opus (config.json, weights, tokenizer files) with
tests/fixtures/generation-ids/generation_config.json written here: decoder_start_token_id,
pad_token_id and a list of two eos_token_id that config.json does not have, no
forced_eos_token_id (config.json has one). transformers' generate takes the ids from
generation_config.json when it exists; the second eos id is chosen as a token the model
generates early, so that it ends some outputs. Writes generation_config.json and expected.json
(greedy and 3-beam ids per sentence) into tests/fixtures/generation-ids. One CPU thread.
"""

import collections
import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import GenerationConfig, MarianMTModel, MarianTokenizer

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "tests" / "fixtures" / "tiny-opus"
OUT = ROOT / "tests" / "fixtures" / "generation-ids"
SENTENCES = [
    "A man in a blue shirt is standing on a ladder.",
    "Two dogs play in the snow.",
    "A little girl climbs into a wooden playhouse.",
    "People are walking down a busy city street.",
    "A woman is playing the guitar on stage.",
    "A group of children sit on the grass.",
]


def run(folder: Path, num_beams: int):
    tok = MarianTokenizer.from_pretrained(folder)
    model = MarianMTModel.from_pretrained(folder).eval()
    out = []
    for s in SENTENCES:
        enc = tok(s, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**enc, num_beams=num_beams, do_sample=False)
        out.append({"src": s, "ids": ids[0].tolist()})
    return out


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for f in BASE.iterdir():
            if f.name not in ("expected.json", "heldout.json", "generation_config.json"):
                shutil.copy(f, folder / f.name)
        config = json.loads((BASE / "config.json").read_text())
        vocab = config["vocab_size"]
        start = 5  # not config.json's decoder_start_token_id (its <pad>)
        assert start != config["decoder_start_token_id"]
        gen = {
            "bad_words_ids": [[config["pad_token_id"]]],
            "decoder_start_token_id": start,
            "eos_token_id": config["eos_token_id"],
            "pad_token_id": vocab - 2,
            "max_length": 24,
            "num_beams": 1,
        }
        (folder / "generation_config.json").write_text(json.dumps(gen))
        # The second eos: the token most often generated at steps 2-4 with the first alone.
        counts = collections.Counter(
            t for r in run(folder, 1) for t in r["ids"][2:5] if t != config["eos_token_id"]
        )
        gen["eos_token_id"] = [config["eos_token_id"], counts.most_common(1)[0][0]]
        GenerationConfig(**gen)  # transformers accepts it
        (folder / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        greedy, beam = run(folder, 1), run(folder, 3)
        shutil.copy(folder / "generation_config.json", OUT / "generation_config.json")
    ended = sum(r["ids"][-1] == gen["eos_token_id"][1] for r in greedy)
    assert ended > 0, "the second eos ends no greedy output: choose another"
    import transformers

    (OUT / "expected.json").write_text(
        json.dumps(
            {
                "transformers_version": transformers.__version__,
                "torch_version": torch.__version__,
                "greedy": greedy,
                "beam3": beam,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"eos {gen['eos_token_id']}; greedy outputs ended by the second: {ended}/{len(greedy)}")


if __name__ == "__main__":
    main()
