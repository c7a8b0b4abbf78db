"""`cascade-defect oracle ...` commands: a thin adapter over `cascade_defect.oracle.Oracle`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import Format, emit_json, err_console, escape, fail, run_guarded

app = typer.Typer(rich_markup_mode=None, help="Layer 3 oracle: classify frames with a vision LLM, build its exemplars.",
                  no_args_is_help=True)


def _parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4:
        fail(f"--box must be x1,y1,x2,y2 in pixels, got {text!r}")
    return vals  # type: ignore[return-value]


@app.command("classify")
def classify(
    images: List[Path] = typer.Argument(..., help="Image files to classify."),
    domain: str = typer.Option(..., "--domain", help="Domain (production line) of the frames, e.g. severstal."),
    backend: Optional[str] = typer.Option(None, "--backend", help="azure, openai or review "
                                          "[env CASCADE_ORACLE_BACKEND; default review]."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (…/v1)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (on Azure: the deployment's model, "
                                        "for pricing)."),
    azure_endpoint: Optional[str] = typer.Option(None, "--azure-endpoint", help="Azure OpenAI endpoint URL."),
    deployment: Optional[str] = typer.Option(None, "--deployment", help="Azure OpenAI deployment name."),
    api_version: Optional[str] = typer.Option(None, "--api-version", help="Azure OpenAI API version."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Model bundle with the oracle's exemplars."),
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite store [env CASCADE_DB; default ./cascade.db]."),
    box: Optional[str] = typer.Option(None, "--box", help="Region hint x1,y1,x2,y2 applied to every image."),
    hash_region: str = typer.Option("hint_only", "--hash-region", help="What the cache hashes: whole, hint (the "
                                    "--box region, else the whole frame) or hint_only (no hint: no cache)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Skip the perceptual cache."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Per-request timeout in seconds."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per image on stdout."),
) -> None:
    """Classify images with the oracle (cache first); frames it cannot answer go to the review queue."""
    from ..errors import DataError
    from ..imaging import load_image
    from ..oracle import BackendConfig, Oracle, OracleRequest

    hint = _parse_box(box)
    config = run_guarded(BackendConfig.from_env, backend=backend, base_url=base_url, model=model,
                         azure_endpoint=azure_endpoint, deployment=deployment, api_version=api_version,
                         timeout_s=timeout)
    oracle = run_guarded(Oracle.from_config, config, db=db, bundle=bundle, cache=not no_cache,
                         hash_region=hash_region)
    results: dict[int, dict] = {}
    requests, where = [], []
    for i, path in enumerate(images):
        try:
            image = load_image(path)
        except DataError as exc:
            results[i] = {"image": str(path), "error": str(exc)}
            continue
        requests.append(OracleRequest(frame_id=path.stem, domain=domain, image=image, hint_box=hint,
                                      image_ref=str(path)))
        where.append(i)
    if requests:
        answers = run_guarded(oracle.classify, requests)
        for i, ans in zip(where, answers):
            results[i] = ans.to_json()
    for i in range(len(images)):
        r = results[i]
        if json_out:
            emit_json(r)
        elif "defect_class" in r:
            tag = "cache hit" if r["cached"] else f"${r['cost_usd']:.6f}"
            typer.echo(f"{r['image']}: {r['defect_class']} ({r['confidence']:.2f}, {tag}) - {r['reasoning']}")
        elif r.get("queued_for_review"):
            typer.echo(f"{r['image']}: queued for review #{r['review_id']} ({r['reason']})"
                       + (f": {r['error']}" if r.get("error") else ""))
        else:
            err_console.print(f"[red]{escape(str(r['image']))}: {escape(str(r['error']))}[/]", highlight=False)
    if any("error" in r and not r.get("queued_for_review") for r in results.values()):
        raise typer.Exit(1)


@app.command("build-exemplars")
def build_exemplars(
    bundle: Path = typer.Option(..., "--bundle", help="Bundle to write the oracle component into (created if new)."),
    fmt: Format = typer.Option(..., "--format", help="Dataset format of the domain's samples."),
    root: Path = typer.Option(..., "--root", help="Dataset root."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Domain name (default: the format's)."),
    commutator_format: str = typer.Option("ksdd1", "--commutator-format", help="ksdd1 or ksdd2."),
    commutator_root: Optional[Path] = typer.Option(None, "--commutator-root",
                                                   help="KolektorSDD root for the commutator anomaly exemplar."),
    max_side: int = typer.Option(512, "--max-side", help="Longest side of an exemplar image in pixels."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Pick one exemplar per defect class (plus one commutator anomaly) and store them in a bundle."""
    from ..bundles.bundle import Bundle
    from ..data.registry import read_dataset
    from ..oracle import PromptBuilder, build_exemplar_set, load_exemplars, save_exemplars

    samples = run_guarded(read_dataset, fmt, root, domain=domain, skip_invalid=True).samples
    dom = domain or (samples[0].domain if samples else fmt)
    commutator = None
    if not dom.startswith("ksdd"):
        if commutator_root is None:
            fail("--commutator-root is needed for the commutator (KolektorSDD) anomaly exemplar")
        commutator = run_guarded(read_dataset, commutator_format, commutator_root, skip_invalid=True).samples
    exemplars = run_guarded(build_exemplar_set, samples, dom, commutator_samples=commutator, max_side=max_side)
    b = run_guarded(Bundle.create, bundle)
    run_guarded(save_exemplars, b, exemplars)
    stored = load_exemplars(b)
    out = {"bundle": str(bundle), "domain": dom, "classes": list(stored.taxonomy[dom]),
           "exemplars": [{"label": e.label, "role": e.role, "source": e.source} for e in stored.for_domain(dom)],
           "prompt_version": PromptBuilder(stored).version(dom)}
    if json_out:
        emit_json(out)
    else:
        typer.echo(f"{bundle}: {len(out['exemplars'])} exemplars for {dom} "
                   f"(prompt version {out['prompt_version']})")
