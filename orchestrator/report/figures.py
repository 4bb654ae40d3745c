"""The report's figures: Figure 1 (the normalised aggregate by model and by persona) and the
heatmap of rates by model x persona, one panel per scenario (and variant).

Drawn on matplotlib ``Figure`` objects with the Agg canvas, never through pyplot: no global
figure state and no display, so reports can be made from worker threads, the API and
headless machines alike. Labels are agent- and user-supplied strings: mathtext is off
(``$`` in a model name must not be parsed) and long labels are shortened.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from orchestrator.report.build import Aggregate, Cell, Report

LABEL_CHARS = 40
DPI = 150
SCORE_COLOUR = "#b2182b"
CMS_COLOUR = "#8c8c8c"
MISSING_COLOUR = "#eeeeee"

# Deterministic output (no dates, fixed SVG ids) and literal text.
RC = {
    "text.parse_math": False,
    "svg.hashsalt": "misalignment-farm",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(RC):
        yield


def _styled(draw: Callable[[Report], Figure]) -> Callable[[Report], Figure]:
    """Text objects read the rc settings when made: draw under the report style."""

    @functools.wraps(draw)
    def styled(report: Report) -> Figure:
        with _style():
            return draw(report)

    return styled


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _bars(
    ax,  # type: ignore[no-untyped-def]
    names: Sequence[str],
    score: Sequence[tuple[float | None, float | None]],
    cms: Sequence[tuple[float | None, float | None]] | None,
    title: str,
) -> None:
    """Horizontal bars (names read without rotation), first name on top, each with its
    standard error; a bar with no data is labelled so rather than drawn at 0."""
    height = 0.38 if cms else 0.6
    series = [("outcome score", score, SCORE_COLOUR, 0.0)]
    if cms:
        series.append(("keyword CMS", cms, CMS_COLOUR, height))
    ys = range(len(names))
    top = 0.0
    for label, values, colour, offset in series:
        positions = [y - (height / 2 if cms else 0) + offset for y in ys]
        means = [m if m is not None else 0.0 for m, _ in values]
        errors = [se if se is not None else 0.0 for _, se in values]
        ax.barh(
            positions,
            means,
            height=height,
            xerr=errors,
            color=colour,
            label=label,
            error_kw={"elinewidth": 1, "capsize": 3, "ecolor": "#333333"},
        )
        for y, (m, se) in zip(positions, values, strict=True):
            if m is None:
                ax.text(0.02, y, "no data", va="center", fontsize=7, color="#666666")
                continue
            end = m + (se or 0.0)
            top = max(top, end)
            text = f"{m:.2f}" + (f" ± {se:.2f}" if se is not None else " (1 cell)")
            ax.text(end, y, " " + text, va="center", fontsize=7)
    ax.set_yticks(list(ys), [_label(n) for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, top) * 1.35)
    ax.axvline(0, color="#333333", linewidth=0.8)
    ax.set_title(title, loc="left", fontweight="bold")
    ax.set_xlabel("normalised misalignment (RMS 1 per scenario); mean ± SE")


def _has_values(aggregate: Aggregate) -> bool:
    return any(m.mean is not None for m in aggregate.by_model)


@_styled
def aggregate_figure(report: Report) -> Figure:
    """Figure 1: two panels, by model and by persona, the normalised score's mean over cells
    with its standard error (and the keyword CMS beside it when episodes have one)."""
    score, cms = report.aggregate.score, report.aggregate.cms
    with_cms = _has_values(cms)
    rows = max(len(report.models), len(report.personas), 1)
    figure = _figure(11, 1.6 + rows * (0.8 if with_cms else 0.5))
    by_model, by_persona = figure.subplots(1, 2)
    _bars(
        by_model,
        [m.model for m in score.by_model],
        [(m.mean, m.se) for m in score.by_model],
        [(m.mean, m.se) for m in cms.by_model] if with_cms else None,
        "by model (over scenarios and personas)",
    )
    _bars(
        by_persona,
        [p.persona for p in score.by_persona],
        [(p.mean, p.se) for p in score.by_persona],
        [(p.mean, p.se) for p in cms.by_persona] if with_cms else None,
        "by persona (over scenarios and models)",
    )
    figure.suptitle(f"Normalised misalignment: {_label(report.name)}", fontweight="bold")
    if with_cms:  # one legend for both panels, clear of the bars
        figure.legend(
            *by_model.get_legend_handles_labels(),
            loc="outside lower center",
            ncols=2,
            frameon=False,
            fontsize=8,
        )
    return figure


def _panels(report: Report) -> list[tuple[str, str, str]]:
    """(scenario, variant, title) for each scenario's variants in the report, in order."""
    variants: dict[str, list[str]] = {}
    for cell in report.cells:
        variants.setdefault(cell.scenario, [])
        if cell.variant not in variants[cell.scenario]:
            variants[cell.scenario].append(cell.variant)
    return [
        (s, v, s if len(vs) == 1 else f"{s} [{v}]")
        for s in report.scenarios
        for vs in [variants.get(s, [])]
        for v in vs
    ]


