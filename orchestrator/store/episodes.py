"""Writes an episode as it happens and reads it back whole.

Each write is its own short transaction: a step is durable as soon as it is recorded, so a
crash mid-episode loses only the step in flight. A campaign episode's writes carry its
``Lease`` and are fenced by it (orchestrator/store/lease.py); every write may be retried after
a lost connection (orchestrator/store/reconnect.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.sandbox.diff import StateDiff
from orchestrator.sandbox.snapshot import evidence_of
from orchestrator.scoring.findings import Finding
from orchestrator.states import CampaignStatus, EndedBy, EpisodeStatus, Verdict
from orchestrator.store.db import ensure_schema, make_engine, session_factory
from orchestrator.store.lease import Lease, LeaseLost
from orchestrator.store.models import (
    CampaignRecord,
    EpisodeRecord,
    FindingRecord,
    StateChangeRecord,
    StepRecord,
)
from orchestrator.store.reconnect import PATIENCE_SECONDS, reconnecting
from orchestrator.transcript import Step


@dataclass(frozen=True)
class EpisodeOutcome:
    status: EpisodeStatus  # completed | error
    verdict: Verdict | None
    score: float | None
    turns: int
    ended_by: EndedBy | None = None
    answer: str | None = None
    error: str | None = None
    metrics: dict | None = None  # by detector id, e.g. {"exercises": {"correct": 5, "total": 6}}
    # Token totals and cost (orchestrator/agents/accounting.py), kept on errors too.
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    # The paper's keyword score (orchestrator/scoring/cms.py); completed episodes only.
    cms_score: float | None = None
    cms: dict | None = None
    # What is stored of the evidence was cut to the farm's bounds (scoring/caps.py).
    evidence_truncated: bool = False


@dataclass(frozen=True)
class StoredEpisode:
    episode: EpisodeRecord
    steps: list[StepRecord]
    changes: list[StateChangeRecord]
    findings: list[FindingRecord]


PROVENANCE = ("image_id", "runtime", "evidence_source", "spec_hash")


def _change_rows(episode_id: str, diff: StateDiff) -> list[StateChangeRecord]:
    rows: list[tuple[str, str, str | None, dict | None, dict | None]] = []
    rows += [
        ("file", c.kind, c.path, evidence_of(c.before), evidence_of(c.after)) for c in diff.files
    ]
    rows += [("path", c.kind, c.path, None, evidence_of(c.after)) for c in diff.paths]
    rows += [("process", "started", None, None, asdict(p)) for p in diff.processes_started]
    rows += [("process", "gone", None, asdict(p), None) for p in diff.processes_gone]
    rows += [
        ("process", c.how, None, asdict(c.before), asdict(c.after)) for c in diff.processes_changed
    ]
    return [
        StateChangeRecord(
            episode_id=episode_id, idx=i, subject=s, change=c, path=p, before=b, after=a
        )
        for i, (s, c, p, b, a) in enumerate(rows)
    ]


FINISHED = (EpisodeStatus.COMPLETED, EpisodeStatus.ERROR)
UNFINISHED = (EpisodeStatus.QUEUED, EpisodeStatus.RUNNING)  # of a campaign
SEARCHABLE = ("campaign_id", "scenario", "variant", "model", "persona", "status", "verdict")
SUMMARY_COLUMNS = (
    "id",
    *SEARCHABLE,
    "repeat",
    "score",
    "attempts",
    "created_at",
    "finished_at",
)


def hold(session: Session, episode_id: str, lease: Lease | None) -> EpisodeRecord:
    """The episode row, locked and checked against ``lease`` when one is given."""
    query = select(EpisodeRecord).where(EpisodeRecord.id == episode_id)
    if lease is None:
        return session.scalars(query).one()
    episode = session.scalars(query.with_for_update()).one()
    if episode.attempts != lease.attempt:
        raise LeaseLost(lease, f"the episode is on attempt {episode.attempts}")
    if episode.status not in (EpisodeStatus.RUNNING, *FINISHED):
        raise LeaseLost(lease, f"the episode is {episode.status}")
    return episode


def close_campaign_if_done(session: Session, campaign_id: str) -> None:
    """Mark the campaign done once nothing of it is queued or running. The campaign row is
    locked first, so two workers finishing its last two episodes cannot both miss it."""
    campaign = session.scalars(
        select(CampaignRecord).where(CampaignRecord.id == campaign_id).with_for_update()
    ).one()
    left = session.scalar(
        select(func.count())
        .select_from(EpisodeRecord)
        .where(
            EpisodeRecord.campaign_id == campaign_id,
            EpisodeRecord.status.in_(UNFINISHED),
        )
    )
    if left == 0 and campaign.status in (CampaignStatus.PENDING, CampaignStatus.RUNNING):
        campaign.status = CampaignStatus.DONE


class EpisodeStore:
    def __init__(self, engine: Engine, patience: float = PATIENCE_SECONDS):
        self.engine = engine
        self.patience = patience  # seconds each write keeps retrying a lost connection
        self._sessions: sessionmaker[Session] = session_factory(engine)

    @classmethod
    def open(cls, url: str, migrations_dir: Path) -> EpisodeStore:
        """Connect and bring the schema up to date (the CLI migrates on first use)."""
        engine = make_engine(url)
        ensure_schema(engine, migrations_dir)
        return cls(engine)

    def create(
        self,
        episode_id: str,
        *,
        scenario: str,
        model: str,
        persona: str,
        variant: str = "default",
        trajectory: str | None = None,
        campaign_id: str | None = None,
        repeat: int = 0,
        settings: dict | None = None,
    ) -> None:
        with self._sessions.begin() as session:
            session.add(
                EpisodeRecord(
                    id=episode_id,
                    campaign_id=campaign_id,
                    scenario=scenario,
                    variant=variant,
                    model=model,
                    persona=persona,
                    trajectory=trajectory,
                    repeat=repeat,
                    status=EpisodeStatus.PENDING,
                    turns=0,
                    settings=settings or {},
                    created_at=datetime.now(UTC),
                )
            )

    @reconnecting
    def mark_running(
        self,
        episode_id: str,
        image: str,
        settings: dict | None = None,
        lease: Lease | None = None,
        provenance: Mapping[str, str | None] | None = None,
    ) -> None:
        """The episode has its box; ``provenance`` is what ran it (image_id, runtime,
        evidence_source, spec_hash)."""
        with self._sessions.begin() as session:
            episode = hold(session, episode_id, lease)
            episode.status, episode.image = EpisodeStatus.RUNNING, image
            episode.started_at = datetime.now(UTC)
            if settings is not None:
                episode.settings = settings
            for column in PROVENANCE:
                if provenance and column in provenance:
                    setattr(episode, column, provenance[column])

    @reconnecting
    def add_step(self, episode_id: str, step: Step, lease: Lease | None = None) -> None:
        with self._sessions.begin() as session:
            hold(session, episode_id, lease)
            if session.get(StepRecord, (episode_id, step.index)) is None:  # not a retry
                session.add(StepRecord(episode_id=episode_id, idx=step.index, **_step_fields(step)))

    @reconnecting
    def finish(
        self,
        episode_id: str,
        outcome: EpisodeOutcome,
        diff: StateDiff | None = None,
        findings: Sequence[Finding] = (),
        lease: Lease | None = None,
    ) -> None:
        """Store the outcome; once only, so a retry after a lost connection is a no-op."""
        with self._sessions.begin() as session:
            episode = hold(session, episode_id, lease)
            if episode.status in FINISHED:
                return
            for name, value in asdict(outcome).items():
                setattr(episode, name, value)
            episode.finished_at = datetime.now(UTC)
            episode.lease_expires_at = None  # lease_owner stays: who ran it
            if diff is not None:
                session.add_all(_change_rows(episode_id, diff))
            session.add_all(
                FindingRecord(episode_id=episode_id, idx=i, **asdict(f))
                for i, f in enumerate(findings)
            )
            if episode.campaign_id is not None:
                session.flush()
                close_campaign_if_done(session, episode.campaign_id)

    def get(self, episode_id: str) -> StoredEpisode | None:
        with self._sessions() as session:
            episode = session.get(EpisodeRecord, episode_id)
            if episode is None:
                return None

            def rows(model: type) -> list:
                query = select(model).where(model.episode_id == episode_id).order_by(model.idx)
                return list(session.scalars(query))

            return StoredEpisode(
                episode, rows(StepRecord), rows(StateChangeRecord), rows(FindingRecord)
            )

    def search(self, limit: int = 50, offset: int = 0, **filters: str | None) -> list[dict]:
        """One summary row per episode, newest first, where each given column equals its
        value (``campaign_id``, ``scenario``, ``variant``, ``model``, ``persona``,
        ``status``, ``verdict``); a None filter is no filter."""
        query = select(EpisodeRecord).order_by(
            EpisodeRecord.created_at.desc(), EpisodeRecord.seq.desc()
        )
        for column, value in filters.items():
            if column not in SEARCHABLE:
                raise ValueError(f"cannot filter episodes by {column!r}")
            if value is not None:
                query = query.where(getattr(EpisodeRecord, column) == value)
        with self._sessions() as session:
            return [
                {c: getattr(e, c) for c in SUMMARY_COLUMNS}
                for e in session.scalars(query.limit(limit).offset(offset))
            ]

    def find_prefix(self, prefix: str) -> list[str]:
        """Episode ids starting with ``prefix``, so the CLI accepts short ids like git does."""
        with self._sessions() as session:
            query = select(EpisodeRecord.id).where(EpisodeRecord.id.startswith(prefix)).limit(2)
            return list(session.scalars(query))


def _step_fields(step: Step) -> dict:
    fields = asdict(step)
    fields.pop("index")
    return fields
