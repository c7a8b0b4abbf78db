"""`cascade-defect run --engine ray`: a folder or object-store prefix decided with Ray Data.

Pipeline: read (tasks: bytes from a path, file://, s3://, az://; frames already decided in this output
folder are dropped) -> gate (actor pool) -> specialist (actor pool, GPUs when asked) -> oracle + decision
(a small actor pool, rate-limited, with the oracle's own spending guard) -> the driver writes each batch
to the decision log (SQLite), the JSONL file, and at the end Parquet and the summary, like `run`.
The policy is loaded once, by the driver; each frame is decided once, by the one router of the last
stage (see `staged.py`); re-running with the same `--out` resumes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..bundles.storage import storage_options_for
from ..cascade.assemble import (LayerOptions, build_router, bundle_storage, drift_watch, load_layers, load_oracle,
                                load_policy, open_bundle)
from ..cascade.specialists import served_domains
from ..cascade.runner import resolve_inputs
from ..cascade.summary import summarise
from ..data.files import IMAGE_EXTENSIONS as IMAGE_SUFFIXES
from ..data.inputs import is_mask_name
from ..errors import CascadeError
from ..imaging import load_image
from ..records import Frame
from ..serialize import decision_from_dict, decision_to_dict
from ..store.db import Database
from ..store.decisions import DecisionLog
from .sources import read_uri
from .staged import FinalStage, gate_stage, specialist_stage

DB_FILE, JSONL_FILE, PARQUET_FILE, SUMMARY_FILE = "cascade.db", "decisions.jsonl", "decisions.parquet", "summary.json"


@dataclass(frozen=True)
class RayBatchConfig:
    batch_size: int = 16
    gate_actors: int = 1
    specialist_actors: int = 1
    oracle_actors: int = 1
    read_cpus: float = 0.1
    gate_cpus: float = 1.0
    specialist_cpus: float = 1.0
    oracle_cpus: float = 0.25
    specialist_gpus: float = 0.0
    oracle_max_calls_per_s: float | None = 2.0
    specialist_engine: str = "torch"


def list_inputs(specs: Sequence[str]) -> list[tuple[str, str | None]]:
    """(image, error) per input: local files/folders/globs as `run` expands them; an object-store prefix
    (`s3://bucket/prefix`, `az://container/prefix`) lists its image objects."""
    out: list[tuple[str, str | None]] = []
    for spec in specs:
        if "://" in spec and not spec.lower().startswith("file://"):
            import fsspec

            uri, options, _ = storage_options_for(spec, bundle_storage())
            fs, root = fsspec.core.url_to_fs(uri, **options)
            scheme = spec.split("://", 1)[0]
            found = sorted(p for p in (fs.find(root) if fs.isdir(root) else [root])
                           if Path(p).suffix.lower() in IMAGE_SUFFIXES and not is_mask_name(p))
            if not found:
                out.append((spec, f"{spec}: no image objects under this prefix"))
            out.extend((f"{scheme}://{p}", None) for p in found)
        else:
            local = spec[len("file://"):] if spec.lower().startswith("file://") else spec
            out.extend((i.image, i.error) for i in resolve_inputs([local]))
    return out


# -- stages (run in Ray workers) -------------------------------------------------------------
def _s(v) -> str | None:
    """A text cell: None for "" (Ray Data batches carry "" rather than None, which numpy would make NaN)."""
    return str(v) if isinstance(v, str) and v else None


def read_stage(batch: dict, done: set | None = None) -> dict:
    images, keys, datas, errors = [], [], [], []
    for image, error in zip(batch["image"], batch["error"]):
        image, error, data = str(image), _s(error), None
        if not error:
            try:
                data = read_uri(image)
            except CascadeError as exc:
                error = str(exc)
        key = f"{hashlib.sha256(data).hexdigest() if data is not None else 'unreadable'}:{image}"
        if done and key in done:
            continue  # decided by an earlier run into this output folder
        images.append(image)
        keys.append(key)
        datas.append(data or b"")
        errors.append(error or "")
    return {"image": images, "key": keys, "data": datas, "error": errors}


def _frames(batch: dict, domain: str) -> tuple[list[int], list[Frame], list[str | None]]:
    """Decodable rows as frames; errors per row (None when fine)."""
    idx, frames, errors = [], [], [_s(e) for e in batch["error"]]
    for i, (image, data) in enumerate(zip(batch["image"], batch["data"])):
        if errors[i]:
            continue
        image = str(image)
        try:
            frames.append(Frame(frame_id=image, domain=domain, image=load_image(bytes(data), name=image),
                                source=image))
            idx.append(i)
        except CascadeError as exc:
            errors[i] = str(exc)
    return idx, frames, errors


def _spread(idx: list[int], values: list, n: int) -> list:
    out: list = [""] * n
    for i, v in zip(idx, values):
        out[i] = v
    return out


def _cells(values: list) -> list[str]:
    """Wire outputs as JSON text cells ("" where none)."""
    return [json.dumps(v) if v is not None else "" for v in values]


def _column(batch: dict, name: str, idx: list[int]) -> list[dict | None]:
    return [json.loads(c) if (c := _s(batch[name][i])) else None for i in idx]


class GateStage:
    """Layer 1 and the drift watch (each actor its own, over the frames it scores)."""

    def __init__(self, bundle_ref: str, domain: str):
        bundle = open_bundle(bundle_ref)
        self.gate = load_layers(bundle, ["gate"], domains=[domain]).gate
        self.drift = drift_watch(bundle)
        self.domain = domain

    def __call__(self, batch: dict) -> dict:
        idx, frames, errors = _frames(batch, self.domain)
        out = gate_stage(self.gate, frames, self.drift) if frames else []
        return {**batch, "error": [e or "" for e in errors], "gate": _spread(idx, _cells(out), len(errors))}


class SpecialistStage:
    def __init__(self, bundle_ref: str, domain: str, policy, engine: str = "torch"):
        self.specialist = load_layers(open_bundle(bundle_ref), ["specialist"], domains=[domain],
                                      options=LayerOptions(specialist_engine=engine)).specialist
        self.policy = policy
        self.domain = domain

    def __call__(self, batch: dict) -> dict:
        idx, frames, _ = _frames(batch, self.domain)
        out = specialist_stage(self.policy, self.specialist, frames, _column(batch, "gate", idx)) if frames else []
        return {**batch, "specialist": _spread(idx, _cells(out), len(batch["image"]))}


class RateLimitedOracle:
    """At most `max_calls_per_s` frames per second into the oracle (per actor); the oracle's own spending guard
    (hourly/daily dollars from the shared call log) still sends frames to review once a cap is reached."""

    def __init__(self, oracle, max_calls_per_s: float | None):
        self.oracle = oracle
        self.interval = 1.0 / max_calls_per_s if max_calls_per_s else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def judge_batch(self, frames, hints):
        with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval * len(frames)
        if wait > 0:
            time.sleep(wait)
        return self.oracle.judge_batch(frames, hints)

    def __getattr__(self, name):
        return getattr(self.oracle, name)


class OracleStage:
    """The oracle and the one router that decides (`staged.FinalStage`); review decisions enter the run's queue."""

    def __init__(self, bundle_ref: str, domain: str, db_path: str, max_calls_per_s: float | None, policy,
                 specialist_serves: list[str] | bool):
        bundle = open_bundle(bundle_ref)
        db = Database(db_path)
        oracle = RateLimitedOracle(load_oracle(bundle, db), max_calls_per_s)
        serves = (None if specialist_serves is False else
                  (lambda d: True) if specialist_serves is True else set(specialist_serves).__contains__)
        self.final = FinalStage(functools.partial(build_router, bundle, domains=[domain], policy=policy,
                                                  oracle=oracle, db=db), serves)
        self.domain = domain


    def __call__(self, batch: dict) -> dict:
        idx, frames, errors = _frames(batch, self.domain)
        decided = self.final.decide(frames, _column(batch, "gate", idx),
                                    _column(batch, "specialist", idx)) if frames else []
        records = _spread(idx, [json.dumps(decision_to_dict(d), default=float) for d in decided], len(errors))
        for i, err in enumerate(errors):
            if not records[i]:
                image = str(batch["image"][i])
                records[i] = json.dumps({"image": image, "frame_id": image, "domain": self.domain,
                                         "error": err, "cost_usd": 0.0, "trace": []})
        return {"key": [str(k) for k in batch["key"]], "record": records}


