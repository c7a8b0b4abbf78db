"""The `--engine ray` paths of `run` and `serve` (Ray Data batch, Ray Serve deployments); see docs/scale-out.md."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import typer

from .common import emit_json, err_console, fail, run_guarded

def run_on_ray(paths: Optional[Sequence[str]], bundle: str, domain: str, out: Optional[Path], batch_size: int,
               specialist_engine: str, json_out: bool) -> None:
    """`run --engine ray PATH... --out DIR`: decide with Ray Data into DIR (resumes from what DIR holds)."""
    from ..distributed.ray_data import RayBatchConfig, init_ray, run_batch

    if not paths or out is None:
        fail("--engine ray needs PATH... (files, folders, globs or an s3:// / az:// prefix) and --out DIR")
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: with --engine ray, --out is a folder (decisions.jsonl, decisions.parquet, "
             "cascade.db, summary.json)")
    from ..settings import settings

    rate = settings().oracle_max_calls_per_s  # validated at start-up (CASCADE_ORACLE_MAX_CALLS_PER_S)
    init_ray()
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus = ray.cluster_resources().get("GPU", 0)
    gate_actors = max(1, cpus // 2)
    specialist_actors = max(1, int(gpus) if gpus else cpus // 2)
    cpu_actors = gate_actors + (0 if gpus else specialist_actors)
    share = max(0.1, (cpus - 0.35 - (0.5 * specialist_actors if gpus else 0)) / cpu_actors)  # all fit at once
    config = RayBatchConfig(batch_size=batch_size, gate_actors=gate_actors, specialist_actors=specialist_actors,
                            gate_cpus=share, specialist_cpus=0.5 if gpus else share,
                            specialist_gpus=1.0 if gpus else 0.0, oracle_max_calls_per_s=rate or None,
                            specialist_engine=specialist_engine)
    summary = run_guarded(run_batch, list(paths), bundle, domain, out, config)
    if json_out:
        emit_json(summary)
    else:
        by = summary.get("decided_by") or {}
        typer.echo(f"ray run: {summary['frames']} frames in {out} ({summary['new']} new, {summary['skipped']} "
                   f"already decided, {summary['errors']} errors)")
        typer.echo("decided by: " + "   ".join(f"{'review' if k == 'review' else 'layer ' + str(k)}: {v}"
                                             for k, v in by.items()))


def serve_on_ray(config_path: Optional[Path], bundle: Optional[str], db: Optional[Path], host: Optional[str],
                 port: Optional[int]) -> None:
    """`serve router --engine ray --config serve.yaml`: deploy and block until interrupted."""
    from ..distributed.ray_data import init_ray
    from ..distributed.ray_serve import ServeConfig, start

    if config_path is None:
        fail("--engine ray needs --config serve.yaml (see docs/scale-out.md)")
    http = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    config = run_guarded(ServeConfig.load, config_path, bundle=bundle, db=str(db) if db else None)
    if http:
        import dataclasses

        config = dataclasses.replace(config, **http)
    init_ray()
    err_console.print(f"ray serve: router on http://{config.host}:{config.port}{config.route_prefix}", highlight=False)
    run_guarded(start, config, blocking=True)
