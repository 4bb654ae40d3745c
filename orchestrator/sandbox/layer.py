"""A container's changes read straight from its writable layer on the host.

The engine's ``diff`` costs seconds of engine CPU on drivers without a native diff (it mounts
and walks both whole trees); the same change set is the content of the writable layer
(``GraphDriver.Data.UpperDir``), which the host can walk in milliseconds. Overlay drivers mark
a deleted path with a whiteout (a character device 0/0, or a ``.wh.<name>`` file) and a folder
whose lower content is hidden with an opaque marker (``.wh..wh..opq``).

The kinds follow the engine's own rules, so both sources give the same record: a path absent
from the image is added; a file is modified when its mode, owner, size or mtime differ from
the image's; a folder only when its mode or owner do (its size and mtime are not a measure of
change); every folder above a change is modified; the entries an opaque folder hides are
deleted.

The layer belongs to the agent: it can swap a folder for a symlink at any moment. Nothing
here follows a link: the walk goes by file descriptors opened with O_NOFOLLOW, and a regular
file is opened with O_NONBLOCK and checked by fstat, so a fifo or a swapped path is skipped,
never a path outside the layer read.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.sandbox.snapshot import (
    HASH_LIMIT_BYTES,
    LAYER_FILES_LIMIT,
    TREE_LIMIT,
    FileState,
    file_state,
    unhashed,
)

_OPAQUE = (".wh..wh..opq", ".wh..opq")
_WHITEOUT_PREFIX = ".wh."
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class LayerUnreadable(OSError):
    """The writable layer cannot be read from here (not this host, no permission)."""


@dataclass
class LayerRead:
    changes: dict[str, str] = field(default_factory=dict)  # path -> added/modified/deleted
    files: dict[str, FileState] = field(default_factory=dict)
    truncated: bool = False  # more than max_paths changes: the first ones by walk order


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _differs(lower: os.stat_result, upper: os.stat_result) -> bool:
    if stat.S_IFMT(lower.st_mode) != stat.S_IFMT(upper.st_mode):
        return True
    same_meta = (lower.st_mode, lower.st_uid, lower.st_gid, lower.st_rdev) == (
        upper.st_mode,
        upper.st_uid,
        upper.st_gid,
        upper.st_rdev,
    )
    if stat.S_ISDIR(upper.st_mode):
        return not same_meta
    return not (
        same_meta and lower.st_size == upper.st_size and lower.st_mtime_ns == upper.st_mtime_ns
    )


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _in_lowers(lower_dirs: Sequence[str], name: str) -> tuple[os.stat_result | None, list[str]]:
    """How ``name`` stands in the image below a folder present there as ``lower_dirs`` (top
    layer first): its stat (None when absent or whited out) and the layers' folders it is,
    for looking further down."""
    found: os.stat_result | None = None
    dirs: list[str] = []
    for lower in lower_dirs:
        path = os.path.join(lower, name)
        st = _lstat(path)
        if st is None:
            if _lstat(os.path.join(lower, _WHITEOUT_PREFIX + name)) is not None:
                break
            continue
        if _whiteout(st):
            break
        found = found or st
        if not stat.S_ISDIR(st.st_mode):
            break
        dirs.append(path)
        if any(_lstat(os.path.join(path, marker)) for marker in _OPAQUE):
            break
    return found, dirs


def _lower_names(lower_dirs: Sequence[str]) -> set[str]:
    """The entries a folder has in the image, across its layers."""
    names: set[str] = set()
    hidden: set[str] = set()
    for lower in lower_dirs:
        try:
            entries = list(os.scandir(lower))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name in _OPAQUE:
                continue
            if name.startswith(_WHITEOUT_PREFIX):
                hidden.add(name[len(_WHITEOUT_PREFIX) :])
            elif _whiteout(entry.stat(follow_symlinks=False)):
                hidden.add(name)
            elif name not in hidden:
                names.add(name)
    return names


class _Walk:
    def __init__(self, upper: str, lowers: Sequence[str], max_paths: int):
        self.upper = upper
        self.lowers = list(lowers)
        self.max_paths = max_paths
        self.changes: dict[str, str] = {}
        self.stats: dict[str, os.stat_result] = {}  # changed non-folders, by path
        self.truncated = False

    def note(self, path: str, kind: str) -> None:
        if len(self.changes) >= self.max_paths:
            self.truncated = True
            return
        self.changes.setdefault(path, kind)

    def folder(self, fd: int, path: str, lower_dirs: list[str]) -> None:
        """Every change under the folder open as ``fd`` (``path`` in the box)."""
        with os.scandir(fd) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        names = {e.name for e in entries}
        opaque = any(marker in names for marker in _OPAQUE)
        for entry in entries:
            if self.truncated:
                return
            name = entry.name
            if name in _OPAQUE:
                continue
            st = entry.stat(follow_symlinks=False)
            if name.startswith(_WHITEOUT_PREFIX) or _whiteout(st):
                gone = name[len(_WHITEOUT_PREFIX) :] if name.startswith(_WHITEOUT_PREFIX) else name
                if lower_dirs and _in_lowers(lower_dirs, gone)[0] is not None:
                    self.note(posixpath.join(path, gone), "deleted")
                continue
            child = posixpath.join(path, name)
            lower, child_lowers = _in_lowers(lower_dirs, name) if lower_dirs else (None, [])
            if lower is None:
                self.note(child, "added")
            elif _differs(lower, st):
                self.note(child, "modified")
            if not stat.S_ISDIR(st.st_mode):
                # a socket has no state an archive carries (the engine's leaves it out)
                if child in self.changes and not stat.S_ISSOCK(st.st_mode):
                    self.stats[child] = st
                continue
            try:
                child_fd = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # swapped for something else since the listing
            try:
                self.folder(child_fd, child, child_lowers if lower is not None else [])
            finally:
                os.close(child_fd)
        if opaque and lower_dirs:
            for name in sorted(_lower_names(lower_dirs) - names):
                self.note(posixpath.join(path, name), "deleted")

    def with_parents(self) -> None:
        """Every folder above a change is itself modified (the engine's rule)."""
        for path in list(self.changes):
            parent = posixpath.dirname(path)
            while parent not in ("/", "") and parent not in self.changes:
                self.changes[parent] = "modified"
                parent = posixpath.dirname(parent)


def _open_beneath(root_fd: int, path: str) -> int:
    """``path`` (absolute, in the box) opened under ``root_fd`` without following any link."""
    parts = [p for p in path.split("/") if p]
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        return os.open(parts[-1], FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)


def tar_header(path: str, st: os.stat_result, link: str = "") -> tarfile.TarInfo:
    """A tar header for what the host saw, so a state reads the same as from an archive."""
    info = tarfile.TarInfo(path)
    info.mode, info.uid, info.gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif stat.S_ISREG(st.st_mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    else:
        info.type = tarfile.CHRTYPE
    return info


def _state(root_fd: int, path: str, st: os.stat_result) -> FileState | None:
    if stat.S_ISLNK(st.st_mode):
        parent, name = posixpath.split(path)
        try:
            dir_fd = os.open(parent.lstrip("/") or ".", DIR_FLAGS, dir_fd=root_fd)
        except OSError:
            return None
        try:
            return file_state(path, tar_header(path, st, os.readlink(name, dir_fd=dir_fd)), None)
        except OSError:
            return None
        finally:
            os.close(dir_fd)
    if not stat.S_ISREG(st.st_mode):
        return file_state(path, tar_header(path, st), None)
    try:
        fd = _open_beneath(root_fd, path)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        now = os.fstat(handle.fileno())
        if not stat.S_ISREG(now.st_mode):
            return None
        if now.st_size > HASH_LIMIT_BYTES:
            return unhashed(path, tar_header(path, now))
        return file_state(path, tar_header(path, now), handle)


def read_layer(
    upper: str,
    lowers: Sequence[str],
    *,
    max_paths: int = TREE_LIMIT,
    max_files: int = LAYER_FILES_LIMIT,
) -> LayerRead:
    """The changes of the writable layer ``upper`` over the image layers ``lowers`` (top
    first), and the state of the first ``max_files`` changed files and symlinks.

    Raises LayerUnreadable when ``upper`` cannot be opened."""
    try:
        root_fd = os.open(upper, DIR_FLAGS)
    except OSError as exc:
        raise LayerUnreadable(f"cannot read the writable layer {upper}: {exc}") from exc
    try:
        walk = _Walk(upper, lowers, max_paths)
        walk.folder(root_fd, "/", list(lowers))
        walk.with_parents()
        files: dict[str, FileState] = {}
        for path in sorted(walk.stats)[:max_files]:
            state = _state(root_fd, path, walk.stats[path])
            if state is not None:
                files[path] = state
    finally:
        os.close(root_fd)
    return LayerRead(changes=walk.changes, files=files, truncated=walk.truncated)


def layer_size(upper: str, stop_at: int) -> int:
    """The bytes the writable layer ``upper`` takes on the host's disk (allocated blocks, so a
    sparse file counts what it really uses), counted until it passes ``stop_at``: past the
    limit the exact figure does not matter, and an agent that made millions of files must not
    make every count walk them all. Every entry counts at least one 512-byte block."""
    total = 0
    try:
        stack = [os.open(upper, DIR_FLAGS)]
    except OSError as exc:
        raise LayerUnreadable(f"cannot read the writable layer {upper}: {exc}") from exc
    while stack:
        fd = stack.pop()
        try:
            with os.scandir(fd) as listing:
                for entry in listing:
                    st = entry.stat(follow_symlinks=False)
                    total += max(512, st.st_blocks * 512)
                    if total > stop_at:
                        break
                    if stat.S_ISDIR(st.st_mode):
                        try:
                            stack.append(os.open(entry.name, DIR_FLAGS, dir_fd=fd))
                        except OSError:
                            continue
        finally:
            os.close(fd)
        if total > stop_at:
            for left in stack:
                os.close(left)
            break
    return total
