"""What the host saw of a sandbox at one moment: watched files, processes, filesystem changes.

Built only from data the engine gives the host (archives, the process table, the layer diff),
never from tools inside the box, which the agent may have replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import re
import tarfile
from dataclasses import asdict, dataclass, field
from typing import IO, Literal

from orchestrator.sandbox.archives import (
    ARCHIVE_LIMIT_BYTES,
    Member,
    archive_members,
    looks_like_archive,
)

TEXT_LIMIT_BYTES = 64 * 1024
# A changed file outside the watched roots bigger than this is recorded by size, not hashed:
# an agent that writes gigabytes must not make every snapshot read them.
HASH_LIMIT_BYTES = 64 * 1024 * 1024
# Changed paths outside the watched roots whose state (type, mode, owner, hash, text) a
# snapshot records, first by path order; the rest keep their path and kind.
LAYER_FILES_LIMIT = 256
# Entries one snapshot reads of a watched root, or of the writable layer's changes: an agent
# that makes millions of files gets the first ones read and the snapshot marked truncated,
# not a snapshot that never ends.
TREE_LIMIT = 100_000

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
    mtime: int = 0  # seconds; an edit that moves it back is hiding itself
    # The other watched paths that are hard links of this one (the same inode, not a copy).
    hardlinks: tuple[str, ...] = ()
    # What the file holds when it is an archive (tar, gzip, bzip2, xz, zip; nested too).
    members: tuple[Member, ...] = ()
    members_truncated: bool = False

    def as_evidence(self) -> dict[str, object]:
        data = asdict(self)
        data["mode"] = oct(self.mode)
        # members are kept by name and hash; their text is only read by detectors
        data["members"] = [
            {"name": m.name, "size": m.size, "sha256": m.sha256} for m in self.members
        ]
        if not self.members:
            del data["members"], data["members_truncated"]
        return data

    def hashes(self) -> set[str]:
        """The sha256 of this file and of everything inside it (for an archive)."""
        own = {self.sha256} if self.sha256 else set()
        return own | {m.sha256 for m in self.members}

    def texts(self) -> list[str]:
        """This file's text and the text of every small member (for an archive)."""
        return [t for t in (self.text, *(m.text for m in self.members)) if t is not None]


def evidence_of(state: FileState | None) -> dict[str, object] | None:
    """A file state as stored and shown; ``None`` for a file that is not there."""
    return state.as_evidence() if state else None


@dataclass(frozen=True)
class ProcessInfo:
    pid: int  # as the host sees it; stable for the life of the process
    ppid: int
    uid: str
    command: str
    # ps's STAT (R, S, D, T stopped, t traced, Z zombie, with modifiers) and nice value.
    state: str = ""
    nice: int | None = None
    # The text of the script it runs (an argument naming a small readable file), if any.
    script: str | None = None

    @property
    def stopped(self) -> bool:
        return self.state[:1] in ("T", "t")

    @property
    def defunct(self) -> bool:
        return self.state[:1] in ("Z", "X")


@dataclass(frozen=True)
class ProbeAnswer:
    """What one outcome probe (the scenario's own tool, from its pristine copy) answered."""

    exit_code: int | None
    output: str  # stdout then stderr, capped

    def text(self) -> str:
        """What a probe's ``expect`` pattern is matched against."""
        return f"{self.output.rstrip()}\n[exit {self.exit_code}]"


@dataclass(frozen=True)
class Snapshot:
    files: dict[str, FileState]  # every path under the watched roots
    processes: dict[int, ProcessInfo]
    # Every changed path of the writable layer against the image: added / modified / deleted.
    fs_changes: dict[str, str]
    probes: dict[str, ProbeAnswer] = field(default_factory=dict)  # by detector id
    # The state of the first LAYER_FILES_LIMIT changed files and symlinks among fs_changes.
    layer_files: dict[str, FileState] = field(default_factory=dict)
    # A tree was bigger than a snapshot reads (TREE_LIMIT entries): what is here is its start.
    truncated: bool = False


def unhashed(path: str, info: tarfile.TarInfo) -> FileState:
    """A regular file too big to hash: its size, mode and owner only."""
    return FileState(
        path=path,
        type="file",
        size=info.size,
        mode=info.mode & 0o7777,
        uid=info.uid,
        gid=info.gid,
        mtime=int(info.mtime),
    )


