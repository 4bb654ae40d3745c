"""Campaigns as the researcher handles them: submit, follow, cancel, resume, read results.

A campaign's ``status`` is kept on its row: ``pending`` until a worker claims its first
episode, ``running``, ``done`` once nothing is queued or running, ``cancelled``, or
``paused`` once its recorded spend reached its cost limit (``status_reason`` says so; resume
with a higher limit continues it).
Cancelling stops new claims, and workers stop the campaign's running episodes at their next
step and give them back to the queue (at their next lease renewal). Resuming
reopens the campaign (and, if asked, queues its errored episodes again).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.campaign import CampaignSpec, PlannedEpisode
from orchestrator.states import CampaignStatus, EpisodeStatus
from orchestrator.store.db import session_factory
from orchestrator.store.models import CampaignRecord, EpisodeRecord
from orchestrator.store.queue import cost_limit_reason, discard_attempts

EPISODE_STATES = tuple(s for s in EpisodeStatus if s != EpisodeStatus.PENDING)  # never pending
CANCELLABLE = (CampaignStatus.PENDING, CampaignStatus.RUNNING, CampaignStatus.PAUSED)

# The outcome columns an errored episode is reset to when it is queued again.
FRESH_OUTCOME = {
    "verdict": None,
    "score": None,
    "error": None,
    "turns": 0,
    "ended_by": None,
    "answer": None,
    "image": None,
    "metrics": None,
    "input_tokens": 0,
    "output_tokens": 0,
    "cached_tokens": 0,
    "reasoning_tokens": 0,
    "cost_usd": None,
    "cms_score": None,
    "cms": None,
    "started_at": None,
    "finished_at": None,
    "lease_owner": None,
    "lease_expires_at": None,
}


@dataclass(frozen=True)
class CampaignSummary:
    id: str
    name: str
    status: str
    spec: dict
    created_at: datetime
    counts: dict[str, int] = field(default_factory=dict)  # episodes by state
    cost_usd: float = 0.0  # recorded spend: the episodes' cost_usd, summed
    cost_limit_usd: float | None = None  # the cap in force (the spec's, or raised since)
    status_reason: str | None = None  # why it is paused

    @property
    def episodes(self) -> int:
        return sum(self.counts.values())


class CampaignStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def submit(
        self,
        spec: CampaignSpec,
        planned: Sequence[PlannedEpisode],
        cost_limit_usd: float | None = None,
    ) -> str:
        """Store the campaign and queue all its episodes in one transaction; its cost limit
        is ``cost_limit_usd`` if given, else the spec's."""
        campaign_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        with self._sessions.begin() as session:
            session.add(
                CampaignRecord(
                    id=campaign_id,
                    name=spec.name,
                    spec=spec.model_dump(mode="json"),
                    status=CampaignStatus.PENDING,
                    created_at=now,
                    cost_limit_usd=cost_limit_usd or spec.cost_limit_usd,
                )
            )
            session.flush()
            session.add_all(
                EpisodeRecord(
                    id=uuid.uuid4().hex,
                    campaign_id=campaign_id,
                    status=EpisodeStatus.QUEUED,
                    turns=0,
                    settings={},
                    created_at=now,
                    **asdict(episode),
                )
                for episode in planned
            )
        return campaign_id

    def find(self, spec: CampaignSpec) -> str | None:
        """The newest campaign with exactly this spec, so a restart does not submit twice."""
        wanted = spec.model_dump(mode="json")
        with self._sessions() as session:
            query = (
                select(CampaignRecord)
                .where(CampaignRecord.name == spec.name)
                .order_by(CampaignRecord.created_at.desc())
            )
            return next((c.id for c in session.scalars(query) if c.spec == wanted), None)

    def get(self, campaign_id: str) -> CampaignSummary | None:
        with self._sessions() as session:
            campaign = session.get(CampaignRecord, campaign_id)
            return None if campaign is None else _summary(session, [campaign])[0]

    def list(self, limit: int | None = None, offset: int = 0) -> list[CampaignSummary]:
        """Newest first; ``limit`` and ``offset`` page them (the API always pages)."""
        with self._sessions() as session:
            query = select(CampaignRecord).order_by(
                CampaignRecord.created_at.desc(), CampaignRecord.id
            )
            return _summary(session, list(session.scalars(query.limit(limit).offset(offset))))

    def cancel(self, campaign_id: str) -> CampaignSummary | None:
        with self._sessions.begin() as session:
            campaign = _locked(session, campaign_id)
            if campaign is None:
                return None
            if campaign.status in CANCELLABLE:
                campaign.status, campaign.status_reason = CampaignStatus.CANCELLED, None
        return self.get(campaign_id)

    def resume(
        self,
        campaign_id: str,
        retry_errors: bool = False,
        cost_limit_usd: float | None = None,
    ) -> CampaignSummary | None:
        """Reopen the campaign; with ``cost_limit_usd`` its cost limit becomes that. One still
        at its limit stays ``paused``."""
        with self._sessions.begin() as session:
            campaign = _locked(session, campaign_id)
            if campaign is None:
                return None
            if cost_limit_usd is not None:
                campaign.cost_limit_usd = cost_limit_usd
            if retry_errors:
                failed = (
                    EpisodeRecord.campaign_id == campaign_id,
                    EpisodeRecord.status == EpisodeStatus.ERROR,
                )
                discard_attempts(session, select(EpisodeRecord.id).where(*failed))
                session.execute(
                    update(EpisodeRecord)
                    .where(*failed)
                    .values(status=EpisodeStatus.QUEUED, **FRESH_OUTCOME)
                )
            counts = _counts(session, [campaign_id])[campaign_id]
            spent = _spend(session, [campaign_id])[campaign_id]
            limit = campaign.cost_limit_usd
            campaign.status_reason = None
            queued, running = counts[EpisodeStatus.QUEUED], counts[EpisodeStatus.RUNNING]
            finished = counts[EpisodeStatus.COMPLETED] + counts[EpisodeStatus.ERROR]
            if queued + running == 0:
                campaign.status = CampaignStatus.DONE
            elif queued and limit is not None and spent >= limit:
                campaign.status = CampaignStatus.PAUSED
                campaign.status_reason = cost_limit_reason(spent, limit)
            elif running + finished:
                campaign.status = CampaignStatus.RUNNING
            else:
                campaign.status = CampaignStatus.PENDING
        return self.get(campaign_id)

    def results(self, campaign_id: str) -> list[dict]:
        """The campaign's rows of the ``misalignment_rates`` view: the numbers an analyst
        reads with SQL are the numbers the API serves."""
        query = text(
            "SELECT model, persona, scenario, variant, episodes, misaligned, rate, ci_low, "
            "ci_high, mean_score, errors FROM misalignment_rates WHERE campaign_id = :id "
            "ORDER BY model, persona, scenario, variant"
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query, {"id": campaign_id})]


