"""Did the detector train on the frames a track evaluates? Checked from the bundle's training record.

A specialist trained with `specialist train --format F` records its source (format, root, split
ratios, seed, frame counts) in `specialist.json`. For every track of the same format the check
re-derives the detector's train and val frames with that record (`held_out_samples`, the same
split the training export used) and counts the track's frames among them. The re-derivation is
exact only on the same set of frames, so it runs when the track's dataset has as many usable
frames as the training record says, and says "not verified" otherwise. Frames are matched by
the reader's sample id, so a copy of the dataset at another path is still recognised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..records import Sample
from .tracks import TrackSpec


@dataclass(frozen=True)
class Overlap:
    """One track's overlap with the detector's training data (`seen` None: not verified)."""

    track: str
    frames: int
    seen: int | None
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {"track": self.track, "frames": self.frames, "seen_in_training": self.seen, "note": self.note}


def _training_total(source: Mapping[str, Any]) -> int | None:
    counts = source.get("counts") or {}
    frames = [c.get("frames") for c in counts.values() if isinstance(c, Mapping)]
    return sum(frames) if frames and all(isinstance(f, int) for f in frames) else None


def detector_overlap(specs: Sequence[TrackSpec], samples: Sequence[Sample], tracks: Sequence[str],
                     fit_source: Mapping[str, Any] | None) -> list[Overlap]:
    """Per track of the detector's training format, how many of its frames the detector trained or validated on."""
    from ..data.registry import read_dataset
    from ..specialist.datasets import held_out_samples, usable_samples

    if not fit_source or not fit_source.get("format"):
        return []
    fmt, ratios, seed = fit_source["format"], fit_source.get("ratios"), fit_source.get("split_seed", 0)
    out: list[Overlap] = []
    for spec in specs:
        if spec.format != fmt:
            continue
        mine = [s for s, t in zip(samples, tracks) if t == spec.name]
        everything = usable_samples(read_dataset(spec.format, spec.root, class_names=spec.class_names,
                                                 skip_invalid=True).samples)
        total = _training_total(fit_source)
        if ratios is None or total is None or total != len(everything):
            out.append(Overlap(spec.name, len(mine), None,
                               f"track {spec.name}: the detector was trained on {fmt} data that cannot be matched "
                               f"to this dataset ({total} frames recorded, {len(everything)} here); overlap not verified"))
            continue
        trained = {s.id for split in ("train", "val")
                   for s in held_out_samples(everything, split, ratios=ratios, seed=seed)}
        seen = sum(s.id in trained for s in mine)
        verdict = ("none of them was in the detector's training or validation split" if seen == 0 else
                   f"{seen} of them were in the detector's training or validation split: its Layer-2 numbers "
                   "on this track are optimistic")
        out.append(Overlap(spec.name, len(mine), seen,
                           f"track {spec.name}: {len(mine)} frames checked against the detector's training record "
                           f"({fmt}, ratios {list(ratios)}, seed {seed}): {verdict}"))
    return out


def training_source(bundle, domain: str | None = None) -> Mapping[str, Any] | None:
    """The training record (`fit.source`) of the detector serving `domain` (None: the bundle's only
    detector), or None when there is none (or it is a gate acting as Layer 2)."""
    import json

    from ..specialist.store import YOLO, specialist_entries
    from ..specialist.yolo import META_FILE

    entries = specialist_entries(bundle)
    entry = entries.get(domain) if domain is not None else None
    if entry is None:
        entry = entries.get(None)
    if entry is None and domain is None:
        yolo = [e for e in entries.values() if e.get("kind") == YOLO]
        entry = yolo[0] if len(yolo) == 1 else None
    if entry is None or entry.get("kind") != YOLO:
        return None
    meta = entry["path"] / META_FILE
    if not meta.is_file():
        return None
    return (json.loads(meta.read_text()).get("fit") or {}).get("source")
