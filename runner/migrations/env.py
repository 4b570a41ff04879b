"""Alembic environment: the engine comes from ``runner.migrate`` (or RUNBOOK_MANAGER_DATABASE_URL)."""
from __future__ import annotations

from alembic import context

from runner.migrate import objects_of
from runner.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from runner.config import Settings
        from runner.db import Database

        engine = Database(Settings.from_env().database_url).engine
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_object=objects_of(connection.dialect.name),
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
