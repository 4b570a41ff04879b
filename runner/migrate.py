"""Schema migrations with Alembic, driven from code (``runbook-manager db upgrade``)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from .db import Database

__all__ = ["upgrade", "head_revision", "current_revision", "alembic_config", "objects_of"]

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
