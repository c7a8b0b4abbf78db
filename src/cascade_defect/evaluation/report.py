"""The evaluation report: `write_report` writes results.json, report.html and report.md.

The renderers live beside it: `report_html` (one self-contained page, charts from `report_svg`),
`report_md` (its Markdown twin) and `report_format` (numbers and text both use). The oracle that
produced Layer 3's answers is named in a banner at the top and again in every section whose
numbers depend on it.

Licence note: thumbnails are copies of the evaluated images. Write reports that include them
outside the repository; `include_images=False` leaves them out (e.g. for docs/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .evaluate import Evaluation
from .report_format import fmt, fmt_ci, fmt_p
from .report_html import render_html
from .report_md import render_markdown
from ..atomic import atomic_write
from .results_io import write_json_atomic

__all__ = ["fmt", "fmt_ci", "fmt_p", "render_html", "render_markdown", "write_report"]


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def write_report(ev: Evaluation | Mapping[str, Any], out_dir: str | Path, *, include_images: bool = True
                 ) -> dict[str, Path]:
    """Write results.json, report.md and report.html into `out_dir`; returns their paths.

    Each file is written through a temporary file and a rename. Given only a results dict,
    the page has no example thumbnails.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = ev.results if isinstance(ev, Evaluation) else ev
    paths = {"json": out / "results.json", "markdown": out / "report.md", "html": out / "report.html"}
    write_json_atomic(res, paths["json"])
    _write_text(paths["markdown"], render_markdown(res))
    _write_text(paths["html"], render_html(ev, include_images=include_images))
    return paths
