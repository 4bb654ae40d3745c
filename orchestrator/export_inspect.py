"""A campaign as Inspect eval logs (``farm export inspect``), for Inspect's log viewer.

One log per campaign and model, named the way Inspect names its own
(``<created>_<task>_<id>.eval``, ``inspect_ai._util.log_layout``), so ``inspect view``
lists and opens them. Every finished episode is a sample:

- ``id`` is ``scenario/variant/persona`` (the cell; the model is the log's), and ``epoch`` is
  the episode's repeat + 1: Inspect's epochs count from 1, the farm's repeats from 0;
- ``input`` is the task the agent was given (the scenario's task and its variant's suffix);
- ``messages`` is the transcript: the persona's system prompt, the task, each assistant turn
  with its words, reasoning and tool calls (``bash``, ``submit``), each tool result as the
  model saw it, and the loop's nudges and the scenario's escalations as user messages;
- ``scores`` are ``verdict`` (``aligned`` / ``misaligned``), ``score`` and ``cms`` (the keyword
  score); an episode that failed for infrastructure reasons has none, and its error instead;
- ``metadata`` holds the cell, the findings (each with the ``step`` it cites and that step's
  ``turn``), the state diff, tokens, cost and how it ended.

Everything is built from Inspect's own types and written by its own writer, so the format
is Inspect's by construction. ``inspect-ai`` is an optional extra (``.[inspect]``); this
module imports it only when asked to export.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Engine, select

from orchestrator.states import CampaignStatus, EpisodeStatus, Verdict
from orchestrator.store.db import session_factory
from orchestrator.store.episodes import FINISHED, EpisodeStore, StoredEpisode
from orchestrator.store.models import CampaignRecord, EpisodeRecord, StepRecord

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog, EvalSample
    from inspect_ai.model import ChatMessage

    from orchestrator.scenarios.loader import Scenario
    from orchestrator.scenarios.spec import PersonaSpec

Format = Literal["eval", "json"]
INSTALL_HINT = "pip install 'misalignment-farm[inspect]' (or: pip install inspect-ai)"


class InspectMissing(RuntimeError):
    """The ``inspect`` extra is not installed."""


def require_inspect() -> None:
    try:
        import inspect_ai.log  # noqa: F401
    except ImportError:
        raise InspectMissing(
            f"exporting Inspect logs needs the inspect extra: {INSTALL_HINT}"
        ) from None


@dataclass(frozen=True)
class Catalogue:
    """What the store does not keep and the export shows: each scenario's task text and each
    persona's system prompt, from the catalogue the farm runs with."""

    scenarios: Mapping[str, Scenario]
    personas: Mapping[str, PersonaSpec]

    def task(self, scenario_id: str, variant_id: str) -> str:
        scenario = self.scenarios.get(scenario_id)
        if scenario is None:
            return f"(scenario {scenario_id!r} is not in this catalogue: its task is not known)"
        spec = scenario.spec
        try:
            variant = scenario.variant(variant_id)
        except Exception:  # a variant since removed: the task without its suffix
            return spec.task
        # as orchestrator/episode.py builds it
        return (
            f"{spec.task.rstrip()}\n\n{variant.task_suffix}" if variant.task_suffix else spec.task
        )

    def system_prompt(self, persona_id: str) -> str:
        persona = self.personas.get(persona_id)
        if persona is None:
            return f"(persona {persona_id!r} is not in this catalogue: its prompt is not known)"
        return persona.system_prompt


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were written in UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    moment = _aware(moment)
    return None if moment is None else moment.isoformat(timespec="seconds")


def _clean(component: str) -> str:
    """A file-name component as Inspect cleans one (inspect_ai._util.file)."""
    return re.sub(r"[_/:+]", "-", component)


def log_file_name(task: str, task_id: str, created: str, model: str, fmt: Format) -> str:
    """Inspect's own name for a log: ``<created>_<task>_<id>.<fmt>``."""
    try:
        from inspect_ai._util.log_layout import eval_log_name

        name = eval_log_name(task=task, task_id=task_id, created=created, model=model)
    except ImportError:  # an Inspect without that module: the same rule, by hand
        name = f"{_clean(created)}_{_clean(task)}_{_clean(task_id)}"
    return f"{name}.{fmt}"


# -- the transcript --------------------------------------------------------------------------

TOOL_ARGUMENT = {"bash": "command", "submit": "answer"}


def _call_id(step: StepRecord) -> str:
    return f"call_{step.idx}"


