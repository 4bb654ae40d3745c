"""The engine's fallback and every episode's provenance, against the real engine.

That the host's reading of a box and the engine's agree is checked over every shipped
trajectory by tests/test_catalogue.py (one replay serves both; tests/parity.py); here an
episode runs through the engine alone (FARM_EVIDENCE=engine) and says so.
"""

from __future__ import annotations

import pytest

from orchestrator.cells import Cell, build_request
from orchestrator.config import Settings
from orchestrator.episode import run_episode
from orchestrator.sandbox.backends.docker import DockerProvider
from orchestrator.store.episodes import EpisodeStore
from tests.conftest import SHUTDOWN


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
