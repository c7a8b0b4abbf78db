"""Round 0 of `learn simulate --from-bundle`: an existing bundle, not a detector trained from scratch.

The bundle is copied as version 0 unchanged (detector weights byte for byte, gate, calibration).
Its detector's recorded training data (`sources.RecordedSplit`) fixes every split, so the hold-out
rules stay those of `learn`: the recorded test split is the fixed hold-out and the recorded val
split sets the Layer-2 bars; neither is streamed or trained on. The stream is the recorded train
split, shuffled (seeded): the frames the detector did not train on first (a detector trained on a
part of the train split lists it in `train_ids`), then those it did — `seen_by_round0` names them,
so each round can say how many of its frames the round-0 detector had seen.

Dataset roots: a detector records absolute roots; `--format F --root DIR` given with
`--from-bundle` points the recorded dataset of format F at DIR (the copy's `specialist.json` is
rewritten; its weights are not).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .sources import RecordedSplit
from ..bundles.bundle import Bundle
from ..cascade.assemble import open_bundle
from ..errors import ConfigError
from ..specialist.datasets import read_format
from ..specialist.yolo import Specialist


def remap_roots(source: dict[str, Any], roots: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The detector's recorded `source` with each given format's root replaced."""
    if not roots:
        return source
    out = dict(source)
    entries = [dict(d) for d in out["datasets"]] if "datasets" in out else [out]
    formats = [d.get("format") for d in entries]
    for fmt, root in roots:
        if fmt not in formats:
            raise ConfigError(f"--format {fmt}: the bundle's detector was trained on {formats}, not {fmt}; "
                              "give --format/--root only to point a recorded dataset at another folder")
        for d in entries:
            if d.get("format") == fmt:
                d["root"] = str(Path(root).resolve())
    if "datasets" in out:
        out["datasets"] = entries
    return out


def copy_bundle(ref: str | Path, dest: Path, roots: Sequence[tuple[str, str]],
                log: Callable[[str], None]) -> Specialist:
    """Copy the bundle to `dest` (version 0); returns its detector (with remapped roots if given)."""
    src = open_bundle(ref)
    if not src.has("specialist"):
        raise ConfigError(f"{ref}: the bundle has no detector (specialist component) to start the loop from")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src.root, dest)
    bundle = Bundle.open(dest)
    det = Specialist.from_bundle(bundle, device="cpu")
    fit = dict(getattr(det, "fit_info_", None) or {})
    RecordedSplit.from_fit_info(fit)  # a detector without recorded training data cannot keep the hold-out out
    if roots:
        fit["source"] = remap_roots(dict(fit.get("source") or {}), roots)
        det.fit_info_ = fit
        det.to_bundle(bundle)  # weights.pt copied byte for byte; specialist.json records the new roots
        det = Specialist.from_bundle(bundle, device="cpu")
        log(f"round 0: {ref} copied; recorded dataset roots pointed at {[r for _, r in roots]}")
    else:
        log(f"round 0: {ref} copied as bundle version 0")
    return det


def recorded_plan(det: Specialist, seed: int) -> dict[str, Any]:
    """Datasets, seen frames, stream order, val and test of the detector's recorded split."""
    split = RecordedSplit.from_fit_info(det.fit_info_)
    everything = RecordedSplit(split.datasets, split.ratios, split.seed)  # the whole train split
    datasets = []
    for d in split.datasets:
        domain = d.get("domain") or read_format(d["format"], d["root"])[0][0].domain
        datasets.append({"format": d["format"], "root": d["root"], "domain": domain})
    train = everything.samples("train")
    seen = {x.id for x in split.samples("train")}
    order = [train[i] for i in np.random.default_rng(seed).permutation(len(train))]
    stream = [x for x in order if x.id not in seen] + [x for x in order if x.id in seen]
    return {"datasets": datasets, "seen": seen, "stream": stream, "val": split.samples("val"),
            "holdout": split.samples("test"), "split": split}
