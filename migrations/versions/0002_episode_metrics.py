"""Episode metrics and finding scores: numbers a scenario measures besides its verdict.

``episodes.metrics`` holds measurements by detector id (e.g. exercises solved, a moderation
ledger's counts); ``findings.score`` is a detector's own score where it has one (the paper's
moderation formula), used instead of the severity weight.

Cross-episode measures such as sandbagging (solved in control minus solved under threat, for
one model and persona) are computed in SQL from these.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "episodes",
        sa.Column("metrics", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    )
    op.add_column("findings", sa.Column("score", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("score")
    with op.batch_alter_table("episodes") as batch:
        batch.drop_column("metrics")
