"""`gate fit --gate supervised|combined|auto`: the gates that learn from labelled defectives too.

The normals are those `gate fit` already chose (the training split's defect-free images of every
source of the domain); the labelled defectives are the same split's defective samples of every
source (masks where the format has them, boxes otherwise, the image label otherwise), at most
`--max-defectives` of them (seeded), each tagged with its source so that training draws the sources
evenly. `auto` also reads the validation split (as `calibrate` would) to compare its candidates.
"""

from __future__ import annotations

import time
from pathlib import Path

from .common import StepProgress, err_console, fail, run_guarded


def fit_with_labels(*, gate: str, train, specs, skip_invalid: bool, normals, available: int, used_split: str, domain: str, out: Path,
                    seed: int, short_side: int | None, holdout: float, min_holdout: int, backbone: str,
                    aggregate: str, coreset: str, coreset_fraction: float, index: str, normalize: str,
                    epochs: int, max_defectives: int | None, steps: int, candidates: str,
                    synthetic_kinds: str | None = None, synthetic_share: float | None = None,
                    oof_folds: int | None = None, json_out: bool = False) -> None:
    from ..gate import save_gate
    from ..gate.combined import CombinedGate
    from ..evaluation.gate_selection import select_gate
    from ..gate.supervised import SupervisedGate, defectives_from_samples

    from .gate import read_split, report_fit, source_record

    defective = [s for s in train.samples if s.defective]
    defectives = defectives_from_samples(defective,
                                         groups=[n for s, n in zip(train.samples, train.sources) if s.defective])
    sup = {"steps": steps, "max_defectives": max_defectives}
    if synthetic_share is not None:
        if not 0.0 <= synthetic_share <= 1.0:
            fail(f"--synthetic-share must be in [0, 1], got {synthetic_share}")
        sup["synthetic_share"] = synthetic_share
    if synthetic_kinds is not None:
        from ..gate.synthetic_anomalies import KINDS

        kinds = tuple(k.strip() for k in synthetic_kinds.split(",") if k.strip())
        if not kinds or set(kinds) - set(KINDS):
            fail(f"--synthetic-kinds: name one or more of {', '.join(KINDS)} (comma-separated), got {synthetic_kinds!r}")
        sup["synthetic_kinds"] = kinds
    if short_side is not None:
        sup["short_side"] = short_side or None
    pc = {"backbone": backbone, "aggregate": aggregate, "coreset": coreset, "coreset_fraction": coreset_fraction,
          "index": index, "short_side": 256 if short_side is None else (short_side or None)}
    if gate in ("combined", "auto") and backbone == "random":
        err_console.print(f"[yellow]note:[/] random backbone weights (seed {seed}): for tests only", highlight=False)
    paths = [s.image_path for s in normals]
    names = [str(p) for p in paths]
    t0 = time.perf_counter()
    extra: dict = {}
    what = (f"fitting {gate} gate for '{domain}' on {len(normals)} normals and "
            f"{len(defectives) if max_defectives is None else min(max_defectives, len(defectives))} labelled defectives")
    if gate == "supervised":  # the long one: a bar with step, loss and ETA (log lines when not on a terminal)
        err_console.print(what, highlight=False)
        model = SupervisedGate(seed=seed, holdout_fraction=holdout, min_holdout=min_holdout, **sup)
        with StepProgress(f"supervised gate '{domain}'") as on_step:
            run_guarded(model.fit, paths, names, domain=domain, defectives=defectives, on_step=on_step)
        if oof_folds:
            from ..gate.out_of_fold import out_of_fold_scores

            with err_console.status(f"{oof_folds}-fold out-of-fold scores for '{domain}'", spinner="dots"):
                model.out_of_fold_ = run_guarded(
                    out_of_fold_scores,
                    lambda: SupervisedGate(seed=seed, holdout_fraction=holdout, min_holdout=min_holdout, **sup),
                    paths, [s.group or str(s.image_path) for s in normals], defectives,
                    [s.group or str(s.image_path) for s in defective if s.defective], folds=oof_folds, seed=seed,
                    domain=domain)
    else:
        with err_console.status(what, spinner="dots"):
            if gate == "combined":
                model = CombinedGate(unsupervised="patchcore", unsupervised_params={**pc, "normalize": normalize},
                                     supervised_params=sup, seed=seed, holdout_fraction=holdout, min_holdout=min_holdout)
                run_guarded(model.fit, paths, names, domain=domain, defectives=defectives)
            else:
                wanted = [c.strip() for c in candidates.split(",") if c.strip()]
                val = [s for s in read_split(specs, domain, "val", seed, skip_invalid).samples
                       if s.defective is not None]
                if not val:
                    fail(f"--gate auto needs labelled validation images (split 'val' of {domain}'s sources is empty)")
                model = run_guarded(
                    select_gate, paths, [s.image_path for s in val], [bool(s.defective) for s in val], domain=domain,
                    defectives=defectives, candidates=wanted, seed=seed, patchcore_params=pc, supervised_params=sup,
                    autoencoder_params={"epochs": epochs, "short_side": pc["short_side"]}, holdout_fraction=holdout,
                    min_holdout=min_holdout, say=lambda m: err_console.print(m, highlight=False))
                extra = {"chosen": model.selection_["chosen"]}
    seconds = time.perf_counter() - t0
    model.sources_ = source_record(train)
    run_guarded(save_gate, out, domain, model)
    summary = model.summary()
    if getattr(model, "selection_", None):
        summary["selection"] = model.selection_
    report_fit({"bundle": str(out), "domain": domain, "gate": gate, **extra, "normals": len(normals),
                "normals_available": available, "defectives_available": len(defectives), "split": used_split,
                "sources": source_record(train),
                "seconds": round(seconds, 2), **summary}, json_out)
