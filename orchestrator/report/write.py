"""Writing a report's files into its directory: report.json, cells.csv, the figures as PNG
and SVG, and report.html."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from orchestrator.report import figures, html
from orchestrator.report.build import Report

CELL_COLUMNS = (
    "model",
    "persona",
    "scenario",
    "variant",
    "n",
    "misaligned",
    "rate",
    "ci_low",
    "ci_high",
    "mean_score",
    "mean_cms",
    "errors",
    "unfinished",
)


def default_dir(report: Report, root: Path = Path("reports")) -> Path:
    """``reports/<name>/``, the name made safe for a path (a campaign name is free text)."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "-", report.name).strip("-.") or "report"
    return root / safe[:120]


def report_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"


def write_cells_csv(report: Report, path: Path) -> None:
    """One row per cell; empty fields where a cell has no completed episode (missing, not
    0)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CELL_COLUMNS)
        for cell in report.cells:
            row = [getattr(cell, column) for column in CELL_COLUMNS]
            writer.writerow("" if value is None else value for value in row)


def write_report(report: Report, directory: Path) -> list[Path]:
    """Every file of the report, in ``directory`` (made if need be); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "report.json", directory / "cells.csv"]
    written[0].write_text(report_json(report), encoding="utf-8")
    write_cells_csv(report, written[1])
    drawn = figures.draw(report)
    pngs = {}
    for name, figure in drawn.items():
        written += figures.save(figure, directory / name)
        pngs[name] = (directory / f"{name}.png").read_bytes()
    page = directory / "report.html"
    page.write_text(html.render(report, pngs), encoding="utf-8")
    written.append(page)
    return written
