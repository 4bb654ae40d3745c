"""The Jinja2 environment of the pages, and the responses every page shares.

Autoescaping is on for every template whatever its name (not only ``*.html``): transcripts,
answers, file contents, model names and campaign names are written by agents and campaign
authors and are hostile input, so nothing reaches a page unescaped and no template marks
anything ``|safe``. Undefined names are errors, so a typo fails the tests instead of
rendering an empty cell. The Content-Security-Policy is a second wall behind the escaping:
only this server's own script, style and images, no inline script, no framing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from orchestrator.web.static import static_url

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # pages show live data and sit behind a session: never from a cache, never stored
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> str:
    """A stored time in UTC to the second (SQLite hands times back without a zone)."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def money(value: float | None) -> str:
    return "—" if value is None else f"${value:,.4f}"


def pretty(value: Any) -> str:
    """Evidence and settings as indented JSON (escaped like any other text)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def page_query(query: dict[str, str], number: int) -> str:
    """The episode list's filters with another page number, for its links."""
    return urlencode({**query, "page": number})


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("orchestrator.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_url"] = static_url
    env.filters.update(when=when, number=number, money=money, pretty=pretty, page_query=page_query)
    return env


ENV = _environment()


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render templates/``name`` with ``context`` as a complete response."""
    html = ENV.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)
