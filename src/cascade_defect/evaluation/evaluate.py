"""The evaluation engine: the cascade and its baselines on the same frames, with honest statistics.

`evaluate(frames, policy, gate, specialist, oracle)` runs in four steps:

1. **Record** — Layer 1 scores every frame (per domain, in batches) and Layer 2 detects on every
   frame, once. Failures are isolated per frame as the router does.
2. **Route** — the real `Router` decides every frame under the policy, with Layer 1 and 2
   *replaying* the recorded outputs (the models are not run twice) and the oracle as configured
   (its cache on, when it has one). These are the cascade's decisions; their traces give its
   metered cost and its oracle latency.
3. **Fresh answers** — with the oracle's cache switched off, every frame gets one oracle answer
   with the hint the router would give it (the top detection's box, or None). A frame the routed
   pass already sent to the oracle without a cache hit reuses that answer (no second call).
   The oracle-only baseline asks again without a hint only for frames whose hint is not None.
4. **Re-decide** — every other system, and every point of the Pareto sweep over (τ per domain,
   Layer-2 bar), is decided from these recorded per-frame outputs by `cascade.decide.decide`, the
   function the router itself calls, never by re-running a model.

Systems (on the same frames; a frame whose Layer-1 call failed is excluded from all, and listed):

* ``cascade`` — the routed decisions;
* ``cascade_no_cache`` — re-decided with fresh answers (equal to the cascade when the oracle has
  no cache);
* ``oracle_only`` — every frame to the oracle, no hint, no cache;
* ``layer1_only`` — a frame Layer 1 escalates is called defective;
* ``layer2_only`` — every frame to the detector; defective when it returns any detection (the
  detector's own output threshold), class = the top detection's;
* ``layer2_only_at_bar`` — defective only when the top detection clears the policy's Layer-2 bar.

A frame sent to human review counts as predicted defective by default (``review_as``): it is
flagged for a person to look at. Its count is reported per system.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..cascade.policy import Policy
from ..cascade.router import Router
from ..contracts import OracleVerdict
from ..errors import DataError
from ..records import Decision, Frame
from .frame_records import ask_oracle, CaptureOracle, FrameRecord, record_frames, ReplayGate, ReplaySpecialist
from .metrics import auc_by_track, class_confusion, percentiles, roc_by_domain, system_metrics
from .redecide import baseline, Decided, decided_from_decisions, predicted_defective, redecide
from .results_io import paths_as_written, finite_or_none, PATHS, ReviewAs, SCHEMA, SYSTEM_TITLES, to_jsonable
from .standins import cache_disabled, describe_oracle, oracle_has_cache
from .stats import mcnemar
from .sweeps import pareto_sweep


@dataclass
class Evaluation:
    """What `evaluate` returns: the JSON-ready `results` plus what the report needs to draw
    (`report.write_report(evaluation, out_dir)` writes results.json, report.md and report.html)."""

    results: dict[str, Any]
    records: list[FrameRecord]
    decisions: list[Decision]
    frames: list[Frame]
    systems: dict[str, Decided]


def _validate(frames: Sequence[Frame], policy: Policy) -> None:
    if not frames:
        raise DataError("evaluation", "no frame to evaluate")
    seen: set[str] = set()
    for f in frames:
        if f.frame_id in seen:
            raise DataError(f.frame_id, "frame id used twice in one evaluation")
        seen.add(f.frame_id)
        if f.truth is None or f.truth.defective is None:
            raise DataError(f.source or f.frame_id, "no ground-truth label: an evaluation needs defective/normal known")
    for d in sorted({f.domain for f in frames}):
        policy.gate_mode(d)  # ConfigError naming the domain when the policy lacks it


def _interleave(idx: Sequence[int], records: Sequence[FrameRecord]) -> list[int]:
    """Round-robin over tracks, so examples of one path come from every track."""
    seen: dict[str, int] = {}
    keyed = []
    for i in idx:
        t = records[i].track
        keyed.append((seen.get(t, 0), i))
        seen[t] = seen.get(t, 0) + 1
    return [i for _, i in sorted(keyed)]


def _pick_examples(decisions: Sequence[Decision], records: Sequence[FrameRecord], y: np.ndarray,
                   review_as: ReviewAs, k: int) -> dict[str, list[int]]:
    """Up to k frames per routing path: about half of them wrong when there are wrong ones."""
    out: dict[str, list[int]] = {}
    for path in PATHS:
        want = {"layer1": 1, "layer2": 2, "layer3": 3, "review": "review"}[path]
        idx = [i for i, d in enumerate(decisions) if d.layer == want]
        wrong = _interleave([i for i in idx if predicted_defective(decisions[i].label, review_as) != y[i]], records)
        right = _interleave([i for i in idx if predicted_defective(decisions[i].label, review_as) == y[i]], records)
        n_wrong = min(len(wrong), max(1, k // 2)) if wrong else 0
        chosen = wrong[:n_wrong] + right[: k - n_wrong]
        chosen += wrong[n_wrong:][: k - len(chosen)]
        out[path] = chosen
    return out


def evaluate(frames: Sequence[Frame], policy: Policy, gate: Any, specialist: Any = None, oracle: Any = None, *,
             tracks: Sequence[str] | None = None, track_info: Mapping[str, Mapping[str, Any]] | None = None,
             batch_size: int = 16, n_resamples: int = 1000, level: float = 0.95, seed: int = 0,
             review_as: ReviewAs = "defective", class_aliases: Mapping[str, str] | None = None,
             n_examples: int = 3, max_thresholds: int = 40, bars: Sequence[float] | None = None,
             map_side: int = 128, extra: Mapping[str, Any] | None = None,
             paths_as: Mapping[str, str] | None = None) -> Evaluation:
    """Evaluate the cascade and its baselines on `frames` (each with `truth`); see the module doc.

    tracks: each frame's track name (default: its domain); track_info: per track name a mapping
    with at least ``kind`` (A/B/C), e.g. `TrackSpec.as_dict()`. class_aliases maps a predicted
    class name to the ground-truth name it means. `extra` is copied into the results (e.g. how
    the evaluation set was built, the bundle path). `paths_as` maps a resolved dataset root to the
    root as the user wrote it; the results record paths in the written form (`paths_as_written`).
    """
    if review_as not in ("defective", "normal"):
        raise ValueError(f"review_as must be 'defective' or 'normal', got {review_as!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    _validate(frames, policy)
    tracks = list(tracks) if tracks is not None else [f.domain for f in frames]
    if len(tracks) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(tracks)} track names")
    aliases = dict(class_aliases or {})
    t_start = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    # 1. record Layers 1 and 2 on every frame
    all_records = record_frames(frames, tracks, gate, specialist, batch_size, map_side)
    keep = [i for i, r in enumerate(all_records) if not r.excluded]
    excluded = [{"frame_id": all_records[i].frame_id, "track": all_records[i].track,
                 "error": all_records[i].gate_error} for i in range(len(all_records)) if all_records[i].excluded]
    if not keep:
        raise DataError("evaluation", f"Layer 1 failed on every frame (first: {excluded[0]['error']})")
    ev_frames = [frames[i] for i in keep]
    records = [all_records[i] for i in keep]
    for j, r in enumerate(records):
        r.index = j

    # 2. route with the real router (Layers 1-2 replayed, oracle as configured)
    capture = CaptureOracle(oracle) if oracle is not None else None
    router = Router(policy, ReplayGate(records, ev_frames),
                    ReplaySpecialist(records, ev_frames) if specialist is not None else None, capture)
    decisions = router.route(ev_frames)
    for d, r in zip(decisions, records):
        for t in d.trace:
            if t.layer == "gate":
                t.latency_ms = r.gate_ms
            elif t.layer == "specialist":
                t.latency_ms = r.specialist_ms
        if capture is not None and r.frame_id in capture.verdicts:
            r.routed_oracle = capture.verdicts[r.frame_id]
        elif any(t.layer in ("oracle", "review") for t in d.trace):
            err = next((t.error for t in d.trace if t.layer in ("oracle", "review")), None)
            r.routed_oracle = OracleVerdict(None, to_review=True, error=err, attempts=0)

    # 3. fresh answers without cache: the router's hint, then no hint for the oracle-only baseline
    has_cache = oracle_has_cache(oracle)
    need = [j for j, r in enumerate(records) if r.routed_oracle is None or r.routed_oracle.cached]
    for r in records:
        if r.routed_oracle is not None and not r.routed_oracle.cached:
            r.oracle = r.routed_oracle
    with cache_disabled(oracle):
        fresh = ask_oracle(oracle, [ev_frames[j] for j in need],
                     [records[j].hint if specialist is not None and records[j].specialist_error is None else None
                      for j in need], batch_size)
        for j, o in zip(need, fresh):
            records[j].oracle = o
        hinted = [j for j, r in enumerate(records)
                  if specialist is not None and r.specialist_error is None and r.hint is not None]
        again = ask_oracle(oracle, [ev_frames[j] for j in hinted], [None] * len(hinted), batch_size)
    hinted_set = set(hinted)
    for j, r in enumerate(records):
        r.oracle_only = r.oracle if j not in hinted_set else None
    for j, o in zip(hinted, again):
        records[j].oracle_only = o

    # 4. systems
    has_spec = specialist is not None
    systems: dict[str, Decided] = {
        "cascade": decided_from_decisions(decisions, records),
        "cascade_no_cache": redecide(records, policy, has_specialist=has_spec),
        "oracle_only": baseline(records, "oracle_only", policy),
        "layer1_only": baseline(records, "layer1_only", policy),
    }
    if has_spec:
        systems["layer2_only"] = baseline(records, "layer2_only", policy)
        systems["layer2_only_at_bar"] = baseline(records, "layer2_only_at_bar", policy)
    class_ok = {k: k != "layer1_only" for k in systems}

    n_hits = int(sum(1 for r in records if r.routed_oracle is not None and r.routed_oracle.cached))

    y = np.array([r.defective for r in records], bool)
    track_names = list(dict.fromkeys(r.track for r in records))
    groups = {"overall": np.arange(len(records))}
    groups.update({t: np.array([j for j, r in enumerate(records) if r.track == t]) for t in track_names})
    kw = dict(review_as=review_as, aliases=aliases, n_resamples=n_resamples, level=level, seed=seed)
    metrics = {g: {s: system_metrics(dec, idx, records, y, class_applicable=class_ok[s], **kw)
                   for s, dec in systems.items()} for g, idx in groups.items()}
    correct = {s: np.array([predicted_defective(lab, review_as) for lab in dec.labels], bool) == y for s, dec in systems.items()}
    # with no oracle backend, "oracle only" sends every frame to review: a test against it measures nothing
    untested = {"oracle_only"} if oracle is None else set()
    tests = {g: {s: {**mcnemar(correct["cascade"][idx], correct[s][idx]).as_dict(), "a": "cascade", "b_system": s,
                     "b_meaning": "frames the cascade got right and this baseline wrong",
                     "c_meaning": "frames this baseline got right and the cascade wrong"}
                 for s in systems if s != "cascade" and s not in untested} for g, idx in groups.items()}
    class_conf = {g: class_confusion(systems["cascade"], idx, records, aliases) for g, idx in groups.items()}

    latency_layers = {
        "gate": percentiles(np.array([r.gate_ms for r in records])),
        "specialist": percentiles(np.array([r.specialist_ms for r in records])) if has_spec else percentiles(np.empty(0)),
        "oracle": percentiles(np.array([o.latency_ms for o in
                                 [r.oracle for r in records] + [records[j].oracle_only for j in hinted]
                                 if o is not None and o.called])),
        "oracle_in_cascade": percentiles(np.array([r.routed_oracle.latency_ms for r in records if r.routed_oracle is not None
                                            and (r.routed_oracle.called or r.routed_oracle.cached)])),
    }
    oracle_desc = describe_oracle(oracle)
    if oracle is None:
        cache_note = "no oracle: the cascade without cache is the cascade"
    elif has_cache:
        cache_note = f"the oracle's cache was on for the cascade ({n_hits} hits) and off for every other system"
    else:
        cache_note = ("the oracle exposes no cache (no cache attribute, has_cache() or cache_disabled()): "
                      "'cascade without cache' decides exactly as the cascade")
    info = {t: dict((track_info or {}).get(t, {})) for t in track_names}
    for t in track_names:
        info[t].setdefault("kind", None)
        idx = groups[t]
        info[t]["frames"] = int(idx.size)
        info[t]["defective"] = int(y[idx].sum())
        info[t]["domains"] = sorted({records[j].domain for j in idx})

    examples = _pick_examples(decisions, records, y, review_as, n_examples)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "created": started,
        "oracle": {**oracle_desc, "has_cache": has_cache, "cache_note": cache_note},
        "policy": policy.to_dict(),
        "settings": {
            "n_resamples": n_resamples, "level": level, "seed": seed, "review_as": review_as,
            "batch_size": batch_size, "class_aliases": aliases,
            "bootstrap": f"percentile bootstrap, {n_resamples} seeded resamples (seed {seed}), {level:.0%} intervals; "
                         "where every resample gives the same value (e.g. recall 1.000 on a few defectives) the "
                         "exact binomial (Clopper-Pearson) interval of precision, recall and accuracy instead",
            "mcnemar": "exact two-sided binomial when b + c < 25, chi-square with continuity correction otherwise",
            "layer2_only_rule": "Layer 2 only (any detection): defective when the detector returns any detection "
                                "(its own output threshold); Layer 2 only (top ≥ bar): when the top detection clears "
                                "the policy's bar",
            "review_rule": f"a frame sent to review counts as predicted {review_as}",
            "latency": "per frame, amortised over the batched layer call (batch size above); the cascade's "
                       "end-to-end latency sums the layers each frame passed",
        },
        "systems": {s: {"title": SYSTEM_TITLES[s], "class_accuracy_applicable": class_ok[s]} for s in systems},
        "frames": {"evaluated": len(records), "excluded": excluded},
        "tracks": info,
        "metrics": metrics,
        "mcnemar": tests,
        "confusion_class": class_conf,
        "latency_ms": {"per_layer": latency_layers},
        "roc": roc_by_domain(records, policy),
        "auc_by_track": auc_by_track(records, policy),
        "pareto": pareto_sweep(records, policy, has_specialist=has_spec, review_as=review_as,
                               max_thresholds=max_thresholds, bars=bars),
        "examples": {p: [_example(records[j], decisions[j], y[j], review_as) for j in idx]
                     for p, idx in examples.items()},
        "oracle_calls_made": {
            "cascade": int(sum(1 for r in records if r.routed_oracle is not None and r.routed_oracle.called)),
            "fresh_no_cache": len(need) if oracle is not None else 0,
            "oracle_only_without_hint": len(hinted) if oracle is not None else 0,
        },
        "notes": [cache_note] + (["McNemar against 'Oracle only' is omitted: no oracle backend is configured, so that "
                                  "baseline sends every frame to review and decides nothing to compare with"]
                                 if untested else []),
        "extra": dict(extra or {}),
        "elapsed_s": None,
    }
    results["elapsed_s"] = round(time.perf_counter() - t_start, 3)
    results = paths_as_written(to_jsonable(results), {str(k): str(v) for k, v in (paths_as or {}).items()})
    return Evaluation(results, records, decisions, ev_frames, systems)


def _example(r: FrameRecord, d: Decision, truth: bool, review_as: ReviewAs) -> dict[str, Any]:
    top = r.top
    o = r.routed_oracle
    return {
        "frame_id": r.frame_id, "track": r.track, "domain": r.domain, "source": r.source,
        "truth": {"defective": r.defective, "classes": list(r.classes),
                  "boxes": [[*b.as_list(), b.cls] for b in r.boxes]},
        "label": d.label, "layer": d.layer, "box": list(d.box) if d.box is not None else None,
        "correct": predicted_defective(d.label, review_as) == bool(truth),
        "gate": {"score": finite_or_none(r.gate_score), "z": finite_or_none(r.gate_z)},
        "detections": [{"cls": x.cls, "confidence": float(x.confidence), "box": [float(v) for v in x.box]}
                       for x in sorted(r.detections, key=lambda x: -x.confidence)[:5]],
        "top_detection": None if top is None else {"cls": top.cls, "confidence": float(top.confidence)},
        "oracle": None if o is None else o.as_dict(),
        "has_anomaly_map": r.anomaly_map is not None,
    }
