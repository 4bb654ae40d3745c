"""What a report reads from the store: the campaigns named, and their episodes as plain rows.

One query for the episodes and one for their verdict findings' behaviours, whatever the
size of the campaign; everything after this module works on ``EpisodeRow`` values and never
touches SQLAlchemy, so the statistics are tested without a database and the same numbers
come out on SQLite and Postgres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from orchestrator.states import EpisodeStatus, Verdict
from orchestrator.store.models import CampaignRecord, EpisodeRecord, FindingRecord

# How much of an agent's final answer a report keeps per episode: enough to recognise it,
# not a transcript (`farm episodes show ID` has that).
ANSWER_CHARS = 300


class ReportError(ValueError):
    """A report that cannot be made as asked (an unknown or ambiguous campaign): the
    message says which and what exists."""


@dataclass(frozen=True)
class CampaignInfo:
    id: str
    name: str
    status: str
    created_at: datetime
    spec: dict[str, Any]


@dataclass(frozen=True)
class EpisodeRow:
    """One episode as the report needs it. ``misaligned`` is None unless it completed with a
    verdict: errors and unfinished episodes never count."""

    id: str
    campaign_id: str
    model: str
    persona: str
    scenario: str
    variant: str
    repeat: int
    status: str
    verdict: str | None
    score: float | None
    cms_score: float | None
    metrics: dict[str, Any] | None
    image: str | None
    settings: dict[str, Any]
    answer: str | None
    error: str | None
    finished_at: datetime | None
    behaviors: tuple[str, ...] = field(default=())

    @property
    def completed(self) -> bool:
        return self.status == EpisodeStatus.COMPLETED and self.verdict in tuple(Verdict)

    @property
    def misaligned(self) -> bool | None:
        return (self.verdict == Verdict.MISALIGNED) if self.completed else None


def _shortened(answer: str | None) -> str | None:
    if answer is None or len(answer) <= ANSWER_CHARS:
        return answer
    return answer[: ANSWER_CHARS - 1] + "…"


def resolve_campaigns(engine: Engine, refs: Sequence[str]) -> list[CampaignInfo]:
    """The campaigns ``refs`` name, in the order named, each once. A ref is an exact id, else
    a unique id prefix or name; one matching none or several is a ReportError saying so,
    with what it could mean (the newest first)."""
    with Session(engine) as session:
        query = select(CampaignRecord).order_by(CampaignRecord.created_at.desc())
        campaigns = list(session.scalars(query))
    chosen: dict[str, CampaignInfo] = {}
    problems: list[str] = []
    for ref in refs:
        exact = [c for c in campaigns if c.id == ref]
        matches = exact or [c for c in campaigns if c.id.startswith(ref) or c.name == ref]
        if len(matches) == 1:
            c = matches[0]
            chosen.setdefault(c.id, CampaignInfo(c.id, c.name, c.status, c.created_at, c.spec))
        elif not matches:
            names = sorted({c.name for c in campaigns})
            known = f"campaigns: {', '.join(map(repr, names))}" if names else "no campaigns yet"
            problems.append(f"no campaign {ref!r} (by id, id prefix or name; {known})")
        else:
            listed = "; ".join(
                f"{c.id[:12]} {c.name!r} of {c.created_at:%Y-%m-%d %H:%M}" for c in matches[:5]
            )
            more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
            problems.append(
                f"{ref!r} is ambiguous: it matches {len(matches)} campaigns ({listed}{more}); "
                "give an id or a longer prefix"
            )
    if problems:
        raise ReportError("; ".join(problems))
    return list(chosen.values())


def get_campaign(engine: Engine, campaign_id: str) -> CampaignInfo | None:
    """The campaign with exactly this id (the API names campaigns by id only)."""
    with Session(engine) as session:
        c = session.get(CampaignRecord, campaign_id)
        return None if c is None else CampaignInfo(c.id, c.name, c.status, c.created_at, c.spec)


def load_episodes(engine: Engine, campaign_ids: Sequence[str]) -> list[EpisodeRow]:
    """Every episode of these campaigns, whatever its state, in campaign and queue order."""
    if not campaign_ids:
        return []
    ids = list(campaign_ids)
    e = EpisodeRecord
    with Session(engine) as session:
        behaviors: dict[str, set[str]] = {}
        found = (
            select(FindingRecord.episode_id, FindingRecord.behavior)
            .join(e, e.id == FindingRecord.episode_id)
            .where(e.campaign_id.in_(ids), FindingRecord.role == "verdict")
        )
        for episode_id, behavior in session.execute(found):
            behaviors.setdefault(episode_id, set()).add(behavior)
        query = select(e).where(e.campaign_id.in_(ids)).order_by(e.campaign_id, e.seq, e.id)
        order = {campaign_id: i for i, campaign_id in enumerate(ids)}
        rows = [
            EpisodeRow(
                id=r.id,
                campaign_id=r.campaign_id or "",
                model=r.model,
                persona=r.persona,
                scenario=r.scenario,
                variant=r.variant,
                repeat=r.repeat,
                status=r.status,
                verdict=r.verdict,
                score=r.score,
                cms_score=r.cms_score,
                metrics=r.metrics,
                image=r.image,
                settings=r.settings or {},
                answer=_shortened(r.answer),
                error=r.error,
                finished_at=r.finished_at,
                behaviors=tuple(sorted(behaviors.get(r.id, ()))),
            )
            for r in session.scalars(query)
        ]
    return sorted(rows, key=lambda row: order[row.campaign_id])  # stable: queue order kept
