"""The sandbox interface the agent loop and the scorer see.

Like Inspect's sandbox layer, everything above this module talks to a ``Sandbox`` and never to
Docker, so another backend (Kubernetes, a VM) can be added without touching the loop.
"""

from __future__ import annotations

import dataclasses
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from orchestrator.errors import InfrastructureError
from orchestrator.sandbox.snapshot import Snapshot
from orchestrator.states import EvidenceSource

MANAGED_LABEL = "farm.managed"


class SandboxError(InfrastructureError):
    """The sandbox itself failed (container died, engine unreachable): an infrastructure error.

    An episode that ends in one is never scored as aligned or misaligned.
    """


@dataclass(frozen=True)
class ProbeCommand:
    """An outcome probe the sandbox runs at every snapshot (``scoring/kinds/probe.py``):
    ``run`` is bash, ``{pristine}`` in it the folder holding the pristine copies."""

    id: str
    run: str
    user: str = "root"
    timeout: float = 20.0


@dataclass(frozen=True)
class SandboxConfig:
    image: str
    episode_id: str
    scenario_id: str
    user: str
    workdir: str
    hostname: str
    watch: tuple[str, ...]
    capabilities: tuple[str, ...] = ()
    memory_limit: str = "512m"
    cpus: float = 1.0
    pids_limit: int = 256
    output_limit_bytes: int = 16 * 1024
    exec_grace_seconds: float = 5.0
    # The most the box may write (its writable layer, measured from the host after and during
    # every command, and a file-size rlimit on each command); None: no limit.
    disk_limit_bytes: int | None = None
    ready_file: str | None = None
    extra_labels: dict[str, str] = field(default_factory=dict)
    # A host folder whose files are laid over the container's root before it starts (a
    # scenario variant's files), owned by overlay_owner ("uid:gid"). Only files are written:
    # existing folders keep their owners, new ones are created root-owned.
    overlay: Path | None = None
    overlay_owner: str = "0:0"
    overlay_mode: int | None = None  # None: 0644, or 0755 for executables
    # Paths copied out of the box by the host once it is ready, before any agent command, and
    # laid back for the probes, so they run the scenario's tools as the image shipped them.
    pristine: tuple[str, ...] = ()
    probes: tuple[ProbeCommand, ...] = ()

    def warm_key(self) -> str:
        """What makes two boxes interchangeable before their episode is known: everything
        but the episode's identity and labels (a warm pool keys its boxes by it)."""
        return repr(dataclasses.replace(self, episode_id="", extra_labels={}))

    def labels(self) -> dict[str, str]:
        return {
            MANAGED_LABEL: "true",
            "farm.episode": self.episode_id,
            "farm.scenario": self.scenario_id,
            **self.extra_labels,
        }


@dataclass(frozen=True)
class ExecResult:
    command: str
    exit_code: int | None  # None when the host had to abandon the command
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    truncated: bool = False
    # The box reached its disk limit during the command, which was stopped: the episode ends.
    disk_full: bool = False

    def for_model(self) -> str:
        """The tool result a model reads: output, then what happened to the command."""
        parts = [self.stdout.rstrip("\n")] if self.stdout else []
        if self.stderr:
            parts.append(f"[stderr]\n{self.stderr.rstrip(chr(10))}")
        if self.timed_out:
            parts.append("[command timed out and was killed]")
        if self.disk_full:
            parts.append("[disk limit reached: the command was stopped]")
        parts.append(f"[exit code {self.exit_code if self.exit_code is not None else 'unknown'}]")
        return "\n".join(parts)


class Sandbox(ABC):
    """One isolated machine for one episode; removed by ``close`` on every path."""

    # Where this box's record of changed paths comes from, and what its provenance is.
    evidence_source: EvidenceSource = EvidenceSource.ENGINE

    def __init__(self) -> None:
        self._baseline: Snapshot | None = None
        self._baseline_lock = threading.Lock()

    def baseline(self) -> Snapshot:
        """The snapshot before the agent's first command, taken once: a warm pool takes it
        ahead of the claim, an episode otherwise takes it while the model thinks.

        Raises SandboxError."""
        with self._baseline_lock:
            if self._baseline is None:
                self._baseline = self.snapshot()
            return self._baseline

    def provenance(self) -> dict[str, str | None]:
        """What ran the episode: the image's id, the runtime, the evidence source."""
        return {"image_id": None, "runtime": None, "evidence_source": self.evidence_source}

    @abstractmethod
    def exec(self, command: str, timeout: float) -> ExecResult:
        """Run ``command`` with bash as the scenario's user; never longer than ``timeout``."""

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """Capture watched files and processes from outside the box, then run the probes.

        Raises SandboxError when the box cannot be read."""

    @abstractmethod
    def close(self) -> None:
        """Destroy the sandbox. Safe to call twice."""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
