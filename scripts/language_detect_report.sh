#!/usr/bin/env bash
# Accuracy of the language detector (src/language.rs, the whatlang crate) on a held-out set built
# from the data at hand — Multi30k test_2016_flickr and geeqie-ui, English and French only — per
# corpus, language and length bucket (1–3, 4–8, 9+ words). Prints a markdown table
# (examples/language_report.rs says what each column is).
#   bash scripts/language_detect_report.sh          # data from $MARIAN_DATA (default ../shared/data)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="${MARIAN_DATA:-../shared/data}"
for f in multi30k/test_2016_flickr.en multi30k/test_2016_flickr.fr geeqie-ui/pairs.en geeqie-ui/pairs.fr; do
    [ -f "$DATA/$f" ] || { echo "language_detect_report: $DATA/$f missing (set MARIAN_DATA to the folder with multi30k/ and geeqie-ui/)" >&2; exit 2; }
done
MARIAN_DATA="$(cd "$DATA" && pwd)" cargo run --quiet --release --example language_report
