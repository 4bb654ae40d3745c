"""Alembic environment: the farm passes its engine in; otherwise FARM_DATABASE_URL is used."""

from __future__ import annotations

from alembic import context

from orchestrator.config import get_settings
from orchestrator.store.db import make_engine
from orchestrator.store.models import Base

engine = context.config.attributes.get("engine") or make_engine(get_settings().database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
