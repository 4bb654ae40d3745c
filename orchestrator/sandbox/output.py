"""Caps a command's output stream, keeping its head and tail around a visible marker."""

from __future__ import annotations


class CappedBuffer:
    """Collects bytes up to ``limit``; beyond it keeps the first and last halves.

    The tail matters as much as the head: errors usually come last.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit // 2 - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            excess = len(self._tail) - (self.limit - self.limit // 2)
            if excess > 0:
                del self._tail[:excess]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        if not self.truncated:
            return (self._head + self._tail).decode("utf-8", errors="replace")
        omitted = self.total - len(self._head) - len(self._tail)
        return (
            self._head.decode("utf-8", errors="replace")
            + f"\n[... output truncated: {omitted} bytes omitted ...]\n"
            + self._tail.decode("utf-8", errors="replace")
        )
