#!/usr/bin/env python3
"""Run the fine-tuning scenario suite through the CLI and print the table (issue 19).

Called by scripts/finetune_suite.sh (which generates the suite and prepares the models); stdlib
only. Usage:
    python3 scripts/ft_suite_report.py --models default=,tiny-opus-q8=PATH,... \
        [--scenarios a,b] [--split tuning|held-out|all] [--label NAME] [-- finetune flags]

Per model and scenario: translate the held-out sentences without an adapter (cached under
target/ft-suite/untuned/), `finetune --pairs train.tsv`, translate them with the adapter, score.
Columns:
  adopt     adoption: among held-out term sentences whose UNTUNED output contains the usual
            translation (a usual form as a lowercase whole word), the share whose tuned output
            contains the user's term (any of its forms as lowercase whole word(s); a two-word
            term as consecutive words) - the definition of tests/finetune.rs (denominator n)
  adopt-all the same share over all held-out term sentences; untuned: the share before tuning
  coll      collateral BLEU: the tuned output of the unrelated held-out sentences scored against
            their untuned output (`eval --hyp`), and the share of those sentences that changed
  leak      share of the unrelated sentences whose tuned output contains the user's term
            (untuned: 0 unless the base model says it already)
  kept (n)  among the unrelated sentences whose untuned output contains the usual translation
            (other senses: "course" = running; or another source word), the share whose tuned
            output still does; n of them
  BLEU term / other: `eval --hyp` against the references (term references in the user's
            style), untuned -> tuned
  ft s      wall time of `finetune` (features + training + its own before/after report)
Targets (issue 19): adoption >= 80 % and collateral BLEU >= 90.
Tuning / held out: the scenarios marked "tuning" on the default and tiny-opus models are the
tuning half; every other cell (the held-out scenarios, and every scenario on the model trained
aside) is held out.
"""

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORD = re.compile(r"\w+(?:-\w+)*", re.UNICODE)
TUNING_MODELS = {"default", "tiny-opus-q8"}


def words(s):
    return [w.lower() for w in WORD.findall(s)]


def has_any(s, forms):
    joined = " " + " ".join(words(s)) + " "
    return any((" " + " ".join(words(f)) + " ") in joined for f in forms)


def lines(p):
    t = Path(p).read_text(encoding="utf-8")
    return t.split("\n")[:-1] if t.endswith("\n") else t.split("\n")


def run(cmd, stdin=None):
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r.stdout


def translate(binary, model, src, out, adapter=None):
    cmd = [binary, "translate"] + (["--model", model] if model else [])
    if adapter:
        cmd += ["--adapter", adapter]
    text = run(cmd, stdin=Path(src).read_text(encoding="utf-8"))
    Path(out).write_text(text, encoding="utf-8")
    return lines(out)


def bleu(binary, hyp, ref):
    j = json.loads(run([binary, "eval", "--hyp", str(hyp), "--ref", str(ref), "--json"]))
    return j["bleu"]


def digest(*paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes() if Path(p).is_file() else str(p).encode())
    return h.hexdigest()[:16]


