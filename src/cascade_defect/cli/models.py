"""`cascade-defect models list`: the detectors the package ships (src/cascade_defect/models/)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import emit_json

app = typer.Typer(rich_markup_mode=None, help="Detectors shipped with the package (usable offline).",
                  no_args_is_help=True)

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def shipped_models() -> list[dict]:
    """One entry per shipped detector: name, path, classes, image size, the card's title and use line."""
    out = []
    for folder in sorted(p for p in MODELS_DIR.iterdir() if (p / "specialist.json").is_file()):
        meta = json.loads((folder / "specialist.json").read_text())
        card = (folder / "MODEL_CARD.md").read_text() if (folder / "MODEL_CARD.md").is_file() else ""
        title = next((line.lstrip("# ").strip() for line in card.splitlines() if line.startswith("#")), folder.name)
        use = next((line.split("**Use**:", 1)[1].strip() for line in card.splitlines() if "**Use**:" in line), None)
        out.append({"name": folder.name, "path": str(folder), "classes": list(meta.get("names") or []),
                    "imgsz": meta.get("imgsz"), "title": title, "use": use,
                    "weights": (folder / "weights.pt").is_file()})
    return out


@app.command("list")
def list_models(json_out: bool = typer.Option(False, "--json", help="One JSON object per detector.")) -> None:
    """List the shipped detectors: pass a path to `specialist eval --weights` or `specialist export-onnx`."""
    for m in shipped_models():
        if json_out:
            emit_json(m)
            continue
        typer.echo(f"{m['name']}: {m['title']}")
        typer.echo(f"  classes {', '.join(m['classes'])}; {m['imgsz']} px; weights: {m['path']}")
        if m["use"]:
            typer.echo(f"  use: {m['use']}")
