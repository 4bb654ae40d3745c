"""Reading a box both ways at one moment: on the host (the writable layer and the merged
root) and through the engine (its diff, and an archive of each changed file and watched root).

tests/test_catalogue.py wraps every replayed trajectory's box in ``BothWays`` and checks with
``parity_problems`` that both readings agree, at the end of every trajectory and at the
baseline of the first trajectory of each scenario variant, and that the verdict scored from
either is the episode's. Processes come from the engine's process table either way and are not
compared (they move between reads); nor is what the box's own services changed between the
host's two readings.
"""

from __future__ import annotations

import dataclasses
import posixpath

from orchestrator.episode import EpisodeResult
from orchestrator.sandbox.base import ExecResult, Sandbox
from orchestrator.sandbox.diff import diff_snapshots
from orchestrator.sandbox.docker_sandbox import DockerSandbox
from orchestrator.sandbox.snapshot import FileState, Snapshot
from orchestrator.scenarios.loader import Scenario
from orchestrator.scoring.detectors import Evidence, evaluate
from orchestrator.scoring.verdict import verdict_and_score
from orchestrator.states import EvidenceSource


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


def moved_between(first: Snapshot, last: Snapshot) -> set[str]:
    """Paths the box changed on its own between two host readings."""
    paths = set()
    for old, new in ((first.files, last.files), (first.layer_files, last.layer_files)):
        paths |= {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
    fs_old, fs_new = first.fs_changes, last.fs_changes
    paths |= {p for p in fs_old.keys() | fs_new.keys() if fs_old.get(p) != fs_new.get(p)}
    return paths


def _same(mine: object, theirs: object) -> bool:
    """Equal, but for an mtime one second apart: the merged root is read through the FUSE
    mount, whose cached attributes may lag the writable layer's by a tick (an mtime decides
    no change; only a rewound one is evidence, and that is hours, not a second)."""
    if isinstance(mine, FileState) and isinstance(theirs, FileState):
        same_but_time = dataclasses.replace(mine, mtime=theirs.mtime) == theirs
        return same_but_time and abs(mine.mtime - theirs.mtime) <= 1
    return mine == theirs


def disagreements(host: Snapshot, engine: Snapshot, moved: set[str]) -> list[str]:
    """Where the two readings of one moment differ, on paths that did not move (nor did the
    folder holding them: a service's temporary file can come and go between two reads)."""
    found = []
    for name in ("files", "fs_changes", "layer_files"):
        mine, theirs = getattr(host, name), getattr(engine, name)
        paths = mine.keys() | theirs.keys()
        for path in sorted(
            p for p in paths if p not in moved and posixpath.dirname(p) not in moved
        ):
            if not _same(mine.get(path), theirs.get(path)):
                found.append(f"{name} {path}: host {mine.get(path)!r}, engine {theirs.get(path)!r}")
    return found


def parity_problems(scenario: Scenario, result: EpisodeResult, box: BothWays) -> list[str]:
    """Where the two readings of ``box`` disagree, and whether both score the episode's verdict."""
    where = f"{scenario.id}/{result.request.trajectory}"
    (host_0, engine_0, before), (host_1, engine_1, after) = box.taken
    assert host_1 is not None and engine_1 is not None
    problems = []
    if host_0 is not None and engine_0 is not None:
        found = disagreements(host_0, engine_0, moved_between(host_0, before))
        problems += [f"{where} baseline: {d}" for d in found]
    found = disagreements(host_1, engine_1, moved_between(host_1, after))
    problems += [f"{where} end: {d}" for d in found]
    verdicts = []
    for reading in (host_1, engine_1):  # each with the episode's own probes and processes
        end = dataclasses.replace(reading, probes=after.probes, processes=after.processes)
        diff = diff_snapshots(before, end, tuple(scenario.spec.watch))
        evidence = Evidence.between(before, end, diff, result.steps)
        variant = result.request.variant or scenario.variant().id
        verdicts.append(
            verdict_and_score(evaluate(list(scenario.spec.detectors), evidence, variant).findings)[
                0
            ]
        )
    if verdicts[0] != verdicts[1] or verdicts[0] != result.outcome.verdict:
        problems.append(
            f"{where}: verdicts host {verdicts[0]}, engine {verdicts[1]}, "
            f"episode {result.outcome.verdict}"
        )
    return problems
