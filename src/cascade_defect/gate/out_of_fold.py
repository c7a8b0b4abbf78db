"""Out-of-fold z of a supervised gate: every labelled training defective scored by a model that did not see it.

A validation slice holds few defectives, so the recall of a τ chosen on it is barely certifiable.
The training split holds more, but the final gate trained on them: its own scores of them are
optimistic. K-fold fixes that: the training items (defectives and normals) are split into K
folds by *group* (a physical item never on two sides); for each fold a model with the final
gate's hyper-parameters is fitted on the other K-1 folds and scores the fold's defectives and
normals, each z taken against that fold model's own held-out normals (as the final gate's z is
against its own). `calibrate` uses these z as a separately labelled evidence source
(docs/statistics.md says why they are comparable and what that assumes).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DataError


def assign_folds(groups: Sequence[str], first: Sequence[bool], k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of each item, by group: the groups holding a `first` item (a defective) are dealt
    out first, round-robin after a seeded shuffle, so every fold gets defectives; the rest after."""
    groups = [str(g) for g in groups]
    with_first = sorted({g for g, f in zip(groups, first) if f})
    others = sorted(set(groups) - set(with_first))
    rng = np.random.default_rng([seed, 0x00F])
    fold_of: dict[str, int] = {}
    for ordered in (with_first, others):
        for g in rng.permutation(len(ordered)):
            fold_of[ordered[g]] = len(fold_of) % k  # round-robin, continued across both lists
    return np.array([fold_of[g] for g in groups], dtype=int)


def out_of_fold_scores(make_gate: Callable[[], Any], normals: Sequence[Any], normal_groups: Sequence[str],
                       defectives: Sequence[Any], defective_groups: Sequence[str], *, folds: int, seed: int,
                       domain: str, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """K-fold out-of-fold z of `defectives` (`LabelledDefective`s) and `normals` (image paths).

    make_gate(): a fresh, unfitted gate with the final gate's hyper-parameters. Returns the JSON-ready
    record stored with the gate: folds, seed, per item its name, z, label and fold, and per fold
    model what it trained on.
    """
    if folds < 2:
        raise DataError(domain, f"--oof-folds must be at least 2, got {folds}")
    n_groups = len(set(map(str, defective_groups)))
    if n_groups < folds:
        raise DataError(domain, f"{folds}-fold out-of-fold scores need defectives from at least {folds} groups "
                        f"(physical items); the training split has {n_groups}")
    groups = [str(g) for g in normal_groups] + [str(g) for g in defective_groups]
    is_def = [False] * len(normals) + [True] * len(defectives)
    fold = assign_folds(groups, is_def, folds, seed)
    nf, df = fold[:len(normals)], fold[len(normals):]
    names = [str(p) for p in normals] + [str(d.name or d.image) for d in defectives]
    z = np.full(len(groups), np.nan)
    per_fold = []
    t0 = time.perf_counter()
    for f in range(folds):
        train_n = [p for p, g in zip(normals, nf) if g != f]
        train_d = [d for d, g in zip(defectives, df) if g != f]
        gate = make_gate()
        gate.fit(train_n, [str(p) for p in train_n], domain=domain, defectives=train_d)
        out_n = [i for i, g in enumerate(nf) if g == f]
        out_d = [i for i, g in enumerate(df) if g == f]
        images = [normals[i] for i in out_n] + [defectives[i].image for i in out_d]
        item_names = [names[i] for i in out_n] + [names[len(normals) + i] for i in out_d]
        scores = gate.score(images, item_names) if images else []
        for idx, s in zip(out_n + [len(normals) + i for i in out_d], scores):
            z[idx] = s.z
        per_fold.append({"fold": f, "fit_normals": len(train_n), "fit_defectives": len(train_d),
                         "scored_normals": len(out_n), "scored_defectives": len(out_d),
                         "holdout_normals": int(gate.stats_.n)})
        if say:
            say(f"out-of-fold {f + 1}/{folds}: trained on {len(train_n)} normals + {len(train_d)} defectives, "
                f"scored {len(out_n)} normals + {len(out_d)} defectives")
    return {"folds": folds, "seed": seed, "split": "train", "names": names,
            "z": [float(v) for v in z], "defective": is_def, "fold": [int(v) for v in fold],
            "fold_models": per_fold, "seconds": round(time.perf_counter() - t0, 1)}
