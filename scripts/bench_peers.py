#!/usr/bin/env python3
"""CPU peer benchmark: marian-wasm against CTranslate2 and PyTorch transformers, one machine, one run.

Usage (from the repository root; scripts/bench_peers.sh prepares everything and calls this):

    .venv/bin/python scripts/bench_peers.py --checkpoint DIR --packages DIR --bin PATH \
        --sentences FILE [--threads 2] [--batches 1,16] [--tokens 32] [--count 64] \
        [--engines marian-q8,marian-q4,ct2-int8,ct2-int8-inter,torch-f32] [--busy N] [--isa avx2] \
        [--json OUT] \
        [--base-bin OTHER_BUILD --engines marian-q8,base-q8,...]

Every engine translates the same `--count` sentences (the first lines of FILE), greedy, exactly
`--tokens` target tokens per sentence (EOS banned until then: marian-wasm `bench` bans it,
CTranslate2 gets `min_decoding_length`, transformers `min_new_tokens`), on the same checkpoint,
each in its own process with `--threads` threads, after one warm-up batch. Reported: target
tokens per second, the ratios to both CTranslate2 configurations at the same batch, load seconds,
peak RSS, the model's size on disk, and how much CPU the timed part took: CPUs kept busy (all
threads' seconds on a CPU ÷ wall seconds) and tokens per CPU-second, both from the kernel's per-thread schedstat, the same way for every
engine — so a pool that spins or stalls shows as fewer tokens per CPU-second.
CTranslate2 runs two ways: `ct2-int8` (one translator on `--threads` intra-op threads, batches in
turn) and `ct2-int8-inter` (`--threads` one-thread replicas, all batches submitted at once).
`--busy N` runs N CPU-bound processes beside every engine (a machine that is not quiet).
`--busy-share N` runs every engine quiet and then beside N CPU-bound processes, back to back, and
tabulates the share of its quiet speed each keeps, with the CPU each got (issue 16's busy target).
`--rounds R` repeats every measurement R times, engines interleaved, and reports the median.
`--isa avx2` limits every engine to AVX2 kernels (an AVX2-only CPU, emulated on an AVX-512 one).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# `--isa avx2`: the variables each engine reads to cap its instruction set.
AVX2_ONLY = {
    "MARIAN_QGEMM": "avx2",  # marian-wasm's q8/q4 kernel (src/model/qgemm)
    "CT2_FORCE_CPU_ISA": "AVX2",  # CTranslate2's own kernels
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # oneMKL (CTranslate2's int8 GEMM on x86 wheels)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (CTranslate2, PyTorch)
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own kernels
}


def thread_times():
    """(seconds on a CPU, seconds waiting for one), summed over this process's live threads."""
    on_cpu = waiting = 0.0
    for task in os.listdir("/proc/self/task"):
        try:
            run, wait = open(f"/proc/self/task/{task}/schedstat").read().split()[:2]
        except OSError:
            continue
        on_cpu += int(run) * 1e-9
        waiting += int(wait) * 1e-9
    return on_cpu, waiting


def timed(res: dict, secs: float, times0) -> dict:
    """Adds the timed part's wall seconds `secs` and CPU seconds since `times0` (see
    thread_times) to `res`."""
    on_cpu, waiting = thread_times()
    res.update(seconds=secs, cpu_s=on_cpu - times0[0], cpu_wait_s=waiting - times0[1])
    return res


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# ---------------------------------------------------------------- engines run in a child process
def child_ct2(a) -> dict:
    import ctranslate2
    import transformers

    t0 = time.time()
    tok = transformers.AutoTokenizer.from_pretrained(a.checkpoint)
    # ct2-int8: one translator on --threads threads (intra-op), batches one after another — the
    # latency configuration. ct2-int8-inter: --threads single-threaded replicas (inter_threads)
    # and every batch handed over at once, each replica taking the next — CTranslate2's
    # throughput configuration; at batch 16 on a 2-core VM it was 3.5x the other (2026-12-05).
    inter = a.child == "ct2-int8-inter"
    tr = ctranslate2.Translator(
        a.ct2_model,
        device="cpu",
        inter_threads=a.threads if inter else 1,
        intra_threads=1 if inter else a.threads,
    )
    load_s = time.time() - t0
    sents = read_sentences(a)
    batches = [
        [tok.convert_ids_to_tokens(tok(s).input_ids) for s in sents[i : i + a.batch]]
        for i in range(0, len(sents), a.batch)
    ]
    opts = dict(
        beam_size=1,
        max_batch_size=a.batch,
        min_decoding_length=a.tokens,
        max_decoding_length=a.tokens,
        return_end_token=True,
    )
    tr.translate_batch(batches[0], **opts)  # warm-up
    times0 = thread_times()
    t1 = time.time()
    produced = 0
    if inter:
        # All batches submitted at once: the replicas decode them in parallel, each as its own
        # batch of `--batch` sentences (the same batches as below).
        pending = [tr.translate_batch(b, asynchronous=True, **opts) for b in batches]
        for results in pending:
            for r in results:
                produced += len(r.result().hypotheses[0])
    else:
        for b in batches:
            for r in tr.translate_batch(b, **opts):
                produced += len(r.hypotheses[0])
    secs = time.time() - t1
    return timed(dict(tokens_per_s=produced / secs, produced=produced, load_s=load_s), secs, times0)