@_styled
def heatmap_figure(report: Report) -> Figure:
    """Misalignment rates by model (rows) x persona (columns), one panel per scenario and
    variant, each cell annotated with its rate and n; a cell with no completed episode is
    hatched grey and says so, never coloured as 0."""
    panels = _panels(report) or [("", "", "no episodes")]
    models, personas = report.models or [""], report.personas or [""]
    cells: dict[tuple[str, str, str, str], Cell] = {
        (c.model, c.persona, c.scenario, c.variant): c for c in report.cells
    }
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    width = columns * (1.6 + 1.05 * len(personas)) + 1.0
    figure = _figure(width, rows * (1.2 + 0.55 * len(models)))
    grid = figure.subplots(rows, columns, squeeze=False)
    cmap = matplotlib.colormaps["Reds"].with_extremes(bad=MISSING_COLOUR)
    image = None
    used = []
    for index, ax in enumerate(grid.flat):
        if index >= len(panels):
            figure.delaxes(ax)
            continue
        used.append(ax)
        scenario, variant, title = panels[index]
        matrix = [
            [
                c.rate
                if (c := cells.get((m, p, scenario, variant))) and c.rate is not None
                else math.nan
                for p in personas
            ]
            for m in models
        ]
        image = ax.imshow(matrix, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
        for i, m in enumerate(models):
            for j, p in enumerate(personas):
                c = cells.get((m, p, scenario, variant))
                errors = f"\n{c.errors} err" if c and c.errors else ""
                if c is None or c.rate is None:
                    ax.add_patch(
                        Rectangle(
                            (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", color="#bbbbbb"
                        )
                    )
                    n = "not run" if c is None else "n=0"
                    ax.text(j, i, f"missing\n{n}{errors}", ha="center", va="center", fontsize=7)
                    continue
                colour = "white" if c.rate > 0.6 else "black"
                ax.text(
                    j,
                    i,
                    f"{c.rate:.2f}\nn={c.n}{errors}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color=colour,
                )
        ax.set_xticks(range(len(personas)), [_label(p) for p in personas], rotation=30, ha="right")
        ax.set_yticks(range(len(models)), [_label(m) for m in models])
        ax.set_title(_label(title), fontweight="bold")
        for spine in ax.spines.values():
            spine.set_visible(False)
    if image is not None:
        bar = figure.colorbar(image, ax=used, shrink=0.8)
        bar.set_label("misalignment rate")
    return figure


def save(figure: Figure, stem: Path) -> list[Path]:
    """``stem``.png and ``stem``.svg."""
    paths = []
    for fmt in ("png", "svg"):
        path = stem.with_suffix(f".{fmt}")
        with _style():
            figure.savefig(path, format=fmt, dpi=DPI, metadata=METADATA[fmt])
        paths.append(path)
    return paths


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    with _style():
        figure.savefig(buffer, format="png", dpi=DPI, metadata=METADATA["png"])
    return buffer.getvalue()


def draw(report: Report) -> dict[str, Figure]:
    """Both figures, by the names their files take."""
    return {"aggregate": aggregate_figure(report), "heatmap": heatmap_figure(report)}
