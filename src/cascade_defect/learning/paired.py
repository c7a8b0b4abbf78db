"""Two cascades on the same fixed hold-out, frame by frame.

Whether the loop pays is a paired question: the loop's last bundle and its control (or round 0)
decide the *same* hold-out frames, so their difference is measured per frame, not by comparing two
shares with overlapping intervals. For each outcome — the frame reached the oracle (Layer 3); Layer 2
decided it right (its class is one of the frame's image-level classes); Layer 2 decided it wrong —
this gives both shares, the difference B − A with a percentile-bootstrap interval (frames resampled,
the same resamples for every outcome; `evaluation.stats.bootstrap`) and McNemar's test on the frames
where exactly one of the two has the outcome (`evaluation.stats.mcnemar`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..evaluation.stats import batched, bootstrap, mcnemar
from ..records import Decision, Sample

OUTCOMES = ("to_oracle", "l2_right", "l2_wrong")


def frame_outcomes(decisions: Sequence[Decision], samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """Per frame: reached the oracle; decided right at Layer 2; decided wrong at Layer 2."""
    if len(decisions) != len(samples):
        raise ValueError(f"{len(decisions)} decisions for {len(samples)} frames: they must be paired")
    for d, s in zip(decisions, samples):
        if d.frame_id != s.id:
            raise ValueError(f"decision {d.frame_id!r} stands where frame {s.id!r} is: the order must match")
    live = [d.error is None for d in decisions]
    l2 = np.array([ok and d.layer == 2 for ok, d in zip(live, decisions)])
    right = np.array([bool(s.defective) and d.label in s.classes for d, s in zip(decisions, samples)])
    return {"to_oracle": np.array([ok and d.layer == 3 for ok, d in zip(live, decisions)]),
            "l2_right": l2 & right, "l2_wrong": l2 & ~right}


@batched
def _difference(a: np.ndarray, b: np.ndarray):
    """Share in B minus share in A (one row per resample, or the whole hold-out)."""
    return b.mean(axis=-1) - a.mean(axis=-1)


def paired_outcomes(a: Sequence[Decision], b: Sequence[Decision], samples: Sequence[Sample], *,
                    n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Shares of A and B, the difference B − A with its bootstrap CI, and McNemar, per outcome."""
    oa, ob = frame_outcomes(a, samples), frame_outcomes(b, samples)
    out: dict[str, Any] = {"frames": len(samples)}
    for name in OUTCOMES:
        ci = bootstrap({"diff": _difference}, oa[name].astype(float), ob[name].astype(float),
                       n_resamples=n_resamples, level=level, seed=seed)["diff"]
        test = mcnemar(oa[name], ob[name])
        out[name] = {"a": round(float(oa[name].mean()), 4), "b": round(float(ob[name].mean()), 4),
                     "a_count": int(oa[name].sum()), "b_count": int(ob[name].sum()),
                     "difference": ci.as_dict(),
                     "mcnemar": {**test.as_dict(), "only_a": test.b, "only_b": test.c}}
    return out


def ci_text(ci: dict[str, Any]) -> str:
    """A difference with its interval as the tables print it: "+0.012 [-0.020, +0.045]"."""
    return f"{ci['estimate']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]"

