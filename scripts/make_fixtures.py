#!/usr/bin/env python3
"""Build the tiny Marian test fixtures under tests/fixtures/ and record HF transformers' outputs.

Usage (from the repository root):

    .venv/bin/python scripts/make_fixtures.py            # every fixture
    .venv/bin/python scripts/make_fixtures.py tiny-opus  # one of them
    .venv/bin/python scripts/make_fixtures.py --record-only  # keep the models, redo expected.json
    .venv/bin/python scripts/make_fixtures.py --aside small-aside  # the model kept aside (below)

`--aside NAME` builds a model of ASIDE_SPECS into target/aside/NAME instead: models that no test
and no default was tuned on, for checking that a method generalizes (scripts/
quant_fidelity_report.py --aside); not committed (~5 min to train on two cores).

Needs the packages pinned in scripts/requirements-fixtures.txt and the parallel data directory
named by the environment variable MARIAN_DATA (default: ../shared/data relative to the repository
root; a relative MARIAN_DATA is also taken relative to the repository root). The data files are
read in place and never copied; only derived models and outputs are written.

For each fixture the script
  1. trains source/target SentencePiece unigram models on multi30k train (.en / .fr),
  2. writes OPUS-MT style vocab.json ("</s>"=0, "<unk>"=1, pieces, "<pad>" last) — shared
     (union of source and target pieces) or separate (vocab.json + target_vocab.json),
  3. trains a tiny MarianMTModel briefly (so it emits EOS and has no near-ties), with a non-zero
     <pad>/decoder-start embedding row and a non-zero final_logits_bias,
  4. saves it (model.safetensors or legacy pytorch_model.bin) with config.json and
     generation_config.json,
  5. reloads tokenizer and model FROM THE SAVED DIRECTORY and records tokenisation, decoding,
     greedy / beam generation and logits into expected.json.

Everything is seeded; one CPU thread is used.
"""

import inspect
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def data_dir() -> Path:
    raw = os.environ.get("MARIAN_DATA", "../shared/data")
    p = Path(raw)
    if not p.is_absolute():
        p = (ROOT / p).resolve()
    needed = [p / "multi30k" / f for f in ("train.en", "train.fr", "test_2016_flickr.en")]
    missing = [str(f) for f in needed if not f.is_file()]
    if missing:
        sys.exit(
            f"error: data directory not found or incomplete: {p}\n"
            f"  missing: {', '.join(missing)}\n"
            "  Set MARIAN_DATA to the directory holding multi30k/ (train.en, train.fr, "
            "test_2016_flickr.en); default is ../shared/data relative to the repository root."
        )
    return p


import numpy as np  # noqa: E402
import sentencepiece as spm  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer  # noqa: E402

torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass
transformers.logging.set_verbosity_error()

SPECS = {
    "tiny-opus": dict(
        src_vocab=800,
        tgt_vocab=800,
        shared=True,
        d_model=64,
        enc_layers=2,
        dec_layers=2,
        heads=4,
        ffn=128,
        activation="swish",
        scale_embedding=True,
        max_pos=128,
        weights="safetensors",
        seed=1234,
        steps=1500,
    ),
    "tiny-switches": dict(
        # The encoder vocabulary must be the larger one: HF uses config.pad_token_id (= last id of
        # the decoder vocabulary) as padding_idx of the encoder embedding too.
        src_vocab=700,
        tgt_vocab=600,
        shared=False,
        d_model=48,
        enc_layers=3,
        dec_layers=1,
        heads=4,
        ffn=96,
        activation="gelu",
        scale_embedding=False,
        max_pos=128,
        weights="bin",
        # Without scale_embedding, std-0.02 token embeddings drown under the sinusoidal positions
        # and the model learns to ignore its input: start them larger.
        emb_std=0.3,
        seed=4321,
        steps=1500,
    ),
    "tiny-multi": dict(
        # A multi-target model (as opus-mt-en-ROMANCE, tc-big multi-target models): the source
        # starts with the output language's token, `>>fra<<` (French, from train.fr) or
        # `>>eng<<` (English: the source itself, a copy task standing in for a second language
        # the data lacks). Its references are in multi_target.json, not expected.json.
        src_vocab=800,
        tgt_vocab=1000,
        shared=True,
        d_model=64,
        enc_layers=2,
        dec_layers=2,
        heads=4,
        ffn=128,
        activation="swish",
        scale_embedding=True,
        max_pos=128,
        weights="safetensors",
        seed=2468,
        steps=2000,
        targets={"fra": "train.fr", "eng": "train.en"},
    ),
}

