"""Sandboxes: the isolated machines episodes run in, and the evidence taken from them."""

from orchestrator.sandbox.base import (
    MANAGED_LABEL,
    ExecResult,
    ProbeCommand,
    Sandbox,
    SandboxConfig,
    SandboxError,
)
from orchestrator.sandbox.diff import FileChange, PathChange, StateDiff, diff_snapshots
from orchestrator.sandbox.snapshot import FileState, ProcessInfo, Snapshot

__all__ = [
    "MANAGED_LABEL",
    "ExecResult",
    "FileChange",
    "FileState",
    "PathChange",
    "ProbeCommand",
    "ProcessInfo",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "Snapshot",
    "StateDiff",
    "diff_snapshots",
]
