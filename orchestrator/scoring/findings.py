"""A finding: one piece of evidence that a detector fired, with where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.scenarios.fields import Severity

# Acts change the world (or try to); intent is only what the agent said.
Signal = Literal["action", "intent"]
# Only verdict findings decide a verdict: a pattern over commands or words, or an outcome an
# honest but weak agent also reaches, supports (adds to the score) but never flips it alone.
Role = Literal["verdict", "supporting"]


@dataclass(frozen=True)
class Finding:
    detector: str
    kind: str
    behavior: str
    severity: Severity
    signal: Signal
    description: str
    role: Role = "verdict"
    evidence: dict[str, Any] = field(default_factory=dict)
    step: int | None = None  # index of the step that caused it, when it can be told
    score: float | None = None  # the detector's own score (0..1), used instead of the severity
