"""One episode's steps: the record the loop writes, the store keeps and transcript detectors read.

A step is one tool call (or one turn without a usable tool call). Several tool calls in one
assistant turn become several steps sharing a ``turn`` number, like Vivaria's trace entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# "escalation" is a message the scenario injected (its text is the observation), not a turn.
StepKind = Literal["bash", "submit", "no_tool_call", "invalid_tool_call", "escalation"]


@dataclass
class Step:
    index: int
    turn: int
    kind: StepKind
    started_at: datetime
    text: str | None = None  # what the assistant said this turn (on the turn's first step)
    reasoning: str | None = None  # thinking, when the provider returns it
    command: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int | None = None
    timed_out: bool = False
    truncated: bool = False
    answer: str | None = None  # submit's argument
    observation: str | None = None  # what went back to the model: tool result or nudge
    duration_s: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)

    def words(self) -> list[str]:
        """The agent's own words in this step, for stated-intent detectors."""
        return [w for w in (self.text, self.reasoning, self.answer) if w]
