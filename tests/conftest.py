"""Shared fixtures: the real Docker engine, built images, SQLite and the test Postgres.

Nothing here is mocked. After the session, any container this session started that is still
there fails the run: a leak is a bug.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from orchestrator.config import Settings
from orchestrator.images.builder import ImageBuilder
from orchestrator.sandbox.backends.docker import DockerProvider
from orchestrator.sandbox.base import MANAGED_LABEL, SandboxConfig
from orchestrator.sandbox.docker_sandbox import DockerSandbox
from orchestrator.scenarios.loader import Scenario, load_personas, load_scenarios
from orchestrator.store.db import scratch_database

SHUTDOWN = "shutdown-script"
WORKER_PATIENCE = 300  # seconds a worker subprocess may take to finish
# Every container this test session starts, in-process or through `farm` subprocesses, carries
# farm.session=SESSION; the leak check looks only at those, so concurrent sessions coexist.
SESSION = os.environ.setdefault("FARM_SESSION", f"pytest-{uuid.uuid4().hex[:12]}")
SESSION_LABEL = f"farm.session={SESSION}"


def run_farm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real ``farm`` CLI in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return docker.from_env()


@pytest.fixture(scope="session")
def scenarios(settings: Settings) -> dict[str, Scenario]:
    return load_scenarios(settings.environments_dir, settings.images_dir)


@pytest.fixture(scope="session")
def personas(settings: Settings):  # type: ignore[no-untyped-def]
    return load_personas(settings.environments_dir)


@pytest.fixture(scope="session")
def images(settings: Settings, docker_client, scenarios) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Build (or find current) every image once per session: image name -> tag."""
    builder = ImageBuilder(settings, docker_client)
    names = [s.spec.image for s in scenarios.values()]
    return {ref.name: ref.tag for ref in builder.build(names, lambda message: None)}


@pytest.fixture
def sandboxes(settings: Settings, docker_client) -> Iterator[DockerProvider]:  # type: ignore[no-untyped-def]
    """The Docker backend; closing it at the end waits for every removal it started."""
    provider = DockerProvider(settings, docker_client)
    yield provider
    provider.close()


StartSandbox = Callable[..., DockerSandbox]


@pytest.fixture
def start_sandbox(images, scenarios, sandboxes) -> Iterator[StartSandbox]:  # type: ignore[no-untyped-def]
    """Start sandboxes of a scenario's image (or the base); every one is closed afterwards."""
    started: list[DockerSandbox] = []

    def start(scenario_id: str = SHUTDOWN, **overrides) -> DockerSandbox:  # type: ignore[no-untyped-def]
        spec = scenarios[scenario_id].spec
        fields = {
            "image": images[spec.image],
            "episode_id": uuid.uuid4().hex,
            "scenario_id": spec.id,
            "user": spec.user,
            "workdir": spec.workdir,
            "hostname": spec.hostname,
            "watch": tuple(spec.watch),
            "capabilities": tuple(spec.capabilities),
            "ready_file": spec.ready_file,
            "extra_labels": {"farm.session": SESSION},
            **overrides,
        }
        sandbox = sandboxes.start(SandboxConfig(**fields))
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.close()


# -- databases ---------------------------------------------------------------------------------


def _postgres_admin_url() -> str:
    url = os.environ.get("FARM_TEST_POSTGRES_URL")
    if not url:
        pytest.fail(
            "FARM_TEST_POSTGRES_URL is not set: run the suite with `make test`, which starts "
            "Postgres and sets it"
        )
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty Postgres database for one test, dropped afterwards."""
    with scratch_database(_postgres_admin_url(), "farm_test") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'farm.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


# -- model providers ---------------------------------------------------------------------------

# What the tests hand the SDKs as an API key; it must never reach the store.
KEY = "sk-test-9f8e7d6c5b4a-never-store-me"


def fast_settings(**overrides: object) -> Settings:
    """Settings whose retries wait milliseconds, and a short timeout for slow answers."""
    fields: dict[str, object] = {
        "retry_attempts": 5,
        "retry_base_seconds": 0.01,
        "retry_cap_seconds": 0.02,
        "provider_timeout_seconds": 2.0,
        **overrides,
    }
    return Settings(**fields)  # type: ignore[arg-type]


@pytest.fixture
def api_keys(monkeypatch: pytest.MonkeyPatch) -> str:
    """Both providers' key variables set to KEY for this test."""
    for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(variable, KEY)
    return KEY


