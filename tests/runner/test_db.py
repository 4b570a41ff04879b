"""The store's transactions on SQLite: writers take the write lock when they begin, readers see one snapshot, forks lock apart."""
from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from runner.db import Database
from runner.models import Workspace


def _other_connection(db_path: Path) -> sqlite3.Connection:
    """A connection of another program: no busy timeout, so a held lock shows at once."""
    return sqlite3.connect(db_path, timeout=0, isolation_level=None)


def test_a_write_transaction_holds_the_write_lock_from_its_start(rt, db_path):
    other = _other_connection(db_path)
    with rt.db.write() as session:
        session.connection()  # begun, nothing written yet
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")


def test_a_read_connection_sees_one_snapshot_while_others_write(rt, db_path):
    other = _other_connection(db_path)
    count = text("SELECT count(*) FROM workspaces")
    with rt.db.connect() as connection:
        before = connection.execute(count).scalar_one()
        other.execute("INSERT INTO workspaces (slug, name, created_at, runbook_counter) VALUES ('late', 'Late', '2026-01-01 00:00:00', 0)")
        assert connection.execute(count).scalar_one() == before
    with rt.db.connect() as connection:
        assert connection.execute(count).scalar_one() == before + 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def test_a_forked_process_takes_the_write_lock_on_a_descriptor_of_its_own(db_path):
    """A child sharing its parent's open lock file would share its flock too, and both could write at once."""
    db = Database(f"sqlite:///{db_path}")
    with db.write():
        pass  # the parent has opened its lock file
    held, release = os.pipe(), os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            with db.write():
                os.write(held[1], b"x")
                os.read(release[0], 1)
        finally:
            os._exit(0)
    try:
        os.read(held[0], 1)
        lock = db._write_lock
        with pytest.raises(BlockingIOError):
            fcntl.flock(lock._descriptor(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.write(release[1], b"x")
        os.waitpid(child, 0)
        db.dispose()


def _autocheckpoint(rt) -> int:  # noqa: ANN001
    """The write-ahead log size (pages) past which a write transaction of this process checkpoints it."""
    with rt.db.write() as session:
        return session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()


def test_writes_while_checkpoints_are_deferred_leave_the_log_to_one_checkpoint_after(rt):
    before = _autocheckpoint(rt)
    with rt.db.deferring_checkpoints():
        during = [_autocheckpoint(rt) for _ in range(3)]
    after = _autocheckpoint(rt)

    assert (before, during, after) == (1000, [0, 0, 0], 1000)


def test_deferred_checkpoints_come_back_when_the_burst_fails(rt):
    with pytest.raises(RuntimeError), rt.db.deferring_checkpoints():
        raise RuntimeError("a burst that failed")

    assert _autocheckpoint(rt) == 1000


def test_the_log_written_while_checkpoints_were_deferred_is_copied_back_after(rt, db_path):
    with rt.db.write() as session:
        session.execute(text("CREATE TABLE filler (data BLOB)"))
    size_before = db_path.stat().st_size
    with rt.db.deferring_checkpoints():
        for _ in range(3):  # about 1,500 pages: past the 1,000 at which a commit would otherwise checkpoint
            with rt.db.write() as session:
                session.execute(text("INSERT INTO filler (data) VALUES (randomblob(2000000))"))
        size_during = db_path.stat().st_size

    assert size_during == size_before  # everything so far is in the log only
    assert db_path.stat().st_size > size_before + 5_000_000


def test_a_read_session_refuses_to_write(rt):
    with pytest.raises(RuntimeError, match="read session may not write"), rt.db.read() as session:
        session.add(Workspace(slug="sneaky", name="Sneaky"))
        session.flush()
    with rt.db.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM workspaces WHERE slug = 'sneaky'")).scalar_one() == 0
