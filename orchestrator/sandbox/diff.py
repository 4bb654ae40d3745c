"""The difference between two snapshots: the raw evidence every detector reads."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.paths import under
from orchestrator.sandbox.snapshot import FileState, ProcessInfo, Snapshot

ChangeKind = Literal["added", "modified", "deleted", "mode", "owner"]


@dataclass(frozen=True)
class FileChange:
    path: str
    kind: ChangeKind
    before: FileState | None
    after: FileState | None


@dataclass(frozen=True)
class PathChange:
    """A change the layer diff saw outside the watched roots (no content, just the path)."""

    path: str
    kind: Literal["added", "modified", "deleted"]


Neutralised = Literal["stopped", "reniced", "defunct"]


@dataclass(frozen=True)
class ProcessChange:
    """A process still in the table at the end that can no longer do its work: suspended
    (SIGSTOP, a tracer), pushed to a lower priority, or dead but not yet reaped."""

    before: ProcessInfo
    after: ProcessInfo
    how: Neutralised


@dataclass(frozen=True)
class StateDiff:
    files: list[FileChange] = field(default_factory=list)
    paths: list[PathChange] = field(default_factory=list)
    processes_started: list[ProcessInfo] = field(default_factory=list)
    processes_gone: list[ProcessInfo] = field(default_factory=list)
    processes_changed: list[ProcessChange] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.files
            or self.paths
            or self.processes_started
            or self.processes_gone
            or self.processes_changed
        )


def _content_changed(before: FileState, after: FileState) -> bool:
    return (before.type, before.sha256, before.link_target) != (
        after.type,
        after.sha256,
        after.link_target,
    )


def _file_changes(before: FileState | None, after: FileState | None) -> list[ChangeKind]:
    if before is None:
        return ["added"]
    if after is None:
        return ["deleted"]
    if before.type != after.type:
        # A different kind of object now stands there (a symlink swapped in): its mode and
        # owner are its own, not a chmod or chown of the old one. The states show both.
        return ["modified"]
    kinds: list[ChangeKind] = []
    if _content_changed(before, after):
        kinds.append("modified")
    if before.mode != after.mode:
        kinds.append("mode")
    if (before.uid, before.gid) != (after.uid, after.gid):
        kinds.append("owner")
    return kinds


def _layer_changes(
    before: dict[str, str], after: dict[str, str], watched: tuple[str, ...]
) -> list[PathChange]:
    """What the engine's layer diff says changed between the snapshots, outside the watched roots.

    Both diffs are against the image, so a path only in ``before`` was either created at start
    and since deleted, or put back as the image had it. A directory is left out when something
    under it is listed: that its entries changed is already said.
    """
    changes: dict[str, str] = {
        path: kind for path, kind in after.items() if before.get(path) != kind
    }
    for path, kind in before.items():
        if path not in after:
            changes[path] = "deleted" if kind == "added" else "modified"
    listed = sorted(p for p in changes if not under(p, watched))
    parents = {posixpath.dirname(p) for p in changes}
    parents |= {a for p in parents for a in _ancestors(p)}
    return [
        PathChange(path, changes[path])  # type: ignore[arg-type]
        for path in listed
        if not (changes[path] == "modified" and path in parents)
    ]


def _ancestors(path: str) -> list[str]:
    result = []
    while path not in ("/", ""):
        path = posixpath.dirname(path)
        result.append(path)
    return result


def _neutralised(before: ProcessInfo, after: ProcessInfo) -> Neutralised | None:
    if after.defunct and not before.defunct:
        return "defunct"
    if after.stopped and not before.stopped:
        return "stopped"
    if before.nice is not None and after.nice is not None and after.nice > before.nice:
        return "reniced"
    return None


def _process_changes(before: Snapshot, after: Snapshot) -> list[ProcessChange]:
    changes = []
    for pid, old in sorted(before.processes.items()):
        new = after.processes.get(pid)
        how = _neutralised(old, new) if new is not None else None
        if new is not None and how is not None:
            changes.append(ProcessChange(old, new, how))
    return changes


def diff_snapshots(before: Snapshot, after: Snapshot, watched: tuple[str, ...]) -> StateDiff:
    files = [
        FileChange(path, kind, before.files.get(path), after.files.get(path))
        for path in sorted(before.files.keys() | after.files.keys())
        for kind in _file_changes(before.files.get(path), after.files.get(path))
    ]
    paths = _layer_changes(before.fs_changes, after.fs_changes, watched)
    started = [p for pid, p in sorted(after.processes.items()) if pid not in before.processes]
    gone = [p for pid, p in sorted(before.processes.items()) if pid not in after.processes]
    return StateDiff(
        files=files,
        paths=paths,
        processes_started=started,
        processes_gone=gone,
        processes_changed=_process_changes(before, after),
    )
