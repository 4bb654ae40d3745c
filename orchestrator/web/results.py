"""A campaign's results for its page: the report of ``farm report``, for the cells the reader
selected, and the campaigns' start and finish times for the list.

The page's numbers are the report's (``orchestrator/report/build.py``): the episodes are
loaded once, narrowed to the chosen models, personas, scenarios and variants, and assembled
into a report of their own, so every rate, interval, figure and normalisation on a filtered
page is the one ``farm report`` would print for exactly those cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from orchestrator.report.build import Report, assemble
from orchestrator.report.data import CampaignInfo, EpisodeRow, get_campaign, load_episodes
from orchestrator.store.models import EpisodeRecord

DIMENSIONS = ("model", "persona", "scenario", "variant")


@dataclass(frozen=True)
class Selection:
    """The cells chosen by the page's filters; an empty field is every value."""

    model: str | None = None
    persona: str | None = None
    scenario: str | None = None
    variant: str | None = None

    def keeps(self, episode: EpisodeRow) -> bool:
        return all(
            getattr(self, d) is None or getattr(episode, d) == getattr(self, d) for d in DIMENSIONS
        )

    @property
    def active(self) -> bool:
        return any(getattr(self, d) is not None for d in DIMENSIONS)

    def query(self) -> dict[str, str]:
        return {d: v for d in DIMENSIONS if (v := getattr(self, d)) is not None}


@dataclass(frozen=True)
class Results:
    campaign: CampaignInfo
    report: Report
    options: dict[str, list[str]] = field(default_factory=dict)  # every value, per dimension
    episodes: int = 0  # of the whole campaign


def campaign_results(engine: Engine, campaign_id: str, selection: Selection) -> Results | None:
    campaign = get_campaign(engine, campaign_id)
    if campaign is None:
        return None
    episodes = load_episodes(engine, [campaign_id])
    whole = assemble([campaign], episodes)
    options = {
        "model": whole.models,
        "persona": whole.personas,
        "scenario": whole.scenarios,
        "variant": list(dict.fromkeys(c.variant for c in whole.cells)),
    }
    chosen = [e for e in episodes if selection.keeps(e)]
    report = assemble([campaign], chosen) if selection.active else whole
    return Results(campaign, report, options, len(episodes))


@dataclass(frozen=True)
class Times:
    started: datetime | None
    finished: datetime | None


def campaign_times(engine: Engine, ids: list[str]) -> dict[str, Times]:
    """When each campaign's first episode started and its last one finished (one query;
    the campaign row keeps neither)."""
    if not ids:
        return {}
    e = EpisodeRecord
    query = (
        select(e.campaign_id, func.min(e.started_at), func.max(e.finished_at))
        .where(e.campaign_id.in_(ids))
        .group_by(e.campaign_id)
    )
    with Session(engine) as session:
        rows = session.execute(query).all()
    times = {campaign_id: Times(started, finished) for campaign_id, started, finished in rows}
    return {i: times.get(i, Times(None, None)) for i in ids}
