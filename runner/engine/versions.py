"""Runbook versions, read once per process: a saved version never changes."""
from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..models import RunbookVersion

__all__ = ["load_body", "load_version"]

# Versions kept in memory per process.
DEFAULT_CACHE_SIZE = 2048

_cache: dict[tuple[str, int], tuple[int, dict[str, Any]]] = {}
_lock = threading.Lock()


def load_version(reader: Session | Connection, version_id: int) -> tuple[int, dict[str, Any]]:
    """Return the number and (read-only) body of a runbook version, read with a session or a connection."""
    url = reader.engine.url if isinstance(reader, Connection) else reader.get_bind().url
    key = (str(url), version_id)
    version = _cache.get(key)
    if version is None:
        row = reader.execute(select(RunbookVersion.version, RunbookVersion.body).where(RunbookVersion.id == version_id)).first()
        if row is None:
            raise LookupError(f"runbook version {version_id} does not exist")
        version = (row.version, row.body)
        with _lock:
            if len(_cache) >= DEFAULT_CACHE_SIZE:
                _cache.clear()
            _cache[key] = version
    return version


def load_body(reader: Session | Connection, version_id: int) -> dict[str, Any]:
    """Return the (read-only) body of a runbook version, read with a session or a connection."""
    return load_version(reader, version_id)[1]
