"""One settings object, read from the environment (``FARM_`` prefix).

Everything that differs between a laptop demo, CI and a campaign host lives here, so that
no module reads ``os.environ`` on its own.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.agents.accounting import DEFAULT_PRICES, ModelPrice
from orchestrator.agents.generation import GenerationSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: str) -> int | None:
    """``2g``, ``500m``, ``1048576`` as bytes; ``none`` as no limit."""
    text = value.strip().lower()
    if text in ("none", "off", "0"):
        return None
    number, unit = text.rstrip("bkmgt"), text[len(text.rstrip("bkmgt")) :].rstrip("b") or ""
    if not number.replace(".", "", 1).isdigit() or unit not in _UNITS:
        raise ValueError(f"{value!r} is not a size; use e.g. 2g, 500m or none")
    return int(float(number) * _UNITS[unit])


class Endpoint(BaseModel):
    """A named model server: ``--model NAME/MODEL`` talks to ``base_url`` in ``api``'s format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    api: Literal["openai", "anthropic"] = "openai"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    database_url: str = "sqlite:///farm.db"
    environments_dir: Path = REPO_ROOT / "environments"
    images_dir: Path = REPO_ROOT / "images"
    migrations_dir: Path = REPO_ROOT / "migrations"

    # Image naming and the offline base bootstrap.
    image_prefix: str = "misalignment-farm"
    debian_base: str = "debian:bookworm-slim"
    debian_suite: str = "bookworm"
    debian_mirror: str | None = None  # default: the host's own apt sources

    # Sandbox limits applied to every episode container.
    memory_limit: str = "512m"
    cpus: float = 1.0
    pids_limit: int = 256
    output_limit_bytes: int = 16 * 1024
    # Extra host-side wait beyond a command's own timeout before the host gives up on it.
    exec_grace_seconds: float = 5.0
    # Labels every container this process starts with farm.session=<value>, so that one run
    # (a test session, a CI job) can find exactly its own containers among others'.
    session: str | None = None
    # The sandbox backend, by name (orchestrator/sandbox/backends/): docker, or memory for
    # the fast test tier.
    sandbox: str = "docker"
    # Where changed paths come from: the container's writable layer read on the host when it
    # can be (auto), insisting on it (layer), or the engine's diff (engine).
    evidence: Literal["auto", "layer", "engine"] = "auto"
    # Where this process sees the engine's data root, when not at the engine's own path (a
    # worker in a container with it mounted read-only); None: at the engine's path.
    engine_data_mount: str | None = None
    # The engine runtime episodes run under (None: the engine's default, runc).
    runtime: str | None = None
    # Wall time between the agent's last command and the final snapshot, so that a process
    # it signalled has left the process table (a kill is asynchronous; on a loaded host the
    # target may take a moment to be scheduled and exit).
    settle_seconds: float = Field(default=0.25, ge=0, le=10)
    # The most one box may write (a size like the engine's memory limit: 2g, 500m; "none"
    # for no limit): measured on the host after and during every command, plus a file-size
    # rlimit on each. Reaching it ends the episode (ended_by disk_limit), which is scored.
    disk_limit: str = "2g"
    # What is stored of an episode's evidence (orchestrator/scoring/caps.py): the first this
    # many changes of its state diff, and every text cut to this many characters.
    evidence_max_changes: int = Field(default=5000, gt=0)
    evidence_max_text: int = Field(default=16 * 1024, gt=0)
    # Boxes per scenario image and variant a worker keeps started and baselined ahead of its
    # claims (orchestrator/sandbox/pool.py); 0 turns the pool off.
    warm_pool: int = Field(default=1, ge=0, le=16)

    # Model providers (orchestrator/agents/). API keys are deliberately not settings: they are
    # read from OPENAI_API_KEY / ANTHROPIC_API_KEY when a client is made, and nowhere else.
    # Named endpoints, e.g. {"vllm": {"base_url": "http://gpu-1:8000/v1", "api": "openai"}}.
    endpoints: dict[str, Endpoint] = {}
    # Defaults for every episode; farm run's flags override them field by field.
    generation: GenerationSettings = GenerationSettings()
    # The longest an episode's agent loop may run, wall clock: it ends cleanly (ended_by
    # wall_clock) and is scored; a command running then gets only what is left as its
    # timeout. A scenario's or campaign's max_episode_seconds may lower it; the smallest wins.
    max_episode_seconds: float = Field(default=3600.0, gt=0)
    # Ends an episode cleanly (ended_by token_budget) once its input + output tokens reach this.
    token_budget: int | None = Field(default=None, gt=0)
    # The context policy (orchestrator/agents/context.py), off when None: once the conversation
    # passes this many characters, old tool outputs are elided in what the model is sent.
    context_elide_chars: int | None = Field(default=None, gt=0)
    # USD per million tokens by model name; merged over DEFAULT_PRICES, so FARM_PRICES only
    # needs the models it adds or corrects.
    prices: dict[str, ModelPrice] = {}
    # One request to a model API; a slower answer is retried like a dropped connection.
    provider_timeout_seconds: float = Field(default=600.0, gt=0)
    # Rate limits, 5xx, timeouts and dropped connections are retried this many times, waiting
    # base * 2^n (jittered, at most cap) or the server's Retry-After (at most retry_after_max).
    retry_attempts: int = Field(default=8, ge=0)
    retry_base_seconds: float = Field(default=1.0, ge=0)
    retry_cap_seconds: float = Field(default=60.0, ge=0)
    retry_after_max_seconds: float = Field(default=300.0, ge=0)
    # Requests in flight at once per provider and base URL, across this process; by provider
    # or endpoint name (openai, anthropic, vllm...), else the default.
    provider_concurrency: dict[str, int] = {}
    provider_concurrency_default: int = Field(default=8, gt=0)

    # The campaign service (orchestrator/worker.py, orchestrator/api/).
    # Episodes one worker runs at once; each is a container and, for real models, API calls.
    worker_concurrency: int = Field(default=2, gt=0)
    # A worker renews its leases every third of this; a dead worker's episodes are taken over
    # once it has passed, and its containers removed by the next worker on that engine.
    lease_seconds: float = Field(default=60.0, ge=3)
    # Claims of one episode whose leases all ran out before the queue gives up on it.
    max_attempts: int = Field(default=3, gt=0)
    # On SIGTERM a worker lets running episodes finish for this long, then releases them.
    drain_seconds: float = Field(default=30.0, ge=0)
    # Every API route but /health needs `Authorization: Bearer <this>`; `farm serve` refuses
    # to start without it.
    api_token: SecretStr | None = None
    # The largest request body the API reads (bytes); a larger one is a 413 before it is
    # parsed. A campaign spec is a few hundred bytes; 1 MB leaves room and bounds the work.
    api_max_body_bytes: int = Field(default=1024 * 1024, gt=0)

    @field_validator("prices", mode="after")
    @classmethod
    def _over_defaults(cls, prices: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        return {**DEFAULT_PRICES, **prices}

    @field_validator("disk_limit", mode="after")
    @classmethod
    def _a_size(cls, value: str) -> str:
        parse_size(value)
        return value

    @property
    def disk_limit_bytes(self) -> int | None:
        return parse_size(self.disk_limit)

    @property
    def cms_keywords_file(self) -> Path:
        """The keyword lists of the paper-style CMS score (orchestrator/scoring/cms.py)."""
        return self.environments_dir / "cms_keywords.yaml"

    def concurrency_for(self, provider: str) -> int:
        return self.provider_concurrency.get(provider, self.provider_concurrency_default)


@lru_cache
def get_settings() -> Settings:
    return Settings()
