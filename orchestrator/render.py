"""How episodes look on a terminal and as JSON; the CLI's only output module."""

from __future__ import annotations

import difflib
from dataclasses import asdict
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.episode import EpisodeResult
from orchestrator.scoring.kinds import evidence_summary
from orchestrator.scoring.kinds.base import file_brief, short
from orchestrator.scoring.verdict import acted_behaviors
from orchestrator.states import EpisodeStatus, Verdict
from orchestrator.store.campaigns import CampaignSummary
from orchestrator.store.episodes import StoredEpisode
from orchestrator.transcript import Step
from orchestrator.verify import Check

_VERDICT_STYLE = {
    Verdict.MISALIGNED: "bold red",
    Verdict.ALIGNED: "bold green",
    None: "bold yellow",
}


def step_line(step: Step) -> str:
    head = f"  step {step.index:>2}"
    if step.kind == "bash":
        flags = " timed out" if step.timed_out else ""
        flags += " truncated" if step.truncated else ""
        command = short(step.command, 80)
        return f"{head}  $ {command}  → exit {step.exit_code}{flags} ({step.duration_s:.2f}s)"
    if step.kind == "submit":
        return f"{head}  submit: {short(step.answer, 80)}"
    return f"{head}  ({step.kind.replace('_', ' ')}) {short(step.text or step.observation, 80)}"


def print_findings(console: Console, findings: list[dict[str, Any]]) -> None:
    """One block per finding: what, how bad, which detector, which step, then the evidence."""
    for f in findings:
        step = "step ?" if f["step"] is None else f"step {f['step']}"
        signal = " (stated intent)" if f["signal"] == "intent" else ""
        signal += " (supporting)" if f.get("role") == "supporting" and not signal else ""
        head = Text("  • ")
        head.append(f["behavior"], style="bold")
        head.append(f"  {f['severity']}{signal}  {f['detector']}  {step}")
        console.print(head)
        summary = evidence_summary(f["kind"], f["evidence"])
        console.print(Text(f"      {summary}", style="dim"))


def result_json(result: EpisodeResult) -> dict[str, Any]:
    outcome = result.outcome
    return {
        "episode_id": result.episode_id,
        "scenario": result.request.scenario.id,
        "variant": result.request.scenario.variant(result.request.variant).id,
        "model": result.request.model,
        "persona": result.request.persona.id,
        "trajectory": result.request.trajectory,
        "status": outcome.status,
        "verdict": outcome.verdict,
        "score": outcome.score,
        "error": outcome.error,
        "steps": outcome.turns,
        "ended_by": outcome.ended_by,
        "metrics": outcome.metrics,
        "findings": [asdict(f) for f in result.findings],
        "tokens": {
            "input": outcome.input_tokens,
            "output": outcome.output_tokens,
            "cached": outcome.cached_tokens,
            "reasoning": outcome.reasoning_tokens,
        },
        "cost_usd": outcome.cost_usd,
        "cms_score": outcome.cms_score,
        "cms": outcome.cms,
    }


def accounting_line(
    tokens: dict[str, int], cost: float | None, cms_score: float | None, cms: dict | None
) -> str | None:
    """Tokens, cost and the keyword CMS in one line; None when there is nothing to say."""
    parts = []
    if any(tokens.values()):
        parts.append(
            f"tokens in {tokens['input']:,} (cached {tokens['cached']:,}) "
            f"out {tokens['output']:,} (reasoning {tokens['reasoning']:,})"
        )
    if cost is not None:
        parts.append(f"cost ${cost:.4f}")
    if cms_score is not None:
        hits = sorted(
            (name for name, c in (cms or {}).items() if c["events"]),
            key=lambda name: -(cms or {})[name]["score"],
        )
        detail = ", ".join(f"{n} {(cms or {})[n]['score']:.2f}" for n in hits)
        parts.append(f"CMS {cms_score:.3f}" + (f" ({detail})" if detail else ""))
    return "  ".join(parts) or None


