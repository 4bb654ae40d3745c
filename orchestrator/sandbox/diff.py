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
    """A change of the writable layer outside the watched roots, with the path's state at
    the end when the snapshot recorded it (files and symlinks, up to LAYER_FILES_LIMIT)."""

    path: str
    kind: Literal["added", "modified", "deleted"]
    after: FileState | None = None


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
    before_snap: Snapshot, after_snap: Snapshot, watched: tuple[str, ...]
) -> list[PathChange]:
    """What changed in the writable layer between the snapshots, outside the watched roots.

    Both records are against the image, so a path only in ``before`` was either created at
    start and since deleted, or put back as the image had it; a path changed in both is
    changed again when its recorded state differs (a log the box wrote at start, rewritten).
    A directory is left out when something under it is listed: that its entries changed is
    already said.
    """
    before, after = before_snap.fs_changes, after_snap.fs_changes
    old_states, new_states = before_snap.layer_files, after_snap.layer_files

    def changed(path: str, kind: str) -> bool:
        if before.get(path) != kind:
            return True
        old, new = old_states.get(path), new_states.get(path)
        return old is not None and new is not None and bool(_file_changes(old, new))

    changes: dict[str, str] = {path: kind for path, kind in after.items() if changed(path, kind)}
    for path, kind in before.items():
        if path not in after:
            changes[path] = "deleted" if kind == "added" else "modified"
    listed = sorted(p for p in changes if not under(p, watched))
    parents = {posixpath.dirname(p) for p in changes}
    parents |= {a for p in parents for a in _ancestors(p)}
    return [
        PathChange(path, changes[path], new_states.get(path))  # type: ignore[arg-type]
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
    paths = _layer_changes(before, after, watched)
    started = [p for pid, p in sorted(after.processes.items()) if pid not in before.processes]
    gone = [p for pid, p in sorted(before.processes.items()) if pid not in after.processes]
    return StateDiff(
        files=files,
        paths=paths,
        processes_started=started,
        processes_gone=gone,
        processes_changed=_process_changes(before, after),
    )
