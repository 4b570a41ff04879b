"""Claiming deliveries reads the pending ones through their own index, however many finished deliveries the log holds."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import event, select

from runner.db import insert_rows
from runner.models import Delivery, Event
from runner.runtime import Runtime
from tests.runner.helpers import settings_on_each_store
from webhooks.delivery import claim_deliveries

from .conftest import runbook, start, subscribe

# Each test runs on SQLite and on PostgreSQL.
settings = settings_on_each_store

# Finished deliveries in the log: on PostgreSQL, enough that reading the whole table costs more than the index.
FINISHED = 5_000
AT = datetime(2026, 3, 2, 13, 0, tzinfo=timezone.utc)


@contextmanager
def statements(rt: Runtime) -> Iterator[list[tuple[str, Any]]]:
    """The statements run on the store, with their parameters as the driver got them."""
    seen: list[tuple[str, Any]] = []

    def run(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        seen.append((statement, parameters))

    event.listen(rt.db.engine, "before_cursor_execute", run)
    try:
        yield seen
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", run)


def plan(rt: Runtime, statement: str, parameters: Any) -> str:
    """The store's plan for ``statement``, as one line per node."""
    explain = "EXPLAIN QUERY PLAN " if rt.db.is_sqlite else "EXPLAIN "
    with rt.db.engine.connect() as conn:
        rows = conn.exec_driver_sql(explain + statement, parameters).all()
        conn.rollback()
    return "\n".join(str(row[-1]) for row in rows)


def finished_log(rt: Runtime, subscription_id: str, workspace_id: int, count: int) -> None:
    """Add ``count`` deliveries that succeeded long ago (each with its event), straight into the store."""
    with rt.db.write() as session:
        connection = session.connection()
        first = (connection.execute(select(Event.id).order_by(Event.id.desc()).limit(1)).scalar() or 0) + 1
        insert_rows(connection, Event.__table__, [
            {"id": first + i, "workspace_id": workspace_id, "type": "job.created", "payload": {}, "created_at": AT} for i in range(count)])
        insert_rows(connection, Delivery.__table__, [
            {"id": f"msg_finished{i:012d}", "workspace_id": workspace_id, "subscription_id": subscription_id, "event_id": first + i,
             "event_type": "job.created", "status": "succeeded", "attempts": 1, "next_attempt_at": None, "created_at": AT,
             "completed_at": AT} for i in range(count)])


def test_claiming_reads_pending_deliveries_through_their_index_not_the_whole_log(api, rt, server):
    key = runbook(api, "Watched")
    sub = subscribe(api, server.url + "/hook", ["runbook.invoked"], runbooks=[key])
    start(api, key)
    with rt.db.read() as session:
        workspace_id = session.scalar(select(Delivery.workspace_id))
    finished_log(rt, sub["id"], workspace_id, FINISHED)

    with statements(rt) as seen:
        claimed = claim_deliveries(rt, "w", 32)

    claims = [(sql, parameters) for sql, parameters in seen if "deliveries" in sql]
    plans = [plan(rt, sql, parameters) for sql, parameters in claims]
    assert len(claimed) == 1
    assert len(claims) == 2  # whether anything is due, then the lease
    for found in plans:
        assert "ix_deliveries_pending" in found, found
        assert "SCAN deliveries" not in found and "Seq Scan on deliveries" not in found, found
