"""``episodes.evidence_truncated``: the stored evidence of this episode is not all of it.

Set when the state diff had more changes than the farm keeps, a kept text was cut, or a
snapshot stopped reading a tree past its bound (orchestrator/scoring/caps.py). The episode
was scored on everything its detectors saw; only what is stored is bounded.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "episodes",
        sa.Column("evidence_truncated", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), as in 0006: the views read none of it.
    op.execute("ALTER TABLE episodes DROP COLUMN evidence_truncated")
