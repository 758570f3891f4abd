#!/usr/bin/env python3
"""GPU peer benchmark: marian-wasm on the GPU (wgpu) against PyTorch transformers on CUDA, one run.

Usage (from the repository root; scripts/bench_gpu_peers.sh makes the checkpoint, the packages
and the sentences, then calls this):

    python3 scripts/bench_gpu_peers.py --checkpoint CKPT --packages DIR --bin MARIAN_BIN \
        --sentences FILE [--engines marian-q8-gpu,marian-f16-gpu,torch-f32-cuda,torch-f16-cuda,marian-q8-cpu] \
        [--batches 32,1,8,64] [--beams 1,4] [--tokens 32] [--count 128] [--max-batches 16] \
        [--timeout-s 120] [--budget-s 330] [--torch-device cuda|cpu] [--gpu-adapter NAME] \
        [--json OUT.json] [--md OUT.md]

    # a dry run on a machine without CUDA (PyTorch on the CPU, marian on whatever wgpu finds):
    python3 scripts/bench_gpu_peers.py ... --torch-device cpu --batches 1,8 --count 16 --tokens 8

What is compared. Every engine runs the same checkpoint (the opus-mt-en-fr-shaped one that
scripts/make_bench_checkpoint.py writes; marian-wasm through packages converted from it,
DIR/pkg-q8 and DIR/pkg-f16), the same sentences (the first lines of FILE, cycled as
`marian-wasm bench` cycles them, empty lines skipped) and the same work: exactly --tokens target
tokens per sentence, greedy (beams 1) and beam search (beams 4; the best beam's tokens counted),
at each batch size. The EOS token is kept out until then the same way as scripts/bench_peers.py:
`marian-wasm bench` bans it, transformers gets min_new_tokens = max_new_tokens = --tokens (its
generation config also bans the pad token, bad_words_ids, as marian-wasm does; its forced EOS at
the last step still counts as one token, so both produce --tokens per sentence).

Engines:
  marian-q8-gpu, marian-f16-gpu   `marian-wasm bench --device gpu` on pkg-q8 / pkg-f16 (the
                                  adapter from MARIAN_GPU_ADAPTER, which --gpu-adapter sets); a
                                  run that fell back to the CPU is a failed row, not a figure.
  torch-f32-cuda, torch-f16-cuda  transformers MarianMTModel on CUDA, f32 (PyTorch's defaults:
                                  no TF32) and .half(); inference_mode, generate(do_sample=False,
                                  num_beams=B), torch.cuda.synchronize() before and after the
                                  timed part. Inputs are tokenized and padded before the clock
                                  starts (marian-wasm bench also tokenizes first); copying them
                                  to the GPU is timed. With --torch-device cpu the rows are named
                                  torch-*-cpu (a dry run; f16 on a CPU is slow).
  marian-q8-cpu                   the CPU reference: `marian-wasm bench --device cpu`, at
                                  --cpu-batch (32) only, over min(--cpu-count (64), --count) sentences.

Every row (engine, batch, search) runs in its own process after one untimed warm-up batch, under
--timeout-s: a crash, an out-of-memory or an overrun is recorded as that row's error and the run
goes on. Rows run in --batches order, the GPU rows first and the CPU reference last. Rows not
started when --budget-s has passed are recorded as skipped (and a row started near it is stopped
at it), and --json is rewritten after every row, so a run cut short still leaves what it
measured. Before the rows, one sentence of one token on marian-wasm's GPU path: where that runs
on the CPU, or on a software adapter (llvmpipe) beside an NVIDIA GPU (its Vulkan driver
missing), the marian-wasm GPU rows are recorded as skipped at once rather than each timing the
wrong thing for minutes. transformers runs with HF_HUB_OFFLINE=1: it reads the local checkpoint.

Sentences per row: min(--count, --max-batches x batch). At the defaults (128, 16): 16 at batch 1,
128 at batches 8, 32 and 64 — 16 batches where one batch is quick, 4 batches of 32 and 2 of 64
where one is not, 512 to 4096 decoding steps per row. Why 128: batch 64 needs at least two full
batches (a single batch times nothing but one shape), and 128 x 32 = 4096 tokens per row keeps
each timed part at a second or more for marian-wasm at ~3000 tokens/s (H100, batch 32) while the
slowest rows — transformers at batch 1 and 8, bound by Python and kernel-launch overhead at
~10 ms a step, and beam 4 — stay within ~10 s. Batch 1 gets 16 sentences (512 steps): that is
where a transformers step costs the most and the per-step time is steady after a few sentences.
Expected on an H100 at the defaults: 32 GPU rows plus 2 CPU rows; ~4 to 5 minutes in all, most
of it process start-up and loading (a PyTorch row: import, CUDA context, load ~5-8 s); --budget-s
(330) bounds it whatever happens.

Reported per row: tokens/s, ms per step (1000 x batch / tokens/s: the time one decoding step
takes for the whole batch, beams included), the ratio to torch-f32 at the same batch and search,
load seconds, and what it ran on (torch.cuda.get_device_name; marian-wasm's adapter). One JSON
line per row on stdout as it finishes, then --json (every row plus the machine's facts), then a
Markdown table for BENCHMARKS.md (also written to --md) and the issue-20 targets met or not per
row: at batch 32 marian-wasm on the GPU >= 2x torch-f32, greedy and beam 4; at batch 1 <= 2 ms
per token. Exit status: 0 when every row measured, 3 when some row failed or was skipped, 2 on a
setup error (no CUDA without --torch-device cpu, no torch, no sentences). No network is used.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 2.0  # issue 20: batch 32, marian-wasm on the GPU >= 2x torch-f32, greedy and beam 4
TARGET_MS = 2.0  # issue 20: batch 1, <= 2 ms per token
TARGET_RATIO_BATCH = 32


def say(msg: str) -> None:
    print(f"[bench-gpu-peers] {msg}", file=sys.stderr, flush=True)


def read_sentences(path: str, n: int) -> list:
    """The first `n` sentences of `path`, cycled when it has fewer, empty lines skipped: the set
    `marian-wasm bench --sentences path --count n` times."""
    with open(path, encoding="utf-8") as f:
        base = [l.rstrip("\r\n") for l in f if l.strip()]
    if not base:
        sys.exit(f"{path}: no sentences")
    return [base[i % len(base)] for i in range(n)]


# ---------------------------------------------------------------- children (one process a row)
def child_probe(a) -> dict:
    """What PyTorch sees: versions, CUDA, the GPU's name."""
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return dict(
        torch=torch.__version__,
        transformers=transformers.__version__,
        cuda_available=cuda,
        cuda_runtime=torch.version.cuda,
        gpu=torch.cuda.get_device_name(0) if cuda else None,
        tf32_matmul=getattr(torch.backends.cuda.matmul, "allow_tf32", None),
    )