def one(binary, mname, mpath, sc, sdir, rdir, extra):
    rdir.mkdir(parents=True, exist_ok=True)
    # untuned outputs, cached by binary + model + inputs
    key = digest(binary, *(sorted(Path(mpath).glob("*")) if mpath else []),
                 sdir / "term.en", sdir / "other.en")
    cache = ROOT / "target" / "ft-suite" / "untuned" / mname / sc["name"] / key
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if not (cache / "other.txt").is_file():
        translate(binary, mpath, sdir / "term.en", cache / "term.tmp")
        translate(binary, mpath, sdir / "other.en", cache / "other.tmp")
        (cache / "term.tmp").rename(cache / "term.txt")
        (cache / "other.tmp").rename(cache / "other.txt")
    term_before, other_before = lines(cache / "term.txt"), lines(cache / "other.txt")
    adapter = rdir / "adapter.safetensors"
    cmd = [binary, "finetune"] + (["--model", mpath] if mpath else []) + [
        "--pairs", str(sdir / "train.tsv"), "--out", str(adapter), "--json"] + extra
    t1 = time.time()
    report = run(cmd)
    ft_s = time.time() - t1
    (rdir / "finetune.json").write_text(report, encoding="utf-8")
    term_after = translate(binary, mpath, sdir / "term.en", rdir / "term.tuned", str(adapter))
    other_after = translate(binary, mpath, sdir / "other.en", rdir / "other.tuned", str(adapter))
    asked = [i for i, s in enumerate(term_before) if has_any(s, sc["usual"])]
    n_term = len(term_before)
    usual_other = [i for i, x in enumerate(other_before) if has_any(x, sc["usual"])]
    res = dict(
        model=mname, scenario=sc["name"], split=(
            "tuning" if sc["split"] == "tuning" and mname in TUNING_MODELS else "held-out"),
        n=len(asked), n_term=n_term,
        adopt=(100.0 * sum(has_any(term_after[i], sc["term"]) for i in asked) / len(asked)
               if asked else None),
        adopt_all=100.0 * sum(has_any(s, sc["term"]) for s in term_after) / n_term,
        untuned=100.0 * sum(has_any(s, sc["term"]) for s in term_before) / n_term,
        coll=bleu(binary, rdir / "other.tuned", cache / "other.txt"),
        changed=100.0 * sum(a != b for a, b in zip(other_after, other_before)) / len(other_before),
        leak=100.0 * sum(has_any(s, sc["term"]) for s in other_after) / len(other_after),
        kept=(100.0 * sum(has_any(other_after[i], sc["usual"]) for i in usual_other)
              / len(usual_other) if usual_other else None),
        n_kept=len(usual_other),
        leak_untuned=100.0 * sum(has_any(s, sc["term"]) for s in other_before) / len(other_before),
        bleu_term_before=bleu(binary, cache / "term.txt", sdir / "term.fr"),
        bleu_term_after=bleu(binary, rdir / "term.tuned", sdir / "term.fr"),
        bleu_other_before=bleu(binary, cache / "other.txt", sdir / "other.fr"),
        bleu_other_after=bleu(binary, rdir / "other.tuned", sdir / "other.fr"),
        finetune_s=ft_s, total_s=time.time() - t0,
    )
    (rdir / "result.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return res


def f1(x, w=5):
    return f"{x:{w}.1f}" if x is not None else " " * (w - 1) + "–"


def row(r):
    ok = ("A" if r["adopt"] is not None and r["adopt"] >= 80 else "-") + (
        "C" if r["coll"] >= 90 else "-")
    return (f"| {r['model']} | {r['scenario']} | {r['split']} | {f1(r['adopt'])} ({r['n']}) | "
            f"{f1(r['adopt_all'])} / {f1(r['untuned'])} | {f1(r['coll'])} / {f1(r['changed'])} % | "
            f"{f1(r['leak'])} | {f1(r['kept'])} ({r['n_kept']}) | {f1(r['bleu_term_before'])} → {f1(r['bleu_term_after'])} | "
            f"{f1(r['bleu_other_before'])} → {f1(r['bleu_other_after'])} | {r['finetune_s']:.1f} | {ok} |")


HEADER = ("| model | scenario | half | adopt % (n) | adopt-all / untuned % | coll BLEU / changed | "
          "leak % | kept % (n) | BLEU term | BLEU other | ft s | ≥80/≥90 |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def summary(rs, title):
    if not rs:
        return ""
    ad = [r["adopt"] for r in rs if r["adopt"] is not None]
    co = [r["coll"] for r in rs]
    both = sum(1 for r in rs if r["adopt"] is not None and r["adopt"] >= 80 and r["coll"] >= 90)
    return (f"{title}: {len(rs)} cells; adoption min {min(ad):.1f} median {statistics.median(ad):.1f}, "
            f"≥80 %: {sum(a >= 80 for a in ad)}/{len(ad)}; collateral BLEU min {min(co):.1f} "
            f"median {statistics.median(co):.1f}, ≥90: {sum(c >= 90 for c in co)}/{len(co)}; "
            f"both: {both}/{len(rs)}; finetune {sum(r['finetune_s'] for r in rs):.0f} s in all")


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        k = argv.index("--")
        argv, extra = argv[:k], argv[k + 1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("MARIAN_BIN", "target/release/marian-wasm"))
    ap.add_argument("--suite", default=str(ROOT / "target" / "ft-suite" / "scenarios"))
    ap.add_argument("--models", required=True, help="name=path,... (default= : embedded model)")
    ap.add_argument("--scenarios", default="")
    ap.add_argument("--split", default="all", choices=["all", "tuning", "held-out"])
    ap.add_argument("--label", default="defaults")
    ap.add_argument("--assert", dest="check", action="store_true",
                    help="exit 1 when a cell misses a target (adoption >= 80 %%, collateral >= 90)")
    a = ap.parse_args(argv)
    binary = str(Path(a.bin).resolve())
    suite = json.loads((Path(a.suite) / "suite.json").read_text(encoding="utf-8"))
    if a.scenarios:
        want = a.scenarios.split(",")
        unknown = set(want) - {s["name"] for s in suite}
        if unknown:
            sys.exit(f"error: unknown scenarios {sorted(unknown)}")
        suite = [s for s in suite if s["name"] in want]
    models = [m.split("=", 1) for m in a.models.split(",")]
    out = ROOT / "target" / "ft-suite" / "runs" / a.label
    print(f"finetune flags: {' '.join(extra) or '(defaults)'}; results under {out}", flush=True)
    print(HEADER, flush=True)
    results = []
    for mname, mpath in models:
        for sc in suite:
            half = "tuning" if sc["split"] == "tuning" and mname in TUNING_MODELS else "held-out"
            if a.split != "all" and half != a.split:
                continue
            r = one(binary, mname, mpath, sc, Path(a.suite) / sc["name"],
                    out / mname / sc["name"], extra)
            results.append(r)
            print(row(r), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print()
    for title, sel in (("tuning half", "tuning"), ("held-out half", "held-out")):
        s = summary([r for r in results if r["split"] == sel], title)
        if s:
            print(s)
    for mname, _ in models:
        s = summary([r for r in results if r["model"] == mname], mname)
        if s:
            print(s)
    print(summary(results, "all"))
    fails = [f"{r['model']}/{r['scenario']} ({'adoption' if (r['adopt'] or 0) < 80 else ''}"
             f"{'+' if (r['adopt'] or 0) < 80 and r['coll'] < 90 else ''}"
             f"{'collateral' if r['coll'] < 90 else ''})"
             for r in results if (r["adopt"] or 0) < 80 or r["coll"] < 90]
    print("misses: " + (", ".join(fails) if fails else "none"))
    if a.check and fails:
        sys.exit(f"error: {len(fails)} of {len(results)} cells miss the targets")


if __name__ == "__main__":
    main()
