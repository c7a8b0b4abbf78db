"""Boxes per image on NEU-DET's train split (the project's split: ratios 0.7/0.15/0.15, seed 0), per image class.

Usage: CASCADE_DATA_ROOT=/path/to/data python scripts/neu_boxes_per_image.py
(docs/learning-loop.md: how many defects an oracle label's single hint box leaves unlabelled).
"""

from __future__ import annotations

import collections
import os
import re

from cascade_defect.data.registry import read_dataset
from cascade_defect.data.selection import select_split


def main() -> None:
    samples = read_dataset("neu", os.environ["CASCADE_DATA_ROOT"] + "/neu-det").samples
    train = select_split(samples, "train", ratios=(0.7, 0.15, 0.15), seed=0)
    by = collections.defaultdict(list)
    for s in train:  # the image's class is its NEU-DET file name's prefix (crazing_12.jpg -> crazing)
        by[re.sub(r"_\d+$", "", s.image_path.stem)].append((len(s.boxes), len({b.cls for b in s.boxes})))
    rows = sorted(by.items()) + [("all", [n for v in by.values() for n in v])]
    print("| image class | images | share with >1 box | mean boxes | max boxes | share with >1 box class |")
    print("|---|---|---|---|---|---|")
    for name, v in rows:
        n = [a for a, _ in v]
        print(f"| {name} | {len(v)} | {sum(a > 1 for a in n) / len(v):.3f} | {sum(n) / len(v):.2f} | {max(n)} | "
              f"{sum(c > 1 for _, c in v) / len(v):.3f} |")


if __name__ == "__main__":
    main()
