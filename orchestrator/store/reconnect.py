"""Riding out a database restart.

A campaign runs for hours; a Postgres restart or failover must cost a pause, not the episodes
in flight. Each store operation is one short transaction written so it can simply be run
again (a step already written is skipped, a finished episode stays finished), so retrying it
on a lost connection is safe. Anything else is a real error and goes straight up.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy.exc import InterfaceError, OperationalError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# How long one operation keeps trying by default before its error goes up, and the waits in
# between.
PATIENCE_SECONDS = 120.0
FIRST_WAIT, MAX_WAIT = 0.25, 5.0


def reconnecting(method: F) -> F:
    """Retry the method while the database is unreachable, for up to ``self.patience``
    seconds."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.patience
        wait = FIRST_WAIT
        while True:
            try:
                return method(self, *args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() + wait > deadline:
                    raise
                reason = str(exc.orig or exc).splitlines()[0][:160]
                log.warning("database unreachable (%s); retrying in %.1fs", reason, wait)
                time.sleep(wait)
                wait = min(wait * 2, MAX_WAIT)

    return cast(F, wrapper)
