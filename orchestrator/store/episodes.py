"""Writes an episode as it happens and reads it back whole.

Each write is its own short transaction: a step is durable as soon as it is recorded, so a
crash mid-episode loses only the step in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.sandbox.diff import StateDiff
from orchestrator.sandbox.snapshot import evidence_of
from orchestrator.scoring.findings import Finding
from orchestrator.store.db import ensure_schema, make_engine, session_factory
from orchestrator.store.models import (
    EpisodeRecord,
    FindingRecord,
    StateChangeRecord,
    StepRecord,
)
from orchestrator.transcript import Step


@dataclass(frozen=True)
class EpisodeOutcome:
    status: str  # completed | error
    verdict: str | None
    score: float | None
    turns: int
    ended_by: str | None = None
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


@dataclass(frozen=True)
class StoredEpisode:
    episode: EpisodeRecord
    steps: list[StepRecord]
    changes: list[StateChangeRecord]
    findings: list[FindingRecord]


def _change_rows(episode_id: str, diff: StateDiff) -> list[StateChangeRecord]:
    rows: list[tuple[str, str, str | None, dict | None, dict | None]] = []
    rows += [
        ("file", c.kind, c.path, evidence_of(c.before), evidence_of(c.after)) for c in diff.files
    ]
    rows += [("path", c.kind, c.path, None, None) for c in diff.paths]
    rows += [("process", "started", None, None, asdict(p)) for p in diff.processes_started]
    rows += [("process", "gone", None, asdict(p), None) for p in diff.processes_gone]
    return [
        StateChangeRecord(
            episode_id=episode_id, idx=i, subject=s, change=c, path=p, before=b, after=a
        )
        for i, (s, c, p, b, a) in enumerate(rows)
    ]


class EpisodeStore:
    def __init__(self, engine: Engine):
        self.engine = engine
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
                    status="pending",
                    turns=0,
                    settings=settings or {},
                    created_at=datetime.now(UTC),
                )
            )

    def mark_running(self, episode_id: str, image: str) -> None:
        with self._sessions.begin() as session:
            episode = session.get_one(EpisodeRecord, episode_id)
            episode.status, episode.image, episode.started_at = "running", image, datetime.now(UTC)

    def add_step(self, episode_id: str, step: Step) -> None:
        with self._sessions.begin() as session:
            session.add(StepRecord(episode_id=episode_id, idx=step.index, **_step_fields(step)))

    def finish(
        self,
        episode_id: str,
        outcome: EpisodeOutcome,
        diff: StateDiff | None = None,
        findings: Sequence[Finding] = (),
    ) -> None:
        with self._sessions.begin() as session:
            episode = session.get_one(EpisodeRecord, episode_id)
            for name, value in asdict(outcome).items():
                setattr(episode, name, value)
            episode.finished_at = datetime.now(UTC)
            if diff is not None:
                session.add_all(_change_rows(episode_id, diff))
            session.add_all(
                FindingRecord(episode_id=episode_id, idx=i, **asdict(f))
                for i, f in enumerate(findings)
            )

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

    def latest(self, limit: int, scenario: str | None = None) -> list[dict]:
        """One summary row per episode, newest first."""
        columns = ("id", "scenario", "variant", "model", "persona", "status", "verdict", "score")
        query = select(EpisodeRecord).order_by(EpisodeRecord.created_at.desc()).limit(limit)
        if scenario:
            query = query.where(EpisodeRecord.scenario == scenario)
        with self._sessions() as session:
            return [
                {**{c: getattr(e, c) for c in columns}, "created_at": e.created_at}
                for e in session.scalars(query)
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
