"""Model cards for trained specialists: what data, which split, which command, what it scored.

`write_model_card` writes `MODEL_CARD.md` and `metrics.json` next to a saved specialist. The
numbers come from the run itself (the fitted specialist's `fit_info_` and the evaluation dicts
passed in), never from constants.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Mapping

PACKAGED_DIR = Path(__file__).resolve().parents[1] / "models"
"""Where trained specialists shipped with the package live (`models/specialist-<name>/`)."""


def packaged_model(name: str = "neu") -> Path:
    """Folder of a specialist shipped with the package; `WeightsUnavailableError` if absent."""
    from ..errors import WeightsUnavailableError

    folder = PACKAGED_DIR / f"specialist-{name}"
    if not (folder / "weights.pt").is_file():
        raise WeightsUnavailableError(
            f"{folder}: no packaged '{name}' specialist in this installation. Train one with "
            "'cascade-defect specialist train' (see docs/specialist.md) and pass its folder instead."
        )
    return folder


def _hardware(device: str) -> str:
    try:
        import torch

        if device not in ("cpu", "") and torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    except Exception:
        pass
    return f"CPU {platform.processor() or platform.machine()}"


def _table(metrics: Mapping[str, Any]) -> str:
    lines = ["| class | AP50 | AP50-95 | instances |", "|---|---:|---:|---:|"]
    for cls, row in metrics["per_class"].items():
        lines.append(f"| {cls} | {row['ap50']:.3f} | {row.get('ap50_95', float('nan')):.3f} | {row['instances']} |")
    lines.append(f"| **all** | **{metrics['map50']:.3f}** | **{metrics['map50_95']:.3f}** | "
                 f"{sum(r['instances'] for r in metrics['per_class'].values())} |")
    return "\n".join(lines)


def write_model_card(folder: str | Path, specialist: Any, *, title: str, command: str,
                     test_metrics: Mapping[str, Any], extra_metrics: Mapping[str, Any] | None = None,
                     data_note: str = "", reproduce: str = "", target: str = "", limits: str = "") -> Path:
    """Write `MODEL_CARD.md` + `metrics.json` into `folder` (a saved specialist); returns the card."""
    folder = Path(folder)
    fit = dict(getattr(specialist, "fit_info_", {}) or {})
    source = fit.get("source") or {}
    counts = source.get("counts") or {}
    metrics = {"test": dict(test_metrics), **({k: v for k, v in (extra_metrics or {}).items()})}
    (folder / "metrics.json").write_text(json.dumps({"fit": fit, "metrics": metrics}, indent=2) + "\n")
    split_rows = "\n".join(
        f"| {s} | {c.get('frames', '?')} | {c.get('images', '?')} | {c.get('boxes', '?')} |" for s, c in counts.items())
    args = json.dumps(fit.get("train_args", {}), sort_keys=True)
    text = f"""# {title}

YOLOv8n detector (Layer 2 of cascade-defect), trained by this project from `{fit.get('init', '?')}`
({'random initialisation' if str(fit.get('init', '')).endswith('.yaml') else 'local checkpoint'}).
Classes: {', '.join(specialist.class_names)}.

## Data and split
{data_note}

Source: format `{source.get('format', '?')}`, split ratios train/val/test {source.get('ratios', '?')}, split seed
{source.get('split_seed', '?')} (`cascade_defect.data.splits.assign_splits`, stratified by class). The test part was
never used for training or model selection.

| split | source images | training images | boxes |
|---|---:|---:|---:|
{split_rows}

## Training
- command: `{command}`
- epochs: {fit.get('epochs_run', '?')} run ({fit.get('epochs_requested', '?')} requested), image size {fit.get('imgsz', '?')},
  batch {fit.get('batch', '?')}, seed {fit.get('seed', '?')}, device {fit.get('device', '?')}: {_hardware(str(fit.get('device', '')))}
- training time: {fit.get('train_seconds', '?')} s
- Ultralytics arguments: `{args}`

## Held-out test metrics
Full images through the specialist's own inference path (`Specialist.evaluate`: confidence floor
0.001, up to 300 detections, class-aware NMS, COCO 101-point AP as Ultralytics computes it).
{target}

{_table(test_metrics)}

{'Other measurements: ' + json.dumps(extra_metrics, indent=1) if extra_metrics else ''}

## Reproduce
{reproduce}

## Use and limits
The layer reports detections; whether a confidence is high enough to skip the oracle is the
cascade policy's decision (default bar 0.85). {limits}
"""
    card = folder / "MODEL_CARD.md"
    card.write_text(text)
    return card
