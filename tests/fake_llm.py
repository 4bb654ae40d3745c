"""A real HTTP server that speaks OpenAI Chat Completions and Anthropic Messages, scripted
per test, so the real ``openai`` and ``anthropic`` SDKs can be driven through ``--base-url``.

Each request takes the next action from the script: a reply (text, reasoning or thinking,
tool calls, usage, a stop at the output limit), an HTTP error with headers (429 with
Retry-After, 5xx, 4xx), a refusal because the conversation is longer than the model's window
(in the wire shape of OpenAI, Anthropic, vLLM, llama.cpp or Ollama), an answer too slow for
the client's timeout, a dropped connection, or the endpoint dying for good.
Every request is recorded (path, headers, JSON body) for the test to inspect.

It also checks each request the way the real APIs do where a provider could get it wrong,
and refuses a bad one with a 400 (kept in ``rejections``): tool results that do not answer
the tool calls before them, Anthropic roles that do not alternate, tool results not first,
thinking blocks dropped or altered, sampling parameters sent to the Messages API.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from orchestrator.scenarios.spec import TrajectorySpec


@dataclass(frozen=True)
class Usage:
    input: int = 1000  # all prompt tokens, cached included
    output: int = 50
    cached: int = 0
    reasoning: int = 0


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any] | str  # a str is sent as it is: OpenAI's raw JSON text


@dataclass(frozen=True)
class Reply:
    text: str | None = None
    reasoning: str | None = None  # OpenAI: reasoning_content; Anthropic: a signed thinking block
    calls: tuple[Call, ...] = ()
    usage: Usage = Usage()
    # Stopped by the per-turn output limit: finish_reason "length" / stop_reason "max_tokens".
    cut_off: bool = False


@dataclass(frozen=True)
class Fail:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted failure"


# What servers answer when the conversation no longer fits the model's window: status and body,
# as each sends them. "openai" and "anthropic" are the APIs' own; the others speak OpenAI's.
CONTEXT_FULL: dict[str, tuple[int, dict[str, Any]]] = {
    "openai": (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 4096 tokens. However, "
                "your messages resulted in 5000 tokens.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    ),
    "anthropic": (
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "prompt is too long: 210000 tokens > 200000 maximum",
            },
        },
    ),
    "llama.cpp": (
        400,
        {
            "error": {
                "code": 400,
                "message": "request (5000 tokens) exceeds the available context size "
                "(4096 tokens), try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 5000,
                "n_ctx": 4096,
            }
        },
    ),
    # llama.cpp's server error when a reply would run past the window and shifting is off
    "llama.cpp-shift": (
        500,
        {"error": {"code": 500, "message": "context shift is disabled", "type": "server_error"}},
    ),
    "vllm": (
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens. However, you "
            "requested 5000 tokens (4200 in the messages, 800 in the completion). Please "
            "reduce the length of the messages or completion.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    ),
    "ollama": (
        400,
        {
            "error": {
                "message": "the input length exceeds the context length",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
    ),
}


@dataclass(frozen=True)
class ContextFull:
    """Refuses the request as ``server`` does when the conversation is longer than the model's
    context window (a key of CONTEXT_FULL); by default as the API that was called does."""

    server: str | None = None


@dataclass(frozen=True)
class Garbage:
    """A 200 whose body is not what the API promises."""

    body: bytes = b"<html>502 Bad Gateway</html>"


@dataclass(frozen=True)
class Slow:
    """Says nothing for ``seconds`` (longer than the client's timeout), then hangs up."""

    seconds: float = 30.0


@dataclass(frozen=True)
class Drop:
    """Closes the connection without answering."""


@dataclass(frozen=True)
class Die:
    """The endpoint goes away: this request and every later one find nothing listening."""


@dataclass(frozen=True)
class Hold:
    """Keeps the request in flight until ``peak`` requests are in flight at once (or
    ``seconds`` pass), then answers ``then``: a probe for concurrency limits."""

    peak: int
    seconds: float
    then: Reply


Action = Reply | Fail | ContextFull | Garbage | Slow | Drop | Die | Hold

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def api(self) -> str:
        return "openai" if self.path == OPENAI_PATH else "anthropic"


def replies_from(trajectory: TrajectorySpec, *, thinking: bool = False) -> list[Reply]:
    """A trajectory as a model's replies: each step one turn with one tool call; its words
    as text, or as thinking when ``thinking``. Usage grows with the conversation."""
    replies = []
    for i, step in enumerate(trajectory.steps):
        if step.bash is not None:
            call = Call("bash", {"command": step.bash})
        else:
            call = Call("submit", {"answer": step.submit})
        replies.append(
            Reply(
                text=None if thinking else step.think,
                reasoning=step.think if thinking else None,
                calls=(call,),
                usage=usage_of_turn(i),
            )
        )
    return replies


def usage_of_turn(i: int) -> Usage:
    return Usage(input=1000 + 100 * i, output=40 + i, cached=500 if i else 0, reasoning=i)


class FakeLLM:
    def __init__(self, script: Iterable[Action] = ()):
        self.script: deque[Action] = deque(script)
        self.requests: list[Recorded] = []
        self.rejections: list[str] = []
        self.in_flight = 0
        self.peak = 0
        self.dead = False
        self._issued_thinking: dict[str, str] = {}  # signature -> thinking text
        self._thinking_of_tool_use: dict[str, str] = {}  # tool_use id -> its turn's signature
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._turns = 0

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def base_url(self, api: str) -> str:
        return self.openai_url if api == "openai" else self.url

    def push(self, *actions: Action) -> None:
        with self._lock:
            self.script.extend(actions)

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        self._close_listener()

    def _die(self) -> None:
        self.dead = True
        threading.Thread(target=self._close_listener, daemon=True).start()

    def _close_listener(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- one request ---------------------------------------------------------------------

    def _next(self) -> Action:
        with self._lock:
            return self.script.popleft() if self.script else Reply(text="(script exhausted)")

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self._lock.notify_all()

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _hold(self, hold: Hold) -> None:
        deadline = time.monotonic() + hold.seconds
        with self._lock:
            while self.peak < hold.peak and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)

    def _reply_body(self, api: str, reply: Reply, model: str) -> dict[str, Any]:
        with self._lock:
            self._turns += 1
            n = self._turns
        if api == "openai":
            return _openai_reply(reply, model, n)
        content: list[dict[str, Any]] = []
        signature = None
        if reply.reasoning:
            signature = "sig-" + hashlib.sha256(f"{n}:{reply.reasoning}".encode()).hexdigest()[:24]
            self._issued_thinking[signature] = reply.reasoning
            content.append(
                {"type": "thinking", "thinking": reply.reasoning, "signature": signature}
            )
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for i, call in enumerate(reply.calls):
            tool_id = f"toolu_{n:03d}_{i}"
            if signature:
                self._thinking_of_tool_use[tool_id] = signature
            content.append(
                {"type": "tool_use", "id": tool_id, "name": call.name, "input": call.arguments}
            )
        u = reply.usage
        return {
            "id": f"msg_{n:03d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "max_tokens"
            if reply.cut_off
            else "tool_use"
            if reply.calls
            else "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": u.input - u.cached,
                "cache_read_input_tokens": u.cached,
                "cache_creation_input_tokens": 0,
                "output_tokens": u.output,
                "output_tokens_details": {"thinking_tokens": u.reasoning},
            },
        }

    def _check(self, api: str, body: dict[str, Any]) -> str | None:
        return _check_openai(body) if api == "openai" else self._check_anthropic(body)

    def _check_anthropic(self, body: dict[str, Any]) -> str | None:
        for banned in ("temperature", "top_p", "top_k", "seed"):
            if banned in body:
                return f"{banned}: Extra inputs are not permitted"
        if not isinstance(body.get("max_tokens"), int):
            return "max_tokens: Field required"
        messages = body.get("messages") or []
        expected = "user"
        open_tool_uses: list[str] = []
        for i, message in enumerate(messages):
            role, content = message.get("role"), message.get("content")
            if role != expected:
                return f"messages.{i}: roles must alternate between user and assistant"
            expected = "assistant" if role == "user" else "user"
            if not isinstance(content, list) or not content:
                return f"messages.{i}: content must be a non-empty list of blocks"
            types = [b.get("type") for b in content]
            if any(b.get("type") == "text" and not b.get("text") for b in content):
                return f"messages.{i}: text content blocks must be non-empty"
            if role == "user":
                results = [b.get("tool_use_id") for b in content if b.get("type") == "tool_result"]
                if sorted(results) != sorted(open_tool_uses):
                    return (
                        f"messages.{i}: tool_use ids {open_tool_uses} must each have a "
                        f"tool_result in the next message (got {results})"
                    )
                if types[: len(results)] != ["tool_result"] * len(results):
                    return f"messages.{i}: tool_result blocks must come first"
                open_tool_uses = []
                continue
            open_tool_uses = [b["id"] for b in content if b.get("type") == "tool_use"]
            if problem := self._check_thinking(i, content):
                return problem
        return None

    def _check_thinking(self, i: int, content: list[dict[str, Any]]) -> str | None:
        thinking = [b for b in content if b.get("type") == "thinking"]
        for block in thinking:
            if self._issued_thinking.get(block.get("signature", "")) != block.get("thinking"):
                return f"messages.{i}: thinking block was modified or its signature is invalid"
        if thinking and content[0].get("type") != "thinking":
            return f"messages.{i}: thinking blocks must come first"
        signatures = {b.get("signature") for b in thinking}
        for block in content:
            needed = self._thinking_of_tool_use.get(block.get("id", ""))
            if block.get("type") == "tool_use" and needed and needed not in signatures:
                return f"messages.{i}: the thinking block of this tool use was not sent back"
        return None


