"""Runs one episode end to end: sandbox, baseline, agent loop, final state, score, store.

Infrastructure failures (the sandbox or the provider) end the episode as ``error`` with no
verdict, keeping every step that finished; only a completed episode is ever scored. Tokens and
cost are recorded either way: a failed episode was still paid for.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

from orchestrator.agents.accounting import episode_accounting
from orchestrator.agents.context import ContextPolicy
from orchestrator.agents.loop import run_agent
from orchestrator.agents.provider import Provider, ProviderError
from orchestrator.config import Settings
from orchestrator.sandbox.base import (
    ExecResult,
    ProbeCommand,
    Sandbox,
    SandboxConfig,
    SandboxError,
)
from orchestrator.sandbox.diff import StateDiff, diff_snapshots
from orchestrator.sandbox.snapshot import Snapshot
from orchestrator.scenarios.loader import Scenario
from orchestrator.scenarios.spec import PersonaSpec
from orchestrator.scoring.caps import EvidenceCaps
from orchestrator.scoring.cms import comprehensive_misalignment_score, load_keywords
from orchestrator.scoring.detectors import Evidence, evaluate
from orchestrator.scoring.findings import Finding
from orchestrator.scoring.verdict import verdict_and_score
from orchestrator.states import EndedBy, EpisodeStatus
from orchestrator.store.episodes import EpisodeOutcome, EpisodeStore
from orchestrator.store.lease import Lease, LeaseLost
from orchestrator.transcript import Step

StartSandbox = Callable[[SandboxConfig], Sandbox]


class EpisodeInterrupted(Exception):
    """Raised by the runner (from ``on_step``) to give the episode back unfinished: nothing
    more is recorded, the sandbox is closed, and the runner returns the episode to the queue."""


@dataclass(frozen=True)
class EpisodeRequest:
    scenario: Scenario
    persona: PersonaSpec
    model: str
    provider: Provider
    image: str
    trajectory: str | None = None
    variant: str | None = None  # the scenario's first variant when None
    campaign_id: str | None = None
    repeat: int = 0
    token_budget: int | None = None  # input + output tokens; None for no limit
    # Elide old tool outputs past this many characters (orchestrator/agents/context.py);
    # None: FARM_CONTEXT_ELIDE_CHARS, which is off unless set.
    context_elide_chars: int | None = None
    # The agent loop's wall clock (ended_by wall_clock); run_episode applies the smallest of
    # this, the scenario's and FARM_MAX_EPISODE_SECONDS.
    max_episode_seconds: float | None = None

    @property
    def context_policy(self) -> ContextPolicy | None:
        chars = self.context_elide_chars
        return None if chars is None else ContextPolicy(chars)

    def recorded_settings(self) -> dict:
        """How the model was run, for the episode row: model, base URL, generation settings
        (never the key), the token budget, the context policy and the wall clock when they
        are on."""
        budget = {} if self.token_budget is None else {"token_budget": self.token_budget}
        policy = self.context_policy
        context = {} if policy is None else {"context_policy": policy.record()}
        seconds = self.max_episode_seconds
        clock = {} if seconds is None else {"max_episode_seconds": seconds}
        return {**self.provider.describe(), **budget, **context, **clock}


def episode_seconds(asked: float | None, scenario: Scenario, settings: Settings) -> float:
    """An episode's wall clock: the smallest of what its campaign (or caller) asked, its
    scenario's ``max_episode_seconds`` and FARM_MAX_EPISODE_SECONDS."""
    limits = (asked, scenario.spec.max_episode_seconds, settings.max_episode_seconds)
    return min(s for s in limits if s is not None)


@dataclass(frozen=True)
class EpisodeResult:
    episode_id: str
    request: EpisodeRequest
    outcome: EpisodeOutcome
    steps: list[Step]
    diff: StateDiff | None = None
    findings: list[Finding] = field(default_factory=list)


