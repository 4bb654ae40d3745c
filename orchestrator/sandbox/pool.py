"""Warm boxes: started, ready and baselined ahead of the episodes that will use them.

Starting a box (create, start, the scenario's services, the ready file, the baseline) is the
farm's largest fixed cost per episode, and it does not depend on the episode: two boxes with
the same ``SandboxConfig.warm_key`` are interchangeable until their first command. A pool
keeps ``size`` of each key a worker has asked for, refilled in the background after each
claim, so an episode's first command waits on the model alone.

A warm box is labelled like any other (``farm.managed``, ``farm.owner``, the session) plus
``farm.pool``, is used once, and is removed on ``close`` and by the same reaping as every
box: a worker killed with SIGKILL leaves boxes whose owner is dead, which the next
``farm sandbox reap`` or worker sweep on that engine removes.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from orchestrator.sandbox.base import Sandbox, SandboxConfig, SandboxError

log = logging.getLogger("farm.pool")

POOL_LABEL = "farm.pool"
# Labels of the claiming episode a warm box may carry: not its attempt or campaign, which
# would make the attempt's sweep remove a box not yet anyone's.
_KEPT_LABELS = ("farm.session", "farm.worker")


class WarmPool:
    def __init__(self, start: Callable[[SandboxConfig], Sandbox], size: int, fillers: int = 2):
        self._start = start
        self.size = size
        self._boxes: dict[str, list[Sandbox]] = {}
        self._filling: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._fillers = ThreadPoolExecutor(max_workers=fillers, thread_name_prefix="warm")

    def start(self, config: SandboxConfig) -> Sandbox:
        """A warm box for ``config`` if one is ready, else a fresh one; either way the pool
        is topped up for the next episode like it. Raises SandboxError."""
        if self.size <= 0:
            return self._start(config)
        key = config.warm_key()
        with self._lock:
            ready = self._boxes.get(key) or []
            box = ready.pop(0) if ready else None
        self.top_up(config)
        return box if box is not None else self._start(config)

    def held(self) -> int:
        with self._lock:
            return sum(len(boxes) for boxes in self._boxes.values())

    def top_up(self, config: SandboxConfig) -> list[Future[None]]:
        """Start filling the pool for boxes like ``config``; the fills, to wait on if need
        be (a worker may warm the cells it is about to claim)."""
        key = config.warm_key()
        with self._lock:
            if self._closed:
                return []
            wanted = max(0, self.size - len(self._boxes.get(key, ())) - self._filling.get(key, 0))
            self._filling[key] = self._filling.get(key, 0) + wanted
        return [self._fillers.submit(self._fill, config, key) for _ in range(wanted)]

    def _fill(self, config: SandboxConfig, key: str) -> None:
        labels = {k: v for k, v in config.extra_labels.items() if k in _KEPT_LABELS}
        warm = dataclasses.replace(
            config,
            episode_id=f"warm-{uuid.uuid4().hex}",
            extra_labels={**labels, POOL_LABEL: "warm"},
        )
        box: Sandbox | None = None
        try:
            box = self._start(warm)
            box.baseline()
        except SandboxError as exc:
            log.warning("could not warm a box of %s: %s", config.scenario_id, exc)
            if box is not None:
                box.close()
            box = None
        finally:
            with self._lock:
                self._filling[key] -= 1
                keep = box is not None and not self._closed
                if keep:
                    self._boxes.setdefault(key, []).append(box)  # type: ignore[arg-type]
        if box is not None and not keep:
            box.close()

    def close(self) -> None:
        """Stop filling and remove every box not yet claimed."""
        with self._lock:
            self._closed = True
        self._fillers.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            boxes = [box for held in self._boxes.values() for box in held]
            self._boxes.clear()
        for box in boxes:
            box.close()

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
