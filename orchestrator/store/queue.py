"""The work queue: workers claim campaign episodes from Postgres under a lease.

A claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` on the next queued episode (or one whose
lease ran out), then a conditional UPDATE that bumps ``attempts``; the conditional update
alone makes the claim safe where row locks do not exist (SQLite), so two workers can never
hold the same attempt. A worker renews its leases while it runs them; a dead worker's lease
runs out and the next claim takes the episode over, deleting what the dead attempt had
written. Lease times come from the database's clock, so hosts need not agree on the time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, Select, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.states import CampaignStatus, EpisodeStatus
from orchestrator.store.db import session_factory
from orchestrator.store.episodes import UNFINISHED, close_campaign_if_done
from orchestrator.store.lease import Lease
from orchestrator.store.models import (
    CampaignRecord,
    EpisodeRecord,
    FindingRecord,
    StateChangeRecord,
    StepRecord,
)
from orchestrator.store.reconnect import PATIENCE_SECONDS, reconnecting

# campaign states whose episodes may be claimed: a paused one (at its cost cap) has nothing more
# claimed until it is resumed
ACTIVE = (CampaignStatus.PENDING, CampaignStatus.RUNNING)


def campaign_spend():  # type: ignore[no-untyped-def]
    """The recorded spend of the campaign row in the query: its episodes' cost_usd, summed
    (episodes of a model with no price count nothing)."""
    return (
        select(func.coalesce(func.sum(EpisodeRecord.cost_usd), 0.0))
        .where(EpisodeRecord.campaign_id == CampaignRecord.id)
        .scalar_subquery()
    )


def cost_limit_reason(spent: float, limit: float) -> str:
    return f"cost limit reached: ${spent:.4f} spent of ${limit:.4f}"


@dataclass(frozen=True)
class ClaimedEpisode:
    """What a worker needs to run one attempt: the cell, the campaign's settings, the lease."""

    lease: Lease
    campaign_id: str
    scenario: str
    variant: str
    model: str
    persona: str
    repeat: int
    trajectory: str | None
    campaign_spec: dict
    taken_over: bool  # an earlier attempt's lease ran out; its container may still exist


@dataclass(frozen=True)
class Renewal:
    lost: list[Lease]  # taken over, released or finished: no longer this runner's
    cancelled: list[Lease]  # still held, but the campaign was cancelled