def _check_openai(body: dict[str, Any]) -> str | None:
    pending: list[str] = []
    for i, message in enumerate(body.get("messages") or []):
        role = message.get("role")
        if role == "tool":
            if message.get("tool_call_id") not in pending:
                return f"messages.{i}: tool message must answer a preceding tool call"
            pending.remove(message["tool_call_id"])
            continue
        if pending:
            return f"messages.{i}: tool calls {pending} must be answered by tool messages first"
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if not calls and message.get("content") is None:
                return f"messages.{i}: an assistant message needs content or tool_calls"
            for call in calls:
                try:
                    json.loads(call["function"]["arguments"])
                except ValueError:
                    return f"messages.{i}: tool call arguments are not valid JSON"
            pending = [c["id"] for c in calls]
    return f"tool calls {pending} were never answered" if pending else None


def _openai_reply(reply: Reply, model: str, n: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    if reply.calls:
        message["tool_calls"] = [
            {
                "id": f"call_{n:03d}_{i}",
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": c.arguments
                    if isinstance(c.arguments, str)
                    else json.dumps(c.arguments),
                },
            }
            for i, c in enumerate(reply.calls)
        ]
    u = reply.usage
    return {
        "id": f"chatcmpl-{n:03d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "length"
                if reply.cut_off
                else "tool_calls"
                if reply.calls
                else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": u.input,
            "completion_tokens": u.output,
            "total_tokens": u.input + u.output,
            "prompt_tokens_details": {"cached_tokens": u.cached},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning},
        },
    }