def _assistant(turn: list[StepRecord], model: str) -> ChatMessage:
    from inspect_ai.model import ChatMessageAssistant, ContentReasoning, ContentText
    from inspect_ai.tool import ToolCall

    first = turn[0]
    text = first.text or ""
    content: str | list = text
    if first.reasoning:
        content = [ContentReasoning(reasoning=first.reasoning), ContentText(text=text)]
    calls = []
    for step in turn:
        if step.kind == "bash":
            calls.append(ToolCall(_call_id(step), "bash", {"command": step.command or ""}))
        elif step.kind == "submit":
            calls.append(ToolCall(_call_id(step), "submit", {"answer": step.answer or ""}))
        elif step.kind == "invalid_tool_call":
            # the store keeps what the loop answered, not the malformed call itself
            calls.append(
                ToolCall(_call_id(step), "invalid", {}, parse_error=step.observation or "")
            )
    return ChatMessageAssistant(
        content=content, tool_calls=calls or None, model=model, source="generate"
    )


def _tool_result(step: StepRecord) -> ChatMessage:
    from inspect_ai.model import ChatMessageTool
    from inspect_ai.tool import ToolCallError

    function = {"bash": "bash", "submit": "submit"}.get(step.kind, "invalid")
    metadata: dict[str, Any] = {"step": step.idx}
    if step.kind == "bash":
        metadata |= {
            "exit_code": step.exit_code,
            "timed_out": step.timed_out,
            "truncated": step.truncated,
            "duration_s": step.duration_s,
        }
    error = None
    if step.kind == "invalid_tool_call":
        error = ToolCallError("parsing", step.observation or "")
    return ChatMessageTool(
        content=step.observation or "",
        tool_call_id=_call_id(step),
        function=function,
        error=error,
        metadata=metadata,
    )


def transcript_messages(
    system_prompt: str, task: str, steps: Sequence[StepRecord], model: str
) -> list[ChatMessage]:
    """The conversation as the model had it, rebuilt from the steps (whole tool outputs, as
    the store keeps them, where a context policy may have elided old ones in what was sent)."""
    from inspect_ai.model import ChatMessageSystem, ChatMessageUser

    messages: list[ChatMessage] = [ChatMessageSystem(content=system_prompt)]
    messages.append(ChatMessageUser(content=task))
    i = 0
    while i < len(steps):
        step = steps[i]
        if step.kind == "escalation":
            messages.append(
                ChatMessageUser(
                    content=step.observation or "",
                    metadata={"step": step.idx, "farm": "escalation"},
                )
            )
            i += 1
            continue
        turn = [step]
        while (
            i + len(turn) < len(steps)
            and steps[i + len(turn)].turn == step.turn
            and steps[i + len(turn)].kind not in ("escalation", "no_tool_call")
            and step.kind != "no_tool_call"
        ):
            turn.append(steps[i + len(turn)])
        i += len(turn)
        messages.append(_assistant(turn, model))
        if step.kind == "no_tool_call":
            nudge = step.observation or ""
            messages.append(
                ChatMessageUser(content=nudge, metadata={"step": step.idx, "farm": "nudge"})
            )
            continue
        messages += [_tool_result(s) for s in turn]
    return messages


# -- samples and logs ------------------------------------------------------------------------


def _usage(episode: EpisodeRecord):  # type: ignore[no-untyped-def]
    from inspect_ai.model import ModelUsage

    return ModelUsage(
        input_tokens=episode.input_tokens,
        output_tokens=episode.output_tokens,
        total_tokens=episode.input_tokens + episode.output_tokens,
        input_tokens_cache_read=episode.cached_tokens or None,
        reasoning_tokens=episode.reasoning_tokens or None,
        total_cost=episode.cost_usd,
    )


def sample_id(episode: EpisodeRecord) -> str:
    return f"{episode.scenario}/{episode.variant}/{episode.persona}"


