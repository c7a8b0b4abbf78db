"""Class-balanced training frames for `learn`'s fine-tune (`learn --balance-classes`).

The loop labels the frames Layer 2 could not decide, so its labels crowd into the classes the detector
confuses (measured on NEU-DET in docs/learning-loop.md, session 11: inclusion was up to 96 of 227 frames). A
fine-tune on that mix moves the detector's top detections towards those classes. Repeating every class's frames
up to the count of the largest class keeps the mix even while every labelled frame is still used.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Sequence

from ..records import Sample

DEFECT_FREE = "defect_free"


def frame_class(sample: Sample) -> str:
    """The class a frame is balanced under: its first image-level class, or `DEFECT_FREE`."""
    return sorted(sample.classes)[0] if sample.classes else DEFECT_FREE


def class_counts(samples: Sequence[Sample]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for s in samples:
        counts[frame_class(s)] += 1
    return dict(sorted(counts.items()))


def balanced_by_repetition(samples: Sequence[Sample]) -> list[Sample]:
    """Every class's frames, repeated in order up to the count of the largest class; each repeat is its own
    sample id (`<id>__copy<k>`) so that an export keeps them apart. Nothing is dropped."""
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[frame_class(s)].append(s)
    if not by_class:
        return []
    top = max(len(frames) for frames in by_class.values())
    out: list[Sample] = []
    for name in sorted(by_class):
        frames = by_class[name]
        for k in range(top):
            s = frames[k % len(frames)]
            out.append(s if k < len(frames) else replace(s, sample_id=f"{s.id}__copy{k // len(frames)}"))
    return out
