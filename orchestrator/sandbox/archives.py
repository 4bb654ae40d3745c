"""What an archive holds, read on the host with hard bounds.

A copy of a credentials folder or of a model's weights need not be a plain copy: a tarball,
a gzip or a zip of it carries the same bytes. The snapshot lists an archive's members (name,
size, sha256, the text of small ones) so that content checks see through it. Everything is
bounded (bytes decompressed, members, nesting), because the agent chooses what it writes: a
zip bomb yields a partial listing marked ``truncated``, never an exhausted host.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import tarfile
import zipfile
import zlib
from dataclasses import dataclass

# Only archives up to this size on disk are opened at all.
ARCHIVE_LIMIT_BYTES = 32 * 1024 * 1024
# Bytes decompressed from one archive, over all its members and nesting levels.
EXPAND_LIMIT_BYTES = 128 * 1024 * 1024
MEMBER_LIMIT = 512
MEMBER_TEXT_LIMIT = 64 * 1024
NESTING_LIMIT = 3


@dataclass(frozen=True)
class Member:
    """One file inside an archive; ``name`` joins nesting levels with ``!``."""

    name: str
    size: int
    sha256: str
    text: str | None = None


@dataclass
class _Budget:
    bytes_left: int = EXPAND_LIMIT_BYTES
    members_left: int = MEMBER_LIMIT
    truncated: bool = False

    def take(self, size: int) -> bool:
        """Room for one more member of ``size`` new bytes (0 for a slice of bytes already
        held, such as a tar member inside a decompressed stream)."""
        if size > self.bytes_left or self.members_left <= 0:
            self.truncated = True
            return False
        self.bytes_left -= size
        self.members_left -= 1
        return True


def looks_like_archive(head: bytes) -> bool:
    return _kind(head) is not None


def _kind(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def _text(data: bytes) -> str | None:
    if len(data) > MEMBER_TEXT_LIMIT or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _bounded_decompress(stream: io.IOBase | io.BufferedIOBase, budget: _Budget) -> bytes | None:
    out = bytearray()
    try:
        while chunk := stream.read(1 << 16):
            out += chunk
            if len(out) > budget.bytes_left:
                budget.truncated = True
                return None
    except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError):
        return bytes(out) or None  # a damaged stream: what could be read
    return bytes(out)


def _expand(name: str, data: bytes, budget: _Budget, depth: int) -> list[Member]:
    """``data`` as a plain member, plus what it holds when it is itself an archive."""
    members = [Member(name, len(data), hashlib.sha256(data).hexdigest(), _text(data))]
    kind = _kind(data[:512])
    if kind is None or depth >= NESTING_LIMIT:
        return members
    return members + _open(name, kind, data, budget, depth + 1)


def _decompressor(kind: str, raw: io.BytesIO) -> io.BufferedIOBase:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw)
    return bz2.BZ2File(raw) if kind == "bzip2" else lzma.LZMAFile(raw)


def _open(prefix: str, kind: str, data: bytes, budget: _Budget, depth: int) -> list[Member]:
    found: list[Member] = []
    inner = f"{prefix}!" if prefix else ""
    try:
        if kind in ("gzip", "bzip2", "xz"):
            with _decompressor(kind, io.BytesIO(data)) as stream:
                plain = _bounded_decompress(stream, budget)
            if plain is not None and budget.take(len(plain)):
                found += _expand(f"{inner}(decompressed)", plain, budget, depth)
        elif kind == "zip":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for info in archive.infolist():
                    if info.is_dir():
                        continue
                    if not budget.take(info.file_size):
                        break
                    with archive.open(info) as member:
                        content = _bounded_decompress(member, budget) or b""
                    found += _expand(f"{inner}{info.filename}", content, budget, depth)
        elif kind == "tar":
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
                for info in archive:
                    if not info.isfile():
                        continue
                    if not budget.take(0):  # the tar's bytes are already held
                        break
                    extracted = archive.extractfile(info)
                    content = extracted.read() if extracted else b""
                    found += _expand(f"{inner}{info.name}", content, budget, depth)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, zlib.error):
        budget.truncated = True  # damaged or not really an archive: keep what was read
    except (NotImplementedError, RuntimeError):
        budget.truncated = True  # an encrypted zip member or an unsupported method
    return found


def archive_members(data: bytes) -> tuple[tuple[Member, ...], bool]:
    """The files inside ``data`` (nested archives opened too) and whether the listing was cut
    short by a bound; empty when ``data`` is not an archive."""
    kind = _kind(data[:512])
    if kind is None:
        return (), False
    budget = _Budget()
    try:
        members = _open("", kind, data, budget, 1)
    except Exception:  # a hostile file must never fail the snapshot
        return (), True
    return tuple(members), budget.truncated