def child_torch(a) -> dict:
    import torch
    import transformers

    torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error()
    t0 = time.time()
    tok = transformers.AutoTokenizer.from_pretrained(a.checkpoint)
    model = transformers.MarianMTModel.from_pretrained(a.checkpoint).eval()
    load_s = time.time() - t0
    sents = read_sentences(a)
    gen = dict(
        num_beams=1,
        do_sample=False,
        min_new_tokens=a.tokens,
        max_new_tokens=a.tokens,
    )

    def run(batch):
        enc = tok(batch, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(**enc, **gen)
        return (out.shape[1] - 1) * out.shape[0]

    run(sents[: a.batch])  # warm-up
    times0 = thread_times()
    t1 = time.time()
    produced = sum(run(sents[i : i + a.batch]) for i in range(0, len(sents), a.batch))
    secs = time.time() - t1
    return timed(dict(tokens_per_s=produced / secs, produced=produced, load_s=load_s), secs, times0)


def model_mb(a, engine: str) -> float:
    """Megabytes on disk of what `engine` loads: its package, its CTranslate2 model, or (PyTorch)
    the checkpoint's weights."""
    if engine.startswith("marian-") or engine.startswith("base-"):
        files = (Path(a.packages) / f"pkg-{engine.split('-', 1)[1]}").glob("*")
    elif engine.startswith("ct2-"):
        files = Path(a.ct2_model).glob("*") if a.ct2_model else []
    else:
        files = (f for f in Path(a.checkpoint).glob("*")
                 if f.suffix in (".safetensors", ".bin") or f.name.endswith(".spm"))
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def read_sentences(a) -> list:
    lines = [l.strip() for l in open(a.sentences, encoding="utf-8") if l.strip()]
    if len(lines) < a.count:
        sys.exit(f"{a.sentences} has {len(lines)} sentences, --count is {a.count}")
    return lines[: a.count]


# ---------------------------------------------------------------- the parent: one process an engine
def run_engine(a, engine: str, batch: int) -> dict:
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(a.threads)
    env["OMP_NUM_THREADS"] = str(a.threads)
    if engine.startswith("marian-") or engine.startswith("base-"):
        # base-q8: the same package through another build (--base-bin), e.g. an earlier commit.
        quant = engine.split("-", 1)[1]
        binary = a.base_bin if engine.startswith("base-") else a.bin
        cmd = [
            binary, "bench", "--model", str(Path(a.packages) / f"pkg-{quant}"),
            "--batch", str(batch), "--tokens", str(a.tokens), "--count", str(a.count),
            "--sentences", a.sentences, "--threads", str(a.threads), "--json",
        ]
    else:
        cmd = [sys.executable, __file__, "--child", engine, "--batch", str(batch)] + a.passthrough
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        return dict(error=(p.stderr or p.stdout).strip().splitlines()[-1:] or ["failed"])
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.time() - t0
    res["model_mb"] = model_mb(a, engine)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--packages")
    ap.add_argument("--ct2-model")
    ap.add_argument("--bin")
    ap.add_argument("--base-bin", help="another marian-wasm binary, run as engines base-q8/base-q4")
    ap.add_argument("--sentences", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--engines", default="marian-q8,marian-q4,ct2-int8,ct2-int8-inter,torch-f32")
    ap.add_argument("--busy", type=int, default=0)
    ap.add_argument("--busy-share", type=int, default=0, metavar="N")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--isa", choices=["native", "avx2"], default="native")
    ap.add_argument("--json")
    ap.add_argument("--child")
    a = ap.parse_args()

    if a.child:
        res = {"ct2-int8": child_ct2, "ct2-int8-inter": child_ct2, "torch-f32": child_torch}[
            a.child
        ](a)
        res["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(res))
        return

    if a.isa == "avx2":
        # An AVX2-only machine, emulated on a newer CPU: every engine limited to AVX2 kernels
        # (CTranslate2's own, and those of the GEMM libraries it and PyTorch call).
        os.environ.update(AVX2_ONLY)

    a.passthrough = [
        "--checkpoint", a.checkpoint, "--sentences", a.sentences, "--threads", str(a.threads),
        "--tokens", str(a.tokens), "--count", str(a.count),
    ] + (["--ct2-model", a.ct2_model] if a.ct2_model else [])
    engines = [e for e in a.engines.split(",") if e]
    batches = [int(b) for b in a.batches.split(",")]
    # (label, busy processes) of each condition every engine runs in.
    conditions = [("quiet", 0), ("busy", a.busy_share)] if a.busy_share else [("", a.busy)]
    runs = {}  # (condition, engine, batch) -> the rounds' results
    for _ in range(max(1, a.rounds)):
        for batch in batches:
            for engine in engines:
                for label, n in conditions:
                    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                            for _ in range(n)]
                    try:
                        r = run_engine(a, engine, batch)
                    finally:
                        for p in busy:
                            p.kill()
                    r.update(engine=engine, batch=batch, condition=label, busy=n)
                    runs.setdefault((label, engine, batch), []).append(r)
                    print(f"[bench_peers] {engine} batch {batch} {label}: "
                          + (f"{r['tokens_per_s']:.1f} tok/s" if "tokens_per_s" in r
                             else f"FAILED {r['error']}"), file=sys.stderr)
    results = {key: median_run(rs) for key, rs in runs.items()}

    date = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    rounds = f", median of {a.rounds} rounds" if a.rounds > 1 else ""
    isa = ", every engine limited to AVX2 kernels" if a.isa == "avx2" else ""
    head = (f"\n{date} — {cpu}, {os.cpu_count()} CPUs, "
            f"{a.threads} threads, {a.count} sentences × {a.tokens} tokens, greedy{rounds}{isa}")
    if a.busy_share:
        print(head + f"; each engine quiet, then beside {a.busy_share} CPU-bound processes\n")
        print("| engine | batch | quiet tokens/s | busy tokens/s | share kept, per round "
              "| CPUs quiet / busy "
              "| tokens per CPU-s quiet / busy | waited for a CPU, busy |")
        print("|---|---|---|---|---|---|---|---|")
        for batch in batches:
            for engine in engines:
                q, b = results[("quiet", engine, batch)], results[("busy", engine, batch)]
                if "tokens_per_s" not in q or "tokens_per_s" not in b:
                    print(f"| {engine} | {batch} | failed: {q.get('error') or b.get('error')} |||||")
                    continue
                share = paired_share(runs[("quiet", engine, batch)], runs[("busy", engine, batch)])
                print(f"| {engine} | {batch} | {q['tokens_per_s']:.1f} | {b['tokens_per_s']:.1f} | "
                      f"{share} | {cpus(q)} / {cpus(b)} | "
                      f"{per_cpu_s(q)} / {per_cpu_s(b)} | {waited(b)} |")
    else:
        print(head + (f", {a.busy} busy processes beside it" if a.busy else ", nothing else running") + "\n")
        print("| engine | batch | tokens/s | × ct2-int8 | × ct2-int8-inter | load s | peak RSS MB "
              "| model MB | CPUs busy | tokens per CPU-s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for batch in batches:
            refs = [results.get(("", peer, batch), {}) for peer in ("ct2-int8", "ct2-int8-inter")]
            for engine in engines:
                r = results[("", engine, batch)]
                if "tokens_per_s" not in r:
                    print(f"| {engine} | {batch} | failed: {r['error']} | | | | | | | |")
                    continue
                ratios = " | ".join(f"{r['tokens_per_s'] / ref['tokens_per_s']:.2f}"
                                    if "tokens_per_s" in ref else "—" for ref in refs)
                print(f"| {engine} | {batch} | {r['tokens_per_s']:.1f} | {ratios} | "
                      f"{r.get('load_s', float('nan')):.2f} | {r.get('peak_rss_mb', float('nan')):.0f} | "
                      f"{r.get('model_mb', float('nan')):.1f} | {cpus(r)} | {per_cpu_s(r)} |")
    if a.json:
        Path(a.json).write_text(json.dumps(
            dict(date=date, cpu=cpu, cpus=os.cpu_count(), threads=a.threads, busy=a.busy,
                 busy_share=a.busy_share, isa=a.isa, rounds=a.rounds,
                 results=[r for rs in runs.values() for r in rs]), indent=2))


def median_run(rs: list) -> dict:
    """The run with the median tokens/s among those that worked (any failure if none did)."""
    ok = sorted((r for r in rs if "tokens_per_s" in r), key=lambda r: r["tokens_per_s"])
    return ok[(len(ok) - 1) // 2] if ok else rs[0]


def paired_share(quiet: list, busy: list) -> str:
    """The median over rounds of each round's busy speed ÷ the same round's quiet one (run back
    to back, so a VM that speeds up or slows down between rounds does not skew it); the range
    when there are several rounds."""
    shares = sorted(b["tokens_per_s"] / q["tokens_per_s"] for q, b in zip(quiet, busy)
                    if "tokens_per_s" in q and "tokens_per_s" in b)
    if not shares:
        return "—"
    mid = f"{shares[(len(shares) - 1) // 2]:.0%}"
    return mid if len(shares) == 1 else f"{mid} ({shares[0]:.0%}–{shares[-1]:.0%})"


def cpus(r: dict) -> str:
    """CPUs the timed part kept busy on average: all threads' CPU seconds ÷ wall seconds."""
    return f"{r['cpu_s'] / r['seconds']:.2f}" if r.get("seconds") else "—"


def per_cpu_s(r: dict) -> str:
    """Tokens per CPU-second: the work done for the CPU time taken."""
    return f"{r['tokens_per_s'] * r['seconds'] / r['cpu_s']:.0f}" if r.get("cpu_s") else "—"


def waited(r: dict) -> str:
    """Seconds the threads spent runnable but waiting for a CPU, per wall second."""
    return f"{r['cpu_wait_s'] / r['seconds']:.2f} s/s" if r.get("seconds") else "—"


if __name__ == "__main__":
    main()
