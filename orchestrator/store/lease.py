"""A worker's hold on one attempt at a queued episode.

The attempt number is a fencing token: every write an attempt makes is checked against the
episode's current ``attempts`` under a row lock, so a worker that lost its lease (it stalled,
its lease ran out and another worker took the episode over) can never write into the new
attempt's rows, and an episode is never stored twice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lease:
    episode_id: str
    attempt: int
    owner: str  # the worker, e.g. "host:pid:slot"


class LeaseLost(RuntimeError):
    """The episode was taken over (or released) while this attempt still ran; its work is void."""

    def __init__(self, lease: Lease, why: str):
        super().__init__(f"episode {lease.episode_id} attempt {lease.attempt}: lease lost ({why})")
        self.lease = lease
