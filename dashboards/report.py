"""One self-contained HTML report for a study: plotly.js embedded, no network needed, ever.

Example:
    >>> result = write_report(study, "runs/demo/report.html", run_dir="runs/demo")
    >>> result.path, len(result.figures)
    (PosixPath('runs/demo/report.html'), 14)
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import plotly.io as pio
from plotly.offline import get_plotlyjs

from automl_cnn.atomic import write_text_atomic
from automl_cnn.record import read_study_info, records
from automl_cnn.results import study_counts
from automl_cnn.rundir import RunDir

from .arch_data import top_architectures
from .data import trial_rows
from .front_section import front_section
from .ladder import ladder_section
from .sections import (
    Figure,
    Html,
    Notice,
    Section,
    architecture_sections,
    network_section,
    search_sections,
    snapshot_notice,
)

log = logging.getLogger(__name__)
PLOT_CONFIG = {"displaylogo": False, "responsive": True,
               "toImageButtonOptions": {"format": "png", "scale": 2}}


@dataclass(frozen=True)
class ReportResult:
    path: Path
    figures: dict[str, object]  # name -> plotly Figure, in page order
    pngs: list[Path] = field(default_factory=list)
    png_notice: str | None = None  # why no PNGs were written, when they were asked for


def build_sections(study: optuna.Study, *, run_dir: Path | None = None, top_k: int = 3,
                   importance: str = "mdi", now: datetime | None = None,
                   data: Any = None) -> tuple[list[Section], Notice | None]:
    """Every section of the report, and a notice for the top of the page (or None).
    ``data``: the search's dataset when the caller holds it (else loaded for the network
    section)."""
    now = now or datetime.now()
    recs = records(study)
    rows = trial_rows(recs)
    top = top_architectures(recs, top_k)
    info = read_study_info(study)
    sections = search_sections(rows, now=now, importance=importance)
    sections += architecture_sections(top, info.dataset)
    sections.append(network_section(top, Path(run_dir) if run_dir else None, info.config,
                                    data))
    sections += ladder_section(study, Path(run_dir) if run_dir else None)
    sections.append(front_section(recs, info.config))
    return sections, snapshot_notice(study, rows, now)


def write_report(study: optuna.Study, out_path: str | Path, *, run_dir: str | Path | None = None,
                 top_k: int = 3, png: bool = False, importance: str = "mdi",
                 now: datetime | None = None, data: Any = None) -> ReportResult:
    """Write the study's report to ``out_path`` (one offline HTML file).

    ``run_dir`` (the search's output folder) adds the best network's filters and activations;
    ``png=True`` also writes each figure as ``<out stem>_png/<name>.png`` when a Chrome or
    Chromium is installed (otherwise ``png_notice`` says why not).
    """
    out = Path(out_path)
    sections, notice = build_sections(study, run_dir=run_dir, top_k=top_k,
                                      importance=importance, now=now, data=data)
    figures = {item.name: item.figure for s in sections for item in s.items
               if isinstance(item, Figure)}
    out.parent.mkdir(parents=True, exist_ok=True)
    # a browser never opens a half-written report, and workers sharing the run directory
    # never write into each other's temp file
    write_text_atomic(out, render_html(study, sections, notice, now=now or datetime.now()))
    pngs, png_notice = (export_pngs(figures, out.with_name(out.stem + "_png")) if png
                        else ([], None))
    return ReportResult(out, figures, pngs, png_notice)


def export_pngs(figures: dict[str, object], folder: Path) -> tuple[list[Path], str | None]:
    """Each figure as ``folder/<name>.png`` through Kaleido; ([], reason) without a browser."""
    try:
        from choreographer.browsers.chromium import Chromium
    except ImportError:
        return [], "PNG export skipped: Kaleido is not installed (pip install kaleido)."
    browser = Chromium.find_browser(skip_local=False)  # looks only; never downloads
    if browser is None or not Path(browser).is_file():
        return [], ("PNG export skipped: no Chrome or Chromium found (install one, or set "
                    "BROWSER_PATH to its executable).")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png" for name in figures]
    try:
        pio.write_images(list(figures.values()), paths, width=1100)
    except Exception as exc:  # a browser that will not start must not lose the report
        log.warning("PNG export failed: %s", exc)
        return [], f"PNG export failed: {type(exc).__name__}: {exc}"
    return paths, None


def _item_html(item: Figure | Notice | Html) -> str:
    if isinstance(item, Notice):
        return f"<p class='notice'>{html.escape(item.text)}</p>"
    if isinstance(item, Html):
        return item.markup
    plot = pio.to_html(item.figure, full_html=False, include_plotlyjs=False,
                       div_id=f"fig-{item.name}", config=PLOT_CONFIG, validate=False)
    caption = f"<p class='caption'>{html.escape(item.caption)}</p>" if item.caption else ""
    return f"<figure class='plot' data-name='{item.name}'>{plot}{caption}</figure>"


def _header(study: optuna.Study, now: datetime) -> str:
    counts = study_counts(study)
    parts = ", ".join(f"{n} {o}" for o, n in counts.items() if n) or "no trials"
    return (f"<h1>Architecture search: {html.escape(study.study_name)}</h1>"
            f"<p class='meta'>{sum(counts.values())} trials ({parts}) · report built "
            f"{now:%Y-%m-%d %H:%M}</p>")


def render_html(study: optuna.Study, sections: list[Section], notice: Notice | None, *,
                now: datetime) -> str:
    body = [_header(study, now)]
    if notice:
        body.append(_item_html(notice))
    nav = "".join(f"<a href='#s{i}'>{html.escape(s.title)}</a>" for i, s in enumerate(sections))
    body.append(f"<nav>{nav}</nav>")
    for i, s in enumerate(sections):
        body.append(f"<section id='s{i}'><h2>{html.escape(s.title)}</h2>")
        if s.intro:
            body.append(f"<p class='intro'>{s.intro}</p>")
        body.extend(_item_html(item) for item in s.items)
        body.append("</section>")
    return PAGE.format(title=html.escape(study.study_name), plotlyjs=get_plotlyjs(),
                       body="\n".join(body))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · automl-cnn report</title>
<style>
body {{ font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1200px; margin: 0 auto; padding: 16px 24px 64px; }}
h1 {{ font-size: 1.6em; margin-bottom: 0.2em; }}
h2 {{ border-bottom: 2px solid #2a9d8f; padding-bottom: 4px; margin-top: 1.8em; }}
nav a {{ margin-right: 14px; color: #264653; }}
.meta, .caption {{ color: #555; }}
.caption {{ font-size: 0.9em; margin: 0 0 0 8px; }}
.notice {{ background: #fff3cd; border-left: 4px solid #e9c46a; padding: 8px 12px; }}
figure.plot {{ margin: 12px 0; }}
table {{ border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
th {{ background: #f1f5f4; }}
td:nth-child(7) {{ text-align: left; font-family: ui-monospace, monospace; }}
table.card td:nth-child(2) {{ font-family: ui-monospace, monospace; }}
</style>
<script type="text/javascript">{plotlyjs}</script>
</head><body>
{body}
</body></html>
"""


def report_beside_run(study: optuna.Study, run_dir: Path, data: Any = None) -> Path | None:
    """``run_dir/report.html`` at the end of a search (``data``: its dataset, already loaded).
    Drawing a report must never lose the search it reports on, so any failure is logged as one
    warning and returns None."""
    out = RunDir(run_dir).report
    try:
        return write_report(study, out, run_dir=run_dir, data=data).path
    except Exception as exc:  # noqa: BLE001 - the search's results matter more than its report
        log.warning("could not write the report %s: %s: %s", out, type(exc).__name__, exc)
        return None
