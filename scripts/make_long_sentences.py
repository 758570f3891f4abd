#!/usr/bin/env python3
"""Held-out over-long sentences from Multi30k test captions, for measuring how a sentence longer
than the model's positions is translated (Translator::split_for_model).

Usage: python3 scripts/make_long_sentences.py DATA_DIR OUT_PREFIX [JOINER [FRENCH_JOINER]]

Joins consecutive captions of DATA_DIR/multi30k/test_2016_flickr.{en,fr} (40 to 60 a line, in a
fixed cycle) into one sentence per line with JOINER (default ", "; the references with FRENCH_JOINER, default JOINER), without full stops, and
writes OUT_PREFIX.en and OUT_PREFIX.fr (the references, the matching French captions joined
alike). Each English line is far over 512 tokens of an OPUS-MT model. Data is read in place.
"""

import sys
from pathlib import Path


def clause(caption: str, first: bool) -> str:
    c = caption.strip().rstrip(".").replace(". ", " ").strip()
    # Lower-case a caption's first letter inside the sentence unless it starts a name ("A" →
    # "a", but "Boston" stays).
    if not first and len(c) > 1 and c[0].isupper() and not c[1].isupper():
        word = c.split()[0]
        if word in {"A", "An", "The", "Two", "Three", "Four", "Five", "Several", "Many", "Some",
                    "People", "Men", "Women", "Children", "Kids", "Young", "Little", "Man",
                    "Woman", "Girl", "Boy", "Group", "Dog", "Dogs", "This", "Here", "There",
                    "Un", "Une", "Le", "La", "Les", "Des", "Deux", "Trois", "Quatre", "Cinq",
                    "Plusieurs", "Beaucoup", "Quelques", "Des", "Il", "Elle", "Ils", "Elles",
                    "Ces", "Cette", "Ce", "Petit", "Petite", "Jeune", "Homme", "Femme"}:
            c = c[0].lower() + c[1:]
    return c


def main() -> None:
    data, out = Path(sys.argv[1]), sys.argv[2]
    joiner = sys.argv[3] if len(sys.argv) > 3 else ", "
    joiner_fr = sys.argv[4] if len(sys.argv) > 4 else joiner
    en = (data / "multi30k" / "test_2016_flickr.en").read_text().splitlines()
    fr = (data / "multi30k" / "test_2016_flickr.fr").read_text().splitlines()
    sizes = [40, 50, 60]
    lines_en, lines_fr, i, k = [], [], 0, 0
    while i < len(en):
        n = sizes[k % len(sizes)]
        k += 1
        group = range(i, min(i + n, len(en)))
        if len(group) < sizes[0]:
            break  # a short remainder would fit the model whole: not what is measured
        lines_en.append(joiner.join(clause(en[j], j == i) for j in group))
        lines_fr.append(joiner_fr.join(clause(fr[j], j == i) for j in group))
        i += n
    Path(out + ".en").write_text("\n".join(lines_en) + "\n")
    Path(out + ".fr").write_text("\n".join(lines_fr) + "\n")


if __name__ == "__main__":
    main()