def child_torch(a) -> dict:
    """One row of transformers: load, one warm-up batch, then the timed batches."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    dev = torch.device(a.torch_device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available to PyTorch")
    if a.threads:
        torch.set_num_threads(a.threads)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    t0 = time.time()
    tok = transformers.AutoTokenizer.from_pretrained(a.checkpoint)
    model = transformers.MarianMTModel.from_pretrained(a.checkpoint)
    if a.dtype == "f16":
        model = model.half()
    elif a.dtype == "bf16":
        model = model.to(torch.bfloat16)
    model = model.to(dev).eval()
    sync()
    load_s = time.time() - t0

    sents = read_sentences(a.sentences, a.count)
    batches = [tok(sents[i : i + a.batch], return_tensors="pt", padding=True)
               for i in range(0, len(sents), a.batch)]
    gen = dict(do_sample=False, num_beams=int(a.beams), num_return_sequences=1,
               min_new_tokens=a.tokens, max_new_tokens=a.tokens)

    def run(enc) -> int:
        enc = {k: v.to(dev) for k, v in enc.items()}
        out = model.generate(**enc, **gen)
        # The decoder start token leads every row; what follows is generated.
        return (out.shape[1] - 1) * out.shape[0]

    with torch.inference_mode():
        run(batches[0])  # warm-up
        sync()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t1 = time.time()
        produced = sum(run(b) for b in batches)
        sync()
        secs = time.time() - t1
    expected = len(sents) * a.tokens
    if produced != expected:
        raise SystemExit(f"generated {produced} tokens, expected {expected}")
    res = dict(tokens_per_s=produced / secs, produced=produced, seconds=secs, load_s=load_s,
               device=dev.type, dtype=a.dtype,
               attn=getattr(model.config, "_attn_implementation", None))
    if dev.type == "cuda":
        res.update(gpu=torch.cuda.get_device_name(0),
                   gpu_peak_mb=torch.cuda.max_memory_allocated() / 2**20)
    else:
        res.update(threads=torch.get_num_threads())
    return res


# ---------------------------------------------------------------- the parent
def parse_engine(name: str, torch_device: str):
    """(kind, precision, device, label) of an engine name, or None when it is not one."""
    m = re.fullmatch(r"marian-(q8|q4|f16|f32)-(gpu|cpu)", name)
    if m:
        return ("marian", m.group(1), m.group(2), name)
    m = re.fullmatch(r"torch-(f32|f16|bf16)(?:-(cuda|cpu))?", name)
    if m:
        # Named for where it really runs: torch-f32-cuda becomes torch-f32-cpu in a dry run.
        return ("torch", m.group(1), torch_device, f"torch-{m.group(1)}-{torch_device}")
    return None


def run_child(cmd: list, env: dict, timeout: float):
    """(return code or None on timeout, stdout, stderr, seconds); the child gets its own process
    group, all of which is killed on a timeout."""
    t0 = time.time()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err, time.time() - t0
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        return None, out, err, time.time() - t0


def last_json(text: str):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def run_row(a, eng, batch: int, beams: int, n: int, timeout: float, tokens=None) -> dict:
    kind, prec, device, label = eng
    tokens = tokens or a.tokens
    env = dict(os.environ)
    # Nothing is fetched: transformers reads the local checkpoint only.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    if a.gpu_adapter:
        env["MARIAN_GPU_ADAPTER"] = a.gpu_adapter
    if kind == "marian":
        pkg = Path(a.packages) / f"pkg-{prec}"
        if not (pkg / "manifest.json").is_file():
            return dict(error=f"no package at {pkg}")
        cmd = [a.bin, "bench", "--model", str(pkg), "--device", device, "--batch", str(batch),
               "--beams", str(beams), "--tokens", str(tokens), "--count", str(n),
               "--sentences", a.sentences, "--json"]
        if device == "cpu" and a.threads:
            cmd += ["--threads", str(a.threads)]
    else:
        cmd = [sys.executable, __file__, "--child", "torch", "--dtype", prec,
               "--torch-device", device, "--checkpoint", a.checkpoint, "--sentences", a.sentences,
               "--batch", str(batch), "--beams", str(beams), "--tokens", str(tokens),
               "--count", str(n)] + (["--threads", str(a.threads)] if a.threads else [])
    try:
        rc, out, err, wall = run_child(cmd, env, timeout)
    except OSError as e:  # a binary that is not there or cannot run
        return dict(error=f"could not start {cmd[0]}: {e.strerror or e}")
    res = last_json(out) if rc == 0 else None
    if rc is None:
        return dict(error=f"timed out after {timeout:.0f} s", wall_s=wall)
    if res is None:
        tail = [l for l in (err or out).strip().splitlines() if l.strip()][-1:]
        why = tail[0] if tail else "no output"
        sig = f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"
        return dict(error=f"{sig}: {why}"[:300], wall_s=wall)
    res["wall_s"] = wall
    if kind == "marian":
        # A GPU row that ran on the CPU (no adapter, or one lost mid-run) measured the CPU.
        if res.get("device") != device:
            return dict(error=f"ran on {res.get('device')}, not {device}: "
                              + (err.strip().splitlines() or ["?"])[-1][:200], raw=res, wall_s=wall)
        if res.get("quant") != prec:
            return dict(error=f"package is {res.get('quant')}, not {prec}", raw=res, wall_s=wall)
        res["runs_on"] = res.get("adapter") or ("cpu, %s threads" % res.get("threads")
                                                if device == "cpu" else device)
    else:
        res["runs_on"] = res.get("gpu") or f"cpu, {res.get('threads')} threads"
    return res


def machine_facts(a, torch_info: dict) -> dict:
    def cmd_out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    smi = cmd_out(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                   "--format=csv,noheader"])
    return dict(
        cpu=cpu, cpus=os.cpu_count(), nvidia_smi=smi or None,
        marian=cmd_out([a.bin, "--version"]) or f"{a.bin} (no --version answer)",
        commit=cmd_out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]) or None,
        gpu_adapter_env=a.gpu_adapter or None, **torch_info,
    )


def search_name(beams: int) -> str:
    return "greedy" if beams == 1 else f"beam {beams}"


def fmt_table(a, facts: dict, rows: list, batches: list, beams_list: list, labels: list) -> str:
    by = {(r["engine"], r["batch"], r["beams"]): r for r in rows}
    torch_f32 = f"torch-f32-{a.torch_device}"
    gpu = facts.get("nvidia_smi") or facts.get("gpu") or "no NVIDIA GPU seen"
    wgpu = facts.get("marian_adapter")
    head = (f"{facts['date']} — {gpu}" + (f" (wgpu: {wgpu})" if wgpu else "")
            + f"; {facts['cpu']}, {facts['cpus']} CPUs; "
            f"torch {facts.get('torch')} (CUDA {facts.get('cuda_runtime')}), "
            f"transformers {facts.get('transformers')}; {facts.get('marian')}"
            + (f" at {facts['commit']}" if facts.get("commit") else "")
            + f"; exactly {a.tokens} tokens per sentence, min({a.count}, {a.max_batches} x batch) "
            f"sentences per row" + (f" ({a.sentences_from})" if a.sentences_from else "")
            + ", one warm-up batch, one process per row")
    lines = [head, "",
             "| engine | search | batch | sentences | tokens/s | ms per step | × torch-f32 "
             "| load s | runs on |",
             "|---|---|---|---|---|---|---|---|---|"]
    for batch in sorted(batches):
        for beams in beams_list:
            ref = by.get((torch_f32, batch, beams), {})
            for label in labels:
                r = by.get((label, batch, beams))
                if r is None:
                    continue
                s = search_name(beams)
                if "tokens_per_s" not in r:
                    why = str(r["error"]).replace("|", "\\|")
                    lines.append(f"| {label} | {s} | {batch} | {r['sentences']} | "
                                 f"failed: {why} | | | | |")
                    continue
                ratio = (f"{r['tokens_per_s'] / ref['tokens_per_s']:.2f}"
                         if "tokens_per_s" in ref else "—")
                bold = "**" if label.startswith("marian-") and label.endswith("-gpu") else ""
                lines.append(
                    f"| {label} | {s} | {batch} | {r['sentences']} | "
                    f"{bold}{r['tokens_per_s']:.1f}{bold} | {r['ms_per_step']:.2f} | {ratio} | "
                    f"{r.get('load_s', float('nan')):.2f} | {r.get('runs_on', '')} |")
    lines += ["", targets(a, by, beams_list, labels)]
    return "\n".join(lines)


def targets(a, by: dict, beams_list: list, labels: list) -> str:
    """Issue 20's targets, met or not, for every marian-wasm GPU row they concern."""
    torch_f32 = f"torch-f32-{a.torch_device}"
    out = [f"Issue 20 targets — batch {TARGET_RATIO_BATCH}: marian-wasm on the GPU ≥ "
           f"{TARGET_RATIO:g}× {torch_f32}, greedy and beam 4; batch 1: ≤ {TARGET_MS:g} ms per token:"]
    marian_gpu = [l for l in labels if l.startswith("marian-") and l.endswith("-gpu")]
    if not marian_gpu:
        out.append("- no marian-wasm GPU engine in this run")
    for label in marian_gpu:
        for beams in beams_list:
            s = search_name(beams)
            r, ref = by.get((label, TARGET_RATIO_BATCH, beams)), by.get((torch_f32, TARGET_RATIO_BATCH, beams))
            if r is None:
                out.append(f"- {label}, batch {TARGET_RATIO_BATCH}, {s}: not measured")
            elif "tokens_per_s" not in r or not ref or "tokens_per_s" not in ref:
                out.append(f"- {label}, batch {TARGET_RATIO_BATCH}, {s}: no figure "
                           f"({r.get('error') or (ref or {}).get('error') or 'no ' + torch_f32 + ' row'})")
            else:
                x = r["tokens_per_s"] / ref["tokens_per_s"]
                out.append(f"- {label}, batch {TARGET_RATIO_BATCH}, {s}: {x:.2f}× {torch_f32} — "
                           + ("met" if x >= TARGET_RATIO else "NOT met"))
            r = by.get((label, 1, beams))
            if r is None:
                out.append(f"- {label}, batch 1, {s}: not measured")
            elif "tokens_per_s" not in r:
                out.append(f"- {label}, batch 1, {s}: no figure ({r['error']})")
            else:
                ms = 1000.0 / r["tokens_per_s"]
                out.append(f"- {label}, batch 1, {s}: {ms:.2f} ms per token — "
                           + ("met" if ms <= TARGET_MS else "NOT met"))
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="the Hugging Face Marian checkpoint folder")
    ap.add_argument("--packages", help="folder holding pkg-q8, pkg-f16 (marian-wasm convert)")
    ap.add_argument("--bin", default=os.environ.get("MARIAN_BIN",
                                                    str(ROOT / "target/release/marian-wasm")))
    ap.add_argument("--sentences", help="English sentences, one a line")
    ap.add_argument("--sentences-from", help="where they come from, for the table's heading")
    ap.add_argument("--engines",
                    default="marian-q8-gpu,marian-f16-gpu,torch-f32-cuda,torch-f16-cuda,marian-q8-cpu")
    ap.add_argument("--batches", default="32,1,8,64",
                    help="run in this order (the target batches first); the table sorts them")
    ap.add_argument("--beams", default="1,4")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--count", type=int, default=128, help="sentences per row, at most")
    ap.add_argument("--max-batches", type=int, default=16,
                    help="a row times min(--count, this x batch) sentences")
    ap.add_argument("--cpu-batch", type=int, default=32, help="the CPU reference's batch")
    ap.add_argument("--cpu-count", type=int, default=64, help="the CPU reference's sentences")
    ap.add_argument("--threads", type=int, help="CPU threads of CPU rows (default: all)")
    ap.add_argument("--timeout-s", type=float, default=120.0, help="a row's limit")
    ap.add_argument("--budget-s", type=float, default=330.0,
                    help="no row starts after this many seconds; none runs past it")
    ap.add_argument("--torch-device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--gpu-adapter", default=os.environ.get("MARIAN_GPU_ADAPTER"),
                    help="part of the wgpu adapter's name (sets MARIAN_GPU_ADAPTER)")
    ap.add_argument("--json", help="write every row and the machine's facts here")
    ap.add_argument("--md", help="write the Markdown table here")
    # child mode (one row of transformers, or the probe)
    ap.add_argument("--child", choices=["torch", "probe"], help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="f32", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.child:
        res = child_probe(a) if a.child == "probe" else child_torch(a)
        print(json.dumps(res), flush=True)
        return

    for need in ("checkpoint", "packages", "sentences"):
        if not getattr(a, need):
            ap.error(f"--{need} is required")
    if not Path(a.sentences).is_file():
        say(f"ERROR: {a.sentences} not found")
        sys.exit(2)
    engines = []
    for name in (e for e in a.engines.split(",") if e):
        eng = parse_engine(name, a.torch_device)
        if eng is None:
            ap.error(f"unknown engine {name} (marian-{{q8,q4,f16,f32}}-{{gpu,cpu}}, "
                     "torch-{f32,f16,bf16}-cuda)")
        engines.append(eng)
    batches = [int(b) for b in a.batches.split(",") if b]
    beams_list = [int(b) for b in a.beams.split(",") if b]
    labels = [e[3] for e in engines]

    # What PyTorch sees, in a process of its own (the parent never touches CUDA).
    torch_info = {}
    if any(e[0] == "torch" for e in engines) or a.torch_device == "cuda":
        rc, out, err, _ = run_child([sys.executable, __file__, "--child", "probe"],
                                    dict(os.environ), 120)
        torch_info = (last_json(out) if rc == 0 else None) or {}
        if any(e[0] == "torch" for e in engines):
            if not torch_info:
                say("ERROR: this python has no working torch + transformers: "
                    + ((err or "").strip().splitlines() or ["?"])[-1])
                sys.exit(2)
            if a.torch_device == "cuda" and not torch_info.get("cuda_available"):
                say(f"ERROR: PyTorch {torch_info.get('torch')} sees no CUDA device; "
                    "run on a machine with one, or pass --torch-device cpu for a dry run")
                sys.exit(2)

    facts = machine_facts(a, torch_info)
    facts["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    settings = dict(tokens=a.tokens, count=a.count, max_batches=a.max_batches, batches=batches,
                    beams=beams_list, engines=labels, cpu_batch=a.cpu_batch,
                    cpu_count=a.cpu_count, timeout_s=a.timeout_s, budget_s=a.budget_s,
                    torch_device=a.torch_device, sentences_file=a.sentences,
                    sentences_from=a.sentences_from,
                    checkpoint=a.checkpoint, packages=a.packages, bin=a.bin)
    say(f"{facts.get('nvidia_smi') or facts.get('gpu') or 'no NVIDIA GPU seen'}; "
        f"torch {facts.get('torch')}, transformers {facts.get('transformers')}; {facts.get('marian')}")

    def save(rows):
        if a.json:
            Path(a.json).write_text(json.dumps(
                dict(date=facts["date"], machine=facts, settings=settings, results=rows),
                indent=2) + "\n")

    # The GPU rows in order (batch, search, engine), the CPU reference last: what a cut-short
    # run loses first is the reference.
    plan = []
    for batch in batches:
        for beams in beams_list:
            for eng in engines:
                cpu_ref = eng[0] == "marian" and eng[2] == "cpu"
                if cpu_ref and batch != a.cpu_batch:
                    continue
                n = min(a.cpu_count, a.count) if cpu_ref else min(a.count, a.max_batches * batch)
                plan.append((cpu_ref, batch, beams, eng, n))
    plan.sort(key=lambda p: p[0])  # stable: the order above within GPU rows and CPU rows

    rows = []
    start = time.time()
    # One sentence, one token on marian-wasm's GPU path first: where it would run on the CPU, or on
    # a software adapter beside a real GPU (no Vulkan driver for it), its rows would each time the
    # wrong thing for minutes; they are recorded as failed at once instead.
    no_gpu = None
    marian_gpu = [e for e in engines if e[0] == "marian" and e[2] == "gpu"]
    if marian_gpu:
        probe = run_row(a, marian_gpu[0], 1, 1, 1, min(a.timeout_s, 60.0), tokens=1)
        facts["marian_gpu_probe"] = probe
        facts["marian_adapter"] = probe.get("adapter")
        hardware = bool(facts.get("nvidia_smi") or facts.get("cuda_available"))
        if "error" in probe:
            no_gpu = f"marian-wasm's GPU probe failed: {probe['error']}"
        elif hardware and ", Cpu" in (probe.get("adapter") or ""):
            no_gpu = (f"wgpu chose the software adapter {probe['adapter']} beside a real GPU "
                      "(is the Vulkan driver there?)")
        if no_gpu:
            say(f"ERROR: {no_gpu}; the marian-wasm GPU rows are skipped")
        else:
            say(f"marian-wasm's GPU: {probe.get('adapter')}")
    for cpu_ref, batch, beams, eng, n in plan:
        kind, prec, device, label = eng
        row = dict(engine=label, batch=batch, beams=beams, search=search_name(beams),
                   sentences=n, tokens=a.tokens)
        left = a.budget_s - (time.time() - start)
        if left <= 0:
            row["error"] = f"skipped: the run's {a.budget_s:.0f} s budget was spent"
        elif no_gpu and kind == "marian" and device == "gpu":
            row["error"] = f"skipped: {no_gpu}"
        else:
            timeout = min(a.timeout_s, left)
            res = run_row(a, eng, batch, beams, n, timeout)
            if "timed out" in res.get("error", "") and timeout < a.timeout_s:
                res["error"] = f"stopped at the run's {a.budget_s:.0f} s budget"
            row.update(res)
            if "tokens_per_s" in row:
                row["ms_per_step"] = 1000.0 * batch / row["tokens_per_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
        say(f"{label} batch {batch} {search_name(beams)}: "
            + (f"{row['tokens_per_s']:.1f} tokens/s ({row['ms_per_step']:.2f} ms per step)"
               if "tokens_per_s" in row else f"FAILED: {row['error']}")
            + f"  [{time.time() - start:.0f} s]")
        save(rows)
    facts["total_s"] = round(time.time() - start, 1)
    save(rows)

    table = fmt_table(a, facts, rows, batches, beams_list, labels)
    print()
    print(table)
    if a.md:
        Path(a.md).write_text(table + "\n")
    failed = [r for r in rows if "tokens_per_s" not in r]
    say(f"{len(rows) - len(failed)} of {len(rows)} rows measured in {facts['total_s']:.0f} s")
    sys.exit(3 if failed else 0)


if __name__ == "__main__":
    main()
