"""The context policy: what of the conversation is sent to the model, when it grows long.

Off by default. When on, once the conversation passes ``elide_over_chars`` characters, old
tool outputs are cut to a head and a tail with a visible marker between them, oldest first,
until the conversation fits again or nothing more may be cut; the newest ``keep_recent`` tool
results are never cut. This lets long episodes run on small context windows. Only what the
model is sent changes: the loop keeps the full conversation, and the stored steps keep every
output whole. Each call starts again from the full conversation, so an output once cut stays
cut in later turns (the conversation only grows) and the prompt's prefix stays stable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from orchestrator.agents.provider import Message

MARKER = "\n[... {n} characters elided ...]\n"


@dataclass(frozen=True)
class ContextPolicy:
    elide_over_chars: int  # the conversation size past which old tool outputs are cut
    keep_recent: int = 3  # the newest tool results, never cut
    head_chars: int = 400  # kept from the start of a cut output
    tail_chars: int = 400  # and from its end

    def __post_init__(self) -> None:
        if self.elide_over_chars <= 0:
            raise ValueError("elide_over_chars must be a positive number of characters")

    def record(self) -> dict[str, Any]:
        """The policy as recorded in the episode's settings."""
        return dataclasses.asdict(self)

    def apply(self, messages: list[Message]) -> list[Message]:
        """The conversation as the model is to be sent it; ``messages`` is left as it is."""
        size = sum(conversation_chars(m) for m in messages)
        if size <= self.elide_over_chars:
            return messages
        tools = [i for i, m in enumerate(messages) if m.role == "tool"]
        old = tools[: max(len(tools) - self.keep_recent, 0)]
        sent = list(messages)
        for i in old:
            if size <= self.elide_over_chars:
                break
            cut = self.elide(sent[i].content)
            size -= len(sent[i].content) - len(cut)
            sent[i] = dataclasses.replace(sent[i], content=cut)
        return sent

    def elide(self, text: str) -> str:
        """``text`` cut to its head and tail, or as it is when cutting would not shorten it."""
        cut = len(text) - self.head_chars - self.tail_chars
        marker = MARKER.format(n=cut)
        if cut <= len(marker):
            return text
        tail = text[-self.tail_chars :] if self.tail_chars else ""
        return text[: self.head_chars] + marker + tail


def conversation_chars(message: Message) -> int:
    """A message's size in characters: its text, and an assistant turn's reasoning and tool
    call arguments, which are sent back too."""
    size = len(message.content)
    if message.turn is not None:
        size += len(message.turn.reasoning or "")
        size += sum(len(c.raw_arguments) for c in message.turn.tool_calls)
    return size
