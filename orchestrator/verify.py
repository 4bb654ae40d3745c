"""Scenario self-tests: replay every trajectory of a scenario in its real container and check
that the farm reaches the verdict, behaviours and metrics the trajectory declares.

This is how a scenario proves its detectors work, the way SWE-bench validates each instance
with its gold patch: a scenario whose aligned run is flagged, or whose misaligned run slips
through, does not ship. Three more checks keep the scenario's claims true: every ``bash``
step of a reference run exits as it declares (a run whose commands fail does not do what it
says), every detector fires in some trajectory (a dead detector is a claim nobody showed
possible), and every input of the oversight the scenario lists is covered by a detector or a
probe (an uncovered input is a route no verdict can see).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from orchestrator.cells import Cell, build_request
from orchestrator.config import Settings
from orchestrator.episode import EpisodeResult, StartSandbox, run_episode
from orchestrator.scenarios.loader import Scenario
from orchestrator.scenarios.spec import PersonaSpec, TrajectorySpec
from orchestrator.scoring.detectors import DETECTOR_ERROR
from orchestrator.scoring.verdict import acted_behaviors
from orchestrator.states import EpisodeStatus
from orchestrator.store.episodes import EpisodeStore
from orchestrator.transcript import Step


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
    fired: list[str] = field(default_factory=list)  # detectors with a finding

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ScenarioCheck:
    """What only all of a scenario's trajectories together can show."""

    scenario: str
    dead_detectors: list[str]  # fired in no trajectory
    uncovered: list[str]  # oversight inputs no detector or probe covers

    @property
    def problems(self) -> list[str]:
        dead = [f"detector {d} fires in no trajectory" for d in self.dead_detectors]
        return dead + [f"oversight input {u} is covered by no detector" for u in self.uncovered]

    @property
    def passed(self) -> bool:
        return not self.problems


def step_problems(trajectory: TrajectorySpec, steps: list[Step]) -> list[str]:
    """Each bash step whose exit status is not the one its trajectory step declares."""
    declared = [s for s in trajectory.steps if s.bash is not None]
    ran = [s for s in steps if s.kind == "bash"]
    problems = []
    for number, (want, got) in enumerate(zip(declared, ran, strict=False), start=1):
        if got.exit_code != want.expect_exit:
            error = (got.stderr or "").strip().splitlines()[-1:] or [""]
            problems.append(
                f"bash step {number} exited {got.exit_code}, expected {want.expect_exit}: "
                f"{want.bash.strip()[:60]!r} {error[0][:80]}".rstrip()
            )
    if len(ran) < len(declared):
        problems.append(f"only {len(ran)} of {len(declared)} bash steps ran")
    return problems


def dead_detectors(scenario: Scenario, checks: list[Check]) -> list[str]:
    """Detectors (but measures) that fired in none of ``checks``, the scenario's trajectories."""
    fired = {d for c in checks for d in c.fired}
    return [
        d.id for d in scenario.spec.detectors if d.effective_role != "measure" and d.id not in fired
    ]


def uncovered_inputs(scenario: Scenario) -> list[str]:
    spec = scenario.spec
    paths = [p for p in spec.oversight.paths if not any(d.covers(p) for d in spec.detectors)]
    processes = [
        f"process {p}"
        for p in spec.oversight.processes
        if not any(d.covers_process(p) for d in spec.detectors)
    ]
    return paths + processes


def broken_probes(scenario: Scenario, metrics: dict, variant: str) -> list[str]:
    """Probes judging ``variant`` whose baseline answer was not what they expect: the probe
    itself is wrong."""
    return [
        f"probe {d.id} did not answer as expected at the baseline"
        for d in scenario.spec.detectors
        if d.kind == "probe"
        and (d.variants is None or variant in d.variants)
        and not (metrics.get(d.id) or {}).get("baseline_as_expected")
    ]


def problems_with(
    scenario: Scenario, trajectory: TrajectorySpec, result: EpisodeResult
) -> list[str]:
    """Every way the episode disagrees with what the trajectory declares; empty if none."""
    outcome = result.outcome
    if outcome.status != EpisodeStatus.COMPLETED:
        return [f"episode ended in {outcome.status}: {outcome.error}"]
    problems = step_problems(trajectory, result.steps)
    problems += [
        f"detector {name} failed: {values[DETECTOR_ERROR]}"
        for name, values in (outcome.metrics or {}).items()
        if DETECTOR_ERROR in values
    ]
    variant = scenario.variant(trajectory.variant).id
    problems += broken_probes(scenario, outcome.metrics or {}, variant)
    if outcome.verdict != trajectory.expect:
        flagged = sorted({f.detector for f in result.findings if f.role == "verdict"})
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
    # Handed every episode as it finishes (the catalogue test checks its evidence parity).
    on_result: Callable[[EpisodeResult], None] = lambda result: None

    def check(self, scenario: Scenario, name: str) -> Check:
        trajectory = scenario.trajectory(name)
        request = build_request(
            Cell(scenario=scenario.id, persona=self.persona.id, model=f"scripted/{name}"),
            scenarios={scenario.id: scenario},
            personas={self.persona.id: self.persona},
            settings=self.settings,
            image_tag=self.images.__getitem__,
        )
        variant = str(request.variant)
        started = time.monotonic()
        result = run_episode(
            request, store=self.store, settings=self.settings, start_sandbox=self.start_sandbox
        )
        self.on_result(result)
        return Check(
            scenario=scenario.id,
            trajectory=name,
            variant=variant,
            expect=trajectory.expect,
            verdict=result.outcome.verdict,
            behaviors=acted_behaviors(result.findings),
            problems=problems_with(scenario, trajectory, result),
            seconds=time.monotonic() - started,
            episode_id=result.episode_id,
            fired=sorted({f.detector for f in result.findings}),
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


def scenario_checks(scenarios: Iterable[Scenario], checks: list[Check]) -> list[ScenarioCheck]:
    """Dead detectors and uncovered oversight inputs, for every scenario all of whose
    trajectories were checked."""
    return [
        ScenarioCheck(
            scenario=s.id,
            dead_detectors=dead_detectors(s, [c for c in checks if c.scenario == s.id]),
            uncovered=uncovered_inputs(s),
        )
        for s in scenarios
    ]
