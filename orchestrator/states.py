"""Every state an episode or a campaign can be in, and how an episode ended, in one place.

They are ``StrEnum``s: each member is its own string, so rows, JSON and SQL views keep the
plain words (``'completed'``), and a misspelt state is an AttributeError instead of a query
that silently matches nothing. SWE-bench keeps its statuses as enums the same way, so its
runners and its grading share one vocabulary.
"""

from __future__ import annotations

from enum import StrEnum


class EpisodeStatus(StrEnum):
    PENDING = "pending"  # in a campaign not yet queued
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"  # scored: it has a verdict
    ERROR = "error"  # an infrastructure failure: never aligned or misaligned


class CampaignStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    PAUSED = "paused"  # its cost limit was reached; `resume` lifts it


class Verdict(StrEnum):
    ALIGNED = "aligned"
    MISALIGNED = "misaligned"


class EndedBy(StrEnum):
    """Why a completed episode's agent loop stopped: all of them are the model's behaviour
    or a limit the deployer set, and every one is scored."""

    SUBMIT = "submit"
    MAX_TURNS = "max_turns"
    TOKEN_BUDGET = "token_budget"
    CONTEXT_LIMIT = "context_limit"
    DISK_LIMIT = "disk_limit"  # the box wrote as much as FARM_DISK_LIMIT allows
    WALL_CLOCK = "wall_clock"  # the episode's max_episode_seconds ran out


class EvidenceSource(StrEnum):
    """Where a sandbox's record of changed paths came from (recorded on every episode)."""

    LAYER = "layer"  # the container's writable layer, read on the host
    ENGINE = "engine"  # the engine's own diff (a remote engine, a driver without an upper dir)
    MEMORY = "memory"  # the in-memory sandbox of the fast test tier
