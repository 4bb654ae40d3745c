"""Scenario self-tests: replay every trajectory of a scenario in its real container and check
that the farm reaches the verdict, behaviours and metrics the trajectory declares.

This is how a scenario proves its detectors work, the way SWE-bench validates each instance
with its gold patch: a scenario whose aligned run is flagged, or whose misaligned run slips
through, does not ship.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from orchestrator.agents.scripted import ScriptedProvider
from orchestrator.config import Settings
from orchestrator.episode import EpisodeRequest, EpisodeResult, StartSandbox, run_episode
from orchestrator.scenarios.loader import Scenario
from orchestrator.scenarios.spec import PersonaSpec, TrajectorySpec
from orchestrator.scoring.verdict import acted_behaviors
from orchestrator.store.episodes import EpisodeStore


@dataclass(frozen=True)
class Check:
    """One trajectory's self-test: what it declares, what the farm found, what disagrees."""

    scenario: str
    trajectory: str
    variant: str
    expect: str
    verdict: str | None
    behaviors: list[str]
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    episode_id: str | None = None

    @property
    def passed(self) -> bool:
        return not self.problems


def problems_with(trajectory: TrajectorySpec, result: EpisodeResult) -> list[str]:
    """Every way the episode disagrees with what the trajectory declares; empty if none."""
    outcome = result.outcome
    if outcome.status != "completed":
        return [f"episode ended in {outcome.status}: {outcome.error}"]
    problems = []
    if outcome.verdict != trajectory.expect:
        flagged = sorted({f.detector for f in result.findings if f.signal == "action"})
        because = f" (flagged by {', '.join(flagged)})" if flagged else ""
        problems.append(f"expected {trajectory.expect}, got {outcome.verdict}{because}")
    missing = sorted(set(trajectory.behaviors) - set(acted_behaviors(result.findings)))
    if missing:
        problems.append(f"not flagged for {', '.join(missing)}")
    metrics = outcome.metrics or {}
    for detector, expected in trajectory.metrics.items():
        for key, value in expected.items():
            got = metrics.get(detector, {}).get(key)
            if got != value:
                problems.append(f"metric {detector}.{key}: expected {value}, got {got}")
    return problems


@dataclass(frozen=True)
class Verifier:
    """Runs trajectories as episodes with the baseline persona and checks each one."""

    settings: Settings
    store: EpisodeStore
    persona: PersonaSpec
    images: dict[str, str]  # image name -> tag
    start_sandbox: StartSandbox

    def check(self, scenario: Scenario, name: str) -> Check:
        trajectory = scenario.trajectory(name)
        variant = scenario.variant(trajectory.variant).id
        request = EpisodeRequest(
            scenario=scenario,
            persona=self.persona,
            model=f"scripted/{name}",
            provider=ScriptedProvider(trajectory, f"scripted/{name}"),
            image=self.images[scenario.spec.image],
            trajectory=name,
            variant=variant,
        )
        started = time.monotonic()
        result = run_episode(
            request, store=self.store, settings=self.settings, start_sandbox=self.start_sandbox
        )
        return Check(
            scenario=scenario.id,
            trajectory=name,
            variant=variant,
            expect=trajectory.expect,
            verdict=result.outcome.verdict,
            behaviors=acted_behaviors(result.findings),
            problems=problems_with(trajectory, result),
            seconds=time.monotonic() - started,
            episode_id=result.episode_id,
        )

    def run(
        self,
        scenarios: Iterable[Scenario],
        jobs: int = 1,
        on_check: Callable[[Check], None] = lambda check: None,
    ) -> list[Check]:
        """Every trajectory of every scenario, ``jobs`` episodes at a time, in a stable order."""
        work = [(s, name) for s in scenarios for name in s.trajectory_names()]

        def one(item: tuple[Scenario, str]) -> Check:
            check = self.check(*item)
            on_check(check)
            return check

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(one, work))
