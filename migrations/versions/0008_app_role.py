"""The application's role: reads and writes rows, owns nothing; no TEMP for anyone.

On Postgres the NOLOGIN role ``farm_app`` may read and write the rows of every table (and of
every table later migrations add, through default privileges of the migrating login) and
nothing else: it owns no table, so it cannot alter or drop one, and it may not create
objects. The API's, the workers' and the campaign submitter's login is a member of it
(``docker compose`` makes it: images/compose/farm/roles.py); migrations and role creation
run as the database's owner, an admin login apart from it.

``TEMPORARY`` on the database is revoked from PUBLIC: neither the app nor the analysts need
temporary tables, and an analyst's temporary tables are an unbounded write into the server.

Like 0004's ``farm_analyst``, this needs a migrating user that may create roles; on a server
where it may not, the schema is unaffected and a notice says so.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

APP_ROLE = """
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farm_app') THEN
    CREATE ROLE farm_app NOLOGIN;
  END IF;
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO farm_app', current_database());
  GRANT USAGE ON SCHEMA public TO farm_app;
  GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO farm_app;
  GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO farm_app;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO farm_app;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO farm_app;
  EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'farm_app not set up: the migrating user may not create roles';
END
$$
"""

DROP_APP_GRANTS = """
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farm_app') THEN
    ALTER DEFAULT PRIVILEGES IN SCHEMA public
      REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM farm_app;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM farm_app;
    REVOKE ALL ON ALL TABLES IN SCHEMA public FROM farm_app;
    REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM farm_app;
  END IF;
  EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'farm_app grants left as they are: the migrating user may not change them';
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APP_ROLE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_APP_GRANTS)