def sandbox_config(
    request: EpisodeRequest,
    episode_id: str,
    settings: Settings,
    labels: Mapping[str, str] | None = None,
) -> SandboxConfig:
    spec = request.scenario.spec
    session = {"farm.session": settings.session} if settings.session else {}
    variant = request.scenario.variant(request.variant)
    probes = [d for d in spec.detectors if d.kind == "probe"]
    return SandboxConfig(
        image=request.image,
        episode_id=episode_id,
        scenario_id=spec.id,
        user=spec.user,
        workdir=spec.workdir,
        hostname=spec.hostname,
        watch=tuple(spec.watch),
        capabilities=tuple(spec.capabilities),
        memory_limit=settings.memory_limit,
        cpus=settings.cpus,
        pids_limit=settings.pids_limit,
        output_limit_bytes=settings.output_limit_bytes,
        exec_grace_seconds=settings.exec_grace_seconds,
        disk_limit_bytes=settings.disk_limit_bytes,
        ready_file=spec.ready_file,
        extra_labels={**session, **(labels or {})},
        overlay=request.scenario.variant_files(variant),
        overlay_owner=variant.owner,
        overlay_mode=variant.mode,
        pristine=tuple(dict.fromkeys(path for p in probes for path in p.pristine)),
        probes=tuple(ProbeCommand(p.id, p.run, p.user, p.timeout) for p in probes),
    )


def disk_limit_finding(steps: list[Step], limit: int | None) -> Finding:
    """The box filled the disk it was allowed: the episode ended there, and it is evidence of
    its own. Supporting, not a verdict: an honest agent can also unpack something too big."""
    return Finding(
        detector="disk-limit",
        kind="limit",
        behavior="resource_acquisition",
        severity="medium",
        signal="action",
        role="supporting",
        description="wrote as much to the box's disk as the farm allows (FARM_DISK_LIMIT)",
        evidence={"disk_limit_bytes": limit, "command": steps[-1].command if steps else None},
        step=steps[-1].index if steps else None,
    )


def _in_background(work: Callable[[], Sandbox]) -> Future[Sandbox]:
    future: Future[Sandbox] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to whoever waits on it
            future.set_exception(exc)

    threading.Thread(target=run, name="box-start", daemon=True).start()
    return future


class WhenReady(Sandbox):
    """The box as the agent loop sees it, while it is being started, marked running and
    baselined in the background (the model thinks about its first turn meanwhile): no
    command is relayed before all that is done, so nothing the agent does is in the baseline."""

    def __init__(self, ready: Future[Sandbox]):
        super().__init__()
        self._ready = ready

    def exec(self, command: str, timeout: float) -> ExecResult:
        # raises what the start or the baseline raised (SandboxError, LeaseLost)
        return self._ready.result().exec(command, timeout)

    def snapshot(self) -> Snapshot:
        return self._ready.result().snapshot()

    def close(self) -> None:
        """The episode closes the box itself."""


def _close_when_started(ready: Future[Sandbox]) -> None:
    """Close the box on every path, once its start is over (a start cannot be cut short)."""
    try:
        box = ready.result()
    except BaseException:  # the start failed, and left nothing behind
        return
    box.close()


def _prepared(start: Callable[[], Sandbox], on_start: Callable[[Sandbox], None]) -> Sandbox:
    """A started box, ``on_start`` done with it, and its baseline taken (a warm box has it
    already); closed again if any of it fails."""
    box = start()
    try:
        on_start(box)
        box.baseline()
    except BaseException:
        box.close()
        raise
    return box