def episode_sample(stored: StoredEpisode, catalogue: Catalogue) -> EvalSample:
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatCompletionChoice, ChatMessageAssistant, ModelOutput
    from inspect_ai.scorer import Score

    episode = stored.episode
    task = catalogue.task(episode.scenario, episode.variant)
    messages = transcript_messages(
        catalogue.system_prompt(episode.persona), task, stored.steps, episode.model
    )
    turn_of = {s.idx: s.turn for s in stored.steps}
    findings = [
        {
            "behavior": f.behavior,
            "severity": f.severity,
            "detector": f.detector,
            "kind": f.kind,
            "signal": f.signal,
            "role": f.role,
            "description": f.description,
            "step": f.step,
            "turn": turn_of.get(f.step) if f.step is not None else None,
            "evidence": f.evidence,
            "score": f.score,
        }
        for f in stored.findings
    ]
    state_diff = [
        {
            "subject": c.subject,
            "change": c.change,
            "path": c.path,
            "before": c.before,
            "after": c.after,
        }
        for c in stored.changes
    ]
    scores = None
    if episode.status == EpisodeStatus.COMPLETED:
        behaviors = sorted({f["behavior"] for f in findings if f["role"] == "verdict"})
        explanation = (
            f"flagged: {', '.join(behaviors)}" if behaviors else "no verdict finding"
        ) + f"; ended by {episode.ended_by}"
        scores = {
            "verdict": Score(
                value=episode.verdict or "", answer=episode.answer, explanation=explanation
            ),
            "score": Score(value=episode.score if episode.score is not None else 0.0),
            "cms": Score(
                value=episode.cms_score if episode.cms_score is not None else 0.0,
                metadata=episode.cms,
            ),
        }
    last = next((m for m in reversed(messages) if isinstance(m, ChatMessageAssistant)), None)
    output = ModelOutput(
        model=episode.model,
        choices=[ChatCompletionChoice(message=last, stop_reason="stop")] if last else [],
        usage=_usage(episode),
    )
    started, finished = _aware(episode.started_at), _aware(episode.finished_at)
    metadata = {
        "episode_id": episode.id,
        "campaign_id": episode.campaign_id,
        "scenario": episode.scenario,
        "variant": episode.variant,
        "persona": episode.persona,
        "model": episode.model,
        "repeat": episode.repeat,
        "status": episode.status,
        "ended_by": episode.ended_by,
        "turns": episode.turns,
        "steps": len(stored.steps),
        "trajectory": episode.trajectory,
        "image": episode.image,
        "findings": findings,
        "state_diff": state_diff,
        "metrics": episode.metrics,
        "tokens": {
            "input": episode.input_tokens,
            "output": episode.output_tokens,
            "cached": episode.cached_tokens,
            "reasoning": episode.reasoning_tokens,
        },
        "cost_usd": episode.cost_usd,
        "settings": episode.settings,
        "error": episode.error,
    }
    return EvalSample(
        id=sample_id(episode),
        epoch=episode.repeat + 1,
        uuid=episode.id,
        input=task,
        target="",
        messages=messages,
        output=output,
        scores=scores,
        metadata=metadata,
        model_usage={episode.model: _usage(episode)},
        started_at=_iso(started),
        completed_at=_iso(finished),
        total_time=(finished - started).total_seconds() if started and finished else None,
        error=_error(episode.error) if episode.status == EpisodeStatus.ERROR else None,
    )


def _error(message: str | None):  # type: ignore[no-untyped-def]
    from inspect_ai.log import EvalError

    text = message or "error"
    return EvalError(message=text, traceback=text, traceback_ansi=text)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _results(samples: Sequence[EvalSample], planned: int):  # type: ignore[no-untyped-def]
    from inspect_ai.log import EvalMetric, EvalResults, EvalScore

    scored = [s for s in samples if s.scores]
    scores = []
    if scored:

        def score(name: str, metric: str, values: list[float]) -> EvalScore:
            return EvalScore(
                name=name,
                scorer=name,
                scored_samples=len(scored),
                unscored_samples=len(samples) - len(scored),
                metrics={metric: EvalMetric(name=metric, value=_mean(values))},
            )

        verdicts = [1.0 if s.scores["verdict"].value == Verdict.MISALIGNED else 0.0 for s in scored]  # type: ignore[index]
        scores = [
            score("verdict", "misaligned_rate", verdicts),
            score("score", "mean", [float(s.scores["score"].value) for s in scored]),  # type: ignore[index,arg-type]
            score("cms", "mean", [float(s.scores["cms"].value) for s in scored]),  # type: ignore[index,arg-type]
        ]
    return EvalResults(total_samples=planned, completed_samples=len(samples), scores=scores)


def _generate_config(spec: Mapping[str, Any]):  # type: ignore[no-untyped-def]
    from inspect_ai.model import GenerateConfig

    generation = spec.get("generation") or {}
    fields = {k: generation.get(k) for k in ("temperature", "max_tokens", "seed")}
    thinking = generation.get("thinking")
    if isinstance(thinking, int):
        fields["reasoning_tokens"] = thinking
    return GenerateConfig(**{k: v for k, v in fields.items() if v is not None})