def file_state(path: str, info: tarfile.TarInfo, data: IO[bytes] | None) -> FileState:
    """One path's state from its tar header and data, whichever way it was read."""
    mode = info.mode & 0o7777  # permission bits; the engine also sets file-type bits
    common = {
        "path": path,
        "size": info.size,
        "mode": mode,
        "uid": info.uid,
        "gid": info.gid,
        "mtime": int(info.mtime),
    }
    if info.issym():
        return FileState(type="symlink", link_target=info.linkname, **common)
    if info.isdir():
        return FileState(type="dir", **common)
    if not info.isfile() or data is None:
        return FileState(type="other", **common)
    digest = hashlib.sha256()
    head = b""
    keep_all = False  # an archive small enough to look inside is kept whole
    while chunk := data.read(1 << 16):
        digest.update(chunk)
        if not head:
            keep_all = info.size <= ARCHIVE_LIMIT_BYTES and looks_like_archive(chunk[:512])
        if keep_all or len(head) <= TEXT_LIMIT_BYTES:
            head += chunk
    text = None
    if info.size <= TEXT_LIMIT_BYTES and b"\0" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    members, truncated = archive_members(head) if keep_all else ((), False)
    return FileState(
        type="file",
        sha256=digest.hexdigest(),
        text=text,
        members=members,
        members_truncated=truncated,
        **common,
    )


def files_from_archive(root: str, archive: IO[bytes]) -> list[FileState]:
    """Read the engine's tar of ``root`` into absolute-path file states.

    The engine names members relative to the root's parent (``/opt/x`` gives ``x/...``).
    """
    parent = posixpath.dirname(root.rstrip("/")) or "/"
    states: dict[str, FileState] = {}
    links: dict[str, list[str]] = {}  # first name of an inode -> every name it has
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        for info in tar:
            path = posixpath.normpath(posixpath.join(parent, info.name))
            target = posixpath.normpath(posixpath.join(parent, info.linkname))
            if info.islnk() and target in states:
                # a second name of a member already read: the same file, not a copy
                states[path] = dataclasses.replace(states[target], path=path)
                links.setdefault(target, [target]).append(path)
                continue
            data = tar.extractfile(info) if info.isfile() else None
            states[path] = file_state(path, info, data)
    for names in links.values():
        for name in names:
            others = tuple(n for n in names if n != name)
            states[name] = dataclasses.replace(states[name], hardlinks=others)
    return list(states.values())


# Wrappers that run the rest of their command line: their positional arguments before it, and
# their options that take a value.
_WRAPPERS: dict[str, tuple[int, frozenset[str]]] = {
    "nohup": (0, frozenset()),
    "setsid": (0, frozenset()),
    "exec": (0, frozenset({"-a"})),
    "stdbuf": (0, frozenset({"-i", "-o", "-e"})),
    "nice": (0, frozenset({"-n"})),
    "timeout": (1, frozenset({"-k", "-s", "--kill-after", "--signal"})),
    "env": (0, frozenset({"-u", "--unset", "-C", "--chdir"})),
}
_INTERPRETER = re.compile(r"^(?:ba|da|z|k)?sh$|^python[\d.]*$|^perl$|^ruby$|^node$")
# Options that mean the code is on the command line itself, not in a file.
_INLINE = {"-c", "-e", "-E", "-m", "--command", "--eval"}


def script_of(command: str) -> str | None:
    """The script file a process runs (``bash ./later.sh``, ``nohup python3 x.py``), as the
    command line names it; None for inline code (``bash -c ...``) or a plain program."""
    words = command.split()
    while words and posixpath.basename(words[0]) in _WRAPPERS:
        positional, valued = _WRAPPERS[posixpath.basename(words.pop(0))]
        while words and (words[0].startswith("-") or "=" in words[0]):
            option = words.pop(0)  # its own options and, for env, the variables it sets
            if option in valued and words:
                words.pop(0)
        del words[:positional]
    if not words or not _INTERPRETER.match(posixpath.basename(words[0])):
        return None
    for word in words[1:]:
        if word in _INLINE:
            return None
        if not word.startswith("-"):
            return word
    return None


def parse_top(top: dict) -> dict[int, ProcessInfo]:
    titles = [t.upper() for t in top.get("Titles") or []]
    rows = top.get("Processes") or []
    procs = {}
    for row in rows:
        fields = dict(zip(titles, row, strict=False))
        pid = int(fields["PID"])
        nice = fields.get("NI", "")
        procs[pid] = ProcessInfo(
            pid=pid,
            ppid=int(fields.get("PPID", 0)),
            uid=fields.get("UID", ""),
            command=fields.get("COMMAND", fields.get("CMD", "")),
            state=fields.get("STAT", ""),
            nice=int(nice) if nice.lstrip("-").isdigit() else None,
        )
    return procs


_DIFF_KINDS = {0: "modified", 1: "added", 2: "deleted"}


def parse_layer_diff(entries: list[dict] | None) -> dict[str, str]:
    return {e["Path"]: _DIFF_KINDS.get(e["Kind"], "modified") for e in entries or []}
