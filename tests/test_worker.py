"""Workers against a real Postgres and the real Docker engine, as separate processes.

Each test drives ``farm worker`` subprocesses the way a campaign host does, kills or signals
them, restarts Postgres under them, and then checks the stored rows and the engine's
containers. Waiting is by polling for a state, never for a fixed time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest
from sqlalchemy import Engine, select

from orchestrator.store.campaigns import CampaignStore
from orchestrator.store.db import ensure_schema, make_engine
from orchestrator.store.models import EpisodeRecord, FindingRecord, StateChangeRecord, StepRecord
from tests.conftest import SESSION_LABEL, queue_campaign

pytestmark = pytest.mark.postgres
PATIENCE = 300  # seconds any one wait may take before the test gives up


def wait_for(what: str, check: Callable[[], object], timeout: float = PATIENCE) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def queue(url: str, settings, scenarios, catalogue, **fields) -> tuple[Engine, str]:  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    ensure_schema(engine, settings.migrations_dir)
    return engine, queue_campaign(engine, settings, scenarios, catalogue, **fields)


def episodes(engine: Engine, campaign: str) -> list[EpisodeRecord]:
    with engine.connect() as connection:
        query = select(EpisodeRecord).where(EpisodeRecord.campaign_id == campaign)
        return list(connection.execute(query).all())


def rows(engine: Engine, model: type, episode_id: str) -> list:
    with engine.connect() as connection:
        return list(connection.execute(select(model).where(model.episode_id == episode_id)).all())


def campaign_containers(client: docker.DockerClient, campaign: str) -> list[str]:
    """Ids of the campaign's containers, listed in one call (one removed meanwhile is fine)."""
    labels = [SESSION_LABEL, f"farm.campaign={campaign}"]
    return [c["Id"] for c in client.api.containers(all=True, filters={"label": labels})]


def assert_released_untouched(engine: Engine, campaign: str, client: docker.DockerClient) -> None:
    """The campaign's one episode is back in the queue after one attempt, with nothing of that
    attempt left: no steps, no container."""
    [episode] = episodes(engine, campaign)
    assert (episode.status, episode.attempts) == ("queued", 1)
    assert rows(engine, StepRecord, episode.id) == []
    assert campaign_containers(client, campaign) == []


def trajectory_steps(scenarios, name: str) -> int:  # type: ignore[no-untyped-def]
    return len(scenarios["shutdown-script"].trajectory(name).steps)


def test_two_workers_share_a_campaign_and_run_each_episode_once(
    postgres_url, workers, settings, scenarios, personas, docker_client
):
    engine, campaign = queue(
        postgres_url,
        settings,
        scenarios,
        personas,
        models=["scripted/aligned", "scripted/misaligned"],
        personas=["none", "analyst"],
        repeats=2,
    )
    workers.url = postgres_url
    both = [workers.start("--until-idle"), workers.start("--until-idle")]
    for process in both:
        workers.finish(process)

    done = episodes(engine, campaign)
    assert len(done) == 8
    assert {e.status for e in done} == {"completed"}
    assert [e.attempts for e in done] == [1] * 8  # claimed once each: nothing ran twice
    assert len({e.lease_owner for e in done}) == 2  # both workers did some of it
    for episode in done:
        expected = "misaligned" if episode.model == "scripted/misaligned" else "aligned"
        assert episode.verdict == expected
        steps = rows(engine, StepRecord, episode.id)
        assert len(steps) == trajectory_steps(scenarios, episode.trajectory)
    assert CampaignStore(engine).get(campaign).status == "done"  # type: ignore[union-attr]
    assert campaign_containers(docker_client, campaign) == []


def test_a_worker_killed_mid_episode_is_taken_over_and_its_container_removed(
    postgres_url, workers, settings, scenarios, personas, docker_client
):
    engine, campaign = queue(
        postgres_url, settings, scenarios, personas, models=["scripted/misaligned"]
    )
    workers.url = postgres_url
    doomed = workers.start()
    [orphan_id] = wait_for(  # type: ignore[misc]
        "the first worker's container", lambda: campaign_containers(docker_client, campaign)
    )
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    orphan = docker_client.containers.get(orphan_id)  # still there: nobody removed it
    assert orphan.labels["farm.attempt"] == "1"

    workers.finish(workers.start("--until-idle"))

    [episode] = episodes(engine, campaign)
    assert (episode.status, episode.verdict, episode.attempts) == ("completed", "misaligned", 2)
    steps = rows(engine, StepRecord, episode.id)
    assert sorted(s.idx for s in steps) == list(range(trajectory_steps(scenarios, "misaligned")))
    findings = rows(engine, FindingRecord, episode.id)
    assert "shutdown_resistance" in {f.behavior for f in findings}
    changes = rows(engine, StateChangeRecord, episode.id)
    assert len(changes) == len({(c.subject, c.change, c.path) for c in changes})  # once each
    with pytest.raises(docker.errors.NotFound):
        orphan.reload()
    assert campaign_containers(docker_client, campaign) == []


def test_sigterm_releases_the_running_episode_for_another_worker(
    postgres_url, workers, settings, scenarios, personas, docker_client
):
    engine, campaign = queue(
        postgres_url, settings, scenarios, personas, models=["scripted/misaligned"]
    )
    workers.url = postgres_url
    stopping = workers.start("--drain", "0")
    wait_for("an episode to start", lambda: campaign_containers(docker_client, campaign))
    stopping.send_signal(signal.SIGTERM)
    assert stopping.wait(timeout=PATIENCE) == 0, workers.log(stopping)
    assert "released" in workers.log(stopping)
    assert_released_untouched(engine, campaign, docker_client)

    workers.finish(workers.start("--until-idle"))
    [episode] = episodes(engine, campaign)
    assert (episode.status, episode.verdict, episode.attempts) == ("completed", "misaligned", 2)


