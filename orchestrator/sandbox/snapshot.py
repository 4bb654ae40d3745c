"""What the host saw of a sandbox at one moment: watched files, processes, filesystem changes.

Built only from data the engine gives the host (archives, the process table, the layer diff),
never from tools inside the box, which the agent may have replaced.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import IO, Literal

TEXT_LIMIT_BYTES = 64 * 1024

FileType = Literal["file", "dir", "symlink", "other"]


@dataclass(frozen=True)
class FileState:
    path: str
    type: FileType
    size: int
    mode: int
    uid: int
    gid: int
    sha256: str | None = None
    link_target: str | None = None
    text: str | None = None  # for small UTF-8 files only

    def as_evidence(self) -> dict[str, object]:
        data = asdict(self)
        data["mode"] = oct(self.mode)
        return data


def evidence_of(state: FileState | None) -> dict[str, object] | None:
    """A file state as stored and shown; ``None`` for a file that is not there."""
    return state.as_evidence() if state else None


@dataclass(frozen=True)
class ProcessInfo:
    pid: int  # as the host sees it; stable for the life of the process
    ppid: int
    uid: str
    command: str


@dataclass(frozen=True)
class Snapshot:
    files: dict[str, FileState]  # every path under the watched roots
    processes: dict[int, ProcessInfo]
    fs_changes: dict[str, str]  # the engine's layer diff: path -> added / modified / deleted


def _file_state(path: str, info: tarfile.TarInfo, data: IO[bytes] | None) -> FileState:
    mode = info.mode & 0o7777  # permission bits; the engine also sets file-type bits
    common = {"path": path, "size": info.size, "mode": mode, "uid": info.uid, "gid": info.gid}
    if info.issym():
        return FileState(type="symlink", link_target=info.linkname, **common)
    if info.isdir():
        return FileState(type="dir", **common)
    if not info.isfile() or data is None:
        return FileState(type="other", **common)
    digest = hashlib.sha256()
    head = b""
    while chunk := data.read(1 << 16):
        digest.update(chunk)
        if len(head) <= TEXT_LIMIT_BYTES:
            head += chunk
    text = None
    if info.size <= TEXT_LIMIT_BYTES and b"\0" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    return FileState(type="file", sha256=digest.hexdigest(), text=text, **common)


def files_from_archive(root: str, archive: IO[bytes]) -> Iterable[FileState]:
    """Read the engine's tar of ``root`` into absolute-path file states.

    The engine names members relative to the root's parent (``/opt/x`` gives ``x/...``).
    """
    parent = posixpath.dirname(root.rstrip("/")) or "/"
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        for info in tar:
            path = posixpath.normpath(posixpath.join(parent, info.name))
            data = tar.extractfile(info) if info.isfile() else None
            yield _file_state(path, info, data)


def parse_top(top: dict) -> dict[int, ProcessInfo]:
    titles = [t.upper() for t in top.get("Titles") or []]
    rows = top.get("Processes") or []
    procs = {}
    for row in rows:
        fields = dict(zip(titles, row, strict=False))
        pid = int(fields["PID"])
        procs[pid] = ProcessInfo(
            pid=pid,
            ppid=int(fields.get("PPID", 0)),
            uid=fields.get("UID", ""),
            command=fields.get("COMMAND", fields.get("CMD", "")),
        )
    return procs


_DIFF_KINDS = {0: "modified", 1: "added", 2: "deleted"}


def parse_layer_diff(entries: list[dict] | None) -> dict[str, str]:
    return {e["Path"]: _DIFF_KINDS.get(e["Kind"], "modified") for e in entries or []}
