"""The schema: migrations run on SQLite and Postgres and agree with the ORM models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from orchestrator.store.db import ensure_schema, make_engine, schema_is_current, upgrade
from orchestrator.store.models import Base

TABLES = {"campaigns", "episodes", "steps", "state_changes", "findings", "alembic_version"}


def test_migrations_create_the_schema_the_models_describe(database_url, settings) -> None:
    engine = make_engine(database_url)
    assert not schema_is_current(engine, settings.migrations_dir)
    ensure_schema(engine, settings.migrations_dir)
    assert schema_is_current(engine, settings.migrations_dir)
    assert set(inspect(engine).get_table_names()) == TABLES
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    engine.dispose()


def test_migrations_downgrade_to_nothing_and_back(database_url, settings) -> None:
    engine = make_engine(database_url)
    upgrade(engine, settings.migrations_dir)
    from alembic import command

    from orchestrator.store.db import _alembic_config

    command.downgrade(_alembic_config(engine, settings.migrations_dir), "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(engine, settings.migrations_dir)
    assert set(inspect(engine).get_table_names()) == TABLES
    engine.dispose()


def test_farm_db_upgrade_cli(sqlite_url) -> None:
    from tests.conftest import run_farm

    run = run_farm("db", "upgrade", env={"FARM_DATABASE_URL": sqlite_url})
    assert run.returncode == 0, run.stderr
    engine = make_engine(sqlite_url)
    assert set(inspect(engine).get_table_names()) == TABLES
