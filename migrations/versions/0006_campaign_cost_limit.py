"""The campaign cost cap: ``campaigns.cost_limit_usd`` and why a campaign paused.

``cost_limit_usd`` starts as the spec's ``cost_limit_usd`` (or ``farm campaign run
--cost-limit``) and ``farm campaign resume --cost-limit`` raises it; the spec stays as
submitted. Once the campaign's recorded spend (the sum of its episodes' ``cost_usd``)
reaches it, workers stop claiming its episodes and mark it ``paused`` with the reason in
``status_reason``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("cost_limit_usd", sa.Float))
    op.add_column("campaigns", sa.Column("status_reason", sa.Text))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would trip over the views
    # that read it (migrations 0004, 0005), and they read neither column.
    for column in ("status_reason", "cost_limit_usd"):
        op.execute(f"ALTER TABLE campaigns DROP COLUMN {column}")
