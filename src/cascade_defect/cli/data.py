"""`cascade-defect data ...` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import Format, emit_json, err_console, escape, fail, print_skipped, read_format, run_guarded

app = typer.Typer(rich_markup_mode=None, help="Datasets: summarise any supported format, export to YOLO, cut tiles, generate synthetic frames.", no_args_is_help=True)


SkipInvalidOption = Annotated[bool, typer.Option(
    "--skip-invalid", help="Skip invalid items and list them on stderr at the end.")]
ClassNamesOption = Annotated[Optional[str], typer.Option(
    "--class-names", help="Rename classes: Severstal ids (1=pitting,2=inclusion,...) or folder names (folder).")]
DomainOption = Annotated[Optional[str], typer.Option("--domain", help="Domain name (default: the format's).")]


# --- data summary -------------------------------------------------------------------------

@app.command("summary")
def summary(
    fmt: Format = typer.Option(
        ..., "--format", "-f", help="Dataset format."),
    root: Path = typer.Option(..., "--root", help="Dataset root folder."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    skip_invalid: SkipInvalidOption = False,
    class_names: ClassNamesOption = None,
    domain: DomainOption = None,
) -> None:
    """Count images, defective / defect-free images, images per class and boxes per class."""
    from ..data.summary import summarize, summary_table

    result, names = read_format(fmt, root, domain=domain, class_names=class_names, skip_invalid=skip_invalid,
                                report_skipped=False)
    counts = summarize(result, fmt, class_names=names)
    if json_out:
        emit_json(counts)
    else:
        from rich.console import Console

        Console().print(summary_table(counts, title=escape(f"{fmt} dataset at {root}")))
    print_skipped(result.skipped)


# --- data export-yolo / data synth ------------------------------------------------------------

@app.command("export-yolo")
def export_yolo_cmd(
    fmt: Format = typer.Option(
        ..., "--format", "-f", help="Dataset format."),
    root: Path = typer.Option(..., "--root", help="Dataset root folder."),
    out: Path = typer.Option(..., "--out", help="Folder to write the YOLO dataset to."),
    tile: Optional[int] = typer.Option(
        None, "--tile", help="Cut frames into square tiles of this side (0: the frame's short side)."),
    overlap: float = typer.Option(0.25, "--overlap", help="Least overlap between neighbouring tiles, in [0, 1)."),
    ratios: str = typer.Option("0.6,0.2,0.2", "--ratios", help="train,val,test fractions."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split."),
    skip_invalid: SkipInvalidOption = False,
    class_names: ClassNamesOption = None,
    domain: DomainOption = None,
    min_area: float = typer.Option(16.0, "--min-area", help="Drop tile box pieces under this many px²."),
    min_fraction: float = typer.Option(
        0.25, "--min-fraction", help="Drop tile box pieces keeping less of their box than this."),
    image_format: str = typer.Option("png", "--image-format", help="Tile image format: png or jpg."),
    link: str = typer.Option(
        "hardlink", "--link", help="Untiled images: hardlink (copy if impossible), copy or symlink."),
    ignore_dataset_split: bool = typer.Option(
        False, "--ignore-dataset-split", help="Split everything by --ratios, ignoring the dataset's own split."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Write a dataset as an Ultralytics YOLO dataset (images, labels, data.yaml, export.json)."""
    from ..data.splits import parse_ratios
    from ..data.summary import known_classes
    from ..data.synthetic import is_synthetic_root, synthetic_classes
    from ..data.yolo_export import export_yolo
    from .common import progress

    if image_format not in ("png", "jpg"):
        fail(f"--image-format must be png or jpg, not {image_format!r}")
    if link not in ("hardlink", "copy", "symlink"):
        fail(f"--link must be hardlink, copy or symlink, not {link!r}")
    if not 0.0 <= overlap < 1.0:
        fail(f"--overlap must be in [0, 1), got {overlap}")
    if tile is not None and tile < 0:
        fail(f"--tile must be positive (or 0 for the frame's short side), got {tile}")
    try:
        split_ratios = parse_ratios(ratios)
    except ValueError as exc:
        fail(f"--ratios: {exc}")
    result, names = read_format(fmt, root, domain=domain, class_names=class_names, skip_invalid=skip_invalid,
                                report_skipped=False)
    order = known_classes(fmt, names)
    if fmt == "folder" and names is None:
        order = synthetic_classes(root) or []
    order += sorted({b.cls for s in result.samples for b in s.boxes} - set(order))
    source = {"format": fmt, "root": str(root.resolve()), "domain": domain,
              "synthetic": is_synthetic_root(root)}
    res = run_guarded(
        export_yolo, result.samples, out, class_names=order, ratios=split_ratios, seed=seed,
        respect_existing=not ignore_dataset_split, tiling=tile is not None, tile=tile or None,
        overlap=overlap, min_area=min_area, min_fraction=min_fraction, image_format=image_format,
        link=link, skip_invalid=skip_invalid, overwrite=overwrite, source=source,
        prior_skipped=result.skipped, progress=progress,
    )
    all_skipped = [*result.skipped, *res.skipped]
    if json_out:
        emit_json({**res.to_dict(), "skipped": [str(e) for e in all_skipped],
                   "excluded_items": res.excluded})
    else:
        typer.echo(f"wrote {res.data_yaml}")
        for split, c in res.counts.items():
            typer.echo(f"  {split:5s} {c['frames']:6d} frames -> {c['images']:6d} images, "
                       f"{c['boxes']:6d} boxes, {c['empty']:6d} without boxes")
        typer.echo(f"  classes: {', '.join(f'{i}={n}' for i, n in enumerate(res.class_names))}")
        if res.excluded:
            reasons: dict[str, int] = {}
            for e in res.excluded:
                reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
            typer.echo("  excluded: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())))
    empty = [split for split in ("train", "val") if res.counts[split]["images"] == 0]
    if empty:
        err_console.print(f"[yellow]warning:[/] no images in {' and '.join(empty)}: Ultralytics needs both "
                          "to train; use more data or other --ratios", highlight=False)
    print_skipped(all_skipped)


@app.command("tile")
def tile_cmd(
    fmt: Format = typer.Option(
        ..., "--format", "-f", help="Dataset format with masks: severstal, ksdd2, ksdd1 or folder."),
    root: Path = typer.Option(..., "--root", help="Dataset root folder."),
    out: Path = typer.Option(..., "--out", help="Folder to write the tiles to (folder format, with groups.csv)."),
    tile: int = typer.Option(0, "--tile", help="Square tile side in pixels (0: the frame's short side)."),
    overlap: float = typer.Option(0.0, "--overlap", help="Least overlap between neighbouring tiles, in [0, 1)."),
    min_area: int = typer.Option(
        16, "--min-area", help="Defect pixels a tile needs to be defective (fewer, but some: left out as ambiguous)."),
    skip_invalid: SkipInvalidOption = False,
    class_names: ClassNamesOption = None,
    domain: DomainOption = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Cut masked frames into tiles labelled by their mask pixels, as a `folder` dataset (good/ + classes)."""
    from ..data.tile_export import export_tiles
    from .common import progress

    if not 0.0 <= overlap < 1.0:
        fail(f"--overlap must be in [0, 1), got {overlap}")
    if tile < 0:
        fail(f"--tile must be positive (or 0 for the frame's short side), got {tile}")
    if min_area < 1:
        fail(f"--min-area must be at least 1, got {min_area}")
    result, _ = read_format(fmt, root, domain=domain, class_names=class_names, skip_invalid=skip_invalid,
                            report_skipped=False)
    source = {"format": fmt, "root": str(root.resolve()), "domain": domain}
    res = run_guarded(
        export_tiles, result.samples, out, tile=tile or None, overlap=overlap, min_area=min_area,
        skip_invalid=skip_invalid, overwrite=overwrite, source=source, prior_skipped=result.skipped,
        progress=progress,
    )
    all_skipped = [*result.skipped, *res.skipped]
    if json_out:
        emit_json({**res.to_dict(), "skipped": [str(e) for e in all_skipped]})
    else:
        typer.echo(f"wrote {res.out}: {res.frames} frames -> "
                   + ", ".join(f"{n} {label}" for label, n in res.counts.items()) + " tiles")
        if res.ambiguous:
            typer.echo(f"  left out {len(res.ambiguous)} ambiguous tiles (1 to {min_area - 1} defect pixels; "
                       "listed in tiles.json)")
        if res.excluded:
            typer.echo(f"  excluded {len(res.excluded)} unlabelled images")
    print_skipped(all_skipped)


@app.command("synth")
def synth_cmd(
    out: Path = typer.Option(..., "--out", help="Folder to write the synthetic dataset to (folder format)."),
    n: int = typer.Option(200, "--n", help="Number of frames."),
    defect_rate: float = typer.Option(0.5, "--defect-rate", help="Fraction of defective frames."),
    size: str = typer.Option("256x256", "--size", help="Frame size WIDTHxHEIGHT, e.g. 1600x256."),
    style: str = typer.Option("steel", "--style", help="Texture: steel or commutator."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same bytes)."),
    contrast: float = typer.Option(1.0, "--contrast", help="Defect contrast: 0.5 subtle, 1 default, 2 obvious."),
    classes: Optional[str] = typer.Option(
        None, "--classes", help="Comma-separated subset of pitting,inclusion,scratch,patch."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Generate synthetic steel-like frames with injected defects and exact masks (marked synthetic)."""
    from ..data.synthetic import DEFECT_CLASSES, SyntheticGenerator, write_synthetic
    from .common import progress

    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    chosen = DEFECT_CLASSES if classes is None else tuple(c.strip() for c in classes.split(",") if c.strip())
    try:
        gen = SyntheticGenerator(size=size, style=style, defect_rate=defect_rate, contrast=contrast,
                                 classes=chosen, seed=seed)
    except ValueError as exc:
        fail(str(exc))
    res = run_guarded(write_synthetic, out, n, generator=gen, overwrite=overwrite, progress=progress)
    if json_out:
        emit_json(res.to_dict())
    else:
        per_class = ", ".join(f"{c} {k}" for c, k in res.classes.items())
        typer.echo(f"wrote {res.frames} SYNTHETIC {gen.style} frames ({gen.size[0]}x{gen.size[1]}) to {res.out}")
        typer.echo(f"  defective {res.defective} ({per_class}), defect-free {res.frames - res.defective}")
        typer.echo(f"  read it with: cascade-defect data summary --format folder --root {res.out}")
