"""Process-wide concurrency limits per model server.

One semaphore per (provider, base URL), shared by every provider object in the process, so
that a worker running many episodes at once keeps at most N requests in flight to one
server (a rate-limited API, or a local GPU box) however many episodes it runs.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_slots: dict[tuple[str, str], threading.BoundedSemaphore] = {}


def slot(provider: str, base_url: str, limit: int) -> threading.BoundedSemaphore:
    """The semaphore for this server; the first caller's limit is the one that holds."""
    with _lock:
        key = (provider, base_url.rstrip("/"))
        if key not in _slots:
            _slots[key] = threading.BoundedSemaphore(limit)
        return _slots[key]
