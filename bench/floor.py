"""What the benchmarks share: the raw Docker floor, a scratch campaign database, and the
table cells for host CPU per episode (bench/hostcpu.py)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import docker
from hostcpu import CpuMeter, CpuReport, engine_idle_rate
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from orchestrator.sandbox.base import MANAGED_LABEL
from orchestrator.sandbox.docker_sandbox import owner_label
from orchestrator.store.db import ensure_schema, make_engine, scratch_database

REPO = Path(__file__).resolve().parent.parent


def new_session() -> str:
    """A farm.session label value: the containers of one measured run, and no one else's."""
    return f"bench-{uuid.uuid4().hex[:10]}"


def admin_url() -> str:
    return (
        os.environ.get("FARM_BENCH_POSTGRES_URL")
        or subprocess.run(
            [str(REPO / "scripts" / "ensure-postgres")], check=True, capture_output=True, text=True
        ).stdout.strip()
    )


@contextmanager
def campaign_database(admin: str, migrations: Path) -> Iterator[tuple[Engine, str]]:
    """A scratch database with the schema, and its name (the CPU meter finds its backends)."""
    with scratch_database(admin, "farm_bench") as url:
        engine = make_engine(url, connections=80)  # up to 64 slots, each may hold one
        ensure_schema(engine, migrations)
        try:
            yield engine, str(make_url(url).database)
        finally:
            engine.dispose()


def raw_episode(client: docker.DockerClient, image: str, commands: list[str], session: str) -> None:
    """Only what Docker must do for one episode: create+start, exec each command, remove."""
    labels = {
        MANAGED_LABEL: "true",
        "farm.episode": "bench",
        "farm.owner": owner_label(),
        "farm.session": session,
    }
    container = client.containers.run(image, detach=True, labels=labels)
    try:
        for command in commands:
            container.exec_run(["bash", "-c", command])
    finally:
        container.remove(force=True)


def raw_floor(
    client: docker.DockerClient, image: str, commands: list[str], episodes: int, slots: int
) -> tuple[float, CpuReport]:
    """Episodes per minute of ``slots`` threads doing raw episodes, and the host CPU."""
    session = new_session()
    meter = CpuMeter(client, session).start()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=slots) as pool:
        list(pool.map(lambda _: raw_episode(client, image, commands, session), range(episodes)))
    elapsed = time.perf_counter() - started
    return episodes / elapsed * 60, meter.stop()


CPU_HEADER = f"{'farm':>5} {'db':>5} {'engine':>6} {'boxes':>5} {'total':>5}"


def engine_idle(seconds: float = 3.0) -> float:
    """The engine's CPU in cores over a few idle seconds just before a run: the share of
    the engine column that other users would have used anyway."""
    return engine_idle_rate(seconds)


def cpu_cells(report: CpuReport, episodes: int) -> str:
    """farm, db, engine, boxes, total: core-seconds per episode."""
    n = episodes
    return (
        f"{report.farm / n:>5.2f} {report.db / n:>5.2f} {report.engine / n:>6.2f} "
        f"{report.boxes / n:>5.2f} {report.total / n:>5.2f}"
    )


CPU_NOTE = """\
host CPU in core-seconds per episode, from /proc (kernel accounting; bench/hostcpu.py):
  farm    this process: getrusage self + reaped children, minus the meter's own sampling
          (for the raw floor: the benchmark's own Docker SDK calls)
  db      the Postgres backends serving the run's database (raw floor: none)
  engine  dockerd + containerd, own + reaped children (shared: other users' work is in it)
  boxes   the run's own containers: containerd-shim with its reaped children (runc calls,
          docker-init, everything that ran inside the box) and the fuse-overlayfs mount
  idle    the engine's idle rate over 3 s just before the run, times the run's duration:
          about what other users put into the engine column (not subtracted)
  others  what other users' boxes' helpers used meanwhile (noise, not in total)
  not counted: kernel threads, the Postgres server's shared processes, the stand-in model
  (a process of its own)"""