def _locked(session: Session, campaign_id: str) -> CampaignRecord | None:
    query = select(CampaignRecord).where(CampaignRecord.id == campaign_id).with_for_update()
    return session.scalars(query).first()


def _counts(session: Session, ids: Sequence[str]) -> dict[str, dict[str, int]]:
    counts = {campaign_id: dict.fromkeys(EPISODE_STATES, 0) for campaign_id in ids}
    rows = session.execute(
        select(EpisodeRecord.campaign_id, EpisodeRecord.status, func.count())
        .where(EpisodeRecord.campaign_id.in_(ids))
        .group_by(EpisodeRecord.campaign_id, EpisodeRecord.status)
    )
    for campaign_id, status, count in rows:
        counts[campaign_id][status] = count
    return counts


def _spend(session: Session, ids: Sequence[str]) -> dict[str, float]:
    spent = dict.fromkeys(ids, 0.0)
    rows = session.execute(
        select(EpisodeRecord.campaign_id, func.sum(EpisodeRecord.cost_usd))
        .where(EpisodeRecord.campaign_id.in_(ids))
        .group_by(EpisodeRecord.campaign_id)
    )
    for campaign_id, total in rows:
        spent[campaign_id] = float(total or 0.0)
    return spent


def _summary(session: Session, campaigns: Sequence[CampaignRecord]) -> list[CampaignSummary]:
    ids = [c.id for c in campaigns]
    counts, spent = _counts(session, ids), _spend(session, ids)
    return [
        CampaignSummary(
            c.id,
            c.name,
            c.status,
            c.spec,
            c.created_at,
            counts[c.id],
            cost_usd=spent[c.id],
            cost_limit_usd=c.cost_limit_usd,
            status_reason=c.status_reason,
        )
        for c in campaigns
    ]
