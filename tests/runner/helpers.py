"""Builders the runner tests share: valid runbook bodies and a one-call create."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from runner.config import Settings
from runner.runtime import Runtime
from tests import pg
from tests.conftest import TEST_SETTINGS

# Two clean steps: no lint warning fires on them.
CLEAN_STEPS: list[dict[str, Any]] = [
    {"title": "Drain traffic from the primary database", "owner_role": "operator", "est_minutes": 5},
    {"title": "Restart the primary database", "owner_role": "operator", "est_minutes": 10},
]


def runbook_body(title: str = "Restart the primary database", **overrides: Any) -> dict[str, Any]:
    """Return a valid runbook body; keyword arguments replace its fields."""
    return {"title": title, "category": "maintenance", "steps": [dict(s) for s in CLEAN_STEPS], **overrides}


def create_runbook(api: Any, title: str = "Restart the primary database", *, status: str = "draft", **overrides: Any) -> dict[str, Any]:
    """Create a runbook through the API, move it to ``status``, and return its body."""
    response = api.post("/runbooks", json=runbook_body(title, **overrides))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    for action in {"draft": [], "published": ["publish"], "archived": ["archive"]}[status]:
        moved = api.post(f"/runbooks/{created['key']}/{action}")
        assert moved.status_code == 200, moved.get_json()
        created = moved.get_json()
    return created


def audit_entries(api: Any, **query: Any) -> list[dict[str, Any]]:
    """Return every audit entry the api's token may read (first page of 200)."""
    response = api.get("/audit", query_string={"limit": 200, **query})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings_on_each_store(request: pytest.FixtureRequest, db_path: Path, tmp_path: Path) -> Iterator[Settings]:
    """Settings on SQLite, then on a fresh PostgreSQL database: a module that names this its ``settings`` runs every test on both."""
    url = f"sqlite:///{db_path}"
    name = None
    if request.param == "postgres":
        name = pg.create_database(template=request.getfixturevalue("pg_template"))
        url = pg.url_of(name)
    yield Settings.from_env({}, database_url=url, var_dir=str(tmp_path / "var"), **TEST_SETTINGS)
    if name is not None:
        pg.drop_database(name)


@contextmanager
def counting(engine: Engine) -> Iterator[list[tuple[str, Any, bool]]]:
    """Every statement run on ``engine``: (SQL, parameters as the driver got them, whether it was an executemany)."""
    statements: list[tuple[str, Any, bool]] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        statements.append((statement, parameters, executemany))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def scans(found: str, table: str) -> bool:
    """Whether a plan (``plan``) reads the whole of ``table``: SQLite's SCAN, PostgreSQL's Seq Scan."""
    return f"SCAN {table}" in found.replace("SCAN CONSTANT", "") or f"Seq Scan on {table}" in found


def plan(rt: Runtime, statement: str, parameters: Any) -> str:
    """The store's plan for a statement run through its driver (EXPLAIN QUERY PLAN or EXPLAIN), one line per step; changes nothing."""
    explain = "EXPLAIN QUERY PLAN " if rt.db.is_sqlite else "EXPLAIN "
    with rt.db.engine.connect() as conn:
        rows = conn.exec_driver_sql(explain + statement, parameters).all()
        conn.rollback()
    return "\n".join(str(row[-1]) for row in rows)
