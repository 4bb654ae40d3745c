"""The API's error responses: every failure a client or the database can cause is a 4xx or
a 503 with a reason, never a 500.

- A malformed request is FastAPI's 422, but its handler here always serialises: FastAPI's own
  echoes the offending input, and an input JSON cannot carry (bytes that are not UTF-8, a
  NaN, an unpaired surrogate) made the error response itself a 500.
- A value the database cannot store (a NUL byte, an overlong string) is a 422 with the
  driver's reason.
- A database that does not answer is a 503; one that answers but is busy (SQLite's
  "database is locked", a Postgres lock or statement timeout) is a 503 that says so, since
  the caller's remedy differs: retry soon, not page whoever runs the database.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

log = logging.getLogger("farm.api")

DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)

# How an error echoes the input it refused: nested values past this depth and strings past
# this length are shortened, so a large body is not sent back whole.
ECHO_DEPTH = 8
ECHO_CHARS = 500

# Words in the driver's message of a database that answered but could not take the lock in
# time: SQLite's busy timeout, Postgres's lock_timeout / statement_timeout / deadlock.
BUSY = (
    "database is locked",
    "database table is locked",
    "lock timeout",
    "canceling statement due to statement timeout",
    "deadlock detected",
)


def cause(exc: Exception) -> object:
    """The driver's own message, shorter than SQLAlchemy's and without the SQL."""
    return getattr(exc, "orig", None) or exc


def _first_line(exc: Exception) -> str:
    return next(iter(str(cause(exc)).strip().splitlines()), "no reason given")


def echoable(value: Any, depth: int = 0) -> Any:
    """``value`` as something JSON can carry: non-finite floats and bytes as text, unpaired
    surrogates escaped, deep or long values shortened."""
    if depth > ECHO_DEPTH:
        return "..."
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if isinstance(value, str):
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "..."
    if isinstance(value, dict):
        return {str(echoable(k, depth + 1)): echoable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [echoable(v, depth + 1) for v in value]
    return echoable(str(value), depth + 1)


def _problem(error: dict[str, Any]) -> dict[str, Any]:
    msg = str(error.get("msg", ""))
    ctx = error.get("ctx") or {}
    if error.get("type") == "json_invalid" and ctx.get("error"):
        msg = f"{msg}: {ctx['error']}"  # the parser's reason, not only "JSON decode error"
    problem = {
        "loc": [p if isinstance(p, int) else str(echoable(p)) for p in error.get("loc", ())],
        "msg": echoable(msg),
        "type": str(error.get("type", "value_error")),
    }
    if "input" in error:
        problem["input"] = echoable(error["input"])
    if ctx:
        problem["ctx"] = echoable(ctx)
    return problem


async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        {"detail": [_problem(e) for e in exc.errors()]},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def is_busy(exc: Exception) -> bool:
    text = str(cause(exc)).lower()
    return any(words in text for words in BUSY)


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    where = f"{request.method} {request.url.path}"
    if is_busy(exc):
        log.warning("%s: the database is busy: %s", where, _first_line(exc))
        return JSONResponse(
            {
                "detail": "the database is busy (another writer holds its lock: "
                f"{_first_line(exc)}); try again shortly"
            },
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "2"},
        )
    log.warning("%s: the database does not answer: %s", where, cause(exc))
    return JSONResponse(
        {"detail": "the database does not answer; try again shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


async def unstorable(request: Request, exc: Exception) -> JSONResponse:
    """Shaped like every other 422 (a list of problems). The database names no field: the
    problem is located at the parameter holding a NUL (what Postgres text cannot hold) if
    one does, else at the body or the query as a whole."""
    problem = {
        "loc": _unstorable_at(request),
        "msg": f"a value given cannot be stored or searched for: {_first_line(exc)}",
        "type": "unstorable",
    }
    return JSONResponse({"detail": [problem]}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _allowed(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at ``path``."""
    methods: set[str] = set()
    for context in iter_route_contexts(app.routes):
        if context.methods and compile_path(context.path)[0].match(path):
            methods |= set(context.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own answer, but a 405's ``Allow`` lists every method the path serves:
    Starlette names only those of the first route whose path matched (``POST`` for
    ``/campaigns``, which also serves ``GET``)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        allowed = _allowed(request.app, request.url.path)
        if allowed:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
    return await http_exception_handler(request, exc)


def _unstorable_at(request: Request) -> list[str | int]:
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            if "\x00" in str(value):
                return [where, name]
    return ["body" if request.method in ("POST", "PUT", "PATCH") else "query"]


def install(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(DataError, unstorable)
    for error in DATABASE_DOWN:
        app.add_exception_handler(error, database_unavailable)
