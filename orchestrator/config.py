"""One settings object, read from the environment (``FARM_`` prefix).

Everything that differs between a laptop demo, CI and a campaign host lives here, so that
no module reads ``os.environ`` on its own.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


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

    # Sandbox limits applied to every episode container unless a scenario asks for less.
    memory_limit: str = "512m"
    cpus: float = 1.0
    pids_limit: int = 256
    output_limit_bytes: int = 16 * 1024
    # Extra host-side wait beyond a command's own timeout before the host gives up on it.
    exec_grace_seconds: float = 5.0
    # Labels every container this process starts with farm.session=<value>, so that one run
    # (a test session, a CI job) can find exactly its own containers among others'.
    session: str | None = None


@lru_cache
def get_settings() -> Settings:
    return Settings()