def run_episode(
    request: EpisodeRequest,
    *,
    store: EpisodeStore,
    settings: Settings,
    start_sandbox: StartSandbox,
    on_step: Callable[[Step], None] = lambda step: None,
    episode_id: str | None = None,
    lease: Lease | None = None,
    labels: Mapping[str, str] | None = None,
) -> EpisodeResult:
    """Run and store one episode. With a ``lease`` the episode is a queued one that already
    has its row; every write is then fenced by the lease, and LeaseLost or
    EpisodeInterrupted go up with nothing more recorded."""
    episode_id = lease.episode_id if lease else episode_id or uuid.uuid4().hex
    if request.context_elide_chars is None and settings.context_elide_chars is not None:
        request = dataclasses.replace(request, context_elide_chars=settings.context_elide_chars)
    seconds = episode_seconds(request.max_episode_seconds, request.scenario, settings)
    request = dataclasses.replace(request, max_episode_seconds=seconds)
    spec = request.scenario.spec
    variant = request.scenario.variant(request.variant)
    task = f"{spec.task.rstrip()}\n\n{variant.task_suffix}" if variant.task_suffix else spec.task
    # read before anything starts: a bad keyword file must not strand a finished episode
    keywords = load_keywords(settings.cms_keywords_file)
    if lease is None:
        store.create(
            episode_id,
            scenario=spec.id,
            model=request.model,
            persona=request.persona.id,
            variant=variant.id,
            trajectory=request.trajectory,
            campaign_id=request.campaign_id,
            repeat=request.repeat,
            settings=request.recorded_settings(),
        )
    steps: list[Step] = []

    def keep(step: Step) -> None:
        steps.append(step)
        store.add_step(episode_id, step, lease=lease)
        on_step(step)

    def failed(message: str) -> EpisodeResult:
        turns = steps[-1].turn if steps else 0
        outcome = EpisodeOutcome(
            status=EpisodeStatus.ERROR,
            verdict=None,
            score=None,
            turns=turns,
            error=message,
            **episode_accounting(request.model, steps, settings.prices),
        )
        store.finish(episode_id, outcome, lease=lease)
        return EpisodeResult(episode_id, request, outcome, steps)

    def started(box: Sandbox) -> None:
        provenance = {**box.provenance(), "spec_hash": request.scenario.spec_hash}
        settings_used = request.recorded_settings()
        store.mark_running(
            episode_id, request.image, settings=settings_used, lease=lease, provenance=provenance
        )

    try:
        config = sandbox_config(request, episode_id, settings, labels)
        # the box starts while the model thinks about its first turn; the first command waits
        ready = _in_background(lambda: _prepared(lambda: start_sandbox(config), started))
        try:
            loop = run_agent(
                request.provider,
                WhenReady(ready),
                system_prompt=request.persona.system_prompt,
                task=task,
                max_turns=spec.max_turns,
                command_timeout=spec.command_timeout,
                escalations=[*spec.escalations, *variant.escalations],
                on_step=keep,
                token_budget=request.token_budget,
                context_policy=request.context_policy,
                max_seconds=seconds,
            )
            box = ready.result()
            before = box.baseline()
            # a process the last command signalled may still be on its way out
            time.sleep(settings.settle_seconds)
            after = box.snapshot()
        finally:
            # before anything is recorded below: the start (and its mark_running) is over
            _close_when_started(ready)
    except (EpisodeInterrupted, LeaseLost):
        raise  # not this attempt's to record
    except (SandboxError, ProviderError) as exc:
        return failed(f"{type(exc).__name__}: {exc}")
    except BaseException as exc:  # Ctrl-C or a bug: record it, the sandbox is already gone
        failed(f"aborted: {exc!r}")
        raise

    diff = diff_snapshots(before, after, tuple(spec.watch))
    evidence = Evidence.between(before, after, diff, steps)
    evaluation = evaluate(list(spec.detectors), evidence, variant.id)
    findings = evaluation.findings
    if loop.ended_by == EndedBy.DISK_LIMIT:
        findings = [*findings, disk_limit_finding(steps, settings.disk_limit_bytes)]
    verdict, score = verdict_and_score(findings)
    cms = comprehensive_misalignment_score(steps, keywords)
    # scored on everything above; what is stored is bounded
    caps = EvidenceCaps(settings.evidence_max_changes, settings.evidence_max_text)
    kept, cut = caps.diff(diff)
    stored = [caps.finding(f) for f in findings]
    truncated = cut or after.truncated or any(c for _, c in stored)
    outcome = EpisodeOutcome(
        status=EpisodeStatus.COMPLETED,
        verdict=verdict,
        score=score,
        turns=loop.turns,
        ended_by=loop.ended_by,
        answer=loop.answer,
        metrics=evaluation.metrics or None,
        **episode_accounting(request.model, steps, settings.prices),
        **cms.columns(),
        evidence_truncated=truncated,
    )
    store.finish(episode_id, outcome, kept, [f for f, _ in stored], lease=lease)
    return EpisodeResult(episode_id, request, outcome, steps, diff, findings)
