"""The logins of `docker compose up` (run by the migrate service, as the admin login, after
the migrations): the application's and the analysts'.

- The app login (FARM_APP_USER, FARM_APP_PASSWORD) is a member of ``farm_app`` (migration
  0008: rows of every table, read and write) and nothing more: no CREATEROLE, no CREATEDB,
  and it owns nothing. One that owns tables (a volume made before the admin login was split
  from it) is refused with the remedy, rather than run with more than it needs.
- The analyst login (FARM_ANALYST_USER, FARM_ANALYST_PASSWORD; none when the user is empty)
  is a member of ``farm_analyst`` (read-only, migration 0004), with a statement timeout
  (FARM_ANALYST_STATEMENT_TIMEOUT, 60s by default), an idle-in-transaction timeout and a
  connection limit, so a heavy query cannot hold the farm's database for long.

Passwords are set on every run, so changing one in the environment and running `up` again
changes it. Neither name may be the admin's own.
"""

from __future__ import annotations

import os
import re
import sys

from psycopg import sql
from sqlalchemy import Connection, text

from orchestrator.store.db import make_engine

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DURATION = re.compile(r"^\d+(ms|s|min)?$")


class RoleError(RuntimeError):
    pass


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise RoleError(f"set {name}")
    return value


def _name(name: str, variable: str) -> str:
    if not ROLE_NAME.match(name):
        raise RoleError(f"{variable}={name!r}: a role name is lowercase letters, digits and _")
    return name


def _login(connection: Connection, name: str, password: str, group: str, extra: str) -> None:
    """Create or update ``name``: a login in ``group`` with ``extra`` attributes only."""
    raw = connection.connection.driver_connection
    role, secret = sql.Identifier(name).as_string(raw), sql.Literal(password).as_string(raw)
    exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name})
    # Only a superuser may name SUPERUSER, REPLICATION or BYPASSRLS in an ALTER, even to
    # deny them; a new role has none of them, and altering a role that has them fails.
    if exists.first():
        verb, attributes = "ALTER", "LOGIN NOCREATEDB NOCREATEROLE"
    else:
        verb, attributes = "CREATE", "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
    connection.execute(text(f"{verb} ROLE {role} {attributes} {extra} PASSWORD {secret}"))
    connection.execute(text(f"GRANT {group} TO {role}"))


def _owns(connection: Connection, name: str) -> int:
    query = text(
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = :n"
    )
    return int(connection.execute(query, {"n": name}).scalar_one())


def main() -> int:
    engine = make_engine(_env("FARM_DATABASE_URL"))
    app = _name(_env("FARM_APP_USER", "farm"), "FARM_APP_USER")
    analyst = os.environ.get("FARM_ANALYST_USER", "analyst")
    timeout = _env("FARM_ANALYST_STATEMENT_TIMEOUT", "60s")
    if not DURATION.match(timeout):
        raise RoleError(f"FARM_ANALYST_STATEMENT_TIMEOUT={timeout!r}: e.g. 60s, 500ms, 5min")
    with engine.begin() as connection:
        admin = connection.execute(text("SELECT current_user")).scalar_one()
        for name in (app, analyst):
            if name == admin:
                raise RoleError(f"{name!r} is the admin login; the app and analysts need their own")
        if owned := _owns(connection, app):
            raise RoleError(
                f"the app login {app!r} owns {owned} tables: this volume predates the admin "
                "login; `docker compose down -v` (it drops the data) and `up` again"
            )
        _login(connection, app, _env("FARM_APP_PASSWORD"), "farm_app", "")
        print(f"{app}: reads and writes the farm's rows, owns nothing, creates no roles")
        if analyst:
            _name(analyst, "FARM_ANALYST_USER")
            _login(
                connection,
                analyst,
                _env("FARM_ANALYST_PASSWORD"),
                "farm_analyst",
                "CONNECTION LIMIT 8",
            )
            role = sql.Identifier(analyst).as_string(connection.connection.driver_connection)
            connection.execute(text(f"ALTER ROLE {role} SET statement_timeout = '{timeout}'"))
            connection.execute(
                text(f"ALTER ROLE {role} SET idle_in_transaction_session_timeout = '5min'")
            )
            print(f"{analyst}: reads every table and view, changes nothing, {timeout} a query")
    engine.dispose()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RoleError as exc:
        print(f"roles: {exc}", file=sys.stderr)
        sys.exit(2)
