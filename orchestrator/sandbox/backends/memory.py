"""An in-memory backend for the fast test tier (``make unit``): no engine, no processes.

A box is a dict of file states and a process table that a test's ``Responder`` changes in
answer to each command, the way the real box would; snapshots are taken from that state.
It exercises everything above the sandbox layer (the loop, scoring, the store, the queue,
the worker) in milliseconds. It runs nothing: every behaviour of a real box (timeouts,
limits, what a command really does) is tested against the real engine, never here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.sandbox.base import ExecResult, Sandbox, SandboxConfig, SandboxError
from orchestrator.sandbox.provider import Abandoned, ImageRef, Log, SandboxProvider
from orchestrator.sandbox.snapshot import FileState, ProcessInfo, Snapshot
from orchestrator.states import EvidenceSource

if TYPE_CHECKING:
    from orchestrator.config import Settings


@dataclass
class BoxState:
    """What a memory box holds; a responder edits it."""

    files: dict[str, FileState] = field(default_factory=dict)
    processes: dict[int, ProcessInfo] = field(default_factory=dict)
    fs_changes: dict[str, str] = field(default_factory=dict)

    def write(self, path: str, text: str, mode: int = 0o644, uid: int = 1000) -> None:
        data = text.encode()
        self.files[path] = FileState(
            path=path,
            type="file",
            size=len(data),
            mode=mode,
            uid=uid,
            gid=uid,
            sha256=hashlib.sha256(data).hexdigest(),
            text=text,
        )


# (the box's state, the command) -> the result; None: exit 0 with no output
Responder = Callable[[BoxState, str], ExecResult | None]


class MemorySandbox(Sandbox):
    evidence_source = EvidenceSource.MEMORY

    def __init__(self, config: SandboxConfig, state: BoxState, respond: Responder | None):
        super().__init__()
        self.config = config
        self.state = state
        self.commands: list[str] = []
        self.closed = False
        self._respond = respond

    def exec(self, command: str, timeout: float) -> ExecResult:
        if self.closed:
            raise SandboxError("the memory box is closed")
        self.commands.append(command)
        started = time.monotonic()
        result = self._respond(self.state, command) if self._respond else None
        return result or ExecResult(command, 0, "", "", time.monotonic() - started)

    def snapshot(self) -> Snapshot:
        if self.closed:
            raise SandboxError("the memory box is closed")
        return Snapshot(
            files=dict(self.state.files),
            processes=dict(self.state.processes),
            fs_changes=dict(self.state.fs_changes),
        )

    def provenance(self) -> dict[str, str | None]:
        return {"image_id": None, "runtime": "memory", "evidence_source": self.evidence_source}

    def close(self) -> None:
        self.closed = True


class MemoryProvider(SandboxProvider):
    """Boxes start from ``initial()`` and answer through ``respond``; every box started is
    kept in ``boxes`` for a test to look at."""

    name = "memory"

    def __init__(
        self,
        initial: Callable[[SandboxConfig], BoxState] | None = None,
        respond: Responder | None = None,
    ):
        self._initial = initial or (lambda config: BoxState())
        self._respond = respond
        self.boxes: list[MemorySandbox] = []
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryProvider:
        return cls()

    @property
    def runtime(self) -> str:
        return "memory"

    def ensure_image(self, name: str, log: Log) -> ImageRef:
        return ImageRef(name, f"memory/{name}")

    def build_images(
        self, names: Iterable[str], log: Log, force: bool = False, verbose: bool = False
    ) -> list[ImageRef]:
        return [self.ensure_image(name, log) for name in names]

    def start(self, config: SandboxConfig) -> Sandbox:
        state = self._initial(config)
        box = MemorySandbox(config, dataclasses.replace(state), self._respond)
        with self._lock:
            self.boxes.append(box)
        return box

    def open_boxes(self) -> list[MemorySandbox]:
        with self._lock:
            return [box for box in self.boxes if not box.closed]

    def reap(self, everything: bool = False) -> list[str]:
        return self._close(self.open_boxes() if everything else [])

    def reap_episode(self, episode_id: str) -> list[str]:
        return self._close([b for b in self.open_boxes() if b.config.episode_id == episode_id])

    def reap_abandoned(self, abandoned: Abandoned) -> list[str]:
        return []  # a memory box lives only as long as its runner

    def _close(self, boxes: list[MemorySandbox]) -> list[str]:
        for box in boxes:
            box.close()
        return [box.config.episode_id for box in boxes]


PROVIDER = MemoryProvider