def db_now(session: Session) -> datetime:
    """The database server's time (Postgres), so every host's leases use one clock."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(select(func.now()))  # type: ignore[return-value]
    return datetime.now(UTC)


def discard_attempts(session: Session, episode_ids: Collection[str] | Select) -> None:
    """Delete what abandoned attempts wrote, so the next ones start from nothing."""
    for model in (StepRecord, StateChangeRecord, FindingRecord):
        session.execute(delete(model).where(model.episode_id.in_(episode_ids)))


class WorkQueue:
    def __init__(
        self,
        engine: Engine,
        *,
        lease_seconds: float = 60.0,
        max_attempts: int = 3,
        patience: float = PATIENCE_SECONDS,
        campaign_id: str | None = None,
    ):
        self.campaign_id = campaign_id  # claim from this campaign only; None: from all
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.patience = patience  # seconds each call keeps retrying a lost connection
        self._sessions: sessionmaker[Session] = session_factory(engine)

    @reconnecting
    def claim(self, owner: str) -> ClaimedEpisode | None:
        """The next episode for ``owner`` to run, or None when there is nothing to do."""
        while True:
            with self._sessions.begin() as session:
                now = db_now(session)
                self._pause_capped(session, now)
                episode = self._next(session, now)
                if episode is None:
                    return None
                claimed = self._take(session, episode, owner, now)
            if claimed is not None:
                return claimed

    def _pause_capped(self, session: Session, now: datetime) -> None:
        """Pause the campaigns whose spend has reached their cost limit while they still have
        episodes to claim, saying why; their running episodes carry on and finish."""
        spent = campaign_spend()
        claimable = (
            select(EpisodeRecord.id)
            .where(EpisodeRecord.campaign_id == CampaignRecord.id)
            .where(
                or_(
                    EpisodeRecord.status == EpisodeStatus.QUEUED,
                    and_(
                        EpisodeRecord.status == EpisodeStatus.RUNNING,
                        EpisodeRecord.lease_expires_at < now,
                    ),
                )
            )
            .exists()
        )
        query = select(
            CampaignRecord.id, CampaignRecord.cost_limit_usd, spent.label("spent")
        ).where(
            CampaignRecord.status.in_(ACTIVE),
            CampaignRecord.cost_limit_usd.is_not(None),
            spent >= CampaignRecord.cost_limit_usd,
            claimable,
        )
        if self.campaign_id is not None:
            query = query.where(CampaignRecord.id == self.campaign_id)
        for row in session.execute(query).all():
            session.execute(
                update(CampaignRecord)
                .where(CampaignRecord.id == row.id, CampaignRecord.status.in_(ACTIVE))
                .values(
                    status=CampaignStatus.PAUSED,
                    status_reason=cost_limit_reason(row.spent, row.cost_limit_usd),
                )
            )

    def _open(self, query: Select) -> Select:
        """``query`` limited to episodes of this queue's campaigns that may still run."""
        query = query.join(CampaignRecord, CampaignRecord.id == EpisodeRecord.campaign_id).where(
            CampaignRecord.status.in_(ACTIVE)
        )
        if self.campaign_id is not None:
            query = query.where(EpisodeRecord.campaign_id == self.campaign_id)
        return query

    def _next(self, session: Session, now: datetime) -> EpisodeRecord | None:
        expired = and_(
            EpisodeRecord.status == EpisodeStatus.RUNNING, EpisodeRecord.lease_expires_at < now
        )
        query = (
            self._open(select(EpisodeRecord))
            .where(or_(EpisodeRecord.status == EpisodeStatus.QUEUED, expired))
            .order_by(CampaignRecord.created_at, EpisodeRecord.seq)
            .limit(1)
            .with_for_update(of=EpisodeRecord, skip_locked=True)
        )
        return session.scalars(query).first()

    def _take(
        self, session: Session, episode: EpisodeRecord, owner: str, now: datetime
    ) -> ClaimedEpisode | None:
        """Claim ``episode`` if nobody did since it was read; None if somebody did."""
        attempts, status = episode.attempts, episode.status  # the UPDATE refreshes the object
        taken_over = status == EpisodeStatus.RUNNING
        gave_up = taken_over and attempts >= self.max_attempts
        seen = and_(
            EpisodeRecord.id == episode.id,
            EpisodeRecord.attempts == attempts,
            EpisodeRecord.status == status,
        )
        if gave_up:
            values: dict = {
                "status": EpisodeStatus.ERROR,
                "error": f"gave up after {attempts} attempts whose leases all ran out",
                "finished_at": now,
                "lease_owner": None,
            }
        else:
            values = {
                "status": EpisodeStatus.RUNNING,
                "attempts": attempts + 1,
                "started_at": None,
                "lease_owner": owner,
                "lease_expires_at": now + self.lease,
            }
        if session.execute(update(EpisodeRecord).where(seen).values(**values)).rowcount != 1:
            return None  # another worker got there first
        if taken_over:
            discard_attempts(session, [episode.id])
        campaign = session.get_one(CampaignRecord, episode.campaign_id)
        if gave_up:
            session.flush()
            close_campaign_if_done(session, campaign.id)
            return None
        if campaign.status == CampaignStatus.PENDING:
            campaign.status = CampaignStatus.RUNNING
        return ClaimedEpisode(
            lease=Lease(episode.id, attempts + 1, owner),
            campaign_id=campaign.id,
            scenario=episode.scenario,
            variant=episode.variant,
            model=episode.model,
            persona=episode.persona,
            repeat=episode.repeat,
            trajectory=episode.trajectory,
            campaign_spec=campaign.spec,
            taken_over=taken_over,
        )

    @reconnecting
    def renew(self, leases: Sequence[Lease]) -> Renewal:
        """Extend every lease still held; report the ones lost and those whose campaign was
        cancelled meanwhile (their runner should stop and release them)."""
        lost = []
        with self._sessions.begin() as session:
            expires = db_now(session) + self.lease
            for lease in leases:
                held = _held(lease)
                result = session.execute(
                    update(EpisodeRecord).where(held).values(lease_expires_at=expires)
                )
                if result.rowcount != 1:
                    lost.append(lease)
            cancelled = set(
                session.scalars(
                    select(EpisodeRecord.id)
                    .join(CampaignRecord, CampaignRecord.id == EpisodeRecord.campaign_id)
                    .where(EpisodeRecord.id.in_([lease.episode_id for lease in leases]))
                    .where(CampaignRecord.status == CampaignStatus.CANCELLED)
                )
            )
        return Renewal(lost, [x for x in leases if x.episode_id in cancelled and x not in lost])

    @reconnecting
    def release(self, lease: Lease) -> bool:
        """Give an unfinished attempt back to the queue (a worker stopping); False if it was
        no longer ours to give."""
        with self._sessions.begin() as session:
            values = {"status": EpisodeStatus.QUEUED, "lease_owner": None, "lease_expires_at": None}
            result = session.execute(update(EpisodeRecord).where(_held(lease)).values(**values))
            if result.rowcount != 1:
                return False
            discard_attempts(session, [lease.episode_id])
            return True

    @reconnecting
    def abandoned(self, attempts: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
        """Of the (episode, attempt) pairs found on containers, those no live lease holds:
        finished, taken over or expired. Episodes this database does not know are not
        included: their containers belong to some other farm."""
        pairs = set(attempts)
        if not pairs:
            return set()
        ids = {episode_id for episode_id, _ in pairs}
        with self._sessions() as session:
            now = db_now(session)
            rows = session.execute(
                select(
                    EpisodeRecord.id,
                    EpisodeRecord.attempts,
                    EpisodeRecord.status,
                    EpisodeRecord.lease_expires_at,
                ).where(EpisodeRecord.id.in_(ids))
            ).all()
        live = {
            (row.id, row.attempts)
            for row in rows
            if row.status == EpisodeStatus.RUNNING and _aware(row.lease_expires_at) > now
        }
        known = {row.id for row in rows}
        return {pair for pair in pairs if pair[0] in known and pair not in live}

    @reconnecting
    def outstanding(self) -> int:
        """Episodes of this queue's active campaigns that are queued or running."""
        query = self._open(select(func.count()).select_from(EpisodeRecord))
        with self._sessions() as session:
            return session.scalar(query.where(EpisodeRecord.status.in_(UNFINISHED)))  # type: ignore[return-value]


def _held(lease: Lease):  # type: ignore[no-untyped-def]
    return and_(
        EpisodeRecord.id == lease.episode_id,
        EpisodeRecord.attempts == lease.attempt,
        EpisodeRecord.status == EpisodeStatus.RUNNING,
    )


def _aware(moment: datetime | None) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    if moment is None:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