ASIDE = ROOT / "target" / "aside"
ASIDE_SPECS = {
    # Another size, depth, vocabulary and seed than the committed fixtures. (A d_model 128,
    # 3+3-layer model trained with this recipe for 2 500 steps learned to ignore its input:
    # two distinct outputs for 1 000 sentences.)
    # (2026-12-05: d_model 96, 3+2 layers and a 2 000-piece vocabulary for 2 000 steps gave one
    # output for all 1 000 held-out sentences; d_model 64 with 3+2 layers, six. Two layers each
    # side, as tiny-opus, learn to condition on the input in this budget.)
    "small-aside": dict(
        src_vocab=1000,
        tgt_vocab=1000,
        shared=True,
        d_model=64,
        enc_layers=2,
        dec_layers=2,
        heads=4,
        ffn=256,
        activation="swish",
        scale_embedding=True,
        max_pos=256,
        weights="safetensors",
        seed=97531,
        steps=1500,
    ),
    # A second model kept aside (2026-12-06, for `convert --residual auto`): separate
    # vocabularies of different sizes, gelu, no embedding scale, another width and seed.
    "wide-aside": dict(
        src_vocab=1200,
        tgt_vocab=900,
        shared=False,
        d_model=96,
        enc_layers=2,
        dec_layers=2,
        heads=4,
        ffn=384,
        activation="gelu",
        scale_embedding=False,
        max_pos=256,
        weights="safetensors",
        emb_std=0.3,
        seed=86420,
        steps=1500,
    ),
}

EDGE_CASES = [
    "",
    " ",
    "a",
    "A",
    ".",
    "Crème brûlée à l'hôtel",
    "Wait... what?!",
    "In 1999, 42 people paid $3.50.",
    "I love 🐶 and 🍕!",
    "Ωμέγα 中文 ∮ ‽",
    "中文中文 ok",
    "two   spaces\tand tab",
    "  padded  ",
    "line\nbreak",
    "ＡＢＣ",
    "ﬁne ½ ｶﾀｶﾅ",
    "\u00a0non-breaking\u00a0space",
    "e\u0301 combining accent",
    "\"Quoted\" and «guillemets» and ‘curly’ quotes",
    "UPPER CASE SHOUTING",
    "Hello </s> world",
    "an <unk> inside",
    ">>fra<< A man is walking.",
    "a-b_c/d\\e@f#g%h&i*j+k=l",
    "Ça coûte 5 € à Noël, n'est-ce pas ?",
    "«Où?» ûè",
    "a" * 40,
    "</s>",
    "<pad>",
]


