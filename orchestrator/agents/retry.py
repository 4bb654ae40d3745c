"""Retries for model API calls, written once and shared by every provider.

The SDKs' own retries are switched off (``max_retries=0``) so that there is one policy, one
budget and one place that decides what is transient: rate limits (429), 408 and 409, server
errors (5xx), timeouts and dropped connections are retried with exponential backoff and
jitter, waiting at least what the server's Retry-After asks; any other 4xx is a mistake in
the request (bad model name, bad key) that no retry will fix, so it fails at once. Whatever
fails ends as :class:`ProviderError`, which the episode records as an infrastructure error,
never as a verdict; except a refusal because the conversation outgrew the model's context
window (:func:`is_context_limit`: its wording, on a 400, 413, 422 or 5xx), which is the
model's own limit and ends as :class:`ContextLimitReached`, never retried.

A model call has no side effect but its bill, so retrying it is safe (unlike a step in the
sandbox, which is never retried). Each attempt holds one of the provider's concurrency slots
only while the request is in flight, not while it waits to retry.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from orchestrator.agents.provider import ContextLimitReached, ProviderError

T = TypeVar("T")
log = logging.getLogger("farm.providers")

RETRYABLE_STATUS = frozenset({408, 409, 429})
# Shorter values are not secrets but placeholders (local servers take any key, say "x"), and
# replacing them would mangle every message they occur in.
MIN_SECRET_LENGTH = 8

# How servers say the conversation no longer fits the model's window, lower-cased. Each is
# specific enough that no other refusal says it: "context" or "too long" alone is not enough.
_CONTEXT_LIMIT = re.compile(
    "|".join(
        (
            r"context_length_exceeded",  # OpenAI's and OpenRouter's error code
            r"exceed_context_size_error",  # llama.cpp's error type
            r"maximum context length",  # OpenAI, vLLM, OpenRouter, older llama.cpp
            r"prompt is too long",  # Anthropic: "prompt is too long: N tokens > M maximum"
            r"longer than the (?:model's )?maximum (?:context|model) length",  # vLLM
            r"input tokens exceed",  # vLLM
            # llama.cpp "exceeds the available context size", Ollama "input length exceeds
            # the context length", Anthropic "input length and max_tokens exceed context limit"
            r"exceeds? (?:the )?(?:available |model's |maximum )?context"
            r" (?:size|length|window|limit)",
            r"context (?:length|window) (?:is )?exceeded",  # Ollama
            r"context shift is disabled",  # llama.cpp, when a reply would overflow the window
        )
    )
)
# Statuses a context refusal comes with: 400 mostly, 413 and 422 from some proxies, 5xx from
# llama.cpp ("context shift is disabled" is a server error there). Never 401/403/404/429.
_CONTEXT_LIMIT_STATUS = frozenset({400, 413, 422})


def is_context_limit(status: int, text: str) -> bool:
    """Whether a refusal with this status and body (or message) says that the conversation is
    longer than the model's context window."""
    if status not in _CONTEXT_LIMIT_STATUS and status < 500:
        return False
    return _CONTEXT_LIMIT.search(text.lower()) is not None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int  # retries after the first try
    base_seconds: float
    cap_seconds: float
    retry_after_max_seconds: float

    def backoff(self, retry: int) -> float:
        """Equal jitter: half of base * 2^retry (capped) for sure, the other half at random."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2**retry)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class SdkErrors:
    """An SDK's exception types; both SDKs name them alike but they are different classes."""

    base: type[Exception]  # the SDK's root error
    status: type[Exception]  # APIStatusError: has .status_code and .response
    rate_limit: type[Exception]  # RateLimitError (a 429 status error)
    timeout: type[Exception]  # APITimeoutError
    connection: type[Exception]  # APIConnectionError (the SDKs make timeouts a subclass)

    @classmethod
    def of(cls, sdk: ModuleType, base: type[Exception]) -> SdkErrors:
        """The error types of ``sdk``, which (like both SDKs) names them the same way."""
        return cls(
            base=base,
            status=sdk.APIStatusError,
            rate_limit=sdk.RateLimitError,
            timeout=sdk.APITimeoutError,
            connection=sdk.APIConnectionError,
        )


def retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, or ``retry-after`` in seconds
    or as an HTTP date; None when it did not say."""
    if headers is None:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(float(ms) / 1000, 0.0)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced, so an API key never reaches an error or a log.
    Values shorter than MIN_SECRET_LENGTH are left alone: a dummy key such as ``x`` is no
    secret, and replacing it would garble the message."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, "[redacted]")
    return text


@dataclass
class Retrier:
    """Calls a provider's request function until it answers or the budget is spent."""

    errors: SdkErrors
    policy: RetryPolicy
    slot: threading.Semaphore
    where: str  # "openai at https://api.openai.com/v1", for messages
    secrets: tuple[str, ...] = field(default=(), repr=False)
    sleep: Callable[[float], None] = time.sleep

    def call(self, request: Callable[[], T]) -> T:
        retry = 0
        while True:
            try:
                with self.slot:
                    return request()
            except self.errors.base as exc:
                if self._context_limit(exc):
                    raise ContextLimitReached(
                        self._message("the model's context window is full", exc)
                    ) from None
                transient, reason, asked = self._classify(exc)
                if not transient:
                    raise ProviderError(self._message(reason, exc)) from None
                if retry >= self.policy.attempts:
                    raise ProviderError(
                        self._message(f"{reason}; gave up after {retry + 1} attempts", exc)
                    ) from None
                wait = self.policy.backoff(retry)
                if asked is not None:
                    wait = max(wait, min(asked, self.policy.retry_after_max_seconds))
                retry += 1
                log.warning(
                    "%s from %s; retry %d/%d in %.1fs",
                    reason,
                    self.where,
                    retry,
                    self.policy.attempts,
                    wait,
                )
                self.sleep(wait)
            except Exception as exc:  # e.g. a body a compatible server got wrong: not transient
                raise ProviderError(self._message("unusable response", exc)) from None

    def _context_limit(self, exc: Exception) -> bool:
        if not isinstance(exc, self.errors.status):
            return False
        body = getattr(exc, "body", None)
        text = f"{exc} {json.dumps(body, default=str) if body is not None else ''}"
        return is_context_limit(int(getattr(exc, "status_code", 0)), text)

    def _classify(self, exc: Exception) -> tuple[bool, str, float | None]:
        """(transient?, what happened, Retry-After seconds)."""
        errors = self.errors
        if isinstance(exc, errors.status):
            status = int(getattr(exc, "status_code", 0))
            response = getattr(exc, "response", None)
            asked = retry_after(getattr(response, "headers", None))
            if isinstance(exc, errors.rate_limit):
                return True, f"rate limited ({status})", asked
            if status in RETRYABLE_STATUS or status >= 500:
                return True, f"HTTP {status}", asked
            return False, f"HTTP {status} (not retried: the request itself was refused)", None
        if isinstance(exc, errors.timeout):
            return True, "timed out", None
        if isinstance(exc, errors.connection):
            return True, "connection failed", None
        return False, type(exc).__name__, None

    def _message(self, reason: str, exc: Exception) -> str:
        return redact(f"{self.where}: {reason}: {exc}", self.secrets)
