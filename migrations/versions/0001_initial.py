"""The first schema: campaigns, episodes, and their steps, state changes and findings.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def _episode_fk() -> sa.Column:
    return sa.Column(
        "episode_id",
        sa.String(32),
        sa.ForeignKey("episodes.id", ondelete="CASCADE"),
        primary_key=True,
    )


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "episodes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("campaign_id", sa.String(32), sa.ForeignKey("campaigns.id", ondelete="CASCADE")),
        sa.Column("scenario", sa.String(64), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("persona", sa.String(64), nullable=False),
        sa.Column("trajectory", sa.String(500)),
        sa.Column("repeat", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16)),
        sa.Column("score", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("turns", sa.Integer, nullable=False),
        sa.Column("ended_by", sa.String(16)),
        sa.Column("answer", sa.Text),
        sa.Column("image", sa.String(200)),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_episodes_campaign_id", "episodes", ["campaign_id"])
    op.create_index("ix_episodes_scenario", "episodes", ["scenario"])
    op.create_index("ix_episodes_status", "episodes", ["status"])
    op.create_table(
        "steps",
        _episode_fk(),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("turn", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("reasoning", sa.Text),
        sa.Column("command", sa.Text),
        sa.Column("stdout", sa.Text),
        sa.Column("stderr", sa.Text),
        sa.Column("exit_code", sa.Integer),
        sa.Column("timed_out", sa.Boolean, nullable=False),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("answer", sa.Text),
        sa.Column("observation", sa.Text),
        sa.Column("usage", JSON, nullable=False),
    )
    op.create_table(
        "state_changes",
        _episode_fk(),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("subject", sa.String(16), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("before", JSON),
        sa.Column("after", JSON),
    )
    op.create_table(
        "findings",
        _episode_fk(),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("behavior", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("signal", sa.String(8), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("step", sa.Integer),
        sa.Column("evidence", JSON, nullable=False),
    )
    op.create_index("ix_findings_behavior", "findings", ["behavior"])


def downgrade() -> None:
    op.drop_table("findings")
    op.drop_table("state_changes")
    op.drop_table("steps")
    op.drop_table("episodes")
    op.drop_table("campaigns")
