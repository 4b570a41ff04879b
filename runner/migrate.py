"""Schema migrations with Alembic, driven from code (``runbook-manager db upgrade``)."""
from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from .db import Database

__all__ = ["upgrade", "head_revision", "current_revision", "alembic_config", "objects_of", "apply_indexes"]

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    """Build an Alembic config that migrates ``db``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db.engine
    return config


def objects_of(dialect: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` for ``dialect``: leave out what the models keep for another database (``only_on``)."""

    def include(object_: Any, *_: Any) -> bool:
        return getattr(object_, "info", {}).get("only_on", dialect) == dialect

    return include


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema up to ``revision``."""
    command.upgrade(alembic_config(db), revision)


def head_revision() -> str | None:
    """Return the newest revision shipped with this code."""
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at (None before the first migration)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# --- used by the revisions themselves ---------------------------------------------------------------


def apply_indexes(create: list[tuple[str, str, list[str], sa.TextClause | None]], drop: list[tuple[str, str]]) -> None:
    """In a revision: create (table, index, columns, condition of a partial index or None), then drop (table, index), indexes.

    Those already there, or already gone, are left. On PostgreSQL each is built or dropped concurrently, outside a
    transaction, so runners keep writing while a large store is indexed, and an upgrade interrupted half way can be run
    again.
    """
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block() if postgres else nullcontext():
        for table, name, columns, where in create:
            _create_index(table, name, columns, where, postgres)
        for table, name in drop:
            op.drop_index(name, table_name=table, postgresql_concurrently=postgres, if_exists=True)


def _create_index(table: str, name: str, columns: list[str], where: sa.TextClause | None, concurrently: bool) -> None:
    options = {"postgresql_where": where, "sqlite_where": where} if where is not None else {}
    if concurrently:
        # A concurrent build that was interrupted leaves an invalid index behind: drop it, so that the upgrade can simply be run again.
        invalid = op.get_bind().execute(sa.text("SELECT 1 FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                                                "WHERE c.relname = :name AND NOT i.indisvalid"), {"name": name}).first()
        if invalid is not None:
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
    op.create_index(name, table, columns, unique=False, postgresql_concurrently=concurrently, if_not_exists=True, **options)