def _error_body(api: str, status: int, message: str) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if api == "openai":
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return {"type": "error", "error": {"type": kind, "message": message}}


def _handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict[str, Any] | bytes, headers: dict[str, str]) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up first
                self.close_connection = True

        def _hang_up(self) -> None:
            self.close_connection = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if fake.dead:
                return self._hang_up()
            if self.path not in (OPENAI_PATH, ANTHROPIC_PATH):
                return self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
            body = json.loads(raw or b"{}")
            request = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            fake.requests.append(request)
            if problem := fake._check(request.api, body):
                fake.rejections.append(problem)
                return self._send(400, _error_body(request.api, 400, problem), {})
            action = fake._next()
            fake._enter()
            try:
                self._act(request, action)
            finally:
                fake._leave()

        def _act(self, request: Recorded, action: Action) -> None:
            if isinstance(action, Hold):
                fake._hold(action)
                action = action.then
            if isinstance(action, Reply):
                model = request.body.get("model", "")
                self._send(200, fake._reply_body(request.api, action, model), {})
            elif isinstance(action, Fail):
                body = _error_body(request.api, action.status, action.message)
                self._send(action.status, body, action.headers)
            elif isinstance(action, ContextFull):
                status, body = CONTEXT_FULL[action.server or request.api]
                self._send(status, body, {})
            elif isinstance(action, Garbage):
                self._send(200, action.body, {})
            elif isinstance(action, Slow):
                fake._stopping.wait(action.seconds)
                self._hang_up()
            elif isinstance(action, Drop):
                self._hang_up()
            elif isinstance(action, Die):
                fake._die()
                self._hang_up()

    return Handler
