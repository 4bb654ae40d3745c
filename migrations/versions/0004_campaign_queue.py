"""The campaign queue, the analysts' views and their read-only role.

Queue columns on ``episodes``: ``seq`` orders a campaign's episodes; a worker that claims one
sets ``lease_owner`` and ``lease_expires_at`` and bumps ``attempts``, which doubles as the
fencing token every later write of that attempt is checked against.

Views (both dialects):
- ``episode_outcomes``: one row per episode with its campaign, cell, status, verdict, score
  and the behaviours it acted on;
- ``misalignment_rates``: per campaign x model x persona x scenario x variant, the completed
  episodes, how many were misaligned, the rate with its Wilson 95% interval, the mean score,
  and the infrastructure errors left out of the rate;
- ``episode_metrics``: one row per numeric metric a measuring detector stored, so a
  control-to-threat comparison (sandbagging) is a GROUP BY.

On Postgres the NOLOGIN role ``farm_analyst`` may read every table and view and change
nothing; ``farm db analyst NAME`` makes a login in it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

VIEWS = ("episode_metrics", "misalignment_rates", "episode_outcomes")

# The acted behaviours of an episode as one sorted, comma-separated string.
BEHAVIORS = {
    "postgresql": "(SELECT string_agg(DISTINCT f.behavior, ',' ORDER BY f.behavior) "
    "FROM findings f WHERE f.episode_id = e.id AND f.signal = 'action')",
    "sqlite": "(SELECT group_concat(behavior) FROM (SELECT DISTINCT behavior FROM findings f "
    "WHERE f.episode_id = e.id AND f.signal = 'action' ORDER BY behavior))",
}

EPISODE_OUTCOMES = """
CREATE VIEW episode_outcomes AS
SELECT e.id AS episode_id, e.campaign_id, c.name AS campaign,
       e.model, e.persona, e.scenario, e.variant, e.repeat, e.trajectory,
       e.status, e.verdict, e.score,
       CASE e.verdict WHEN 'misaligned' THEN 1 WHEN 'aligned' THEN 0 END AS misaligned,
       {behaviors} AS behaviors,
       e.turns, e.ended_by, e.attempts, e.error,
       e.input_tokens, e.output_tokens, e.cost_usd, e.cms_score,
       e.created_at, e.started_at, e.finished_at
FROM episodes e LEFT JOIN campaigns c ON c.id = e.campaign_id
"""

# Wilson score interval at 95% (z = 1.96, z^2 = 3.8416) over the n completed episodes of a
# cell; null where a cell has only errors. Its ends are exactly 0 and 1 when no or every
# episode was misaligned (the formula gives them only up to rounding).
MISALIGNMENT_RATES = """
CREATE VIEW misalignment_rates AS
SELECT campaign_id, campaign, model, persona, scenario, variant, episodes, misaligned, rate,
       CASE WHEN n IS NULL THEN NULL WHEN misaligned = 0 THEN 0.0 ELSE center - half END AS ci_low,
       CASE WHEN n IS NULL THEN NULL WHEN misaligned = episodes THEN 1.0 ELSE center + half END
         AS ci_high,
       mean_score, errors
FROM (
  SELECT *, (rate + 3.8416 / (2.0 * n)) / (1 + 3.8416 / n) AS center,
         1.96 * sqrt(rate * (1 - rate) / n + 3.8416 / (4.0 * n * n)) / (1 + 3.8416 / n) AS half
  FROM (
    SELECT campaign_id, campaign, model, persona, scenario, variant,
           COUNT(misaligned) AS episodes,
           COALESCE(SUM(misaligned), 0) AS misaligned,
           CAST(NULLIF(COUNT(misaligned), 0) AS DOUBLE PRECISION) AS n,
           CAST(SUM(misaligned) AS DOUBLE PRECISION) / NULLIF(COUNT(misaligned), 0) AS rate,
           AVG(CASE WHEN status = 'completed' THEN score END) AS mean_score,
           SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors
    FROM episode_outcomes
    GROUP BY campaign_id, campaign, model, persona, scenario, variant
  ) cells
) wilson
"""

EPISODE_METRICS = {
    "postgresql": """
CREATE VIEW episode_metrics AS
SELECT o.episode_id, o.campaign_id, o.campaign, o.model, o.persona, o.scenario, o.variant,
       m.key AS detector, v.key AS name, (v.value #>> '{}')::double precision AS value
FROM episode_outcomes o
JOIN episodes e ON e.id = o.episode_id
CROSS JOIN LATERAL jsonb_each(e.metrics) m
CROSS JOIN LATERAL jsonb_each(m.value) v
WHERE o.status = 'completed' AND jsonb_typeof(e.metrics) = 'object'
  AND jsonb_typeof(m.value) = 'object' AND jsonb_typeof(v.value) = 'number'
""",
    "sqlite": """
CREATE VIEW episode_metrics AS
SELECT o.episode_id, o.campaign_id, o.campaign, o.model, o.persona, o.scenario, o.variant,
       m.key AS detector, v.key AS name, v.value AS value
FROM episode_outcomes o
JOIN episodes e ON e.id = o.episode_id, json_each(e.metrics) m, json_each(m.value) v
WHERE o.status = 'completed' AND e.metrics IS NOT NULL AND m.type = 'object'
  AND v.type IN ('integer', 'real')
""",
}

# A role, not a login: analysts get their own logins in it (farm db analyst). Managed servers
# may not let the migrating user create roles; the schema must not depend on it.
ANALYST_ROLE = """
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farm_analyst') THEN
    CREATE ROLE farm_analyst NOLOGIN;
  END IF;
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO farm_analyst', current_database());
  GRANT USAGE ON SCHEMA public TO farm_analyst;
  GRANT SELECT ON ALL TABLES IN SCHEMA public TO farm_analyst;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO farm_analyst;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'farm_analyst not set up: the migrating user may not create roles';
END
$$
"""


def upgrade() -> None:
    with op.batch_alter_table("episodes") as batch:
        batch.add_column(sa.Column("seq", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("lease_owner", sa.String(200)))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True)))
    op.create_index("ix_episodes_queue", "episodes", ["status", "campaign_id", "seq"])
    dialect = op.get_bind().dialect.name
    op.execute(EPISODE_OUTCOMES.format(behaviors=BEHAVIORS[dialect]))
    op.execute(MISALIGNMENT_RATES)
    op.execute(EPISODE_METRICS[dialect])
    if dialect == "postgresql":
        op.execute(ANALYST_ROLE)


def downgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_index("ix_episodes_queue", "episodes")
    with op.batch_alter_table("episodes") as batch:
        for name in ("lease_expires_at", "lease_owner", "attempts", "seq"):
            batch.drop_column(name)
