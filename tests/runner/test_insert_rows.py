"""``execute_many`` and ``insert_rows``: many rows in one executemany, stored exactly as SQLAlchemy's own statements store them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import String, bindparam, cast, event, insert, select, update

from runner.db import encoded, execute_many, insert_rows
from runner.models import AuditEntry, Subscription
from runner.runtime import Runtime
from tests.runner.helpers import settings_on_each_store

AT = datetime(2026, 3, 2, 13, 0, tzinfo=timezone.utc)


# Each test runs on SQLite and on PostgreSQL: the two drivers take their parameters differently.
settings = settings_on_each_store


def _entries(source: str) -> list[dict[str, Any]]:
    """Audit rows with what the conversions must get right: a timestamp shared by the batch, JSON, and None in a JSON column."""
    return [{"workspace_id": None, "at": AT if i < 3 else AT + timedelta(seconds=i), "actor": f"person-{i}", "role": "owner",
             "action": "job.created", "target": f"job-{i}", "source": source, "detail": None if i == 1 else {"n": i, "ok": [True, None]}}
            for i in range(5)]


def _stored(rt: Runtime, source: str) -> list[dict[str, Any]]:
    """The rows written with ``source``, as read back and as the database holds them (SQL NULL or JSON null; the time's text)."""
    table = AuditEntry.__table__
    raw = select(table, table.c.detail.is_(None).label("sql_null"), cast(table.c.at, String).label("at_text"))
    with rt.db.connect() as connection:
        rows = connection.execute(raw.where(table.c.source == source).order_by(table.c.id)).mappings().all()
    return [{key: value for key, value in row.items() if key not in ("id", "source")} for row in rows]


def _with_workspace(rows: list[dict[str, Any]], workspace_id: int) -> list[dict[str, Any]]:
    return [{**row, "workspace_id": workspace_id} for row in rows]


def test_rows_are_stored_as_sqlalchemy_stores_them(rt, workspace):
    with rt.db.connect() as connection:
        workspace_id = connection.exec_driver_sql("SELECT id FROM workspaces").scalar_one()
    statements: list[bool] = []
    with rt.db.write() as session:
        connection = session.connection()
        event.listen(connection, "before_cursor_execute", lambda *args: statements.append(args[4].compiled is None))
        insert_rows(connection, AuditEntry.__table__, _with_workspace(_entries("fast"), workspace_id))
        connection.execute(insert(AuditEntry.__table__), _with_workspace(_entries("core"), workspace_id))

    assert statements == [True, False]  # the first through the driver alone, the second through SQLAlchemy
    assert _stored(rt, "fast") == _stored(rt, "core")
    stored = _stored(rt, "fast")
    assert stored[0]["at"] == AT and stored[4]["at"] == AT + timedelta(seconds=4)
    assert stored[1]["detail"] is None and not stored[1]["sql_null"] and stored[2]["detail"] == {"n": 2, "ok": [True, None]}


def test_rows_missing_a_column_of_the_first_fall_back_to_sqlalchemy(rt, workspace):
    with rt.db.connect() as connection:
        workspace_id = connection.exec_driver_sql("SELECT id FROM workspaces").scalar_one()
    rows = _with_workspace(_entries("partial"), workspace_id)
    del rows[-1]["detail"]

    with pytest.raises(Exception, match="detail"), rt.db.write() as session:
        insert_rows(session.connection(), AuditEntry.__table__, rows)

    assert _stored(rt, "partial") == []


def test_a_table_with_python_side_defaults_is_left_to_sqlalchemy(rt, workspace):
    # A subscription row without ``failure_streak`` gets its default, as through SQLAlchemy.
    with rt.db.connect() as connection:
        workspace_id = connection.exec_driver_sql("SELECT id FROM workspaces").scalar_one()
    row = {"id": "sub_defaults", "workspace_id": workspace_id, "event_types": ["*"], "runbooks": None, "target_url": "http://127.0.0.1/",
           "secret": "whsec_x", "status": "active", "created_at": AT, "created_by": "person"}
    with rt.db.write() as session:
        insert_rows(session.connection(), Subscription.__table__, [row])
    with rt.db.read() as session:
        stored = session.get(Subscription, "sub_defaults")
    assert (stored.failure_streak, stored.event_types, stored.runbooks, stored.created_at) == (0, ["*"], None, AT)


@pytest.mark.parametrize("constant", [False, True], ids=["parameters-only", "with-a-constant"])
def test_an_update_runs_once_per_row(rt, workspace, constant):
    # A statement with a constant among its parameters is run by SQLAlchemy: the rows do not carry that value.
    table = AuditEntry.__table__
    with rt.db.connect() as connection:
        workspace_id = connection.exec_driver_sql("SELECT id FROM workspaces").scalar_one()
    condition = [table.c.target == bindparam("b_target")] + ([table.c.role == "owner"] if constant else [])
    statement = update(table).where(*condition).values(actor=bindparam("b_actor"), at=bindparam("b_at"))
    later = AT + timedelta(hours=1)
    with rt.db.write() as session:
        insert_rows(session.connection(), table, _with_workspace(_entries("update"), workspace_id))
    with rt.db.write() as session:
        connection = session.connection()
        compiled: list[bool] = []
        event.listen(connection, "before_cursor_execute", lambda *args: compiled.append(args[4].compiled is not None))
        execute_many(connection, statement, [{"b_target": "job-1", "b_actor": "someone", "b_at": later},
                                                       {"b_target": "job-3", "b_actor": "someone else", "b_at": later}])

    stored = {row["target"]: (row["actor"], row["at"]) for row in _stored(rt, "update")}
    assert stored["job-1"] == ("someone", later) and stored["job-3"] == ("someone else", later)
    assert stored["job-0"] == ("person-0", AT)
    assert compiled == [constant]  # the driver ran the statement's own SQL; SQLAlchemy only when there is a constant


def test_a_document_encoded_ahead_is_stored_as_the_json_it_encodes(rt, workspace):
    with rt.db.connect() as connection:
        workspace_id = connection.exec_driver_sql("SELECT id FROM workspaces").scalar_one()
    document = {"n": 1, "ok": [True, None], "text": "a \"quoted\" word"}
    rows = [{**row, "detail": encoded(document)} for row in _with_workspace(_entries("encoded-fast"), workspace_id)]
    with rt.db.write() as session:
        connection = session.connection()
        insert_rows(connection, AuditEntry.__table__, rows)
        connection.execute(insert(AuditEntry.__table__), [{**row, "source": "encoded-core"} for row in rows])

    # Encoded again, each would read back as a string holding the JSON instead of the document.
    assert [row["detail"] for row in _stored(rt, "encoded-fast")] == [document] * 5
    assert [row["detail"] for row in _stored(rt, "encoded-core")] == [document] * 5
