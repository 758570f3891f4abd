#!/usr/bin/env bash
# The fine-tuning scenario suite (issue 19): does `finetune` teach a user's term on any model and
# any term without moving unrelated output?
#
#   bash scripts/finetune_suite.sh [--fast] [--assert] [--split tuning|held-out|all] [--models a,b]
#                                  [--scenarios x,y] [--label NAME] [-- finetune flags]
#
#   bash scripts/finetune_suite.sh                     # all 9 scenarios x 3 models, defaults (~1-2.5 min)
#   bash scripts/finetune_suite.sh --fast --assert     # CI subset: 4 scenarios on tiny-opus-q8 (~15 s once
#                                                      # built); --assert: exit 1 when a cell misses a target
#   bash scripts/finetune_suite.sh --split tuning --label rank8 -- --last-layer-rank 8
#
# Steps: (1) scripts/ft_suite_make.py writes the scenarios into target/ft-suite/scenarios/ from
# Multi30k in $MARIAN_DATA (default ../shared/data; read in place; deterministic, fixed seeds);
# (2) the models: `default` (the embedded model, what `finetune` uses without --model),
# `tiny-opus-q8` (tests/fixtures/tiny-opus converted to q8) and `small-aside-q8` (a model no default
# was chosen on: d_model 64, FFN 256, a 1 000-piece vocabulary, seed 97531; trained by
# `scripts/make_fixtures.py --aside small-aside` into target/aside/ with .venv's transformers+torch
# when missing, ~5-10 min on two cores, then converted to q8); (3) scripts/ft_suite_report.py
# runs translate / finetune / translate / eval per model and scenario and prints the table and a
# summary (the header of that file defines every column). Results: target/ft-suite/runs/LABEL/.
# The scenarios (what each one tests, how pairs are picked, how agreement is handled) are
# described at the top of scripts/ft_suite_make.py.
# Tuning half: scenarios marked "tuning" on the default and tiny-opus-q8 models; everything else
# (held-out scenarios, and all of small-aside-q8) is held out: choose defaults on the first, report
# the second.
# Needs target/release/marian-wasm (cargo build --release); python3 (stdlib).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="${MARIAN_DATA:-../shared/data}"
case "$DATA" in /*) ;; *) DATA="$ROOT/$DATA" ;; esac
export MARIAN_DATA="$DATA"
BIN="${MARIAN_BIN:-target/release/marian-wasm}"
PY="${PYTHON:-python3}"
VENV_PY="${VENV_PYTHON:-.venv/bin/python}"

fast=0 check=() split=all models="" scenarios="" label=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) fast=1 ;;
    --assert) check=(--assert) ;;
    --split) split="$2"; shift ;;
    --models) models="$2"; shift ;;
    --scenarios) scenarios="$2"; shift ;;
    --label) label="$2"; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    --) shift; args=("$@"); break ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$fast" = 1 ]; then
  models="${models:-tiny-opus-q8}"
  scenarios="${scenarios:-car-auto,hat-pieces,bike-gender,street-multiword}"
  label="${label:-fast}"
fi
models="${models:-default,tiny-opus-q8,small-aside-q8}"
label="${label:-defaults}"

[ -f "$DATA/multi30k/train.en" ] || {
  echo "error: Multi30k not found in $DATA (set MARIAN_DATA to the folder holding multi30k/)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "error: $BIN missing: cargo build --release" >&2; exit 1; }

"$PY" scripts/ft_suite_make.py --data "$DATA" --out target/ft-suite/scenarios

# Plain q8 (`--fidelity none`), as the suite's recorded figures (BENCHMARKS.md 2026-12-06) were
# made before convert's default added residuals to small models.
M=target/ft-suite/models
mkdir -p "$M"
spec=""
IFS=, read -r -a mlist <<< "$models"
for m in "${mlist[@]}"; do
  case "$m" in
    default) spec+="default=," ;;
    tiny-opus-q8)
      [ -f "$M/tiny-opus-q8/manifest.json" ] ||
        "$BIN" convert tests/fixtures/tiny-opus "$M/tiny-opus-q8" --quant q8 --fidelity none >/dev/null
      spec+="tiny-opus-q8=$M/tiny-opus-q8," ;;
    small-aside-q8)
      if [ ! -f "$M/small-aside-q8/manifest.json" ]; then
        if [ ! -f target/aside/small-aside/config.json ]; then
          [ -x "$VENV_PY" ] || { echo "error: target/aside/small-aside missing and no $VENV_PY (transformers+torch, scripts/requirements-fixtures.txt) to train it" >&2; exit 1; }
          echo "training target/aside/small-aside (scripts/make_fixtures.py --aside small-aside, several minutes)" >&2
          "$VENV_PY" scripts/make_fixtures.py --aside small-aside >&2
        fi
        "$BIN" convert target/aside/small-aside "$M/small-aside-q8" --quant q8 --fidelity none >/dev/null
      fi
      spec+="small-aside-q8=$M/small-aside-q8," ;;
    *=*) spec+="$m," ;;
    *) echo "error: unknown model $m (default, tiny-opus-q8, small-aside-q8, or NAME=PKG_DIR)" >&2; exit 2 ;;
  esac
done
spec="${spec%,}"

start=$(date +%s)
"$PY" scripts/ft_suite_report.py --bin "$BIN" --models "$spec" ${scenarios:+--scenarios "$scenarios"} \
  --split "$split" --label "$label" ${check[@]+"${check[@]}"} -- ${args[@]+"${args[@]}"}
echo "suite wall time: $(( $(date +%s) - start )) s"
