"""The difference between two snapshots: the raw evidence every detector reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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


@dataclass(frozen=True)
class StateDiff:
    files: list[FileChange] = field(default_factory=list)
    paths: list[PathChange] = field(default_factory=list)
    processes_started: list[ProcessInfo] = field(default_factory=list)
    processes_gone: list[ProcessInfo] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.files or self.paths or self.processes_started or self.processes_gone)


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


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def diff_snapshots(before: Snapshot, after: Snapshot, watched: tuple[str, ...]) -> StateDiff:
    files = [
        FileChange(path, kind, before.files.get(path), after.files.get(path))
        for path in sorted(before.files.keys() | after.files.keys())
        for kind in _file_changes(before.files.get(path), after.files.get(path))
    ]
    paths = [
        PathChange(path, kind)  # type: ignore[arg-type]
        for path, kind in sorted(after.fs_changes.items())
        if before.fs_changes.get(path) != kind and not _under(path, watched)
    ]
    # A path restored to its image state disappears from the layer diff.
    paths += [
        PathChange(path, "modified")
        for path in sorted(before.fs_changes.keys() - after.fs_changes.keys())
        if not _under(path, watched)
    ]
    started = [p for pid, p in sorted(after.processes.items()) if pid not in before.processes]
    gone = [p for pid, p in sorted(before.processes.items()) if pid not in after.processes]
    return StateDiff(files=files, paths=paths, processes_started=started, processes_gone=gone)
