"""The local PostgreSQL server for tests: started when it is not answering, one database per test."""
from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest

# Admin connection used to create and drop test databases.
ADMIN_DSN = os.environ.get("RUNBOOK_MANAGER_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
# How long to wait for a server that is being started.
START_TIMEOUT = 30.0


def _answers() -> bool:
    try:
        with psycopg.connect(ADMIN_DSN, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def ensure_server() -> None:
    """Make sure PostgreSQL answers, starting the local cluster if needed; fail in CI, skip elsewhere."""
    if _answers():
        return
    clusters = sorted(Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").exists() else []
    if clusters:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", clusters[-1].name, "main", "start"],
                       check=False, capture_output=True, timeout=60)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not _answers():
            time.sleep(0.5)
    if not _answers():
        message = f"PostgreSQL does not answer at {ADMIN_DSN!r} and could not be started"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def url_of(dbname: str) -> str:
    """SQLAlchemy URL of a database on the test server."""
    params = dict(part.split("=", 1) for part in ADMIN_DSN.split())
    return f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:{params.get('port', '5432')}/{dbname}"


def create_database(*, template: str | None = None, prefix: str = "rbm_test") -> str:
    """Create a fresh database (optionally copied from a template); return its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def drop_database(name: str) -> None:
    """Drop a test database, disconnecting whoever is still connected."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
