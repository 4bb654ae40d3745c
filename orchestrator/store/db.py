"""Engines, sessions and schema upgrades for SQLite (the embedded default) and Postgres."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, connections: int = 5) -> Engine:
    """An engine for ``url``; on Postgres, a pool of ``connections`` (a worker's slots each
    hold one at times, so a worker asks for as many as it has slots) and as many again."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()
            # the misalignment_rates view's Wilson interval needs it; not every SQLite has it
            dbapi_connection.create_function("sqrt", 1, _sqrt, deterministic=True)

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=connections, max_overflow=connections)


def _sqrt(value: float | None) -> float | None:
    return None if value is None else math.sqrt(value)


def _alembic_config(engine: Engine, migrations_dir: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["engine"] = engine
    return config


def schema_is_current(engine: Engine, migrations_dir: Path) -> bool:
    heads = set(ScriptDirectory.from_config(_alembic_config(engine, migrations_dir)).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == heads


def upgrade(engine: Engine, migrations_dir: Path, revision: str = "head") -> None:
    command.upgrade(_alembic_config(engine, migrations_dir), revision)


def ensure_schema(engine: Engine, migrations_dir: Path) -> None:
    """Run pending migrations; a no-op (one query) when the schema is already current."""
    if not schema_is_current(engine, migrations_dir):
        upgrade(engine, migrations_dir)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def scratch_database(admin_url: str, prefix: str = "farm_scratch") -> Iterator[str]:
    """A new, empty Postgres database on ``admin_url``'s server, dropped afterwards; for the
    tests and benchmarks, which each want a database of their own."""
    admin = make_url(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
