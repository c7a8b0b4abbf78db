"""`learn --balance-classes`: every class's frames repeated up to the largest class, nothing dropped."""

from __future__ import annotations

from pathlib import Path

from cascade_defect.learning.class_balance import balanced_by_repetition, class_counts
from cascade_defect.records import Sample


def _frames(spec: dict[str, int]) -> list[Sample]:
    return [Sample(image_path=Path(f"/data/{c}_{i}.png"), domain="steel", defective=c != "none",
                   classes=() if c == "none" else (c,)) for c, n in spec.items() for i in range(n)]


def test_every_class_is_repeated_up_to_the_largest_and_nothing_is_dropped():
    frames = _frames({"inclusion": 7, "crazing": 2, "patches": 3, "none": 1})
    out = balanced_by_repetition(frames)
    assert class_counts(out) == {"crazing": 7, "defect_free": 7, "inclusion": 7, "patches": 7}
    assert {s.id for s in frames} <= {s.id for s in out}  # every original frame is kept as it was
    assert len({s.id for s in out}) == len(out)  # each repeat is its own sample
    copies = [s for s in out if "__copy" in s.id]
    assert len(copies) == 28 - 13 and all(Path(s.image_path).stem == s.id.split("__copy")[0] for s in copies)
    crazing = [s.id for s in out if s.classes == ("crazing",)]
    assert crazing == ["crazing_0", "crazing_1", "crazing_0__copy1", "crazing_1__copy1", "crazing_0__copy2",
                       "crazing_1__copy2", "crazing_0__copy3"]  # in order, cyclically


def test_balanced_frames_are_left_as_they_are():
    frames = _frames({"a": 2, "b": 2})
    assert balanced_by_repetition(frames) == frames and balanced_by_repetition([]) == []
