"""The pages' stylesheet and their one small script, served from the package by a route.

A fixed table of files rather than a static mount: nothing but these two can be asked for
(no path is ever joined from the request), and every route of the app keeps a method, which
the API's own route checks rely on. Each URL carries a hash of the file's bytes, so a
browser may keep a file for a day and still never runs a stale script after an upgrade.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files

from fastapi.responses import Response

TYPES = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}


def _load() -> dict[str, bytes]:
    folder = files("orchestrator.web").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in TYPES}


STATIC = _load()
VERSIONS = {name: hashlib.sha256(data).hexdigest()[:12] for name, data in STATIC.items()}


def static_url(name: str) -> str:
    return f"/ui/static/{name}?v={VERSIONS[name]}"


def static_response(name: str) -> Response:
    return Response(
        STATIC[name],
        media_type=TYPES[name],
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
