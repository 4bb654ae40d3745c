"""What the routes are given: the stores and the catalogue, built once by ``create_app`` and
kept on ``app.state``, so no request opens an engine or rereads the YAML."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.config import Settings
from orchestrator.scenarios.loader import Scenario
from orchestrator.scenarios.spec import PersonaSpec
from orchestrator.store.campaigns import CampaignStore
from orchestrator.store.db import ensure_schema
from orchestrator.store.episodes import EpisodeStore

log = logging.getLogger("farm.api")


@dataclass
class Database:
    """The engine, and whether its schema is known to be current.

    The schema is brought current once, when the app is created; if the database does not
    answer then, the app starts anyway (``/health`` says 503) and the first request that
    needs the database tries again, so the API recovers by itself when the database returns.
    """

    engine: Engine
    migrations_dir: Path
    _current: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prepare(self) -> None:
        """Run pending migrations unless done already; raises the driver's error (a 503,
        see app.py) while the database does not answer."""
        if self._current:
            return
        with self._lock:
            if not self._current:
                ensure_schema(self.engine, self.migrations_dir)
                self._current = True

    def answers(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            log.warning("the database does not answer: %s", getattr(exc, "orig", None) or exc)
            return False
        return True


@dataclass(frozen=True)
class Farm:
    """Everything the routes share; one per app."""

    settings: Settings
    database: Database
    scenarios: dict[str, Scenario]
    personas: dict[str, PersonaSpec]
    campaigns: CampaignStore
    episodes: EpisodeStore


def get_farm(request: Request) -> Farm:
    return request.app.state.farm


def get_campaigns(farm: Annotated[Farm, Depends(get_farm)]) -> CampaignStore:
    farm.database.prepare()
    return farm.campaigns


def get_episodes(farm: Annotated[Farm, Depends(get_farm)]) -> EpisodeStore:
    farm.database.prepare()
    return farm.episodes


@dataclass(frozen=True)
class Page:
    """``?limit=&offset=`` of every list route, so each is paged the same way."""

    limit: int
    offset: int


def get_page(
    limit: Annotated[int, Query(ge=1, le=500, description="at most this many")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="skip this many")] = 0,
) -> Page:
    return Page(limit, offset)


FarmDep = Annotated[Farm, Depends(get_farm)]
PageDep = Annotated[Page, Depends(get_page)]
CampaignsDep = Annotated[CampaignStore, Depends(get_campaigns)]
EpisodesDep = Annotated[EpisodeStore, Depends(get_episodes)]
