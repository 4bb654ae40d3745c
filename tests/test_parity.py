"""The host's reading of a box and the engine's give the same evidence, over every trajectory.

Each shipped trajectory is replayed once against the real engine; its final snapshot is
taken both ways (on the host: the writable layer and the merged root; through the engine:
its diff, with each changed file and every watched root fetched by its archive), and the
two StateDiffs against the baseline must be equal, as must the verdicts scored from them.
The first trajectory of every scenario variant compares the baselines too. Processes come
from the engine's process table either way and are not compared (they move between reads).
The forced fallback (``FARM_EVIDENCE=engine``) runs a
whole episode through the engine alone.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.cells import Cell, build_request
from orchestrator.config import Settings
from orchestrator.episode import run_episode
from orchestrator.sandbox.backends.docker import DockerProvider
from orchestrator.sandbox.base import ExecResult, Sandbox, SandboxConfig
from orchestrator.sandbox.diff import diff_snapshots
from orchestrator.sandbox.docker_sandbox import DockerSandbox
from orchestrator.sandbox.snapshot import Snapshot
from orchestrator.scoring.detectors import Evidence, evaluate
from orchestrator.scoring.verdict import verdict_and_score
from orchestrator.states import EvidenceSource
from orchestrator.store.episodes import EpisodeStore
from tests.conftest import SHUTDOWN


class BothWays(Sandbox):
    """A real box whose snapshots are each preceded by two probe-free readings of the same
    moment, on the host and through the engine (every snapshot when ``every``, else the last
    only: the engine's diff costs seconds). The box's own services keep writing meanwhile, so
    what moved between the host's two readings is left out of the comparison."""

    def __init__(self, box: DockerSandbox, every: bool):
        super().__init__()
        self.box = box
        self.every = every
        self.taken: list[tuple[Snapshot | None, Snapshot | None, Snapshot]] = []

    def exec(self, command: str, timeout: float) -> ExecResult:
        return self.box.exec(command, timeout)

    def snapshot(self) -> Snapshot:
        host = engine = None
        if self.every or self.taken:  # an episode snapshots twice: the baseline, then the end
            host = self.box.snapshot(probes=False)
            engine = self.box.snapshot(EvidenceSource.ENGINE, probes=False)
        snap = self.box.snapshot()
        self.taken.append((host, engine, snap))
        return snap

    def provenance(self) -> dict[str, str | None]:
        return self.box.provenance()

    def close(self) -> None:
        self.box.close()


def _moved(first: Snapshot, last: Snapshot) -> set[str]:
    """Paths the box changed on its own between two host readings."""
    paths = set()
    for old, new in ((first.files, last.files), (first.layer_files, last.layer_files)):
        paths |= {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
    fs_old, fs_new = first.fs_changes, last.fs_changes
    paths |= {p for p in fs_old.keys() | fs_new.keys() if fs_old.get(p) != fs_new.get(p)}
    return paths


def _disagreements(host: Snapshot, engine: Snapshot, moved: set[str]) -> list[str]:
    """Where the two readings of one moment differ, on paths that did not move."""
    found = []
    for name in ("files", "fs_changes", "layer_files"):
        mine, theirs = getattr(host, name), getattr(engine, name)
        for path in sorted((mine.keys() | theirs.keys()) - moved):
            if mine.get(path) != theirs.get(path):
                found.append(f"{name} {path}: host {mine.get(path)!r}, engine {theirs.get(path)!r}")
    return found


def _replays(scenarios) -> list[tuple[str, str, bool]]:  # type: ignore[no-untyped-def]
    """(scenario, trajectory, compare the baseline too) for every shipped trajectory."""
    seen: set[tuple[str, str]] = set()
    work = []
    for scenario in scenarios.values():
        for name in scenario.trajectory_names():
            variant = scenario.variant(scenario.trajectory(name).variant).id
            work.append((scenario.id, name, (scenario.id, variant) not in seen))
            seen.add((scenario.id, variant))
    return work


def test_layer_and_engine_give_the_same_evidence_for_every_trajectory(
    scenarios, personas, images, settings, sandboxes, sqlite_url
) -> None:
    store = EpisodeStore.open(sqlite_url, settings.migrations_dir)

    def replay(item: tuple[str, str, bool]) -> list[str]:
        scenario_id, name, every = item
        scenario = scenarios[scenario_id]
        boxes: list[BothWays] = []

        def start(config: SandboxConfig) -> Sandbox:
            box = sandboxes.start(config)
            assert isinstance(box, DockerSandbox)
            assert box.evidence_source == EvidenceSource.LAYER, "the layer is readable here"
            boxes.append(BothWays(box, every))
            return boxes[-1]

        request = build_request(
            Cell(scenario=scenario_id, persona="none", model=f"scripted/{name}"),
            scenarios=scenarios,
            personas=personas,
            settings=settings,
            image_tag=images.__getitem__,
        )
        result = run_episode(request, store=store, settings=settings, start_sandbox=start)
        assert result.outcome.status == "completed", (name, result.outcome.error)
        (host_0, engine_0, before), (host_1, engine_1, after) = boxes[0].taken
        assert host_1 is not None and engine_1 is not None
        problems = []
        if host_0 is not None and engine_0 is not None:
            moved = _moved(host_0, before)
            problems += [
                f"{scenario_id}/{name} baseline: {d}"
                for d in _disagreements(host_0, engine_0, moved)
            ]
        moved = _moved(host_1, after)
        problems += [
            f"{scenario_id}/{name} end: {d}" for d in _disagreements(host_1, engine_1, moved)
        ]
        # the verdict scored from the engine's reading of the end, with the same probes
        engine_end = dataclasses.replace(engine_1, probes=after.probes, processes=after.processes)
        host_end = dataclasses.replace(host_1, probes=after.probes, processes=after.processes)
        verdicts = []
        for end in (host_end, engine_end):
            diff = diff_snapshots(before, end, tuple(scenario.spec.watch))
            evidence = Evidence.between(before, end, diff, result.steps)
            findings = evaluate(list(scenario.spec.detectors), evidence, request.variant).findings
            verdicts.append(verdict_and_score(findings)[0])
        if verdicts[0] != verdicts[1] or verdicts[0] != result.outcome.verdict:
            problems.append(
                f"{scenario_id}/{name}: verdicts host {verdicts[0]}, engine {verdicts[1]}, "
                f"episode {result.outcome.verdict}"
            )
        return problems

    with ThreadPoolExecutor(max_workers=3) as pool:
        problems = [p for found in pool.map(replay, _replays(scenarios)) for p in found]
    store.engine.dispose()
    assert not problems, "\n".join(problems)


def test_the_engine_fallback_scores_an_episode_alone(
    scenarios, personas, images, docker_client, sqlite_url
) -> None:
    """FARM_EVIDENCE=engine: every changed path comes from the engine, and says so."""
    settings = Settings(evidence="engine")
    store = EpisodeStore.open(sqlite_url, settings.migrations_dir)
    with DockerProvider(settings, docker_client) as engine_only:
        request = build_request(
            Cell(scenario=SHUTDOWN, persona="none", model="scripted/misaligned"),
            scenarios=scenarios,
            personas=personas,
            settings=settings,
            image_tag=images.__getitem__,
        )
        result = run_episode(
            request, store=store, settings=settings, start_sandbox=engine_only.start
        )
    assert result.outcome.verdict == "misaligned"
    stored = store.get(result.episode_id)
    assert stored is not None and stored.episode.evidence_source == "engine"
    assert result.diff is not None and any(c.after is not None for c in result.diff.paths)
    store.engine.dispose()


@pytest.mark.parametrize("evidence", ["layer", "engine"])
def test_provenance_is_recorded(
    evidence, scenarios, personas, images, docker_client, sqlite_url
) -> None:
    settings = Settings(evidence=evidence)
    store = EpisodeStore.open(sqlite_url, settings.migrations_dir)
    with DockerProvider(settings, docker_client) as provider:
        request = build_request(
            Cell(scenario=SHUTDOWN, persona="none", model="scripted/aligned"),
            scenarios=scenarios,
            personas=personas,
            settings=settings,
            image_tag=images.__getitem__,
        )
        result = run_episode(request, store=store, settings=settings, start_sandbox=provider.start)
    stored = store.get(result.episode_id)
    assert stored is not None
    row = stored.episode
    assert row.image_id == docker_client.images.get(images["shutdown-script"]).id
    assert row.runtime == "runc" and row.evidence_source == evidence
    assert row.spec_hash == scenarios[SHUTDOWN].spec_hash and len(row.spec_hash) == 64
    store.engine.dispose()
