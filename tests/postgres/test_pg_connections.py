"""PostgreSQL connections: reads outside transactions and unable to write, pooled connections checked only after sitting idle."""
from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import pq
from sqlalchemy import func, select, text

from runner import db as store
from runner.db import Database
from runner.models import Job, Workspace
from tests import pg

pytestmark = pytest.mark.postgres


def _backend_pid(session) -> int:
    return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _status(session) -> pq.TransactionStatus:
    return session.connection().connection.driver_connection.info.transaction_status


def _terminate(*pids: int) -> None:
    """End the server side of these connections, waiting until each backend has gone."""
    with psycopg.connect(pg.ADMIN_DSN, autocommit=True) as admin:
        for pid in pids:
            assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()[0] is True


@pytest.fixture
def make_db(pg_url: str, monkeypatch) -> Iterator:
    """Open a Database on the test's copy of the schema, its connections checked after ``idle`` seconds idle."""
    opened: list[Database] = []

    def make(idle: float) -> Database:
        monkeypatch.setattr(store, "DEFAULT_PG_PING_AFTER_IDLE", idle)
        database = Database(pg_url)
        opened.append(database)
        return database

    yield make
    for database in opened:
        database.dispose()


@pytest.fixture
def pings(monkeypatch) -> list[object]:
    """Every liveness check the PostgreSQL dialect makes."""
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    made: list[object] = []
    check = PGDialect_psycopg.do_ping

    def counted(self, dbapi_connection):
        made.append(dbapi_connection)
        return check(self, dbapi_connection)

    monkeypatch.setattr(PGDialect_psycopg, "do_ping", counted)
    return made


def test_a_read_runs_outside_any_transaction_and_a_write_inside_one(make_db):
    database = make_db(idle=60)
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        assert _status(session) == pq.TransactionStatus.IDLE
    with database.connect() as connection:
        connection.execute(select(func.count()).select_from(Job))
        assert connection.connection.driver_connection.info.transaction_status == pq.TransactionStatus.IDLE
    with database.write() as session:
        session.scalar(select(func.count()).select_from(Job))
        assert _status(session) == pq.TransactionStatus.INTRANS


def test_a_read_session_refuses_to_write_and_nothing_is_committed(make_db):
    database = make_db(idle=60)
    with pytest.raises(RuntimeError, match="read session may not write"), database.read() as session:
        session.add(Workspace(slug="sneaky", name="Sneaky"))
        session.flush()
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(Workspace).where(Workspace.slug == "sneaky")) == 0


def test_the_most_recently_returned_connection_is_handed_out_first(make_db):
    database = make_db(idle=60)
    with database.read() as first, database.read() as second:
        pids = {_backend_pid(first), _backend_pid(second)}
    with database.read() as session:
        latest = _backend_pid(session)
    assert latest in pids
    for _ in range(3):
        with database.read() as session:
            assert _backend_pid(session) == latest


def test_a_connection_used_a_moment_ago_is_handed_out_unchecked(make_db, pings):
    database = make_db(idle=60)
    for _ in range(3):
        with database.read() as session:
            _backend_pid(session)
        with database.write() as session:
            _backend_pid(session)
    assert pings == []


def test_a_connection_that_sat_idle_is_checked_and_replaced_when_the_server_dropped_it(make_db, pings):
    database = make_db(idle=0)
    with database.read() as session:
        dropped = _backend_pid(session)
    assert pings == []  # a connection just opened is not checked
    _terminate(dropped)
    with database.read() as session:
        replacement = _backend_pid(session)
    assert replacement != dropped
    assert len(pings) == 1
    with database.write() as session:
        assert _backend_pid(session) == replacement  # the replacement is pooled in turn, and checked as it is taken
    assert len(pings) == 2


def test_one_dropped_connection_found_idle_replaces_the_whole_pool(make_db, pings):
    database = make_db(idle=0)
    with database.read() as first, database.read() as second:
        old = {_backend_pid(first), _backend_pid(second)}
    _terminate(*old)
    with database.read() as first, database.read() as second:
        new = {_backend_pid(first), _backend_pid(second)}
    assert new.isdisjoint(old) and len(new) == 2
    assert len(pings) == 1  # the second old connection was discarded with the pool, not checked in turn
