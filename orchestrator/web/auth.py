"""Sign-in for the pages: the API's bearer token, entered once, becomes a session cookie.

The cookie never holds the token itself: it holds the time it was issued and an HMAC of that
time keyed by the token, so a cookie that leaks (a shared screenshot of devtools, a proxy
log) is not an API credential, expires on its own, and every session ends when the token is
rotated. It is HttpOnly (no script reads it), SameSite=Strict (no other site's link or form
sends it) and Secure whenever the page was served over HTTPS.

Every comparison of secrets is ``hmac.compare_digest`` on bytes. State-changing forms are
POSTs checked twice: the session cookie, and that the request comes from a page of this
very origin (``Origin``, else ``Referer``; ``Sec-Fetch-Site`` when the browser sends it).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import Response
from fastapi.routing import APIRoute

from orchestrator.api.deps import FarmDep
from orchestrator.web.templating import page

COOKIE = "farm_ui_session"
COOKIE_PATH = "/ui"
SESSION_SECONDS = 12 * 3600
CLOCK_SKEW_SECONDS = 60
LOGIN = "/ui/login"
HOME = "/ui/"


def _token(farm: FarmDep) -> bytes | None:
    """The configured token as bytes; None when unset (then nobody can sign in)."""
    secret = farm.settings.api_token
    value = secret.get_secret_value() if secret is not None else ""
    return value.encode("utf-8") or None


def _mac(token: bytes, issued: int) -> str:
    return hmac.new(token, f"farm-ui-session:{issued}".encode(), hashlib.sha256).hexdigest()


def token_matches(farm: FarmDep, given: str) -> bool:
    expected = _token(farm)
    return expected is not None and hmac.compare_digest(given.encode("utf-8"), expected)


def session_value(farm: FarmDep, now: float | None = None) -> str:
    token = _token(farm)
    if token is None:
        raise ValueError("no FARM_API_TOKEN: no session can be issued")
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_mac(token, issued)}"


def session_valid(farm: FarmDep, value: str | None, now: float | None = None) -> bool:
    """A cookie this server issued with the current token, and not expired."""
    token = _token(farm)
    if token is None or not value or "." not in value:
        return False
    issued_text, mac = value.split(".", 1)
    if not issued_text.isdigit() or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    age = (time.time() if now is None else now) - issued
    if not -CLOCK_SKEW_SECONDS <= age <= SESSION_SECONDS:
        return False
    return hmac.compare_digest(mac.encode("ascii", "replace"), _mac(token, issued).encode())


def set_session(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of these pages only, never another site
    (``//evil``, ``/\\evil``, a scheme) and never the login page itself."""
    if not target or not target.startswith(COOKIE_PATH):
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or target.startswith(LOGIN):
        return HOME
    return target


def login_redirect(request: Request) -> str:
    """The login page, returning to this page afterwards (to the campaigns after a form's
    POST, which a browser cannot repeat by following a link)."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{LOGIN}?next={quote(here if request.method == 'GET' else HOME, safe='')}"


class CrossSiteArrival(Exception):
    """A link on another site opened a page, and SameSite=Strict kept the cookie back."""


def require_session(request: Request, farm: FarmDep) -> None:
    """Dependency of every data page: without a valid cookie, a 303 to the login page whose
    body holds nothing but that. A page opened from another site's link arrives without the
    cookie even when signed in (that is what Strict means); it gets one more look from this
    site first (``SessionRoute``)."""
    if session_valid(farm, request.cookies.get(COOKIE)):
        return
    if request.method == "GET" and request.headers.get("sec-fetch-site") == "cross-site":
        raise CrossSiteArrival
    raise HTTPException(
        status.HTTP_303_SEE_OTHER,
        "sign in first",
        headers={"Location": login_redirect(request), "Cache-Control": "no-store"},
    )


class SessionRoute(APIRoute):
    """The pages' route class: a cross-site arrival is answered by a page holding no data
    that loads the same URL again at once. That second load comes from this site, so the
    browser sends the Strict cookie with it, and a researcher following a link from a chat
    or a tracker lands on the page signed in (or, signed out, on the login form)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handle(request)
            except CrossSiteArrival:
                return page("arriving.html", path="", signed_in=False)

        return route


def same_origin(request: Request) -> bool:
    """The request was sent by a page of this origin: its Origin (or, lacking one, its
    Referer) names the host the request was addressed to."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return False
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host


def require_same_origin(request: Request) -> None:
    if not same_origin(request):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this form must be sent from the farm's own pages (Origin check failed)",
        )


Session = Annotated[None, Depends(require_session)]
SameOrigin = Annotated[None, Depends(require_same_origin)]
