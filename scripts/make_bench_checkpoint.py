#!/usr/bin/env python3
"""Write a random-weights HF Marian checkpoint shaped exactly like Helsinki-NLP/opus-mt-en-fr.

Usage (from the repository root):

    .venv/bin/python scripts/make_bench_checkpoint.py OUT_DIR

For speed/memory benchmarks only: the weights are random (seeded), so translations are
meaningless and generation usually runs to max_length (no EOS) — cap max_length when timing.

Config: vocab 59514 shared by encoder, decoder and the tied output projection
(share_encoder_decoder_embeddings true), d_model 512, 6+6 layers, 8 heads, FFN 2048, swish,
scale_embedding true, static sinusoidal positions, max_position_embeddings 512,
pad = decoder_start = 59513, eos 0, num_beams 4, max_length 512, bad_words_ids [[59513]].

Tokenizer files: source.spm / target.spm are copied from tests/fixtures/tiny-opus (run
scripts/make_fixtures.py first); vocab.json holds that fixture's pieces with the same ids
("</s>"=0, "<unk>"=1, ...), padded with synthetic unique pieces "▁zzz00000", ... up to id 59512,
and "<pad>" = 59513. Needs no data directory. Runs in well under a minute on one thread.
"""

import json
import shutil
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import GenerationConfig, MarianConfig, MarianMTModel

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "tiny-opus"

VOCAB = 59514
PAD = VOCAB - 1
SEED = 20240601


def write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.exit("usage: make_bench_checkpoint.py OUT_DIR")
    out = Path(argv[0])
    for f in ("source.spm", "target.spm", "vocab.json"):
        if not (TINY / f).is_file():
            sys.exit(f"error: {TINY / f} missing; run scripts/make_fixtures.py tiny-opus first")
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)

    # ---- tokenizer files
    for f in ("source.spm", "target.spm"):
        shutil.copyfile(TINY / f, out / f)
    with open(TINY / "vocab.json", encoding="utf-8") as f:
        tiny = json.load(f)
    vocab = {}
    for piece, idx in sorted(tiny.items(), key=lambda kv: kv[1]):
        if piece == "<pad>":
            continue
        assert idx == len(vocab), "tiny-opus vocab.json ids must be contiguous"
        vocab[piece] = idx
    n = 0
    while len(vocab) < PAD:
        piece = f"▁zzz{n:05d}"
        n += 1
        if piece not in vocab:
            vocab[piece] = len(vocab)
    vocab["<pad>"] = PAD
    assert len(vocab) == VOCAB and vocab["</s>"] == 0 and vocab["<unk>"] == 1
    write_json(out / "vocab.json", vocab)
    write_json(
        out / "tokenizer_config.json",
        {
            "source_lang": "en",
            "target_lang": "fr",
            "separate_vocabs": False,
            "model_max_length": 512,
            "tokenizer_class": "MarianTokenizer",
        },
    )

    # ---- model
    config = MarianConfig(
        vocab_size=VOCAB,
        decoder_vocab_size=VOCAB,
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        activation_function="swish",
        scale_embedding=True,
        max_position_embeddings=512,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        pad_token_id=PAD,
        decoder_start_token_id=PAD,
        eos_token_id=0,
        forced_eos_token_id=0,
        bos_token_id=0,
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
        init_std=0.02,
    )
    torch.manual_seed(SEED)
    model = MarianMTModel(config)
    model.eval()
    model.generation_config = GenerationConfig(
        bad_words_ids=[[PAD]],
        bos_token_id=0,
        decoder_start_token_id=PAD,
        eos_token_id=0,
        forced_eos_token_id=0,
        max_length=512,
        num_beams=4,
        pad_token_id=PAD,
    )
    model.save_pretrained(str(out))

    total = 0
    for f in sorted(out.iterdir()):
        total += f.stat().st_size
        print(f"  {f}: {f.stat().st_size} bytes")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"  {n_params} parameters, {total} bytes, {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
