"""The sandbox backend interface and its registry, chosen by name (``FARM_SANDBOX``).

As in Inspect's sandbox registry, a backend is one module that owns everything about its
machines: building or finding images, starting a box, where its evidence comes from, and
cleaning up after itself. Nothing above ``orchestrator/sandbox/`` knows which backend runs,
so a Kubernetes backend is a new module ``orchestrator/sandbox/backends/<name>.py`` exposing
``PROVIDER`` (or any ``package.module`` path naming one), and nothing else changes.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from orchestrator.errors import UserError
from orchestrator.sandbox.base import Sandbox, SandboxConfig

if TYPE_CHECKING:
    from orchestrator.config import Settings

Log = Callable[[str], None]
# (episode id, attempt) pairs found on the backend -> those no live lease holds
Abandoned = Callable[[set[tuple[str, int]]], set[tuple[str, int]]]


@dataclass(frozen=True)
class ImageRef:
    """A scenario image as this backend runs it: ``tag`` to start it, ``id`` for provenance."""

    name: str
    tag: str
    id: str | None = None


class UnknownSandbox(UserError):
    """``FARM_SANDBOX`` names no backend."""


class SandboxProvider(ABC):
    """One backend's machines. Thread-safe: a worker's slots share one provider."""

    name: ClassVar[str]

    @abstractmethod
    def ensure_image(self, name: str, log: Log) -> ImageRef:
        """The scenario image ``name``, built first if it is missing or stale."""

    @abstractmethod
    def build_images(
        self, names: Iterable[str], log: Log, force: bool = False, verbose: bool = False
    ) -> list[ImageRef]:
        """Build (or find current) these images; ``verbose`` logs every build step."""

    @abstractmethod
    def start(self, config: SandboxConfig) -> Sandbox:
        """A ready box for one episode; nothing is left behind if starting fails.

        Raises SandboxError."""

    @abstractmethod
    def reap(self, everything: bool = False) -> list[str]:
        """Remove this backend's boxes whose runner is gone (all of them with ``everything``);
        only ever boxes carrying the farm's own labels. Returns their names."""

    @abstractmethod
    def reap_episode(self, episode_id: str) -> list[str]:
        """Remove the boxes of one episode (an attempt being taken over)."""

    @abstractmethod
    def reap_abandoned(self, abandoned: Abandoned) -> list[str]:
        """Remove campaign boxes of attempts that ``abandoned`` says no lease holds."""

    @property
    @abstractmethod
    def runtime(self) -> str:
        """What isolates the boxes (``runc``, ``runsc``, ``memory``), for provenance."""

    def close(self) -> None:  # noqa: B027 - a provider without warm boxes has nothing to do
        """Remove every box still held ahead of use, and finish removals under way."""

    def __enter__(self) -> SandboxProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_sandbox_provider(settings: Settings, name: str | None = None) -> SandboxProvider:
    """The backend ``name`` (default: ``settings.sandbox``)."""
    name = name or settings.sandbox
    module_name = name if "." in name else f"orchestrator.sandbox.backends.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UnknownSandbox(
            f"FARM_SANDBOX={name!r} names no sandbox backend; "
            "use `docker`, `memory` (tests only) or a module path exposing PROVIDER"
        ) from None
    provider: type[SandboxProvider] = module.PROVIDER
    return provider.from_settings(settings)  # type: ignore[attr-defined, no-any-return]
