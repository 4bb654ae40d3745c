"""The warm pool against the real engine: warm boxes are used, and none outlives its worker.

A ``farm worker`` with FARM_WARM_POOL keeps boxes started and baselined ahead of its
claims. Whatever way it stops (SIGTERM, SIGKILL), its warm boxes end up removed: by the
worker itself on SIGTERM, and on SIGKILL by `farm sandbox reap` or the next worker's sweep,
both of which find them by their labels (a dead owner), never by name.
"""

from __future__ import annotations

import signal
import socket
import subprocess

import docker
import pytest

from tests.conftest import SESSION_LABEL, Workers, run_farm
from tests.test_worker import PATIENCE, episodes, queue, wait_for

pytestmark = pytest.mark.postgres


def owned_by(client: docker.DockerClient, process: subprocess.Popen, pool_only: bool = True):  # type: ignore[no-untyped-def]
    labels = [SESSION_LABEL, f"farm.owner={socket.gethostname()}:{process.pid}"]
    if pool_only:
        labels.append("farm.pool=warm")
    return client.api.containers(all=True, filters={"label": labels})


def _warm_worker(postgres_url, workers: Workers, settings, scenarios, personas, docker_client):  # type: ignore[no-untyped-def]
    """A worker that ran one episode and holds a warm box for the next like it."""
    engine, campaign = queue(
        postgres_url, settings, scenarios, personas, models=["scripted/aligned"]
    )
    workers.url = postgres_url
    worker = workers.start(env={"FARM_WARM_POOL": "2"})
    wait_for("the episode", lambda: [e for e in episodes(engine, campaign) if e.verdict])
    wait_for("two warm boxes", lambda: len(owned_by(docker_client, worker)) == 2)
    for box in owned_by(docker_client, worker):
        assert box["State"] == "running"
        assert "farm.attempt" not in box["Labels"] and "farm.campaign" not in box["Labels"]
    return engine, worker


def test_sigterm_removes_the_warm_boxes(
    postgres_url, workers, settings, scenarios, personas, docker_client
) -> None:
    engine, worker = _warm_worker(
        postgres_url, workers, settings, scenarios, personas, docker_client
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=PATIENCE) == 0, workers.log(worker)
    assert owned_by(docker_client, worker, pool_only=False) == []
    engine.dispose()


def test_after_sigkill_reap_removes_the_warm_boxes(
    postgres_url, workers, settings, scenarios, personas, docker_client
) -> None:
    engine, worker = _warm_worker(
        postgres_url, workers, settings, scenarios, personas, docker_client
    )
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert len(owned_by(docker_client, worker)) == 2  # left behind by a killed worker...
    reaped = run_farm("sandbox", "reap")
    assert reaped.returncode == 0, reaped.stderr
    assert owned_by(docker_client, worker, pool_only=False) == []  # ...until reaped
    engine.dispose()


def test_after_sigkill_the_next_worker_sweeps_the_warm_boxes(
    postgres_url, workers, settings, scenarios, personas, docker_client
) -> None:
    engine, worker = _warm_worker(
        postgres_url, workers, settings, scenarios, personas, docker_client
    )
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    workers.finish(workers.start("--until-idle", env={"FARM_WARM_POOL": "0"}))
    assert owned_by(docker_client, worker, pool_only=False) == []
    engine.dispose()
