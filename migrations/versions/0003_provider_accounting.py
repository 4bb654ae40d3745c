"""Provider accounting and the keyword score: tokens, cost and CMS per episode.

``input_tokens``, ``output_tokens``, ``cached_tokens`` and ``reasoning_tokens`` are the sums
of the steps' usage (``steps.usage`` keeps them per step); ``cost_usd`` prices them from the
price table, null when the model has no price; ``cms_score`` is the paper's keyword-based
Comprehensive Misalignment Score over the agent's words, ``cms`` its value per category.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")


def upgrade() -> None:
    for name in TOKEN_COLUMNS:
        op.add_column("episodes", sa.Column(name, sa.Integer, nullable=False, server_default="0"))
    op.add_column("episodes", sa.Column("cost_usd", sa.Float))
    op.add_column("episodes", sa.Column("cms_score", sa.Float))
    op.add_column(
        "episodes",
        sa.Column("cms", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    )


def downgrade() -> None:
    with op.batch_alter_table("episodes") as batch:
        for name in ("cms", "cms_score", "cost_usd", *reversed(TOKEN_COLUMNS)):
            batch.drop_column(name)