# -- driver ----------------------------------------------------------------------------------
def run_batch(specs: Sequence[str], bundle_ref: str, domain: str, out: str | Path,
              config: RayBatchConfig = RayBatchConfig(), *, on_batch=None) -> dict[str, Any]:
    """Decide every input not yet decided in `out`; returns the summary (and writes it to `out`)."""
    import ray
    import ray.data

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = open_bundle(bundle_ref)  # fail here, before any worker starts
    policy = load_policy(bundle, [domain])  # once: every stage gets this object
    served = served_domains(bundle) if config.specialist_engine != "none" else []
    has_specialist = served != []
    specialist_serves = False if not has_specialist else (True if served is None else served)
    db = Database(out / DB_FILE)
    log = DecisionLog(db)
    run_id = log.start_run({"engine": "ray", "bundle": str(bundle.root), "domain": domain}, resume=True)
    done = log.decided_keys(run_id)
    inputs = list_inputs(specs)
    bundle_path = str(bundle.root)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    blocks = max(1, math.ceil(len(inputs) / (config.batch_size * 8)))
    ds = ray.data.from_items([{"image": i, "error": e or ""} for i, e in inputs], override_num_blocks=blocks)
    ds = ds.map_batches(read_stage, fn_kwargs={"done": done}, batch_size=config.batch_size,
                        num_cpus=config.read_cpus)
    ds = ds.map_batches(GateStage, fn_constructor_args=(bundle_path, domain), batch_size=config.batch_size,
                        num_cpus=config.gate_cpus, compute=ray.data.ActorPoolStrategy(size=config.gate_actors))
    if has_specialist:
        ds = ds.map_batches(SpecialistStage, fn_constructor_args=(bundle_path, domain, policy, config.specialist_engine),
                            batch_size=config.batch_size, num_gpus=config.specialist_gpus or None,
                            num_cpus=config.specialist_cpus,
                            compute=ray.data.ActorPoolStrategy(size=config.specialist_actors))
    else:
        ds = ds.map_batches(lambda b: {**b, "specialist": [""] * len(b["image"])}, batch_size=config.batch_size)
    ds = ds.map_batches(OracleStage, fn_constructor_args=(bundle_path, domain, str(out / DB_FILE),
                                                          config.oracle_max_calls_per_s, policy, specialist_serves),
                        batch_size=config.batch_size, num_cpus=config.oracle_cpus,
                        compute=ray.data.ActorPoolStrategy(size=config.oracle_actors))
    jsonl = out / JSONL_FILE
    log.export_jsonl(run_id, jsonl)
    new = 0
    for batch in ds.iter_batches(batch_size=config.batch_size, batch_format="default"):
        items = [(str(k), decision_from_dict(json.loads(r))) for k, r in zip(batch["key"], batch["record"])]
        log.record(run_id, items, replace_input=True)
        with open(jsonl, "a") as fh:
            for r in batch["record"]:
                fh.write(r + "\n")
        new += len(items)
        if on_batch:
            on_batch(len(items))
    log.export_jsonl(run_id, jsonl)  # one line per frame of the run
    log.export_parquet(run_id, out / PARQUET_FILE)
    summary = {"run_id": run_id, "engine": "ray", "new": new, "skipped": len(inputs) - new,
               **summarise(log.decisions(run_id)).to_dict()}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=float))
    return summary


def init_ray(num_cpus: int | None = None) -> None:
    """Join the cluster named by RAY_ADDRESS, else start a local Ray (no dashboard)."""
    import ray

    if ray.is_initialized():
        return
    from ..settings import settings

    address = settings().ray_address
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)


__all__ = ["RayBatchConfig", "init_ray", "list_inputs", "run_batch"]