class Sleeps(list):
    """Records each wait a retrier asks for, instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# -- tiers -------------------------------------------------------------------------------------

# A test that uses any of these fixtures talks to the engine; `make unit` leaves it out.
_ENGINE_FIXTURES = {"docker_client", "images", "sandboxes", "start_sandbox"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _ENGINE_FIXTURES:
            item.add_marker(pytest.mark.engine)
        if "postgres_url" in names or "[postgres" in item.name:
            item.add_marker(pytest.mark.postgres)


# -- leak check --------------------------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        client = docker.from_env()
        left = client.containers.list(
            all=True, filters={"label": [f"{MANAGED_LABEL}=true", SESSION_LABEL]}
        )
    except docker.errors.DockerException:
        return
    if left:
        names = ", ".join(c.name for c in left)
        print(f"\nLEAK: containers labelled {MANAGED_LABEL}=true left after the suite: {names}")
        for container in left:
            container.remove(force=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- campaigns ---------------------------------------------------------------------------------


@dataclass
class Workers:
    """Starts ``farm worker`` processes on one database and stops whatever is left."""

    url: str
    logs: Path
    started: list[subprocess.Popen]

    def start(
        self, *args: str, lease: int = 3, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        log = (self.logs / f"worker-{len(self.started)}.log").open("w")
        env = {
            **os.environ,
            "FARM_DATABASE_URL": self.url,
            "FARM_LEASE_SECONDS": str(lease),
            "FARM_WORKER_CONCURRENCY": "2",
            **(env or {}),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "worker", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.started.append(process)
        return process

    def log(self, process: subprocess.Popen) -> str:
        return (self.logs / f"worker-{self.started.index(process)}.log").read_text()

    def finish(self, process: subprocess.Popen) -> None:
        """Wait for an --until-idle worker to exit cleanly."""
        assert process.wait(timeout=WORKER_PATIENCE) == 0, self.log(process)


@pytest.fixture
def workers(tmp_path: Path, images) -> Iterator[Workers]:  # type: ignore[no-untyped-def]
    pool = Workers("", tmp_path, [])
    yield pool
    for process in pool.started:
        if process.poll() is None:
            process.kill()
            process.wait()


def replay_commands(settings, scenarios, personas, images, sandboxes, url, *commands):  # type: ignore[no-untyped-def]
    """Run the given bash commands, then a submit, as one shutdown-script episode against the
    real engine; the result and its store (the caller disposes of the store's engine)."""
    from orchestrator.agents.scripted import ScriptedProvider
    from orchestrator.episode import EpisodeRequest, run_episode
    from orchestrator.scenarios.spec import TrajectorySpec
    from orchestrator.store.episodes import EpisodeStore

    steps = [{"bash": c} for c in commands] + [{"submit": "done"}]
    trajectory = TrajectorySpec.model_validate({"expect": "aligned", "steps": steps})
    scenario = scenarios[SHUTDOWN]
    request = EpisodeRequest(
        scenario=scenario,
        persona=personas["none"],
        model="scripted",
        provider=ScriptedProvider(trajectory),
        image=images[scenario.spec.image],
    )
    store = EpisodeStore.open(url, settings.migrations_dir)
    result = run_episode(request, store=store, settings=settings, start_sandbox=sandboxes.start)
    return result, store


def queue_campaign(engine, settings, scenarios, catalogue_personas, **fields) -> str:  # type: ignore[no-untyped-def]
    """Queue a campaign of shutdown-script episodes (fields override) and return its id."""
    from orchestrator.campaign import CampaignSpec, plan_campaign
    from orchestrator.store.campaigns import CampaignStore

    spec = CampaignSpec(**{"name": "test", "scenarios": [SHUTDOWN], **fields})
    planned = plan_campaign(spec, scenarios, catalogue_personas, settings)
    return CampaignStore(engine).submit(spec, planned)
