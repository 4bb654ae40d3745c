"""A watched folder read on the host, from the container's merged root, never following links.

The engine's archive of a path (``get_archive``) costs the engine a mount and a tar stream
per call; the same tree is visible to the host at the container's ``MergedDir``. What the
agent controls there is every name under its own folders, so the walk goes by file
descriptors opened with O_NOFOLLOW (a path swapped for a symlink mid-walk is skipped, never
followed onto the host), opens regular files with O_NONBLOCK and checks them by fstat, and
reads each entry into the same tar header the archive would give, so both readings make the
same FileState (tests/test_parity.py compares them over every trajectory).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import stat
import tarfile

from orchestrator.sandbox.layer import DIR_FLAGS, FILE_FLAGS, tar_header
from orchestrator.sandbox.snapshot import TREE_LIMIT, FileState, file_state


class NotReadableHere(OSError):
    """A component of the watched path is a link or missing: the engine must read it."""


def _open_folder(root_fd: int, parts: list[str]) -> int:
    fd = os.dup(root_fd)
    try:
        for part in parts:
            next_fd = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except OSError:
        os.close(fd)
        raise
    return fd


def _entry(dir_fd: int, name: str, path: str, st: os.stat_result) -> FileState | None:
    if stat.S_ISSOCK(st.st_mode):
        return None  # the engine's archive leaves sockets out
    if stat.S_ISLNK(st.st_mode):
        return file_state(path, tar_header(path, st, os.readlink(name, dir_fd=dir_fd)), None)
    if not stat.S_ISREG(st.st_mode):
        return file_state(path, tar_header(path, st), None)
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        now = os.fstat(handle.fileno())
        if not stat.S_ISREG(now.st_mode):
            return None
        return file_state(path, tar_header(path, now), handle)


class _Reader:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.truncated = False
        self.states: dict[str, FileState] = {}
        self.inodes: dict[tuple[int, int], str] = {}  # first name of a multiply-linked file
        self.links: dict[str, list[str]] = {}

    def add(self, dir_fd: int, name: str, path: str, st: os.stat_result) -> None:
        if len(self.states) >= self.limit:
            self.truncated = True
            return
        key = (st.st_dev, st.st_ino)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in self.inodes:
            first = self.inodes[key]
            self.states[path] = dataclasses.replace(self.states[first], path=path)
            self.links.setdefault(first, [first]).append(path)
            return
        state = _entry(dir_fd, name, path, st)
        if state is None:
            return
        self.states[path] = state
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            self.inodes[key] = path

    def folder(self, fd: int, path: str) -> None:
        with os.scandir(fd) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            if self.truncated:
                return
            child = posixpath.join(path, entry.name)
            st = entry.stat(follow_symlinks=False)
            self.add(fd, entry.name, child, st)
            if stat.S_ISDIR(st.st_mode) and child in self.states:
                try:
                    child_fd = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # swapped since the listing
                try:
                    self.folder(child_fd, child)
                finally:
                    os.close(child_fd)

    def result(self) -> list[FileState]:
        for names in self.links.values():
            for name in names:
                others = tuple(n for n in names if n != name)
                self.states[name] = dataclasses.replace(self.states[name], hardlinks=others)
        return list(self.states.values())


def read_tree(merged: str, root: str, limit: int = TREE_LIMIT) -> tuple[list[FileState], bool]:
    """Every path under ``root`` (absolute, in the box) as the box's merged root shows it,
    [] when it does not exist, up to ``limit`` of them; and whether there were more. Raises
    NotReadableHere when a folder above ``root`` is not a plain folder (a link the host must
    not follow)."""
    parts = [p for p in root.split("/") if p]
    try:
        root_fd = os.open(merged, DIR_FLAGS)
    except OSError as exc:
        raise NotReadableHere(f"cannot open {merged}: {exc}") from exc
    try:
        try:
            parent_fd = _open_folder(root_fd, parts[:-1])
        except FileNotFoundError:
            return [], False
        except OSError as exc:
            raise NotReadableHere(f"a folder above {root} is not a plain folder") from exc
        try:
            reader = _Reader(limit)
            if not parts:
                reader.folder(parent_fd, "/")
                return reader.result(), reader.truncated
            try:
                st = os.stat(parts[-1], dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                return [], False
            reader.add(parent_fd, parts[-1], root, st)
            if stat.S_ISDIR(st.st_mode):
                fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent_fd)
                try:
                    reader.folder(fd, root)
                finally:
                    os.close(fd)
            return reader.result(), reader.truncated
        finally:
            os.close(parent_fd)
    finally:
        os.close(root_fd)


_MAX_HOPS = 40  # symlinks followed while resolving one path, as the kernel allows


def _open_resolved(root_fd: int, path: str) -> tuple[int, str] | None:
    """The folder holding ``path``'s last component, open, and that component's name, with
    every symlink on the way resolved the way the box would resolve it (an absolute target
    from the box's root, ``..`` never above it), one component at a time under ``root_fd``:
    nothing is ever resolved by the host's kernel against the host's own tree."""
    pending = [p for p in path.split("/") if p]
    stack = [os.dup(root_fd)]  # the folders walked, the box's root first
    hops = 0
    try:
        while len(pending) > 1:
            part = pending.pop(0)
            if part == ".":
                continue
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            st = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_HOPS:
                    raise OSError("too many links")
                target = os.readlink(part, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending = [p for p in target.split("/") if p] + pending
                continue
            stack.append(os.open(part, DIR_FLAGS, dir_fd=stack[-1]))
        if not pending or pending[0] in (".", ".."):
            raise OSError("not a file name")
        folder = stack.pop()
        return folder, pending[0]
    except OSError:
        return None
    finally:
        for fd in stack:
            os.close(fd)


def read_file(merged: str, path: str, max_size: int) -> FileState | None:
    """One regular file of at most ``max_size`` bytes, or a symlink, at ``path`` in the box
    (folders on the way that are links resolved inside the box); None for anything else."""
    try:
        root_fd = os.open(merged, DIR_FLAGS)
    except OSError:
        return None
    try:
        found = _open_resolved(root_fd, path)
    finally:
        os.close(root_fd)
    if found is None:
        return None
    parent_fd, name = found
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        small = stat.S_ISREG(st.st_mode) and st.st_size <= max_size
        if not (small or stat.S_ISLNK(st.st_mode)):
            return None
        return _entry(parent_fd, name, path, st)
    except OSError:
        return None
    finally:
        os.close(parent_fd)


def archive_entries(
    merged: str, path: str, max_bytes: int
) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """``path`` in the box and everything under it, named as the engine's archive of it names
    them (from its last component down), with each regular file's bytes: links on the way
    resolved inside the box, none under it followed (a link is its own entry), anything but
    folders, files and links left out. Raises FileNotFoundError when ``path`` is not there,
    NotReadableHere past ``max_bytes`` of file content."""
    try:
        root_fd = os.open(merged, DIR_FLAGS)
    except OSError as exc:
        raise NotReadableHere(f"{merged} cannot be opened: {exc}") from exc
    try:
        found = _open_resolved(root_fd, path)
    finally:
        os.close(root_fd)
    if found is None:
        raise FileNotFoundError(path)
    parent_fd, name = found
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    try:
        _archive_entry(parent_fd, name, name, entries, [max_bytes])
    finally:
        os.close(parent_fd)
    return entries


def _archive_entry(
    dir_fd: int,
    name: str,
    arcname: str,
    entries: list[tuple[tarfile.TarInfo, bytes | None]],
    budget: list[int],
) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    info = tarfile.TarInfo(arcname)
    info.mode, info.uid, info.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
        entries.append((info, None))
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return  # swapped for something else since the stat
            data = file.read(budget[0] + 1)
        budget[0] -= len(data)
        if budget[0] < 0:
            raise NotReadableHere(f"more than the limit of file content under {arcname}")
        info.size = len(data)
        entries.append((info, data))
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        entries.append((info, None))
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        try:
            for child in sorted(os.listdir(fd)):
                try:
                    _archive_entry(fd, child, f"{arcname}/{child}", entries, budget)
                except NotReadableHere:
                    raise
                except OSError:
                    continue  # gone, or swapped for a link, since the listing
        finally:
            os.close(fd)
