"""The detector's recorded training data: which frames it trained on and which are held out.

`Specialist.fit_format` records `{"format", "root", "ratios", "split_seed"}` in the fit info
(`specialist.json`); a multi-dataset detector records `{"datasets": [{"format", "root",
"domain"}, ...], "ratios", "split_seed"}`, and a detector trained on a seeded part of the train
split lists those frames in `"train_ids"`. From this record, `RecordedSplit` rebuilds the exact
train / val / test samples, and `evaluation_keys()` names every frame that must never enter
training (val and test: by resolved path and by content SHA-256, so a copied file is caught).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..records import Sample


def file_key(path: str | Path) -> str:
    """SHA-256 of a file's bytes ('' when unreadable)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


@dataclass
class RecordedSplit:
    datasets: list[dict[str, Any]]
    ratios: Sequence[float]
    seed: int
    train_ids: set[str] | None = None
    _cache: dict[str, list[Sample]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_fit_info(cls, fit: Mapping[str, Any] | None) -> "RecordedSplit":
        src = dict((fit or {}).get("source") or {})
        if src.get("synthetic"):  # generated frames: regenerate them (seeded) instead of reading a temp folder
            from ..cascade.assemble import bundle_storage
            from ..data.synthetic import regenerate

            src["root"] = str(regenerate(src["synthetic"], bundle_storage().cache_base() / "synthetic"))
        if "datasets" in src:
            datasets = [dict(d) for d in src["datasets"]]
        elif src.get("format") and src.get("root"):
            datasets = [{"format": src["format"], "root": src["root"], "domain": src.get("domain")}]
        else:
            raise ConfigError("the bundle's detector has no recorded training data (specialist.json fit.source "
                              "lacks format/root): retraining cannot keep evaluation frames out; train it with "
                              "`cascade-defect specialist train --format ...` first")
        missing = [d["root"] for d in datasets if "://" not in str(d["root"]) and not Path(d["root"]).exists()]
        if missing:
            raise ConfigError(f"the bundle's detector was trained on {missing[0]}, which no longer exists: `learn` "
                              "needs the detector's original training data to keep its evaluation frames out of "
                              "training; put the data back at that path, or retrain the detector with "
                              "`cascade-defect specialist train --format ... --bundle ...` on data that stays")
        ratios = src.get("ratios") or (0.7, 0.15, 0.15)
        ids = src.get("train_ids")
        return cls(datasets, tuple(float(r) for r in ratios), int(src.get("split_seed", 0)),
                   set(ids) if ids is not None else None)

    def as_source(self) -> dict[str, Any]:
        out: dict[str, Any] = {"datasets": self.datasets, "ratios": list(self.ratios), "split_seed": self.seed}
        if self.train_ids is not None:
            out["train_ids"] = sorted(self.train_ids)
        return out

    def samples(self, split: str) -> list[Sample]:
        """The recorded split's samples (train: only `train_ids` when recorded)."""
        if split not in self._cache:
            from ..specialist.datasets import held_out_samples, read_format

            out: list[Sample] = []
            for d in self.datasets:
                samples, _ = read_format(d["format"], d["root"])
                if d.get("domain"):
                    samples = [replace(s, domain=d["domain"]) for s in samples]
                out.extend(held_out_samples(samples, split, ratios=self.ratios, seed=self.seed))
            if split == "train" and self.train_ids is not None:
                out = [s for s in out if s.id in self.train_ids]
            self._cache[split] = out
        return self._cache[split]

    def evaluation_keys(self) -> set[str]:
        """Resolved paths and content hashes of every val and test frame."""
        keys: set[str] = set()
        for split in ("val", "test"):
            for s in self.samples(split):
                keys.add(str(Path(s.image_path).resolve()))
                h = file_key(s.image_path)
                if h:
                    keys.add(h)
        return keys


def is_evaluation_frame(image_ref: str | Path, keys: set[str]) -> bool:
    path = Path(image_ref)
    return str(path.resolve()) in keys or (path.is_file() and file_key(path) in keys)
