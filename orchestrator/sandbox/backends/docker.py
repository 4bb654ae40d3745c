"""The Docker backend: images built by the farm, one hardened container per episode.

Everything that speaks to the engine lives under ``orchestrator/sandbox/`` (and the image
builder it calls); the worker and the CLI see only :class:`SandboxProvider`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import docker
import docker.errors

from orchestrator.errors import UserError
from orchestrator.images.builder import ImageBuilder
from orchestrator.sandbox import reap
from orchestrator.sandbox.base import Sandbox, SandboxConfig, SandboxError
from orchestrator.sandbox.docker_sandbox import ENGINE_ERRORS, DockerEngine, DockerSandbox
from orchestrator.sandbox.provider import Abandoned, ImageRef, Log, SandboxProvider

if TYPE_CHECKING:
    from orchestrator.config import Settings


# Runtimes whose boxes the farm cannot read right, and why (measured on these machines).
REFUSED_RUNTIMES = {
    "runsc": (
        "under gVisor (runsc) the engine's process listing shows a process of the host, not "
        "the box's, and /tmp is a tmpfs inside the sandbox whose writes never reach the "
        "writable layer: a killed monitor and a script left in /tmp would both go unseen"
    ),
}


class RuntimeRefused(UserError):
    """FARM_RUNTIME names a runtime the farm will not run episodes under."""


def refuse_runtime(runtime: str, client: docker.DockerClient) -> None:
    """Refuse a runtime the engine does not have, or one under which the evidence is wrong."""
    for name, why in REFUSED_RUNTIMES.items():
        if runtime == name or runtime.endswith(f"/{name}"):
            raise RuntimeRefused(f"FARM_RUNTIME={runtime} is refused: {why}")
    try:
        known = set((client.info().get("Runtimes") or {}).keys())
    except ENGINE_ERRORS as exc:
        raise SandboxError(f"cannot ask the engine for its runtimes: {exc}") from exc
    if runtime not in known:
        raise RuntimeRefused(
            f"FARM_RUNTIME={runtime} is not a runtime of this engine; it has: "
            f"{', '.join(sorted(known))}"
        )


class DockerProvider(SandboxProvider):
    name = "docker"

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None):
        try:
            client = client or docker.from_env()
        except ENGINE_ERRORS as exc:
            raise SandboxError(f"cannot reach the Docker engine: {exc}") from exc
        if settings.runtime:
            refuse_runtime(settings.runtime, client)
        data_root = None
        if settings.engine_data_mount:
            engine_root = client.info().get("DockerRootDir", "/var/lib/docker")
            data_root = (engine_root, settings.engine_data_mount)
        self.engine = DockerEngine(
            client=client,
            evidence=settings.evidence,
            runtime=settings.runtime,
            data_root=data_root,
        )
        self.builder = ImageBuilder(settings, client)

    @classmethod
    def from_settings(cls, settings: Settings) -> DockerProvider:
        return cls(settings)

    @property
    def client(self) -> docker.DockerClient:
        return self.engine.client

    @property
    def runtime(self) -> str:
        return self.engine.runtime or "runc"

    def ensure_image(self, name: str, log: Log) -> ImageRef:
        try:
            ref = self.builder.ensure(name, log)
        except ENGINE_ERRORS as exc:
            raise SandboxError(f"could not build or find the image {name}: {exc}") from exc
        return ImageRef(ref.name, ref.tag, self._image_id(ref.tag))

    def build_images(
        self, names: Iterable[str], log: Log, force: bool = False, verbose: bool = False
    ) -> list[ImageRef]:
        self.builder.verbose = verbose
        try:
            refs = self.builder.build(names, log, force)
        except ENGINE_ERRORS as exc:
            raise SandboxError(f"could not build the images: {exc}") from exc
        return [ImageRef(r.name, r.tag, self._image_id(r.tag)) for r in refs]

    def _image_id(self, tag: str) -> str | None:
        try:
            return self.client.images.get(tag).id
        except ENGINE_ERRORS:
            return None

    def start(self, config: SandboxConfig) -> Sandbox:
        return DockerSandbox.start(config, self.engine)

    def reap(self, everything: bool = False) -> list[str]:
        return reap.reap(self.client, everything=everything)

    def reap_episode(self, episode_id: str) -> list[str]:
        return reap.reap_episode(self.client, episode_id)

    def reap_abandoned(self, abandoned: Abandoned) -> list[str]:
        return reap.reap_abandoned(self.client, abandoned)

    def close(self) -> None:
        """Wait for the removals under way: a provider closed leaves no box behind."""
        self.engine.remover.shutdown(wait=True)


PROVIDER = DockerProvider
