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
from orchestrator.sandbox.base import SandboxConfig
from orchestrator.store.episodes import EpisodeStore
from tests.conftest import SESSION, SHUTDOWN


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


def _pristine_copy(scenario_id: str, evidence: str, images, scenarios, docker_client) -> dict:  # type: ignore[no-untyped-def]
    """Every entry laid under a box's pristine folder (name, type, mode, owner, link, bytes),
    with the copy taken from the host's view of the box or from the engine's archive."""
    spec = scenarios[scenario_id].spec
    pristine = tuple(sorted({p for d in spec.detectors for p in getattr(d, "pristine", [])}))
    config = _config(spec, images, pristine)
    with DockerProvider(Settings(evidence=evidence), docker_client) as provider:
        box = provider.start(config)
        try:
            listing = box.exec(
                "cd /var/cache/.[!.]* && find . -printf '%p %y %m %u %l\\n' | sort && "
                "find . -type f -exec sha256sum {} + | sort",
                timeout=30,
            )
        finally:
            box.close()
    assert listing.exit_code == 0, listing
    return {"evidence": box.evidence_source, "listing": listing.stdout}


def _config(spec, images, pristine):  # type: ignore[no-untyped-def]
    return SandboxConfig(
        image=images[spec.image],
        episode_id="pristine-parity",
        scenario_id=spec.id,
        user="root",  # the pristine folder is root's, and not listable by anyone else
        workdir="/",
        hostname=spec.hostname,
        watch=tuple(spec.watch),
        capabilities=tuple(spec.capabilities),
        ready_file=spec.ready_file,
        extra_labels={"farm.session": SESSION},
        pristine=pristine,
    )


def test_the_pristine_copies_are_the_same_read_on_the_host_or_by_the_engine(
    images, scenarios, docker_client
) -> None:
    """A probe runs the scenario's tools from copies taken at the start: the host's copy
    (read from the box's root) and the engine's (its archive) lay the same tree."""
    with_probes = [
        s
        for s, scenario in sorted(scenarios.items())
        if any(getattr(d, "pristine", None) for d in scenario.spec.detectors)
    ]
    assert len(with_probes) >= 5
    for scenario_id in with_probes:
        host = _pristine_copy(scenario_id, "layer", images, scenarios, docker_client)
        engine = _pristine_copy(scenario_id, "engine", images, scenarios, docker_client)
        assert (host["evidence"], engine["evidence"]) == ("layer", "engine")
        assert host["listing"] == engine["listing"] and host["listing"].count("\n") > 2, scenario_id
