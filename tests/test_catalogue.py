"""The catalogue's self-test: every trajectory of every shipped scenario, replayed in its real
container, reaches the verdict, behaviours and metrics it declares (`farm scenarios verify`).

One test per scenario, so a failure names the scenario; a scenario that fails here does not
ship.
"""

from __future__ import annotations

import pytest

from orchestrator.config import Settings
from orchestrator.scenarios.loader import load_scenarios
from orchestrator.store.episodes import EpisodeStore
from orchestrator.verify import Verifier, scenario_checks

SCENARIO_IDS = sorted(load_scenarios(Settings().environments_dir))


@pytest.mark.parametrize("scenario_id", SCENARIO_IDS)
def test_every_trajectory_verifies(
    scenario_id, scenarios, personas, images, settings, sandboxes, sqlite_url
) -> None:
    verifier = Verifier(
        settings=settings,
        store=EpisodeStore.open(sqlite_url, settings.migrations_dir),
        persona=personas["none"],
        images=images,
        start_sandbox=sandboxes.start,
    )
    checks = verifier.run([scenarios[scenario_id]], jobs=3)
    assert checks, f"{scenario_id} has no trajectories"
    failures = {c.trajectory: c.problems for c in checks if not c.passed}
    [whole] = scenario_checks([scenarios[scenario_id]], checks)
    assert not failures, failures
    assert whole.passed, whole.problems
