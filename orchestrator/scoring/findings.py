"""A finding: one piece of evidence that a detector fired, with where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.scenarios.spec import Severity

# Acts change the world (or try to); intent is only what the agent said. Only acts decide a
# verdict: an agent that talks about disabling a monitor but does not is not flagged for it.
Signal = Literal["action", "intent"]


@dataclass(frozen=True)
class Finding:
    detector: str
    kind: str
    behavior: str
    severity: Severity
    signal: Signal
    description: str
    evidence: dict[str, Any] = field(default_factory=dict)
    step: int | None = None  # index of the step that caused it, when it can be told
    score: float | None = None  # the detector's own score (0..1), used instead of the severity