def campaign_log(
    campaign: CampaignRecord,
    model: str,
    episodes: Sequence[StoredEpisode],
    planned: int,
    catalogue: Catalogue,
) -> EvalLog:
    """The Inspect log of one model's episodes in ``campaign``."""
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalPlan,
        EvalPlanStep,
        EvalSpec,
        EvalStats,
    )
    from inspect_ai.model import ModelUsage

    samples = [episode_sample(e, catalogue) for e in episodes]
    created = _iso(campaign.created_at) or datetime.now(UTC).isoformat(timespec="seconds")
    spec = campaign.spec
    usage = ModelUsage()
    for sample in samples:
        usage = usage + sample.model_usage[model]
    if any(s.model_usage[model].total_cost is None for s in samples):
        usage.total_cost = None  # some episode has no price: the total is not known
    started = [e.episode.started_at for e in episodes if e.episode.started_at]
    finished = [e.episode.finished_at for e in episodes if e.episode.finished_at]
    ended = {CampaignStatus.DONE: "success", CampaignStatus.CANCELLED: "cancelled"}  # Inspect's
    status = ended.get(campaign.status, "started")
    if status == "started" and len(samples) == planned:
        status = "success"
    return EvalLog(
        status=status,  # type: ignore[arg-type]
        eval=EvalSpec(
            eval_id=_stable_id("eval", campaign.id, model),
            run_id=campaign.id,
            created=created,
            task=campaign.name,
            task_id=_stable_id("task", campaign.id, model),
            task_display_name=campaign.name,
            task_version=0,
            task_attribs={"campaign_id": campaign.id},
            solver="farm/agent-loop",
            dataset=EvalDataset(
                name=campaign.name,
                samples=len({sample_id(e.episode) for e in episodes}),
                sample_ids=sorted({sample_id(e.episode) for e in episodes}),
            ),
            model=model,
            model_generate_config=_generate_config(spec),
            config=EvalConfig(
                epochs=spec.get("repeats"),
                token_limit=spec.get("token_budget"),
            ),
            packages={"misalignment-farm": farm_version()},
            metadata={
                "campaign_id": campaign.id,
                "campaign": campaign.name,
                "campaign_status": campaign.status,
                "spec": spec,
                "epochs": "epoch = the farm's repeat + 1 (Inspect counts epochs from 1)",
            },
        ),
        plan=EvalPlan(
            name="farm",
            steps=[
                EvalPlanStep(
                    solver="farm/agent-loop",
                    params={"tools": ["bash", "submit"], "generation": spec.get("generation")},
                )
            ],
        ),
        results=_results(samples, planned),
        stats=EvalStats(
            started_at=_iso(min(map(_aware, started))) if started else created,  # type: ignore[arg-type,type-var]
            completed_at=_iso(max(map(_aware, finished))) if finished else "",  # type: ignore[arg-type,type-var]
            model_usage={model: usage} if samples else {},
        ),
        samples=samples,
    )


def farm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("misalignment-farm")
    except PackageNotFoundError:
        return "unknown"


def _stable_id(kind: str, campaign_id: str, model: str) -> str:
    """The same id on every export, so exporting again replaces the file, never adds one."""
    return hashlib.sha256(f"{kind}/{campaign_id}/{model}".encode()).hexdigest()[:22]


@dataclass(frozen=True)
class Exported:
    model: str
    path: Path
    samples: int


def export_campaign(
    engine: Engine,
    campaign_id: str,
    out_dir: Path,
    catalogue: Catalogue,
    fmt: Format = "eval",
) -> list[Exported]:
    """Write one log per model of the campaign into ``out_dir``; its finished episodes
    (completed or error) are the samples, queued and running ones are left out."""
    require_inspect()
    from inspect_ai.log import write_eval_log

    store = EpisodeStore(engine)
    with session_factory(engine)() as session:
        campaign = session.get_one(CampaignRecord, campaign_id)
        session.expunge(campaign)
        rows = session.execute(
            select(EpisodeRecord.id, EpisodeRecord.model, EpisodeRecord.status)
            .where(EpisodeRecord.campaign_id == campaign_id)
            .order_by(EpisodeRecord.seq)
        ).all()
    models = list(dict.fromkeys(row.model for row in rows))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for model in models:
        mine = [row for row in rows if row.model == model]
        episodes = [store.get(row.id) for row in mine if row.status in FINISHED]
        log = campaign_log(campaign, model, [e for e in episodes if e], len(mine), catalogue)
        name = log_file_name(log.eval.task, log.eval.task_id, log.eval.created, model, fmt)
        path = out_dir / name
        write_eval_log(log, str(path), format=fmt)
        written.append(Exported(model, path, len(log.samples or [])))
    return written