def test_cancelling_stops_running_episodes_and_resuming_runs_them_again(
    postgres_url, workers, settings, scenarios, personas, docker_client
):
    engine, campaign = queue(
        postgres_url, settings, scenarios, personas, models=["scripted/misaligned"]
    )
    workers.url = postgres_url
    worker = workers.start("--until-idle")
    wait_for("an episode to start", lambda: campaign_containers(docker_client, campaign))
    CampaignStore(engine).cancel(campaign)
    workers.finish(worker)  # nothing left to do once the campaign is cancelled
    assert "its campaign was cancelled" in workers.log(worker)
    assert_released_untouched(engine, campaign, docker_client)
    assert CampaignStore(engine).get(campaign).status == "cancelled"  # type: ignore[union-attr]

    CampaignStore(engine).resume(campaign)
    workers.finish(workers.start("--until-idle"))
    [episode] = episodes(engine, campaign)
    assert (episode.status, episode.verdict, episode.attempts) == ("completed", "misaligned", 2)


def test_a_worker_that_cannot_build_images_releases_the_episode_and_stops(
    postgres_url, workers, settings, scenarios, personas, docker_client, tmp_path
):
    images = tmp_path / "images"
    shutil.copytree(settings.images_dir, images, ignore=shutil.ignore_patterns("compose"))
    (images / "shutdown-script" / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo this image cannot be built; exit 3\n"
    )
    engine, campaign = queue(
        postgres_url, settings, scenarios, personas, models=["scripted/misaligned"]
    )
    workers.url = postgres_url
    broken = workers.start("--until-idle", env={"FARM_IMAGES_DIR": str(images)})
    assert broken.wait(timeout=PATIENCE) == 2, workers.log(broken)
    assert "the worker stopped: ImageBuildError" in workers.log(broken)
    assert_released_untouched(engine, campaign, docker_client)  # not an error: it can run


def test_a_model_the_worker_has_no_key_for_is_an_error_with_the_reason(
    postgres_url, workers, settings, scenarios, personas, monkeypatch
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    engine, campaign = queue(postgres_url, settings, scenarios, personas, models=["openai/gpt-4.1"])
    workers.url = postgres_url
    workers.finish(workers.start("--until-idle"))
    [episode] = episodes(engine, campaign)
    assert (episode.status, episode.verdict) == ("error", None)
    assert "needs OPENAI_API_KEY" in (episode.error or "")
    assert CampaignStore(engine).get(campaign).status == "done"  # type: ignore[union-attr]


# -- a Postgres of the test's own, to restart under a running worker -----------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrivatePostgres:
    url: str
    pg_ctl: Callable[..., None]


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A throwaway cluster from the installed Postgres binaries (as user postgres when root)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not versions:
        pytest.fail("no Postgres binaries under /usr/lib/postgresql (run scripts/ensure-postgres)")
    bindir = versions[-1].parent
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    home = Path(tempfile.mkdtemp(prefix="farm-pg-"))
    home.chmod(0o755)
    if as_owner:
        shutil.chown(home, "postgres", "postgres")
    data, port = home / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_owner, *args], check=True, capture_output=True, timeout=120)

    def pg_ctl(action: str, *extra: str) -> None:
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"
        run(str(bindir / "pg_ctl"), action, "-D", str(data), "-w", "-o", options, *extra)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "farm", "-A", "trust")
    pg_ctl("start", "-l", str(home / "log"))
    try:
        yield PrivatePostgres(f"postgresql+psycopg://farm@127.0.0.1:{port}/postgres", pg_ctl)
    finally:
        pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(home, ignore_errors=True)


def test_workers_ride_out_a_postgres_restart_and_finish_the_campaign(
    private_postgres, workers, settings, scenarios, personas, docker_client
):
    engine, campaign = queue(
        private_postgres.url,
        settings,
        scenarios,
        personas,
        models=["scripted/aligned", "scripted/misaligned"],
        repeats=3,
    )
    workers.url = private_postgres.url
    worker = workers.start("--until-idle", lease=6)
    wait_for(
        "an episode to finish",
        lambda: any(e.status == "completed" for e in episodes(engine, campaign)),
    )
    wait_for("episodes in flight", lambda: campaign_containers(docker_client, campaign))
    private_postgres.pg_ctl("stop", "-m", "fast")
    time.sleep(3)  # an outage long enough for every thread of the worker to hit it
    private_postgres.pg_ctl("start", "-l", "/dev/null")
    workers.finish(worker)

    assert "database unreachable" in workers.log(worker)  # it did see the outage
    done = episodes(engine, campaign)
    assert len(done) == 6
    assert {e.status for e in done} == {"completed"}
    for episode in done:
        steps = rows(engine, StepRecord, episode.id)
        assert sorted(s.idx for s in steps) == list(
            range(trajectory_steps(scenarios, episode.trajectory))
        )
    assert CampaignStore(engine).get(campaign).status == "done"  # type: ignore[union-attr]
    assert campaign_containers(docker_client, campaign) == []
    engine.dispose()
