"""The ORM models. Alembic (``migrations/``) owns the schema; these mirror it for the code.

Steps, state changes and findings are append-only rows keyed by (episode, index), like
Vivaria's trace entries, so analysis is plain SQL over them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from orchestrator.states import CampaignStatus

Json = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """A moment, always in UTC and always with its offset.

    SQLite keeps no offset and hands back naive datetimes (an API answer without one is not
    an RFC 3339 date-time); Postgres hands them back in the session's time zone. Every
    moment is written in UTC (a naive one is taken to be UTC) and read back aware, in UTC,
    on both."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _utc(value)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: Json}


class CampaignRecord(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.PENDING)
    created_at: Mapped[datetime]
    # The cost cap (migration 0006): from the spec or --cost-limit, raised by resume; and why
    # the campaign is paused, when it is.
    cost_limit_usd: Mapped[float | None] = mapped_column(Float)
    status_reason: Mapped[str | None] = mapped_column(Text)


class EpisodeRecord(Base):
    __tablename__ = "episodes"
    # what a claim scans: queued (or expired) episodes in campaign order
    __table_args__ = (Index("ix_episodes_queue", "status", "campaign_id", "seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    campaign_id: Mapped[str | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    scenario: Mapped[str] = mapped_column(String(64), index=True)
    variant: Mapped[str] = mapped_column(String(64), default="default")
    model: Mapped[str] = mapped_column(String(200))
    persona: Mapped[str] = mapped_column(String(64))
    trajectory: Mapped[str | None] = mapped_column(String(500))
    repeat: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), index=True)
    verdict: Mapped[str | None] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    turns: Mapped[int] = mapped_column(Integer, default=0)
    ended_by: Mapped[str | None] = mapped_column(String(16))
    answer: Mapped[str | None] = mapped_column(Text)
    image: Mapped[str | None] = mapped_column(String(200))
    settings: Mapped[dict[str, Any]]
    # What the scenario measured besides the verdict, by detector id (migration 0002).
    metrics: Mapped[dict[str, Any] | None]
    # Token totals over the steps, their cost and the keyword CMS (migration 0003).
    input_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    output_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cost_usd: Mapped[float | None] = mapped_column(Float)  # null: the model has no price
    cms_score: Mapped[float | None] = mapped_column(Float)
    cms: Mapped[dict[str, Any] | None]  # per category: score, events, F, S, P
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The campaign queue (migration 0004): order within the campaign, and the current lease.
    # ``attempts`` counts claims and fences writes: only the latest attempt may write.
    seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    # What ran it (migration 0007): the image's id, the runtime, where the evidence of
    # changed paths came from, and the scenario spec's hash.
    image_id: Mapped[str | None] = mapped_column(String(100))
    runtime: Mapped[str | None] = mapped_column(String(32))
    evidence_source: Mapped[str | None] = mapped_column(String(16))
    spec_hash: Mapped[str | None] = mapped_column(String(64))
    # Its stored evidence is bounded and was cut (migration 0009, orchestrator/scoring/caps.py).
    evidence_truncated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class StepRecord(Base):
    __tablename__ = "steps"

    episode_id: Mapped[str] = mapped_column(
        ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24))
    started_at: Mapped[datetime]
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    text: Mapped[str | None] = mapped_column(Text)
    reasoning: Mapped[str | None] = mapped_column(Text)
    command: Mapped[str | None] = mapped_column(Text)
    stdout: Mapped[str | None] = mapped_column(Text)
    stderr: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    timed_out: Mapped[bool] = mapped_column(default=False)
    truncated: Mapped[bool] = mapped_column(default=False)
    answer: Mapped[str | None] = mapped_column(Text)
    observation: Mapped[str | None] = mapped_column(Text)
    usage: Mapped[dict[str, Any]]


class StateChangeRecord(Base):
    __tablename__ = "state_changes"

    episode_id: Mapped[str] = mapped_column(
        ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(16))  # file, path (layer diff only), process
    change: Mapped[str] = mapped_column(
        String(16)
    )  # added modified deleted mode owner started gone
    path: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]


class FindingRecord(Base):
    __tablename__ = "findings"

    episode_id: Mapped[str] = mapped_column(
        ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    detector: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(24))
    behavior: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(8))
    signal: Mapped[str] = mapped_column(String(8))
    role: Mapped[str] = mapped_column(String(12), default="verdict", server_default="verdict")
    description: Mapped[str] = mapped_column(Text, default="")
    step: Mapped[int | None] = mapped_column(Integer)
    evidence: Mapped[dict[str, Any]]
    score: Mapped[float | None] = mapped_column(Float)  # the detector's own score, if any
