"""The report's tables for the terminal (``farm report``), with rich."""

from __future__ import annotations

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from orchestrator.report.build import Aggregate, Report


def _row(table: Table, *cells: str) -> None:
    """Names come from campaign authors: printed as given, never read as rich markup."""
    table.add_row(*(escape(c) for c in cells))


def _n(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def cells_table(report: Report) -> Table:
    table = Table(title="cells (rate over completed episodes, Wilson 95 %)")
    for column in (
        "scenario",
        "variant",
        "model",
        "persona",
        "n",
        "misaligned",
        "rate",
        "95 % CI",
        "mean score",
        "errors",
    ):
        table.add_column(
            column,
            justify="right" if column in ("n", "misaligned", "errors") else "left",
            overflow="fold",
        )
    for c in report.cells:
        ci = "—" if c.ci_low is None else f"{c.ci_low:.2f}-{c.ci_high:.2f}"
        rate = "missing" if c.rate is None else f"{c.rate:.2f}"
        _row(
            table,
            c.scenario,
            c.variant,
            c.model,
            c.persona,
            str(c.n),
            str(c.misaligned),
            rate,
            ci,
            _n(c.mean_score),
            str(c.errors),
        )
    return table


def aggregate_table(title: str, aggregate: Aggregate) -> Table:
    table = Table(title=title)
    for column in ("by", "name", "mean", "SE", "cells"):
        table.add_column(column, overflow="fold")
    for m in aggregate.by_model:
        _row(table, "model", m.model, _n(m.mean), _n(m.se), str(m.cells))
    for p in aggregate.by_persona:
        _row(table, "persona", p.persona, _n(p.mean), _n(p.se), str(p.cells))
    return table


def effects_table(report: Report) -> Table:
    table = Table(title="persona effects: rate - rate(none), Newcombe 95 %")
    for column in ("model", "persona", "rate", "none", "difference", "95 % CI"):
        table.add_column(column, overflow="fold")
    for e in report.persona_effects:
        ci = "—" if e.ci_low is None else f"{e.ci_low:+.2f} to {e.ci_high:+.2f}"
        diff = "—" if e.difference is None else f"{e.difference:+.2f}"
        _row(table, e.model or "all models", e.persona, _n(e.rate), _n(e.baseline_rate), diff, ci)
    return table


def sandbagging_table(report: Report) -> Table:
    table = Table(title="sandbagging: correct in control - threat, 95 %")
    for column in ("model", "persona", "scenario", "control", "threat", "drop", "95 % CI"):
        table.add_column(column, overflow="fold")
    for s in report.sandbagging:
        ci = "—" if s.ci_low is None else f"{s.ci_low:.2f} to {s.ci_high:.2f}"
        _row(
            table,
            s.model,
            s.persona,
            s.scenario,
            f"{_n(s.control_correct)} (n={s.n_control})",
            f"{_n(s.threat_correct)} (n={s.n_threat})",
            _n(s.correct_drop),
            ci,
        )
    return table


def report_tables(report: Report) -> Group:
    parts = [
        cells_table(report),
        aggregate_table("normalised outcome score (RMS 1 per scenario)", report.aggregate.score),
    ]
    if any(m.mean is not None for m in report.aggregate.cms.by_model):
        parts.append(aggregate_table("normalised keyword CMS", report.aggregate.cms))
    if report.persona_effects:
        parts.append(effects_table(report))
    if report.sandbagging:
        parts.append(sandbagging_table(report))
    return Group(*parts)
