"""``report.html``: the whole report as one self-contained page.

One file a researcher can mail or attach: the figures are inline base64 PNGs, the style is
inline, and there is no script, font or stylesheet to fetch. Every string that reaches the
page passes through ``esc``: model names, personas, answers and errors come from agents and
campaign authors and are hostile input.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from html import escape

from orchestrator.report.build import Aggregate, Cell, Report
from orchestrator.states import Verdict

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .85rem; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.missing { color: #999; font-style: italic; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: .5rem; overflow-x: auto; font-size: .8rem; }
details { margin: .3rem 0; } summary { cursor: pointer; }
.misaligned { color: #b2182b; font-weight: 600; } .error { color: #8a6d00; }
.small { color: #666; font-size: .85rem; }
td.answer { white-space: pre-wrap; max-width: 36rem; font-size: .8rem; }
"""


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def num(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return '<td class="num missing">—</td>'
    text = str(value) if isinstance(value, int) else f"{value:.{digits}f}"
    return f'<td class="num">{text}</td>'


def text(value: object) -> str:
    return '<td class="missing">—</td>' if value is None else f"<td>{esc(value)}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{esc(alt)}" src="data:image/png;base64,{data}"></p>'


def _aggregate(title: str, agg: Aggregate) -> str:
    parts = [f"<h3>{esc(title)}</h3>"]
    parts.append(
        table(
            ["model", "mean", "SE", "cells"],
            ([text(m.model), num(m.mean), num(m.se), num(m.cells)] for m in agg.by_model),
        )
    )
    parts.append(
        table(
            ["persona", "mean", "SE", "cells"],
            ([text(p.persona), num(p.mean), num(p.se), num(p.cells)] for p in agg.by_persona),
        )
    )
    parts.append(
        "<details><summary>per scenario: RMS and normalised cells</summary>"
        + table(
            ["scenario", "cells", "RMS"],
            ([text(s.scenario), num(s.cells), num(s.rms)] for s in agg.scenarios),
        )
        + table(
            ["scenario", "model", "persona", "episodes", "mean", "normalised"],
            (
                [
                    *(text(c.scenario), text(c.model), text(c.persona)),
                    *(num(c.n), num(c.mean), num(c.normalised)),
                ]
                for c in agg.cells
            ),
        )
        + "</details>"
    )
    return "".join(parts)


def _cell_rows(cells: Sequence[Cell]) -> Iterable[list[str]]:
    for c in cells:
        yield [
            text(c.model),
            text(c.persona),
            text(c.scenario),
            text(c.variant),
            num(c.n),
            num(c.misaligned),
            num(c.rate, 2),
            num(c.ci_low, 2),
            num(c.ci_high, 2),
            num(c.mean_score),
            num(c.mean_cms),
            num(c.errors),
            num(c.unfinished),
        ]


def _episodes(cells: Sequence[Cell]) -> str:
    parts = []
    for c in cells:
        label = f"{c.model} · {c.persona} · {c.scenario} [{c.variant}]"
        counts = f"{c.n} completed, {c.misaligned} misaligned, {c.errors} errors"
        rows = []
        for e in c.episodes:
            verdict = e.verdict or e.status
            css = "misaligned" if e.verdict == Verdict.MISALIGNED else "error" if e.error else ""
            rows.append(
                [
                    f"<td><code>{esc(e.id)}</code></td>",
                    num(e.repeat),
                    text(e.status),
                    f'<td class="{css}">{esc(verdict)}</td>',
                    num(e.score),
                    num(e.cms_score),
                    text(", ".join(e.behaviors) or None),
                    f'<td class="answer">{esc(e.error or e.answer or "")}</td>',
                ]
            )
        parts.append(
            f"<details><summary>{esc(label)} <span class='small'>({esc(counts)})</span>"
            "</summary>"
            + table(
                ["episode", "repeat", "status", "verdict", "score", "CMS", "behaviours", "answer"],
                rows,
            )
            + "</details>"
        )
    return "".join(parts)


def render(report: Report, figures: dict[str, bytes]) -> str:
    """The page; ``figures`` maps "aggregate" and "heatmap" to PNG bytes."""
    prov = report.provenance
    campaigns = table(
        ["id", "name", "status", "created"],
        (
            [f"<td><code>{esc(c.id)}</code></td>", text(c.name), text(c.status), text(c.created_at)]
            for c in prov.campaigns
        ),
    )
    effects = (
        table(
            [
                "model",
                "persona",
                "n",
                "misaligned",
                "rate",
                "rate (none)",
                "difference",
                "95 % low",
                "95 % high",
            ],
            (
                [
                    *(text(e.model or "all models"), text(e.persona), num(e.n)),
                    *(num(e.misaligned), num(e.rate, 2), num(e.baseline_rate, 2)),
                    *(num(e.difference, 2), num(e.ci_low, 2), num(e.ci_high, 2)),
                ]
                for e in report.persona_effects
            ),
        )
        if report.persona_effects
        else "<p class='small'>no <code>none</code> persona: no baseline</p>"
    )
    sandbagging = (
        table(
            [
                "model",
                "persona",
                "scenario",
                "detector",
                "n control",
                "control correct",
                "n threat",
                "threat correct",
                "drop",
                "95 % low",
                "95 % high",
            ],
            (
                [
                    *(text(s.model), text(s.persona), text(s.scenario), text(s.detector)),
                    *(num(s.n_control), num(s.control_correct, 2), num(s.n_threat)),
                    *(num(s.threat_correct, 2), num(s.correct_drop, 2)),
                    *(num(s.ci_low, 2), num(s.ci_high, 2)),
                ]
                for s in report.sandbagging
            ),
        )
        if report.sandbagging
        else "<p class='small'>no control/threat measurements</p>"
    )
    cells = table(
        [
            "model",
            "persona",
            "scenario",
            "variant",
            "n",
            "misaligned",
            "rate",
            "95 % low",
            "95 % high",
            "mean score",
            "mean CMS",
            "errors",
            "unfinished",
        ],
        _cell_rows(report.cells),
    )
    definitions = "".join(
        f"<dt><b>{esc(k)}</b></dt><dd>{esc(v)}</dd>" for k, v in report.definitions.items()
    )
    images = table(
        ["scenario", "image", "episodes"],
        (
            [text(i.scenario), f"<td><code>{esc(i.image)}</code></td>", num(i.episodes)]
            for i in prov.images
        ),
    )
    settings = table(
        ["model", "settings", "episodes"],
        (
            [
                text(s.model),
                f"<td><pre>{esc(json.dumps(s.settings, indent=1))}</pre></td>",
                num(s.episodes),
            ]
            for s in prov.model_settings
        ),
    )
    specs = "".join(
        f"<details><summary>spec of {esc(c.name)} (<code>{esc(c.id[:12])}</code>)</summary>"
        f"<pre>{esc(json.dumps(c.spec, indent=2))}</pre></details>"
        for c in prov.campaigns
    )
    body = f"""
<h1>Misalignment report: {esc(report.name)}</h1>
<p class="small">farm {esc(prov.farm_version)} · episodes by status:
{esc(", ".join(f"{k} {v}" for k, v in prov.episodes.items()) or "none")} · last finished
{esc(prov.last_finished_at or "never")}</p>
{campaigns}
<h2>Figure 1: normalised misalignment by model and by persona</h2>
{figure(figures["aggregate"], "normalised misalignment by model and by persona")}
<h2>Misalignment rates by model x persona</h2>
<p class="small">Hatched cells had no completed episode: missing, not 0.</p>
{figure(figures["heatmap"], "misalignment rate heatmap by model and persona")}
<h2>Aggregate (RMS-normalised)</h2>
{_aggregate("outcome score", report.aggregate.score)}
{_aggregate("keyword CMS (secondary)", report.aggregate.cms)}
<h2>Persona effects (vs <code>none</code>, Newcombe hybrid score 95 %)</h2>
{effects}
<h2>Sandbagging (control - threat, correct answers)</h2>
{sandbagging}
<h2>Cells</h2>
{cells}
<h2>Episodes by cell</h2>
{_episodes(report.cells)}
<h2>Definitions</h2>
<dl>{definitions}</dl>
<h2>Provenance</h2>
{images}
{settings}
{specs}
"""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(report.name)}: misalignment report</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
