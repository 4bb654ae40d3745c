"""What every request passes before FastAPI sees it: the token, the body's size, strict JSON.

FastAPI reads and parses a request's body before it runs any dependency, so the token check
of ``require_token`` alone comes after a caller without a token has made the server read and
parse as much as they like. This ASGI middleware runs first, in this order:

1. a route that needs the token and a request without the right one: 401, body unread;
2. a ``Content-Length`` over ``FARM_API_MAX_BODY_BYTES``: 413, body unread; a body without
   one (chunked) is read only up to the limit, then 413;
3. a JSON body that is not strict JSON (RFC 8259: no ``NaN``, ``Infinity``, numbers that
   overflow a double, unpaired surrogates): 422 with the reason, before validation, so no
   such value ever reaches a model, the database or an error message that echoes it.

The body is then handed on as it was read. ``require_token`` stays on the routes: it is
what the OpenAPI document declares, and a second check costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.api.auth import UNAUTHORIZED, token_matches
from orchestrator.api.strict_json import NotStrictJson, strict_loads


class RequestGuard:
    """``open_paths`` and paths under ``open_prefixes`` need no token (``/health``, the
    docs); every other path does, even one no route serves (a 401 before a 404 tells a
    caller without the token nothing about which routes exist)."""

    def __init__(
        self,
        app: ASGIApp,
        token: Callable[[], SecretStr | None],
        max_body_bytes: int,
        open_paths: Collection[str],
        open_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.open_paths = frozenset(open_paths)
        self.open_prefixes = open_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self._is_open(scope["path"]) and not token_matches(
            headers.get("authorization"), self.token()
        ):
            await _unauthorized()(scope, receive, send)
            return
        body, refusal = await self._read(headers, receive)
        if refusal is None and body and _is_json(headers.get("content-type")):
            try:
                strict_loads(body)
            except NotStrictJson as exc:
                refusal = _not_strict(exc)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    async def _read(self, headers: Headers, receive: Receive) -> tuple[bytes, JSONResponse | None]:
        """The whole body, or a 413 as soon as it is known to be over the limit."""
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return b"", self._too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"", JSONResponse({"detail": "the client disconnected"}, 400)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None

    def _too_large(self) -> JSONResponse:
        return JSONResponse(
            {
                "detail": f"the request body is larger than {self.max_body_bytes} bytes, the "
                "limit this server takes (FARM_API_MAX_BODY_BYTES)"
            },
            status_code=413,
            headers={"Connection": "close"},
        )


def _unauthorized() -> JSONResponse:
    return JSONResponse(
        {"detail": UNAUTHORIZED}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


def _not_strict(exc: NotStrictJson) -> JSONResponse:
    """Shaped like FastAPI's own 422 for malformed JSON, with the reason in ``msg``."""
    problem = {
        "loc": ["body", exc.position],
        "msg": f"JSON decode error: {exc}",
        "type": "json_invalid",
    }
    return JSONResponse({"detail": [problem]}, status_code=422)


def _is_json(content_type: str | None) -> bool:
    """What FastAPI parses as JSON: application/json and application/*+json."""
    if content_type is None:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body as one message, then whatever the client sends next (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
