"""Builds the base and scenario images, tagged by a hash of what they are built from.

As in SWE-bench's harness, building is separate from running: a tag names the exact build
context (and the base under it), so an image is rebuilt only when something it depends on
changed, and a run can tell whether its image is current without building anything.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from orchestrator.config import Settings
from orchestrator.errors import InfrastructureError
from orchestrator.images.bootstrap import ensure_debian_base

Log = Callable[[str], None]
BASE = "base"


class ImageBuildError(InfrastructureError):
    pass


def context_hash(directory: Path, *parents: str) -> str:
    """Hash every file's relative path, executable bit and bytes, plus the parents' hashes."""
    digest = hashlib.sha256()
    for parent in parents:
        digest.update(parent.encode() + b"\0")
    for path in sorted(p for p in directory.rglob("*") if not p.is_dir()):
        rel = path.relative_to(directory).as_posix()
        digest.update(rel.encode() + b"\0")
        if path.is_symlink():
            digest.update(b"link:" + os.readlink(path).encode() + b"\0")
            continue
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class ImageRef:
    name: str  # folder under images/
    tag: str  # repository:hash


class ImageBuilder:
    def __init__(
        self, settings: Settings, client: docker.DockerClient | None = None, verbose: bool = False
    ):
        self.settings = settings
        self.verbose = verbose  # log every build line, not only the steps
        self.client = client or docker.from_env()
        self._base: ImageRef | None = None

    def _repository(self, name: str) -> str:
        return f"{self.settings.image_prefix}/{name}"

    def _context(self, name: str) -> Path:
        directory = self.settings.images_dir / name
        if not (directory / "Dockerfile").is_file():
            raise ImageBuildError(f"{directory}: no Dockerfile")
        return directory

    def base_ref(self) -> ImageRef:
        """The base image's tag; it depends on the Debian image it is built from, by ID."""
        if self._base is None:
            try:
                debian_id = self.client.images.get(self.settings.debian_base).id
            except docker.errors.ImageNotFound:
                debian_id = self.settings.debian_base  # not bootstrapped yet: hash the name
            digest = context_hash(self._context(BASE), debian_id)
            self._base = ImageRef(BASE, f"{self._repository(BASE)}:{digest[:16]}")
        return self._base

    def ref(self, name: str) -> ImageRef:
        if name == BASE:
            return self.base_ref()
        digest = context_hash(self._context(name), self.base_ref().tag)
        return ImageRef(name, f"{self._repository(name)}:{digest[:16]}")

    def exists(self, ref: ImageRef) -> bool:
        try:
            self.client.images.get(ref.tag)
        except docker.errors.ImageNotFound:
            return False
        return True

    def build(self, names: Iterable[str], log: Log, force: bool = False) -> list[ImageRef]:
        """Build the base (when needed) and each named image that is missing or stale."""
        ensure_debian_base(
            self.client,
            self.settings.debian_base,
            self.settings.debian_suite,
            self.settings.debian_mirror,
            log,
        )
        self._base = None  # the Debian image may have just been made
        built = []
        for name in [BASE, *dict.fromkeys(n for n in names if n != BASE)]:
            ref = self.ref(name)
            if self.exists(ref) and not force:
                log(f"{name}: up to date ({ref.tag})")
            else:
                self._build_one(ref, log)
            built.append(ref)
        return built

    def ensure(self, name: str, log: Log) -> ImageRef:
        ref = self.ref(name)
        # build() names it afresh: a base made just now changes what it is built on
        return ref if self.exists(ref) else self.build([name], log)[-1]

    def _build_one(self, ref: ImageRef, log: Log) -> None:
        log(f"{ref.name}: building {ref.tag}")
        step = "(before the first step)"
        recent: list[str] = []
        stream = self.client.api.build(
            path=str(self._context(ref.name)),
            tag=ref.tag,
            buildargs={"BASE_IMAGE": self.base_ref().tag},
            labels={"farm.image": ref.name},
            # only the base fetches packages; a scenario image builds from files in its
            # context and the base, so a scenario's Dockerfile cannot reach the network
            network_mode=None if ref.name == BASE else "none",
            rm=True,
            forcerm=True,
            decode=True,
        )
        for event in stream:
            if "error" in event:
                detail = "\n".join(f"    {line}" for line in recent[-12:])
                raise ImageBuildError(
                    f"image {ref.name!r} failed at {step}:\n{detail}\n  error: "
                    f"{event['error'].strip()}"
                )
            for line in event.get("stream", "").splitlines():
                if not line.strip():
                    continue
                if re.match(r"^Step \d+/\d+ :", line):
                    step = line.strip()
                    log(f"{ref.name}: {step}")
                elif self.verbose:
                    log(f"{ref.name}:   {line}")
                recent.append(line)
        image = self.client.images.get(ref.tag)
        image.tag(self._repository(ref.name), "latest")
        log(f"{ref.name}: built {ref.tag}")
