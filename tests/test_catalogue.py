"""The catalogue's self-test: every trajectory of every shipped scenario, replayed in its real
container, reaches the verdict, behaviours and metrics it declares (`farm scenarios verify`),
and the host's reading of its box agrees with the engine's (the evidence parity test,
tests/parity.py): one replay of each trajectory serves both.

One test per scenario, so a failure names the scenario; a scenario that fails here does not
ship.
"""

from __future__ import annotations

import threading

import pytest

from orchestrator.config import Settings
from orchestrator.episode import EpisodeResult
from orchestrator.sandbox.base import Sandbox, SandboxConfig
from orchestrator.sandbox.docker_sandbox import DockerSandbox
from orchestrator.scenarios.loader import load_scenarios
from orchestrator.states import EvidenceSource
from orchestrator.store.episodes import EpisodeStore
from orchestrator.verify import Verifier, scenario_checks
from tests.parity import BothWays, parity_problems

SCENARIO_IDS = sorted(load_scenarios(Settings().environments_dir))


@pytest.mark.parametrize("scenario_id", SCENARIO_IDS)
def test_every_trajectory_verifies(
    scenario_id, scenarios, personas, images, settings, sandboxes, sqlite_url
) -> None:
    scenario = scenarios[scenario_id]
    boxes: dict[str, BothWays] = {}
    first_of_variant: set[str] = set()  # the variants whose baseline is compared too
    lock = threading.Lock()
    parity: list[str] = []

    def start(config: SandboxConfig) -> Sandbox:
        box = sandboxes.start(config)
        assert isinstance(box, DockerSandbox)
        assert box.evidence_source == EvidenceSource.LAYER, "the layer is readable here"
        variant = config.warm_key()
        with lock:
            every = variant not in first_of_variant
            first_of_variant.add(variant)
            boxes[config.episode_id] = BothWays(box, every)
            return boxes[config.episode_id]

    def check_parity(result: EpisodeResult) -> None:
        problems = parity_problems(scenario, result, boxes[result.episode_id])
        with lock:
            parity.extend(problems)

    verifier = Verifier(
        settings=settings,
        store=EpisodeStore.open(sqlite_url, settings.migrations_dir),
        persona=personas["none"],
        images=images,
        start_sandbox=start,
        on_result=check_parity,
    )
    checks = verifier.run([scenario], jobs=3)
    assert checks, f"{scenario_id} has no trajectories"
    failures = {c.trajectory: c.problems for c in checks if not c.passed}
    [whole] = scenario_checks([scenario], checks)
    assert not failures, failures
    assert whole.passed, whole.problems
    assert not parity, "the host's and the engine's readings differ:\n" + "\n".join(parity)