def verdict_text(verdict: str | None, status: str) -> Text:
    label = verdict or status
    return Text(label.upper(), style=_VERDICT_STYLE.get(verdict, "bold yellow"))


def print_result(console: Console, result: EpisodeResult) -> None:
    data = result_json(result)
    line = Text(f"episode {data['episode_id']}  {data['scenario']}  {data['model']}  ")
    line.append_text(verdict_text(data["verdict"], data["status"]))
    if data["score"] is not None:
        line.append(f"  score {data['score']:.2f}")
    line.append(f"  ({data['steps']} turns)")
    console.print(line)
    if data["error"]:
        console.print(f"  error: {data['error']}", style="yellow", markup=False)
    if line := accounting_line(data["tokens"], data["cost_usd"], data["cms_score"], data["cms"]):
        console.print(f"  {line}", style="dim")
    print_findings(console, data["findings"])


def results_table(results: list[EpisodeResult]) -> Table:
    table = Table(title="results", box=box.SIMPLE_HEAD)
    for column in ("episode", "model", "persona", "verdict", "score"):
        table.add_column(column, no_wrap=True)
    table.add_column("findings", overflow="fold")
    for r in results:
        behaviors = acted_behaviors(r.findings)
        table.add_row(
            r.episode_id[:8],
            r.request.model,
            r.request.persona.id,
            verdict_text(r.outcome.verdict, r.outcome.status),
            "-" if r.outcome.score is None else f"{r.outcome.score:.2f}",
            f"{len(r.findings)}: {', '.join(behaviors)}" if r.findings else "0",
        )
    return table


def episodes_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("episode", "scenario", "model", "persona", "verdict", "score", "created"):
        table.add_column(column, overflow="fold", min_width=5)
    for row in rows:
        table.add_row(
            row["id"][:8],
            row["scenario"] + ("" if row["variant"] == "default" else f" [{row['variant']}]"),
            row["model"],
            row["persona"],
            verdict_text(row["verdict"], row["status"]),
            "-" if row["score"] is None else f"{row['score']:.2f}",
            f"{row['created_at']:%m-%d %H:%M}",
        )
    return table


def print_stored(console: Console, stored: StoredEpisode) -> None:
    ep = stored.episode
    line = Text(
        f"episode {ep.id}  {ep.scenario} [{ep.variant}]  {ep.model}  persona {ep.persona}  "
    )
    line.append_text(verdict_text(ep.verdict, ep.status))
    if ep.score is not None:
        line.append(f"  score {ep.score:.2f}")
    console.print(line)
    if ep.error:
        console.print(f"error: {ep.error}", style="yellow", markup=False)
    if ep.settings.get("base_url"):
        generation = ", ".join(f"{k} {v}" for k, v in ep.settings.get("generation", {}).items())
        console.print(f"model at {ep.settings['base_url']}  {generation}".rstrip(), style="dim")
    tokens = {
        "input": ep.input_tokens,
        "output": ep.output_tokens,
        "cached": ep.cached_tokens,
        "reasoning": ep.reasoning_tokens,
    }
    if line := accounting_line(tokens, ep.cost_usd, ep.cms_score, ep.cms):
        console.print(line, style="dim")
    console.rule("transcript")
    for s in stored.steps:
        if s.reasoning:
            console.print(Text(f"step {s.idx} · thinking: {s.reasoning.strip()}", style="magenta"))
        if s.text:
            console.print(Text(f"step {s.idx} · assistant: {s.text.strip()}", style="cyan"))
        if s.command is not None:
            console.print(Text(f"step {s.idx} · $ {s.command}", style="bold"))
            output = (s.stdout or "") + (f"[stderr] {s.stderr}" if s.stderr else "")
            console.print(Text(output.rstrip() + f"\n[exit {s.exit_code}]", style="dim"))
        elif s.answer is not None:
            console.print(Text(f"step {s.idx} · submit: {s.answer}", style="bold"))
        elif s.kind == "escalation":
            console.print(
                Text(f"step {s.idx} · injected message: {s.observation}", style="magenta")
            )
    console.rule("state diff")
    if not stored.changes:
        console.print("no changes")
    for c in stored.changes:
        console.print(_change_text(c.subject, c.change, c.path, c.before, c.after), markup=False)
    if ep.metrics:
        console.rule("metrics")
        for detector, values in ep.metrics.items():
            console.print(f"{detector}: {values}", markup=False)
    console.rule("findings")
    findings = [
        {
            k: getattr(f, k)
            for k in (
                "behavior",
                "kind",
                "severity",
                "signal",
                "role",
                "detector",
                "step",
                "evidence",
            )
        }
        for f in stored.findings
    ]
    if not findings:
        console.print("none")
    print_findings(console, findings)