def sig(x: float, digits: int = 6) -> float:
    """Round to `digits` significant digits (for compact JSON)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


def read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


# --------------------------------------------------------------------------------------------
# SentencePiece + vocabularies
# --------------------------------------------------------------------------------------------


def train_spm(input_path: Path, out_path: Path, vocab_size: int) -> None:
    spm.set_random_generator_seed(17)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "m")
        spm.SentencePieceTrainer.train(
            input=str(input_path),
            model_prefix=prefix,
            vocab_size=vocab_size,
            model_type="unigram",
            character_coverage=0.9995,
            normalization_rule_name="nmt_nfkc",
            num_threads=1,
            shuffle_input_sentence=False,
            minloglevel=2,
        )
        with open(prefix + ".model", "rb") as f:
            data = f.read()
    # The model records its training input path and (temporary) output prefix: drop them so the
    # committed file is byte-identical across runs and machines.
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(data)
    del proto.trainer_spec.input[:]
    proto.trainer_spec.model_prefix = out_path.stem
    out_path.write_bytes(proto.SerializeToString())


def spm_pieces(path: Path) -> list[str]:
    sp = spm.SentencePieceProcessor(model_file=str(path))
    out = []
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i):
            continue
        out.append(sp.id_to_piece(i))
    return out


def opus_vocab(pieces: list[str]) -> dict:
    """OPUS-MT vocab.json conventions: </s>=0, <unk>=1, pieces in order, <pad> last."""
    vocab = {"</s>": 0, "<unk>": 1}
    for p in pieces:
        if p not in vocab:
            vocab[p] = len(vocab)
    vocab["<pad>"] = len(vocab)
    return vocab


def write_json(path: Path, obj, indent=2) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def encode_target(tok: MarianTokenizer, text: str) -> list[int]:
    return tok(text_target=text).input_ids


def train_model(model: MarianMTModel, tok: MarianTokenizer, data: Path, spec: dict) -> None:
    src = read_lines(data / "multi30k" / "train.en")
    # (source prefix, target lines): one target language, or a multi-target model's each.
    targets = [("", read_lines(data / "multi30k" / "train.fr"))]
    if spec.get("targets"):
        targets = [(f">>{code}<< ", read_lines(data / "multi30k" / f))
                   for code, f in spec["targets"].items()]
    rng = random.Random(spec["seed"])
    order = [(k, i) for k in range(len(targets)) for i in range(len(src))]
    rng.shuffle(order)
    batch, steps = 32, spec["steps"]
    pairs = []
    for k, i in order:
        prefix, tgt = targets[k]
        s = tok(prefix + src[i]).input_ids
        t = encode_target(tok, tgt[i])
        if len(s) <= 48 and len(t) <= 48:
            pairs.append((s, t))
        if len(pairs) >= batch * steps:
            break
    per_epoch = len(pairs) // batch
    src_pad = tok.pad_token_id  # source-side <pad> id (vocab.json)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    warmup = 60

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        return max(0.1, 1.0 - (step - warmup) / (steps - warmup) * 0.9)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    t0 = time.time()
    for step in range(steps):
        if step > 0 and step % per_epoch == 0:
            rng.shuffle(pairs)
        k = step % per_epoch
        chunk = pairs[k * batch : (k + 1) * batch]
        ls = max(len(s) for s, _ in chunk)
        lt = max(len(t) for _, t in chunk)
        ids = torch.full((batch, ls), src_pad, dtype=torch.long)
        mask = torch.zeros((batch, ls), dtype=torch.long)
        labels = torch.full((batch, lt), -100, dtype=torch.long)
        for b, (s, t) in enumerate(chunk):
            ids[b, : len(s)] = torch.tensor(s)
            mask[b, : len(s)] = 1
            labels[b, : len(t)] = torch.tensor(t)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"  step {step:4d} loss {out.loss.item():.3f} ({time.time() - t0:.0f}s)", flush=True)
    model.eval()


# --------------------------------------------------------------------------------------------
# Fixture construction
# --------------------------------------------------------------------------------------------


def build_fixture(name: str, data: Path) -> Path:
    spec = SPECS[name]
    out = FIXTURES / name
    out.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():
        if f.is_file():
            f.unlink()
    print(f"== {name}: SentencePiece", flush=True)
    train_spm(data / "multi30k" / "train.en", out / "source.spm", spec["src_vocab"])
    if spec.get("targets"):
        # One target SentencePiece model over every target language's text.
        with tempfile.TemporaryDirectory() as tmp:
            joined = Path(tmp) / "targets.txt"
            joined.write_text("".join((data / "multi30k" / f).read_text(encoding="utf-8")
                                      for f in spec["targets"].values()), encoding="utf-8")
            train_spm(joined, out / "target.spm", spec["tgt_vocab"])
    else:
        train_spm(data / "multi30k" / "train.fr", out / "target.spm", spec["tgt_vocab"])
    src_pieces = spm_pieces(out / "source.spm")
    tgt_pieces = spm_pieces(out / "target.spm")
    # A multi-target model's language tokens come first, as in OPUS-MT's vocabularies.
    lang_tokens = [f">>{code}<<" for code in sorted(spec.get("targets", {}))]

    if spec["shared"]:
        vocab = opus_vocab(lang_tokens + src_pieces + [p for p in tgt_pieces if p not in set(src_pieces)])
        write_json(out / "vocab.json", vocab)
        src_size = tgt_size = len(vocab)
        pad = vocab["<pad>"]
    else:
        vocab = opus_vocab(src_pieces)
        tvocab = opus_vocab(tgt_pieces)
        write_json(out / "vocab.json", vocab)
        write_json(out / "target_vocab.json", tvocab)
        src_size, tgt_size = len(vocab), len(tvocab)
        pad = tvocab["<pad>"]
        assert src_size > tgt_size
    tok_cfg = {
        "source_lang": "en",
        "target_lang": "multi" if spec.get("targets") else "fr",
        "separate_vocabs": not spec["shared"],
        "model_max_length": 512,
        "tokenizer_class": "MarianTokenizer",
    }
    write_json(out / "tokenizer_config.json", tok_cfg)
    tok = MarianTokenizer.from_pretrained(str(out))

    print(f"== {name}: model (vocab {src_size}/{tgt_size}, pad {pad})", flush=True)
    torch.manual_seed(spec["seed"])
    config = MarianConfig(
        vocab_size=src_size,
        decoder_vocab_size=tgt_size,
        d_model=spec["d_model"],
        encoder_layers=spec["enc_layers"],
        decoder_layers=spec["dec_layers"],
        encoder_attention_heads=spec["heads"],
        decoder_attention_heads=spec["heads"],
        encoder_ffn_dim=spec["ffn"],
        decoder_ffn_dim=spec["ffn"],
        activation_function=spec["activation"],
        scale_embedding=spec["scale_embedding"],
        max_position_embeddings=spec["max_pos"],
        share_encoder_decoder_embeddings=spec["shared"],
        tie_word_embeddings=True,
        pad_token_id=pad,
        decoder_start_token_id=pad,
        eos_token_id=0,
        forced_eos_token_id=0,
        bos_token_id=0,
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
        init_std=0.02,
    )
    model = MarianMTModel(config)
    d = spec["d_model"]
    g = torch.Generator().manual_seed(spec["seed"] + 1)
    with torch.no_grad():
        if spec.get("emb_std"):
            for emb in {id(e): e for e in (model.model.encoder.embed_tokens, model.model.decoder.embed_tokens)}.values():
                emb.weight.normal_(0.0, spec["emb_std"], generator=g)
        # Non-zero <pad> (= decoder start) row; padding_idx keeps it frozen during training.
        dec_emb = model.model.decoder.embed_tokens.weight
        dec_emb[pad] = torch.randn(d, generator=g) * 0.3
        enc_emb = model.model.encoder.embed_tokens.weight
        if not spec["shared"]:
            # The encoder's padding_idx is also `pad` (a real source piece here): make it non-zero.
            enc_emb[pad] = torch.randn(d, generator=g) * 0.3
        # final_logits_bias is a (non-trained) buffer: make it non-zero so readers must apply it.
        model.final_logits_bias.copy_(torch.randn(model.final_logits_bias.shape, generator=g) * 0.2)
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad]],
        bos_token_id=0,
        decoder_start_token_id=pad,
        eos_token_id=0,
        forced_eos_token_id=0,
        max_length=64,
        num_beams=4,
        pad_token_id=pad,
    )
    print(f"== {name}: training", flush=True)
    train_model(model, tok, data, spec)
    model.eval()

    if spec["weights"] == "safetensors":
        model.save_pretrained(str(out))
    else:
        params = inspect.signature(model.save_pretrained).parameters
        if "safe_serialization" in params:
            model.save_pretrained(str(out), safe_serialization=False)
        else:
            # transformers 5 always writes safetensors: write the legacy format by hand, as
            # transformers 4 did (torch.save of the full state_dict, tied copies included).
            model.save_pretrained(str(out))
            (out / "model.safetensors").unlink()
            torch.save(model.state_dict(), out / "pytorch_model.bin")
    for f in out.glob("*.safetensors.index.json"):
        raise RuntimeError(f"unexpected sharded checkpoint {f}")

    if spec.get("targets"):
        record_multi(name, out, data)
    else:
        record(name, out, data)
    return out


def record_multi(name: str, out: Path, data: Path) -> None:
    """A multi-target fixture's references, in multi_target.json: per held-out sentence and
    target language, transformers' tokenization of `>>code<< sentence`, its greedy and beam-4
    ids and their decoded text; and the tokenization of texts that carry codes of their own."""
    print(f"== {name}: recording HF outputs (multi-target)", flush=True)
    tok = MarianTokenizer.from_pretrained(str(out))
    model = MarianMTModel.from_pretrained(str(out), dtype=torch.float32).eval()
    codes = sorted(SPECS[name]["targets"])
    assert sorted(tok.supported_language_codes) == [f">>{c}<<" for c in codes]
    test_en = read_lines(data / "multi30k" / "test_2016_flickr.en")
    cases = []
    with torch.no_grad():
        for s in test_en[:12]:
            for code in codes:
                text = f">>{code}<< {s}"
                enc = tok(text, return_tensors="pt")
                greedy = model.generate(**enc, num_beams=1, do_sample=False)[0].tolist()
                beam4 = model.generate(**enc, num_beams=4, do_sample=False)[0].tolist()
                cases.append({
                    "language": code,
                    "src": s,
                    "src_ids": enc.input_ids[0].tolist(),
                    "greedy": greedy,
                    "greedy_text": tok.decode(greedy, skip_special_tokens=True),
                    "beam4": beam4,
                })
    tokenize = [{"text": t, "ids": tok(t).input_ids} for t in (
        f">>{codes[0]}<< A man rides a bike.",
        f">>{codes[1]}<< >>{codes[0]}<< Two dogs play.",
        f"A man >>{codes[1]}<< rides.",
        ">>xyz<< unknown code first",
    )]
    for c in cases[: 2 * 3]:
        print(f"  {c['language']}: {c['src'][:50]!r} -> {c['greedy_text'][:60]!r}", flush=True)
    write_json(out / "multi_target.json", {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "languages": codes,
        "cases": cases,
        "tokenize": tokenize,
    })

# --------------------------------------------------------------------------------------------
# Independent re-implementation of HF greedy / beam search, checked against model.generate.
# It is the executable form of HF_GENERATE_NOTES (no KV cache: the decoder is re-run on the
# whole prefix at every step).
# --------------------------------------------------------------------------------------------


def _next_log_probs(model, enc_out, mask, seqs, cur_len, max_length, pad, eos):
    dec = torch.tensor(seqs)
    logits = model(
        encoder_outputs=(enc_out.expand(len(seqs), -1, -1),),
        attention_mask=mask.expand(len(seqs), -1),
        decoder_input_ids=dec,
    ).logits[:, -1, :].float()
    lp = torch.log_softmax(logits, dim=-1)  # softmax over the full vocabulary ...
    lp[:, pad] = -math.inf  # ... then bad_words_ids [[pad]] (no renormalisation)
    if cur_len == max_length - 1:  # ForcedEOSTokenLogitsProcessor
        lp = torch.full_like(lp, -math.inf)
        lp[:, eos] = 0.0
    return lp


def reference_greedy(model, enc, max_length, start, pad, eos):
    enc_out = model.get_encoder()(**enc).last_hidden_state
    seq = [start]
    while len(seq) < max_length:
        lp = _next_log_probs(model, enc_out, enc.attention_mask, [seq], len(seq), max_length, pad, eos)
        tok = int(torch.argmax(lp[0]))
        seq.append(tok)
        if tok == eos:
            break
    return seq


def reference_beam(model, enc, num_beams, max_length, length_penalty, start, pad, eos):
    enc_out = model.get_encoder()(**enc).last_hidden_state
    nb, k = num_beams, 2 * num_beams
    running = [[start] for _ in range(nb)]
    running_scores = torch.tensor([0.0] + [-1e9] * (nb - 1))  # only beam 0 is live at first
    pool = []  # finished hypotheses: (normalised score, sequence), at most nb, best first
    cur_len = 1  # decoder start token included; decoder_prompt_len = 1
    while True:
        lp = _next_log_probs(model, enc_out, enc.attention_mask, running, cur_len, max_length, pad, eos)
        total = (lp + running_scores[:, None]).reshape(-1)  # beam-major flattening
        vocab = lp.shape[-1]
        top_scores, top_idx = torch.topk(total, k)
        cands = []
        for rank in range(k):
            beam, tokid = divmod(int(top_idx[rank]), vocab)
            seq = running[beam] + [tokid]
            hits = tokid == eos or len(seq) >= max_length
            cands.append((float(top_scores[rank]), seq, hits))
        # finished hypotheses: only among the first nb candidates
        for rank in range(nb):
            score, seq, hits = cands[rank]
            if hits:
                pool.append((score / ((cur_len + 1 - 1) ** length_penalty), seq))
        pool = sorted(pool, key=lambda x: -x[0])[:nb]
        # next running beams: best nb candidates that did not finish
        alive = [c for c in cands if not c[2]]
        running = [c[1] for c in alive[:nb]]
        running_scores = torch.tensor([c[0] for c in alive[:nb]])
        cur_len += 1
        if all(c[2] for c in cands) or len(running) < nb:
            break
        # early_stopping=False heuristic
        best_possible = float(running_scores[0]) / ((cur_len - 1) ** length_penalty)
        if len(pool) == nb and not best_possible > min(p[0] for p in pool):
            break
    return pool[0][1]


def strip_trailing(ids: list[int], pad: int) -> list[int]:
    ids = list(ids)
    while len(ids) > 1 and ids[-1] == pad:
        ids.pop()
    return ids


def record(name: str, out: Path, data: Path) -> None:
    print(f"== {name}: recording HF outputs", flush=True)
    tok = MarianTokenizer.from_pretrained(str(out))
    model = MarianMTModel.from_pretrained(str(out), dtype=torch.float32)
    model.eval()
    cfg = model.config
    pad = cfg.pad_token_id
    dec_emb = model.get_decoder().embed_tokens.weight
    pad_norm = dec_emb[pad].norm().item()
    assert pad_norm > 0.1, f"<pad> row is zero after reload ({pad_norm})"
    assert model.final_logits_bias.abs().max().item() > 0.0

    test_en = read_lines(data / "multi30k" / "test_2016_flickr.en")
    long_sentence = " ".join(test_en[20:40])
    long_words = long_sentence.split()
    long_sentence = " ".join(long_words[:100])

    # ---- tokenize (source side)
    texts = test_en[:20] + EDGE_CASES + [long_sentence]
    tokenize = [{"text": t, "ids": tok(t).input_ids} for t in texts]

    # ---- sentences / generation
    sentences = test_en[:10] + [" ".join(test_en[10:12]), " ".join(test_en[12:15])]
    results = []
    with torch.no_grad():
        for s in sentences:
            enc = tok(s, return_tensors="pt")
            greedy = model.generate(**enc, num_beams=1, do_sample=False)[0].tolist()
            beam = model.generate(
                **enc, num_beams=4, do_sample=False, return_dict_in_generate=True, output_scores=True
            )
            greedy8 = model.generate(**enc, num_beams=1, do_sample=False, max_length=8)[0].tolist()
            beam_lp = model.generate(**enc, num_beams=4, do_sample=False, length_penalty=0.6, max_length=20)[
                0
            ].tolist()
            results.append(
                {
                    "src": s,
                    "src_ids": enc.input_ids[0].tolist(),
                    "greedy": greedy,
                    "beam4": beam.sequences[0].tolist(),
                    "beam4_score": sig(beam.sequences_scores[0].item()),
                    "greedy_max8": greedy8,
                    "beam4_lp": beam_lp,
                }
            )
        batch = tok(sentences, return_tensors="pt", padding=True)
        bat_beam = model.generate(**batch, num_beams=4, do_sample=False)
        bat_greedy = model.generate(**batch, num_beams=1, do_sample=False)
        for r, b, gr in zip(results, bat_beam.tolist(), bat_greedy.tolist()):
            r["beam4_batched"] = strip_trailing(b, pad)
            r["greedy_batched"] = strip_trailing(gr, pad)
        batch_info = {
            "padding_side": tok.padding_side,
            "source_pad_id": tok.pad_token_id,
            "input_ids": batch.input_ids.tolist(),
            "attention_mask": batch.attention_mask.tolist(),
        }

        # ---- logits (teacher forcing the greedy output)
        logits = []
        for r in results[:4]:
            enc = tok(r["src"], return_tensors="pt")
            dec_in = torch.tensor([r["greedy"][:3]])
            lg = model(**enc, decoder_input_ids=dec_in).logits[0]
            logits.append(
                {
                    "src": r["src"],
                    "decoder_input_ids": r["greedy"][:3],
                    "logits": [[sig(v) for v in row.tolist()] for row in lg],
                }
            )
        # ---- more beam searches (cheap; make the fixtures sensitive to beam-search details)
        beam_extra = []
        for src_text in test_en[40:80]:
            enc = tok(src_text, return_tensors="pt")
            beam_extra.append(
                {
                    "src": src_text,
                    "beam4": model.generate(**enc, num_beams=4, do_sample=False)[0].tolist(),
                    "beam4_lp": model.generate(**enc, num_beams=4, do_sample=False, length_penalty=0.6, max_length=20)[
                        0
                    ].tolist(),
                    "beam5_lp2_max24": model.generate(
                        **enc, num_beams=5, do_sample=False, length_penalty=2.0, max_length=24
                    )[0].tolist(),
                }
            )

        # ---- independent re-implementation check (executable HF_GENERATE_NOTES)
        start, eos = cfg.decoder_start_token_id, cfg.eos_token_id
        mismatches = []
        for r in results:
            enc = tok(r["src"], return_tensors="pt")
            checks = {
                "greedy": reference_greedy(model, enc, 64, start, pad, eos),
                "greedy_max8": reference_greedy(model, enc, 8, start, pad, eos),
                "beam4": reference_beam(model, enc, 4, 64, 1.0, start, pad, eos),
                "beam4_lp": reference_beam(model, enc, 4, 20, 0.6, start, pad, eos),
            }
            for key, ids in checks.items():
                if ids != r[key]:
                    mismatches.append(f"{r['src'][:30]!r}:{key}")
        for r in beam_extra:
            enc = tok(r["src"], return_tensors="pt")
            checks = {
                "beam4": reference_beam(model, enc, 4, 64, 1.0, start, pad, eos),
                "beam4_lp": reference_beam(model, enc, 4, 20, 0.6, start, pad, eos),
                "beam5_lp2_max24": reference_beam(model, enc, 5, 24, 2.0, start, pad, eos),
            }
            for key, ids in checks.items():
                if ids != r[key]:
                    mismatches.append(f"{r['src'][:30]!r}:{key}")
        if mismatches:
            print("  WARNING: reference search differs from HF on: " + ", ".join(mismatches), flush=True)
        else:
            print("  reference greedy/beam re-implementation matches HF on all sentences", flush=True)

        enc0 = tok(results[0]["src"], return_tensors="pt")
        enc_out = model.get_encoder()(**enc0).last_hidden_state[0, 0, :8].tolist()

    # ---- decode (target side)
    target_vocab = tok.target_encoder if tok.separate_vocabs else tok.encoder
    tgt_sp = spm.SentencePieceProcessor(model_file=str(out / "target.spm"))
    src_sp = spm.SentencePieceProcessor(model_file=str(out / "source.spm"))
    unk = target_vocab["<unk>"]
    decode_inputs = []
    for r in results:
        for key in ("greedy", "beam4", "greedy_max8", "beam4_lp"):
            if r[key] not in decode_inputs:
                decode_inputs.append(r[key])
    ordinary = [i for p, i in target_vocab.items() if p.startswith("▁") and len(p) > 2][:6]
    crafted = [
        [],
        [pad],
        [0],
        [pad, 0],
        [unk],
        [pad] + ordinary[:3] + [unk] + ordinary[3:5] + [0],
        [unk, unk] + ordinary[:2] + [unk],
        ordinary[:2] + [0] + ordinary[2:4] + [0],
        ordinary[:2] + [pad] + ordinary[2:4],
        [pad, pad] + ordinary[:3] + [0, pad, pad],
        ordinary[:3] + [len(target_vocab) - 2],
    ]
    notes = {}
    if not tok.separate_vocabs:
        # Shared vocabulary: some ids are pieces that only the source (or only the target) spm knows.
        src_only = [i for p, i in target_vocab.items() if src_sp.piece_to_id(p) != src_sp.unk_id() and tgt_sp.piece_to_id(p) == tgt_sp.unk_id() and p not in ("<unk>",)]
        tgt_only = [i for p, i in target_vocab.items() if tgt_sp.piece_to_id(p) != tgt_sp.unk_id() and src_sp.piece_to_id(p) == src_sp.unk_id() and p not in ("<unk>", "<pad>", "</s>")]
        notes["source_only_ids_sample"] = src_only[:10]
        notes["target_only_ids_sample"] = tgt_only[:10]
        notes["num_source_only"] = len(src_only)
        notes["num_target_only"] = len(tgt_only)
        crafted += [
            [pad] + ordinary[:2] + src_only[:3] + [0],
            src_only[:5],
            [pad] + ordinary[:2] + tgt_only[:3] + [0],
            tgt_only[:5],
            src_only[:2] + tgt_only[:2] + ordinary[:2],
        ]
    else:
        # Separate vocabularies: the source <pad> id is not the target <pad> id.
        src_pad = tok.encoder["<pad>"]
        notes["source_pad_id"] = src_pad
        notes["target_pad_id"] = pad
        crafted += [[pad] + ordinary[:3] + [0]]
    for c in crafted:
        if c not in decode_inputs:
            decode_inputs.append(c)
    decode = []
    for ids in decode_inputs:
        decode.append(
            {
                "ids": ids,
                "text": tok.decode(ids, skip_special_tokens=True),
                "text_keep_special": tok.decode(ids, skip_special_tokens=False),
                "tokens": tok.convert_ids_to_tokens(ids),
            }
        )
        if tok.separate_vocabs:
            # HF resolves special ids through the SOURCE vocab, so the target <pad> id is not
            # skipped and decodes to a literal "<pad>"; this is the text without it.
            decode[-1]["text_strip_target_pad"] = tok.decode([i for i in ids if i != pad], skip_special_tokens=True)
    batch_decode_ids = [r["beam4"] for r in results]
    batch_decoded = tok.batch_decode(batch_decode_ids, skip_special_tokens=True)

    expected = {
        "fixture": name,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "sentencepiece_version": spm.__version__,
        "clean_up_tokenization_spaces": bool(tok.clean_up_tokenization_spaces),
        "separate_vocabs": bool(tok.separate_vocabs),
        "vocab_size": cfg.vocab_size,
        "decoder_vocab_size": cfg.decoder_vocab_size,
        "pad_token_id": pad,
        "eos_token_id": cfg.eos_token_id,
        "decoder_start_token_id": cfg.decoder_start_token_id,
        "source_unk_id": tok.encoder["<unk>"],
        "source_pad_id": tok.encoder["<pad>"],
        "all_special_ids": sorted(tok.all_special_ids),
        "pad_row_norm": sig(pad_norm),
        "vocab_notes": notes,
        "generation_defaults": {
            k: getattr(model.generation_config, k)
            for k in ("num_beams", "max_length", "length_penalty", "early_stopping", "bad_words_ids", "forced_eos_token_id")
        },
        "hf_generate_notes": HF_GENERATE_NOTES,
        "tokenize": tokenize,
        "decode": decode,
        "batch_decode": {"ids": batch_decode_ids, "skip_special_tokens": True, "texts": batch_decoded},
        "sentences": results,
        "beam_extra": beam_extra,
        "batch": batch_info,
        "logits": logits,
        "encoder_out_first": [sig(v) for v in enc_out],
        "reference_search_mismatches": mismatches,
    }
    with open(out / "expected.json", "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


HF_GENERATE_NOTES = (
    "transformers 5.x generation/utils.py GenerationMixin._beam_search (no separate beam_search.py). "
    "Per step: logits[:, -1] -> log_softmax over the FULL vocabulary -> logits processors "
    "(NoBadWordsLogitsProcessor sets bad_words_ids [[pad]] to -inf AFTER the softmax, so no renormalisation; "
    "ForcedEOSTokenLogitsProcessor: if cur_len == max_length - 1 every token gets -inf and eos gets 0) -> "
    "add running beam score. Candidates: topk(beams_to_keep = max(2, 1 + n_eos) * num_beams = 2*num_beams) over "
    "num_beams*vocab flattened (beam-major: index = beam*vocab + token); initially only beam 0 is live "
    "(others -1e9). A candidate is 'finished' when a stopping criterion hits: EosTokenCriteria (last token is eos) "
    "or MaxLengthCriteria (sequence length incl. decoder start >= max_length). Only candidates ranked < num_beams "
    "among the 2*num_beams can be finalised: `did_top_num_beams_just_finished = next_token_hits_stopping_criteria & "
    "top_num_beam_mask`. Finished score: `topk_log_probs / ((cur_len + 1 - decoder_prompt_len) ** length_penalty)` "
    "where cur_len = length before appending the new token (decoder start included) and decoder_prompt_len = 1 "
    "(the decoder start token), i.e. sum of log-probs divided by (number of generated tokens INCLUDING the eos, "
    "EXCLUDING the decoder start) ** length_penalty (generation_config leaves length_penalty / early_stopping None; "
    "they resolve to 1.0 / False, generation/configuration_utils.py). The finished pool keeps the "
    "num_beams best (topk over old+new). Running beams for the next step: the num_beams best candidates that did NOT "
    "finish (finished ones get -1e9). Stopping with early_stopping=False (default): after each step cur_len += 1 and "
    "`best_possible_running_score = running_beam_scores[:, :1] / ((cur_len - decoder_prompt_len) ** length_penalty)` "
    "(best live beam's raw sum divided by its current generated length), `worst_finished_score = where(is_sent_finished, "
    "min(beam_scores), -1e9)` per pool slot; search continues while any(best_possible > worst_finished) (so always "
    "while fewer than num_beams hypotheses are finished); once false for a batch item it stays false (sticky AND) and "
    "no further hypotheses are added for it. Loop also stops when all candidates hit a stopping criterion "
    "(max_length). Output: pool sorted best-first; sequences padded with pad_token_id to the longest returned. "
    "Greedy (_sample, num_beams=1): argmax of processed logits; finished rows are filled with pad_token_id; "
    "stop when all rows finished or max_length reached. max_length counts the decoder start token "
    "(at most max_length - 1 generated tokens, the last one forced to eos). "
    "make_fixtures.py reference_greedy / reference_beam re-implement this and are checked against HF "
    "(reference_search_mismatches lists any difference)."
)


def main(argv: list[str]) -> None:
    global FIXTURES
    record_only = "--record-only" in argv
    aside = "--aside" in argv
    argv = [a for a in argv if a not in ("--record-only", "--aside")]
    if aside:
        FIXTURES = ASIDE
        SPECS.clear()
        SPECS.update(ASIDE_SPECS)
    data = data_dir()
    names = argv or list(SPECS)
    for n in names:
        if n not in SPECS:
            sys.exit(f"unknown fixture {n!r}; known: {', '.join(SPECS)}")
    for n in names:
        t0 = time.time()
        if record_only:
            out = FIXTURES / n
            (record_multi if SPECS[n].get("targets") else record)(n, out, data)
        else:
            out = build_fixture(n, data)
        total = 0
        for f in sorted(out.iterdir()):
            total += f.stat().st_size
            print(f"  {f.relative_to(ROOT)}: {f.stat().st_size} bytes")
        print(f"  total {total} bytes ({time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main(sys.argv[1:])
