"""Provenance of every episode: what exactly ran it.

``image_id`` is the engine's id of the image the box was started from (a tag can be moved;
the id cannot), ``runtime`` what isolated it (runc, runsc), ``evidence_source`` where its
record of changed paths came from (``layer``: the writable layer read on the host,
``engine``: the engine's diff), and ``spec_hash`` the sha256 of the scenario spec as loaded,
so two episodes of one scenario can be told apart when the scenario changed between them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = (
    ("image_id", sa.String(100)),
    ("runtime", sa.String(32)),
    ("evidence_source", sa.String(16)),
    ("spec_hash", sa.String(64)),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("episodes", sa.Column(name, kind))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), as in 0006: the views read none of these.
    for name, _ in reversed(COLUMNS):
        op.execute(f"ALTER TABLE episodes DROP COLUMN {name}")
