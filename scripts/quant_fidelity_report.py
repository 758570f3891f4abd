#!/usr/bin/env python3
"""How close quantized packages translate to Hugging Face transformers, per rounding method.

Usage (from the repository root, after `cargo build --release`):

    .venv/bin/python scripts/quant_fidelity_report.py                  # the committed fixtures
    .venv/bin/python scripts/quant_fidelity_report.py --aside          # + the model kept aside
    .venv/bin/python scripts/quant_fidelity_report.py DIR [DIR ...]    # any checkpoints
    ... --quant q8 --rounding gptq                                   # only those rows
    ... --keep-f16 embeddings                   # those matrices at f16 (`convert --keep-f16`)
    ... --keep-q8 decoder.                      # those matrices of a q4 package at q8 (`convert --keep-q8`)
    ... --residual embeddings                   # those q8 matrices + a Q4_0 residual (`convert --residual`)
    ... --fidelity auto                         # convert's default: what the package needs, chosen by measure
    ... --device gpu                            # translate on the GPU (lavapipe counts)
    ... --calibration FILE                      # GPTQ and auto measure on this text (`convert --calibration`)

For each Hugging Face checkpoint folder holding a heldout.json (made by
scripts/make_heldout_references.py: transformers' own greedy and beam-4 output on the first 1 000
lines of $MARIAN_DATA/multi30k/test_2016_flickr.en), each quantization (q8, q4) and each rounding
(`convert --rounding nearest|gptq`): converts, translates those lines with `marian-wasm translate
--ids --no-protect` (batches of 32, greedy and beam 4) and prints the share of sentences token-identical to
transformers and the BLEU (sacreBLEU defaults) of our decoded output against transformers'.

`--aside` adds `target/aside/small-aside`, a model no default was chosen on (d_model 64, 2+2
layers, FFN 256, a 1 000-piece vocabulary, another seed): `scripts/make_fixtures.py --aside
small-aside` trains it (~5 min on two cores) and this script then records its references. Only derived ids and figures are written,
never the text.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "marian-wasm"
ASIDE = ROOT / "target" / "aside" / "small-aside"

# The held-out lines exactly as make_heldout_references.py read them for the references.
sys.path.insert(0, str(ROOT / "scripts"))
from make_heldout_references import data_file  # noqa: E402


def strip(ids: list[int], start: int) -> list[int]:
    return ids[1:] if ids and ids[0] == start else ids


def main(argv: list[str]) -> int:
    import sacrebleu
    from transformers import MarianTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    if not BIN.is_file():
        sys.exit(f"error: {BIN} missing: run `cargo build --release` first")
    def option(name: str, default: list[str]) -> list[str]:
        if name not in argv:
            return default
        i = argv.index(name)
        values = argv[i + 1].split(",")
        del argv[i : i + 2]
        return values

    quants = option("--quant", ["q8", "q4"])
    roundings = option("--rounding", ["nearest", "gptq"])
    keep = option("--keep-f16", [])
    keep_args = ["--keep-f16", ",".join(keep)] if keep else []
    kept = f" + {', '.join(keep)} f16" if keep else ""
    device = option("--device", ["cpu"])[0]
    keep_q8 = option("--keep-q8", [])
    keep_args += ["--keep-q8", ",".join(keep_q8)] if keep_q8 else []
    kept += f" + {', '.join(keep_q8)} q8" if keep_q8 else ""
    residual = option("--residual", [])
    keep_args += ["--residual", ",".join(residual)] if residual else []
    kept += f" + {', '.join(residual)} residual" if residual else ""
    calibration = option("--calibration", [])
    keep_args += ["--calibration", str(Path(calibration[0]).resolve())] if calibration else []
    kept += f" + calibrated on {Path(calibration[0]).name}" if calibration else ""
    # `convert`'s own default is `--fidelity auto`; the rows here are as named unless asked.
    auto = option("--fidelity", ["none"]) == ["auto"]
    keep_args += ["--fidelity", "auto" if auto else "none"]
    aside = "--aside" in argv
    dirs = [Path(a) for a in argv if a != "--aside"]
    if not dirs:
        fixtures = ROOT / "tests" / "fixtures"
        dirs = sorted(p for p in fixtures.iterdir() if (p / "heldout.json").is_file())
    if aside:
        if not (ASIDE / "config.json").is_file():
            sys.exit(
                f"error: {ASIDE} missing: run `.venv/bin/python scripts/make_fixtures.py --aside small-aside`"
            )
        if not (ASIDE / "heldout.json").is_file():
            subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "make_heldout_references.py"), str(ASIDE)],
                check=True,
            )
        dirs.append(ASIDE)
    held_lines = [
        line.strip()
        for line in data_file().read_text(encoding="utf-8").split("\n")
        if line.strip()
    ]
    print("| model | quant | rounding | identical, greedy / beam 4 | BLEU against transformers, greedy / beam 4 |")
    print("|---|---|---|---|---|")
    for d in dirs:
        held = json.loads((d / "heldout.json").read_text(encoding="utf-8"))
        lines = held_lines[: held["count"]]
        text = "\n".join(lines) + "\n"
        tok = MarianTokenizer.from_pretrained(str(d))
        start = json.loads((d / "config.json").read_text())["decoder_start_token_id"]
        for quant in quants:
            for rounding in roundings:
                same, bleu = [], []
                with tempfile.TemporaryDirectory() as pkg:
                    converted = subprocess.run(
                        [str(BIN), "convert", str(d), pkg, "--quant", quant, "--rounding", rounding]
                        + keep_args,
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    # `--fidelity auto` says what it kept: "fidelity: q8 --residual …: greedy …".
                    chosen = ""
                    for line in converted.stderr.splitlines():
                        if line.startswith("fidelity: "):
                            chosen = " + auto: " + line[len("fidelity: "):].split(":")[0]
                    for key, beams in (("greedy", "1"), ("beam4", "4")):
                        out = subprocess.run(
                            # --no-protect: transformers keeps no span as written either.
                            [str(BIN), "translate", "--model", pkg, "--ids", "--beams", beams,
                             "--batch-size", "32", "--no-protect", "--device", device],
                            input=text,
                            capture_output=True,
                            text=True,
                            check=True,
                        ).stdout.split("\n")[: len(lines)]
                        ours = [strip([int(x) for x in o.split()], start) for o in out]
                        ref = [strip(r, start) for r in held[key]]
                        same.append(sum(a == b for a, b in zip(ours, ref)) / len(ref) * 100)
                        dec = lambda v: [tok.decode(x, skip_special_tokens=True) for x in v]  # noqa: E731
                        bleu.append(sacrebleu.corpus_bleu(dec(ours), [dec(ref)]).score)
                print(
                    f"| {d.name} | {quant} | {rounding}{kept}{chosen}{' (GPU)' if device == 'gpu' else ''} | {same[0]:.1f} % / {same[1]:.1f} % "
                    f"| {bleu[0]:.2f} / {bleu[1]:.2f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
