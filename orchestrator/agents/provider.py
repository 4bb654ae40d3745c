"""The one interface every model provider implements, and the conversation it is given.

Providers translate this neutral conversation to and from their own wire format; the loop
never knows which provider it is talking to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] | None  # None when the model's arguments could not be parsed
    raw_arguments: str = ""


@dataclass(frozen=True)
class AssistantTurn:
    text: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    # input, output, cached, reasoning tokens (orchestrator/agents/accounting.py)
    usage: dict[str, int] = field(default_factory=dict)
    # The provider's own record of the turn, for it alone to send back in later turns
    # (Anthropic's thinking blocks must be returned unmodified, signatures and all).
    raw: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    turn: AssistantTurn | None = None  # for assistant messages
    tool_call_id: str | None = None  # for tool results


class Provider(ABC):
    """Given the conversation so far and the tools, return the model's next turn."""

    name: str

    @abstractmethod
    def next_turn(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        """The model's next turn. Raises ContextLimitReached when the conversation is too long
        for the model, ProviderError when no turn could be had for any other reason."""

    def describe(self) -> dict[str, Any]:
        """What to record on the episode about how the model was run (never a secret)."""
        return {}


class ProviderError(RuntimeError):
    """The provider could not produce a turn (unreachable, out of retries): infrastructure."""


class ContextLimitReached(ProviderError):
    """The server refused the request because the conversation no longer fits the model's
    context window. That is the model's limit, like a token budget, not an infrastructure
    failure: the loop ends the episode cleanly (``ended_by: context_limit``) and it is scored.
    Callers that do not know this branch still see a ProviderError."""