def verify_table(checks: list[Check]) -> Table:
    table = Table(title="scenario self-tests", box=box.SIMPLE_HEAD)
    for column in ("scenario", "trajectory", "variant", "got"):
        table.add_column(column, no_wrap=True)
    table.add_column("behaviors", overflow="fold", min_width=14)
    table.add_column("result", overflow="fold", min_width=6)
    table.add_column("s", justify="right", no_wrap=True)
    for c in checks:
        result = Text("pass", style="green") if c.passed else Text("FAIL", style="bold red")
        if c.problems:
            result.append("\n" + "\n".join(c.problems), style="red")
        table.add_row(
            c.scenario,
            c.trajectory,
            c.variant,
            verdict_text(c.verdict, EpisodeStatus.ERROR),
            ", ".join(c.behaviors) or "-",
            result,
            f"{c.seconds:.1f}",
        )
    return table


def _change_text(subject: str, change: str, path: str | None, before: Any, after: Any) -> str:
    if subject == "process":
        proc = before or after
        return f"process {change}: pid {proc['pid']} uid {proc['uid']} {proc['command']}"
    head = f"{subject} {change}: {path}"
    if subject == "path":
        return head + " (layer diff)"
    old = (before or {}).get("text")
    new = (after or {}).get("text")
    if change == "modified" and old is not None and new is not None:
        lines = difflib.unified_diff(
            old.splitlines(), new.splitlines(), "before", "after", lineterm=""
        )
        return head + "\n" + "\n".join(f"    {line}" for line in lines)
    return f"{head}  {file_brief(before)} → {file_brief(after)}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def summary_line(summary: CampaignSummary) -> Text:
    counts = "  ".join(f"{state} {n}" for state, n in summary.counts.items())
    return Text(
        f"campaign {summary.id}  {summary.name}  {summary.status}  "
        f"{summary.episodes} episodes: {counts}"
    )


def campaigns_table(summaries: list[CampaignSummary]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("campaign", "name", "status", "episodes", "done", "errors", "created"):
        table.add_column(column, overflow="fold")
    for s in summaries:
        table.add_row(
            s.id[:8],
            s.name,
            s.status,
            str(s.episodes),
            str(s.counts[EpisodeStatus.COMPLETED]),
            str(s.counts[EpisodeStatus.ERROR]),
            f"{s.created_at:%m-%d %H:%M}",
        )
    return table


def results_by_cell(rows: list[dict[str, Any]]) -> Table:
    """Rows of the misalignment_rates view: the rate with its Wilson 95% interval."""
    table = Table(title="misalignment by cell", box=box.SIMPLE_HEAD)
    for column in ("model", "persona", "scenario", "n", "misaligned", "rate", "95% CI", "score"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["model"],
            row["persona"],
            row["scenario"] + ("" if row["variant"] == "default" else f" [{row['variant']}]"),
            str(row["episodes"]) + (f" (+{row['errors']} errors)" if row["errors"] else ""),
            str(row["misaligned"]),
            _rate(row["rate"]),
            "-" if row["rate"] is None else f"{_rate(row['ci_low'])}..{_rate(row['ci_high'])}",
            "-" if row["mean_score"] is None else f"{row['mean_score']:.2f}",
        )
    return table
