"""The FastAPI app behind ``farm serve``.

``create_app`` does the slow, shared work once: it loads the catalogue, opens (or takes) the
engine and brings the schema current. Every route but ``/health`` sits behind the bearer
token (orchestrator/api/auth.py); the OpenAPI document and ``/docs`` stay open, since they
hold no data and the docs page is where a token is entered.

Errors a client can act on are 4xx with a reason, never a 500: a 422 for a malformed
request (non-strict JSON included), a 422 listing what exists for a spec naming what does
not, 404 for an unknown id, 413 for a body over FARM_API_MAX_BODY_BYTES, 422 for a value the
database cannot store (a NUL byte, an overlong model name), and 503 while the database does
not answer or is busy (orchestrator/api/errors.py). The token and the body's size are checked
before the body is read (orchestrator/api/guard.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import Engine

from orchestrator.api import errors
from orchestrator.api.auth import require_token
from orchestrator.api.deps import Database, Farm
from orchestrator.api.errors import DATABASE_DOWN, cause
from orchestrator.api.guard import RequestGuard
from orchestrator.api.routes import campaigns, catalogue, episodes, health
from orchestrator.api.schemas import ErrorOut
from orchestrator.config import Settings
from orchestrator.scenarios.loader import load_personas, load_scenarios
from orchestrator.store.campaigns import CampaignStore
from orchestrator.store.db import make_engine
from orchestrator.store.episodes import EpisodeStore
from orchestrator.web import router as web_pages

log = logging.getLogger("farm.api")

# FastAPI's own pages, served without a token: they hold no data, and /docs is where a
# token is entered.
DOCS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")

DESCRIPTION = """\
Submit factorial campaigns of sandboxed episodes, follow them, and read their misalignment
rates, transcripts, state diffs and findings.

Every route but `/health` needs `Authorization: Bearer $FARM_API_TOKEN`.
"""


def _version() -> str:
    try:
        return version("misalignment-farm")
    except PackageNotFoundError:
        return "0"


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The API over ``engine`` (default: one made from ``settings.database_url``, disposed of
    when the app shuts down). A database that does not answer yet is not fatal: ``/health``
    answers 503 and the schema is brought current on the first request once it does."""
    owned = engine is None
    engine = make_engine(settings.database_url) if engine is None else engine
    database = Database(engine, settings.migrations_dir)
    try:
        database.prepare()
    except DATABASE_DOWN as exc:
        log.warning("the database does not answer yet (%s); /health says 503", cause(exc))
    if settings.api_token is None or not settings.api_token.get_secret_value():
        log.warning("FARM_API_TOKEN is not set: every route but /health answers 401")

    farm = Farm(
        settings=settings,
        database=database,
        scenarios=load_scenarios(settings.environments_dir, settings.images_dir),
        personas=load_personas(settings.environments_dir),
        campaigns=CampaignStore(engine),
        episodes=EpisodeStore(engine),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            engine.dispose()

    app = FastAPI(
        title="misalignment-farm",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.farm = farm
    errors.install(app)
    app.add_middleware(
        RequestGuard,
        token=lambda: farm.settings.api_token,
        max_body_bytes=settings.api_max_body_bytes,
        open_paths={"/health", "/ui", *DOCS},
        # the web UI (orchestrator/web/) answers for its own pages
        open_prefixes=("/ui/",),
    )

    app.include_router(health.router)
    # Everything mounted here needs the token; a route added to any of these modules gets it.
    protected = APIRouter(
        dependencies=[Depends(require_token)],
        responses={
            401: {"model": ErrorOut, "description": "missing or wrong bearer token"},
            413: {"model": ErrorOut, "description": "a body over FARM_API_MAX_BODY_BYTES"},
            503: {"model": ErrorOut, "description": "the database does not answer, or is busy"},
        },
    )
    for module in (campaigns, episodes, catalogue):
        protected.include_router(module.router)
    app.include_router(protected)
    app.include_router(web_pages)  # the pages under /ui/, behind their own sign-in
    return app
