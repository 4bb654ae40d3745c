"""`docker compose up` end to end: Postgres, migrations, the API and a worker, as a user runs
them (docker-compose.yml), with Compose v1 where it is installed (as here) and v2 otherwise.

One stack per run, under its own project name and free host ports. It runs the demo campaign
by itself; the test submits a second campaign through the API, waits for both, then reads the
rates as the read-only analyst over the published Postgres port. The worker's scenario
containers carry this test session's farm.session label (FARM_SESSION is passed through), so
the suite's leak check covers them too. The stack is taken down (volumes included) whatever
happens. It also checks what the stack denies: the app's login owns nothing and creates
nothing, the analyst writes nothing (no TEMP, no large objects) and has a statement timeout,
every service runs with limits, no-new-privileges and no capability beyond its list; and,
without a stack, that Compose refuses to start without the token and passwords unless it is
the explicit demo.

Cost, measured here: with images current the test takes 35-50 s (up 7 s, the ten episodes at
four at a time 20-30 s). The first run also builds the two compose images, about 3-4 minutes
(apt inside docker build: farm about 2 min, postgres about 1-1.5 min); after that a source
change rebuilds one layer (about 5 s) and scripts/compose-prepare takes about a second.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import docker
import httpx
import psycopg
import pytest
from psycopg import errors

from tests.conftest import SESSION

pytestmark = pytest.mark.compose

REPO = Path(__file__).resolve().parent.parent
# Overall bound on each wait (the stack coming up, the campaigns finishing); generous, since a
# cold machine builds images first. Nothing is asserted about how long anything took.
PATIENCE = 900.0
T = TypeVar("T")
# What each service adds back after dropping every capability (docker-compose.yml).
ALLOWED_CAPABILITIES = {
    "postgres": {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"},
    # reads the boxes' layers on the host, whoever owns the agent's files (never writes)
    "worker": {"DAC_READ_SEARCH"},
}
SECRETS = (
    "FARM_API_TOKEN",
    "FARM_POSTGRES_ADMIN_PASSWORD",
    "FARM_POSTGRES_PASSWORD",
    "FARM_ANALYST_PASSWORD",
)


def compose_cli() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    pytest.fail("no Compose: install docker-compose (apt-get install docker-compose) or v2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, probe: Callable[[], T | None], patience: float = PATIENCE) -> T:
    """Poll ``probe`` until it returns something other than None."""
    deadline = time.monotonic() + patience
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (httpx.HTTPError, psycopg.OperationalError) as exc:
            result, last = None, exc
        if result is not None:
            return result
        time.sleep(1)
    pytest.fail(f"gave up waiting for {what} after {patience:.0f} s (last error: {last})")


class Stack:
    def __init__(self) -> None:
        self.project = f"farmtest{uuid.uuid4().hex[:10]}"
        self.api_port, self.pg_port = free_port(), free_port()
        self.token = secrets.token_urlsafe(16)
        self.analyst_password = secrets.token_urlsafe(12)
        self.app_password = secrets.token_urlsafe(12)
        self.env = {
            **os.environ,
            # explicit, so that neither the caller's environment nor an .env file changes them
            "FARM_CAMPAIGNS_DIR": str(REPO / "environments" / "campaigns"),
            "FARM_CAMPAIGN_FILE": "demo.yaml",
            "FARM_POSTGRES_DB": "farm",
            "FARM_ANALYST_USER": "analyst",
            "FARM_API_PORT": str(self.api_port),
            "FARM_POSTGRES_PORT": str(self.pg_port),
            "FARM_API_TOKEN": self.token,
            "FARM_POSTGRES_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "FARM_POSTGRES_PASSWORD": self.app_password,
            "FARM_ANALYST_PASSWORD": self.analyst_password,
            "FARM_WORKER_CONCURRENCY": "4",
            "FARM_SESSION": SESSION,
            # the legacy builder: what works with this engine
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
        }
        self.cli = [*compose_cli(), "-p", self.project, "-f", str(REPO / "docker-compose.yml")]
        self.api = httpx.Client(
            base_url=f"http://127.0.0.1:{self.api_port}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )

    def compose(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.cli, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def analyst(self) -> psycopg.Connection:
        return self.login("analyst", self.analyst_password)

    def login(self, user: str, password: str) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.pg_port,
            dbname="farm",
            user=user,
            password=password,
            connect_timeout=10,
            autocommit=True,
        )


def timed(label: str, started: float) -> float:
    now = time.monotonic()
    print(f"  compose test: {label} {now - started:.1f} s")
    return now


class Creations(threading.Thread):
    """Follows the engine's container creations labelled with this session, from now on."""

    def __init__(self, client: docker.DockerClient) -> None:
        super().__init__(daemon=True)
        self.owners: list[str] = []
        self.events = client.events(
            filters={"type": "container", "event": "create", "label": f"farm.session={SESSION}"},
            decode=True,
        )
        self.start()

    def run(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when stop() closes it
            for event in self.events:
                self.owners.append(event["Actor"]["Attributes"].get("farm.owner", ""))

    def stop(self) -> None:
        self.events.close()
        self.join(timeout=10)


def campaign_when_done(stack: Stack, campaign_id: str) -> dict | None:
    body = stack.api.get(f"/campaigns/{campaign_id}").raise_for_status().json()
    assert body["status"] != "cancelled", body
    return body if body["status"] == "done" else None


def test_compose_up_runs_the_demo_and_a_campaign_submitted_through_the_api(
    docker_client: docker.DockerClient,
) -> None:
    started = time.monotonic()
    prepared = subprocess.run(
        [str(REPO / "scripts" / "compose-prepare")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    mark = timed("compose-prepare", started)

    stack = Stack()
    # The engine keeps only its last 256 events, so the creations are followed live.
    creations = Creations(docker_client)
    worker_host = ""
    ok = False
    try:
        up = stack.compose("up", "-d", "--build")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        mark = timed("up (images built or current, migrations done)", mark)
        # the worker's containers are labelled farm.owner=<its hostname, the short id>:<pid>
        worker_host = stack.compose("ps", "-q", "worker").stdout.strip()[:12]
        assert worker_host

        health = wait_for("the API's /health", lambda: stack.api.get("/health").is_success or None)
        assert health
        mark = timed("API healthy", mark)

        spec = {
            "name": f"compose-test-{uuid.uuid4().hex[:8]}",
            "scenarios": ["shutdown-script"],
            "models": ["scripted/aligned", "scripted/misaligned"],
            "personas": ["none"],
            "repeats": 1,
        }
        unauthorised = httpx.post(f"{stack.api.base_url}/campaigns", json=spec, timeout=10)
        assert unauthorised.status_code == 401
        submitted = stack.api.post("/campaigns", json=spec)
        assert submitted.status_code == 201, submitted.text
        ours = submitted.json()["id"]

        def demo_id() -> str | None:
            listed = stack.api.get("/campaigns").raise_for_status().json()
            return next((c["id"] for c in listed if c["name"] == "demo"), None)

        demo = wait_for("the demo campaign to be queued", demo_id)
        done = {}
        for name, campaign_id in (("test", ours), ("demo", demo)):
            done[name] = wait_for(
                f"the {name} campaign to finish", lambda i=campaign_id: campaign_when_done(stack, i)
            )
        mark = timed("both campaigns done (8 + 2 episodes)", mark)
        for name, body in done.items():
            assert body["counts"]["error"] == 0, (name, body)
        assert done["demo"]["counts"]["completed"] == 8
        assert done["test"]["counts"]["completed"] == 2

        with stack.analyst() as conn:
            rows = conn.execute(
                "SELECT campaign_id, model, persona, episodes, misaligned, rate, errors "
                "FROM misalignment_rates WHERE campaign_id IN (%s, %s)",
                (ours, demo),
            ).fetchall()
            rates = {(r[0], r[1], r[2]): (r[3], r[4], float(r[5]), r[6]) for r in rows}
            assert rates[(ours, "scripted/misaligned", "none")] == (1, 1, 1.0, 0)
            assert rates[(ours, "scripted/aligned", "none")] == (1, 0, 0.0, 0)
            for persona in ("none", "rapid-executor"):
                assert rates[(demo, "scripted/misaligned", persona)] == (2, 2, 1.0, 0)
                assert rates[(demo, "scripted/aligned", persona)] == (2, 0, 0.0, 0)
            assert len(rows) == 6

            # the analyst reads and changes nothing
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("UPDATE episodes SET verdict = 'aligned'")
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("INSERT INTO campaigns (id, name) VALUES ('x', 'forged')")
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("DELETE FROM findings")
            # and writes nothing elsewhere either, and cannot hold the server for long
            for sneaky in ("CREATE TEMP TABLE t (x int)", "SELECT lo_from_bytea(0, 'x')"):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(sneaky)
            assert conn.execute("SHOW statement_timeout").fetchone() == ("1min",)

        # The app's login reads and writes rows, and nothing more.
        with stack.login("farm", stack.app_password) as conn:
            attributes = conn.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                "WHERE rolname = current_user"
            ).fetchone()
            assert attributes == (False, False, False)
            owned = conn.execute(
                "SELECT count(*) FROM pg_class WHERE relowner = "
                "(SELECT oid FROM pg_roles WHERE rolname = current_user)"
            ).fetchone()
            assert owned == (0,)
            assert conn.execute("SELECT count(*) FROM episodes").fetchone() == (10,)
            # the worker read its boxes on the host, through the engine's data root it mounts
            sources = conn.execute("SELECT DISTINCT evidence_source FROM episodes").fetchall()
            assert sources == [("layer",)], sources
            for sneaky in (
                "CREATE ROLE forged LOGIN",
                "CREATE TABLE forged (x int)",
                "CREATE TEMP TABLE forged (x int)",
                "ALTER TABLE episodes ADD COLUMN forged int",
                "DROP VIEW misalignment_rates",
            ):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(sneaky)

        # Every service runs with limits, no-new-privileges and no capability it does not need.
        for container in docker_client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={stack.project}"}
        ):
            host = container.attrs["HostConfig"]
            name = container.labels["com.docker.compose.service"]
            assert host["Memory"] > 0 and host["PidsLimit"] > 0, name
            assert "no-new-privileges:true" in (host["SecurityOpt"] or []), name
            assert host["CapDrop"] == ["ALL"], name
            assert set(host["CapAdd"] or ()) <= ALLOWED_CAPABILITIES.get(name, set()), name

        # Every episode container the worker started carried this session's label.
        creations.stop()
        ours_created = [o for o in creations.owners if o.startswith(f"{worker_host}:")]
        assert len(ours_created) >= 10
        ok = True
    finally:
        creations.stop()
        if not ok:
            logs = stack.compose("logs", "--no-color", "--tail", "60")
            print(f"\n--- compose logs ({stack.project}) ---\n{logs.stdout[-8000:]}")
        down = stack.compose("down", "-v", "--remove-orphans", timeout=300)
        stack.api.close()
        timed("down", mark)
        left = docker_client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={stack.project}"}
        )
        # the worker's episode containers too (by label, never by name), should any be left
        if worker_host:
            left += [
                c
                for c in docker_client.containers.list(
                    all=True, filters={"label": f"farm.session={SESSION}"}
                )
                if c.labels.get("farm.owner", "").startswith(f"{worker_host}:")
            ]
        for container in left:
            container.remove(force=True, v=True)
    assert down.returncode == 0, down.stderr[-3000:]
    assert not left, [c.name for c in left]


def test_compose_refuses_to_start_without_its_secrets_outside_the_demo() -> None:
    """`config` interpolates the file as `up` does: each secret missing is refused, naming
    it; the explicit demo (images/compose/demo.env, `make up FARM_DEMO=1`) needs none."""
    stack = Stack()
    for secret in SECRETS:
        stack.env = {k: v for k, v in Stack().env.items() if k != secret}
        refused = stack.compose("config", "--quiet", timeout=120)
        assert refused.returncode != 0, secret
        assert f"set {secret}" in refused.stderr, (secret, refused.stderr[-2000:])
    stack.env = {k: v for k, v in stack.env.items() if k not in SECRETS}
    demo = [*stack.cli[:-2], "--env-file", str(REPO / "images/compose/demo.env"), *stack.cli[-2:]]
    shown = subprocess.run(
        [*demo, "config"], cwd=REPO, env=stack.env, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "FARM_API_TOKEN: demo-token-change-me" in shown.stdout
