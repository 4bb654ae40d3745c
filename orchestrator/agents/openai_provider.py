"""OpenAI Chat Completions with tool calls: OpenAI itself and every server that speaks it
(vLLM, Ollama, llama.cpp's server, OpenRouter, ...).

The conversation goes over as it is: consecutive user messages and a user message after
tool results are both fine in this format. Reasoning text is read where compatible servers
put it (``reasoning_content`` from vLLM and DeepSeek, ``reasoning`` from OpenRouter and
Ollama); OpenAI itself returns none in this API, only a count of reasoning tokens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import openai

from orchestrator.agents.generation import GenerationSettings
from orchestrator.agents.provider import (
    AssistantTurn,
    Message,
    ProviderError,
    ToolCall,
    ToolSpec,
)
from orchestrator.agents.remote import Connection, RemoteProvider
from orchestrator.agents.retry import SdkErrors

ERRORS = SdkErrors.of(openai, openai.OpenAIError)
_REASONING_FIELDS = ("reasoning_content", "reasoning")


class OpenAIProvider(RemoteProvider):
    unsupported = frozenset({"thinking"})  # a thinking budget is Anthropic's

    def __init__(
        self,
        connection: Connection,
        generation: GenerationSettings,
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__(connection, generation, ERRORS, sleep)
        self.client = openai.OpenAI(**connection.client_options())
        # OpenAI's own API calls the per-turn limit max_completion_tokens (its reasoning
        # models refuse max_tokens); compatible servers have all understood max_tokens.
        official = urlsplit(connection.base_url).hostname == "api.openai.com"
        self._max_tokens_field = "max_completion_tokens" if official else "max_tokens"

    def next_turn(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        request = self._request(messages, tools)
        response = self.retrier.call(lambda: self.client.chat.completions.create(**request))
        if not response.choices:
            raise ProviderError(f"{self.name}: the response had no choices")
        return _turn(response.choices[0].message, response.usage)

    def _request(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        g = self.generation
        request: dict[str, Any] = {
            "model": self.connection.model,
            "messages": [_wire(m) for m in messages],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in tools
            ],
        }
        optional = {
            "temperature": g.temperature,
            "seed": g.seed,
            "reasoning_effort": g.reasoning_effort,
            self._max_tokens_field: g.max_tokens,
        }
        request.update({k: v for k, v in optional.items() if v is not None})
        return request


def _echoed_arguments(call: ToolCall) -> str:
    """The arguments as the model sent them; ``{}`` for ones that were not a JSON object,
    which some servers cannot re-read (the model saw what it sent in the tool's error)."""
    if call.arguments is None:
        return "{}"
    return call.raw_arguments or json.dumps(call.arguments)


def _wire(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role != "assistant":
        return {"role": message.role, "content": message.content}
    calls = message.turn.tool_calls if message.turn else []
    if not calls:
        return {"role": "assistant", "content": message.content}
    return {
        "role": "assistant",
        "content": message.content or None,
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": _echoed_arguments(c)},
            }
            for c in calls
        ],
    }


def _parse_arguments(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _tool_call(call: Any) -> ToolCall:
    if call.type == "function":
        name, raw = call.function.name, call.function.arguments or ""
    else:  # a custom (free-text) tool call: we offer none, so the relay will say so
        name, raw = call.custom.name, call.custom.input or ""
    return ToolCall(call.id, name, _parse_arguments(raw), raw_arguments=raw)


def _usage(usage: Any) -> dict[str, int]:
    if usage is None:
        return {}
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    return {
        "input": usage.prompt_tokens or 0,
        "output": usage.completion_tokens or 0,
        "cached": (prompt.cached_tokens or 0) if prompt else 0,
        "reasoning": (completion.reasoning_tokens or 0) if completion else 0,
    }


def _turn(message: Any, usage: Any) -> AssistantTurn:
    extra = message.model_extra or {}
    reasoning = next((extra[f] for f in _REASONING_FIELDS if isinstance(extra.get(f), str)), None)
    return AssistantTurn(
        text=message.content or None,
        reasoning=reasoning or None,
        tool_calls=[_tool_call(c) for c in message.tool_calls or []],
        usage=_usage(usage),
    )
