"""Anthropic Messages with tool use and, where enabled, extended thinking.

The Messages API is stricter than the loop's conversation, so the translation does three
things the OpenAI one does not:

- the system prompt goes in its own field;
- roles must alternate, so consecutive same-role messages (tool results, then a nudge or an
  injected escalation) are merged into one user message, tool_result blocks first;
- an assistant turn is sent back exactly as the API returned it, thinking blocks with their
  signatures included, because the API refuses a tool-use conversation whose thinking was
  dropped or changed. The provider keeps those blocks in ``AssistantTurn.raw``.

The Messages API (the version this SDK sends) takes no sampling parameters, so temperature
and seed are recorded as ignored rather than sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anthropic

from orchestrator.agents.generation import GenerationSettings
from orchestrator.agents.provider import AssistantTurn, Message, ToolCall, ToolSpec
from orchestrator.agents.remote import Connection, RemoteProvider
from orchestrator.agents.retry import SdkErrors

# max_tokens is required by this API; thinking tokens count toward it.
DEFAULT_MAX_TOKENS = 8192
ERRORS = SdkErrors.of(anthropic, anthropic.AnthropicError)
Block = dict[str, Any]


class AnthropicProvider(RemoteProvider):
    unsupported = frozenset({"temperature", "seed"})

    def __init__(
        self,
        connection: Connection,
        generation: GenerationSettings,
        sleep: Callable[[float], None] = time.sleep,
    ):
        budget = generation.thinking if isinstance(generation.thinking, int) else 0
        if generation.max_tokens is None:
            generation = generation.model_copy(update={"max_tokens": DEFAULT_MAX_TOKENS + budget})
        if budget and budget >= (generation.max_tokens or 0):
            raise ValueError(
                f"max tokens ({generation.max_tokens}) must exceed the thinking budget ({budget})"
            )
        super().__init__(connection, generation, ERRORS, sleep)
        self.client = anthropic.Anthropic(**connection.client_options())

    def next_turn(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        request = self._request(messages, tools)
        response = self.retrier.call(lambda: self.client.messages.create(**request))
        return _turn(response)

    def _request(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        g = self.generation
        request: dict[str, Any] = {
            "model": self.connection.model,
            "max_tokens": g.max_tokens,
            "messages": wire_messages(messages),
            "tools": [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in tools
            ],
        }
        system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
        if system:
            request["system"] = system
        if g.thinking == "adaptive":
            request["thinking"] = {"type": "adaptive", "display": "summarized"}
        elif g.thinking:
            thinking = {"type": "enabled", "budget_tokens": g.thinking, "display": "summarized"}
            request["thinking"] = thinking
        if g.reasoning_effort:
            request["output_config"] = {"effort": g.reasoning_effort}
        return request


def _assistant_blocks(message: Message) -> list[Block]:
    if message.turn is not None and message.turn.raw:
        return list(message.turn.raw)  # exactly as returned, thinking and signatures included
    blocks: list[Block] = [{"type": "text", "text": message.content}] if message.content else []
    for call in message.turn.tool_calls if message.turn else []:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments or {}}
        )
    return blocks


def wire_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation as alternating user/assistant messages of content blocks."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "assistant":
            role, blocks = "assistant", _assistant_blocks(message)
        elif message.role == "tool":
            content = message.content or "(no output)"
            block = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": content}
            role, blocks = "user", [block]
        else:
            text = message.content
            role, blocks = "user", [{"type": "text", "text": text}] if text.strip() else []
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": role, "content": blocks})
    for entry in wire:
        # Tool results must open the user message that answers a tool use (stable sort).
        entry["content"].sort(key=lambda b: b["type"] != "tool_result")
        if not entry["content"]:  # the API refuses empty messages
            entry["content"] = [{"type": "text", "text": "(empty)"}]
    return wire


def _raw_block(block: Any) -> Block | None:
    """A response block in the form the API accepts back; None for what is not sent back."""
    if block.type == "thinking":
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    if block.type == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if block.type == "text" and block.text:
        return {"type": "text", "text": block.text}
    return None


def _usage(usage: Any) -> dict[str, int]:
    cached = usage.cache_read_input_tokens or 0
    written = usage.cache_creation_input_tokens or 0
    details = usage.output_tokens_details
    return {
        "input": (usage.input_tokens or 0) + cached + written,
        "output": usage.output_tokens or 0,
        "cached": cached,
        "reasoning": (details.thinking_tokens or 0) if details else 0,
    }


def _turn(response: Any) -> AssistantTurn:
    raw = tuple(b for b in (_raw_block(block) for block in response.content) if b is not None)
    texts = [b["text"] for b in raw if b["type"] == "text"]
    thoughts = [b["thinking"] for b in raw if b["type"] == "thinking" and b["thinking"]]
    calls = [
        ToolCall(
            b["id"],
            b["name"],
            b["input"] if isinstance(b["input"], dict) else None,
            raw_arguments=json.dumps(b["input"]),
        )
        for b in raw
        if b["type"] == "tool_use"
    ]
    return AssistantTurn(
        text="\n\n".join(texts) or None,
        reasoning="\n\n".join(thoughts) or None,
        tool_calls=calls,
        usage=_usage(response.usage),
        raw=raw,
    )
