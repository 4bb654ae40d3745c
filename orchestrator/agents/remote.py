"""What the OpenAI and Anthropic providers share: where the model is, how it is asked, and
what of that is recorded on the episode.

Each provider only translates the conversation to its wire format and back; connection,
retries, the concurrency slot and the record live here, once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from orchestrator.agents.generation import GenerationSettings
from orchestrator.agents.limits import slot
from orchestrator.agents.provider import Provider
from orchestrator.agents.retry import Retrier, RetryPolicy, SdkErrors

Api = Literal["openai", "anthropic"]
DEFAULT_BASE_URLS: dict[Api, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


@dataclass(frozen=True)
class Connection:
    """One model on one server. ``api_key`` is handed to the SDK client and to nothing else."""

    api: Api
    provider: str  # the model string's prefix: openai, anthropic, or a named endpoint
    model: str  # the name the server knows the model by
    base_url: str
    api_key: str | None = field(repr=False)  # kept out of reprs, so out of tracebacks and logs
    timeout_seconds: float
    retry: RetryPolicy
    concurrency: int

    def client_options(self) -> dict[str, Any]:
        """What both SDK clients are made with. Their own retries are off (retry.py does it,
        once); the key is passed explicitly so the SDK looks for no other credential, and a
        local server that wants no key still gets a string, since the SDKs insist on one."""
        return {
            "api_key": self.api_key or "no-key",
            "base_url": self.base_url,
            "timeout": self.timeout_seconds,
            "max_retries": 0,
        }

    @property
    def public_base_url(self) -> str:
        """The base URL without any user:password in it, fit to be recorded."""
        parts = urlsplit(self.base_url)
        netloc = parts.hostname or ""
        netloc += f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=netloc)) if parts.password else self.base_url


class RemoteProvider(Provider):
    """A model behind an HTTP API; subclasses say which settings their API has no field for."""

    unsupported: frozenset[str] = frozenset()

    def __init__(
        self,
        connection: Connection,
        generation: GenerationSettings,
        errors: SdkErrors,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.connection = connection
        self.name = f"{connection.provider}/{connection.model}"
        self.generation = generation
        self.retrier = Retrier(
            errors=errors,
            policy=connection.retry,
            slot=slot(connection.provider, connection.base_url, connection.concurrency),
            where=f"{connection.provider} at {connection.public_base_url}",
            secrets=(connection.api_key,) if connection.api_key else (),
            sleep=sleep,
        )

    def ignored(self) -> list[str]:
        """Settings that were asked for but that this API cannot take."""
        return sorted(k for k in self.generation.given() if k in self.unsupported)

    def applied(self) -> dict[str, Any]:
        """The generation settings actually sent (defaults the provider fills in included)."""
        given = self.generation.given()
        return {k: v for k, v in given.items() if k not in self.unsupported}

    def describe(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "provider": self.connection.provider,
            "api": self.connection.api,
            "model": self.connection.model,
            "base_url": self.connection.public_base_url,
            "generation": self.applied(),
        }
        if ignored := self.ignored():
            record["ignored"] = ignored
        return record
