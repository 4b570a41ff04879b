"""The store: one SQLAlchemy engine, sessions for reading and for writing.

SQLite runs in WAL mode; write transactions start with ``BEGIN IMMEDIATE`` so
two writers queue on the busy timeout instead of failing with "database is
locked" when a read lock would have to be upgraded. PostgreSQL uses ordinary
transactions and row locks (``FOR UPDATE SKIP LOCKED``) where work is claimed;
its reads run outside transactions, and a pooled connection that sat idle is
checked before it is handed out.
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, event, exc, insert
from sqlalchemy.engine import Connection, CursorResult, Dialect, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import Executable

__all__ = ["Database", "Encoded", "encoded", "execute_many", "execute_one", "insert_rows"]

# How long a SQLite writer waits for the write lock before giving up (milliseconds).
DEFAULT_SQLITE_BUSY_TIMEOUT_MS = 30_000
# Pages of SQLite's write-ahead log past which a commit copies it back into the database (SQLite's default).
DEFAULT_SQLITE_AUTOCHECKPOINT = 1000
# Connections kept open per process against PostgreSQL.
DEFAULT_PG_POOL_SIZE = 10
# A pooled PostgreSQL connection idle for longer than this (seconds) is asked whether it is still alive before it is
# handed out; one used more recently is not, saving a round trip per transaction while the runner is busy.
DEFAULT_PG_PING_AFTER_IDLE = 1.0


class Encoded(str):
    """A JSON document encoded ahead of time: a JSON column stores it as it is, instead of encoding it again."""

    __slots__ = ()


def encoded(value: Any) -> Encoded:
    """``value`` encoded as a JSON column would encode it."""
    return Encoded(json.dumps(value))


def _to_json(value: Any) -> str:
    """Every JSON column's serializer: ``json.dumps``, except for a document already ``Encoded``."""
    return value if type(value) is Encoded else json.dumps(value)


class Database:
    """Own the engine and hand out transactional sessions."""

    def __init__(self, url: str, *, pool_size: int = DEFAULT_PG_POOL_SIZE) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.is_postgres = self.url.get_backend_name() == "postgresql"
        self._write_lock: WriteLock | None = None
        if self.is_sqlite:
            self._prepare_sqlite_path()
            if self.url.database and self.url.database != ":memory:":
                self._write_lock = WriteLock(str(Path(self.url.database).expanduser().resolve()) + ".writelock")
            self.engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": DEFAULT_SQLITE_BUSY_TIMEOUT_MS / 1000},
                pool_size=20,
                max_overflow=20,
                json_serializer=_to_json,
            )
            _configure_sqlite(self.engine, self)
            self._write_engine = self.engine.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        else:
            # The process id in application_name lets an operator see in pg_stat_activity who holds which lock.
            # Last in, first out: while the runner is busy the same few connections go round, fresh enough not to be
            # checked (see _ping_when_idle), and the rest sit idle.
            self.engine = create_engine(self.url, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True, json_serializer=_to_json,
                                        connect_args={"application_name": f"runbook-manager pid={os.getpid()}"})
            _ping_when_idle(self.engine, DEFAULT_PG_PING_AFTER_IDLE)
            self._write_engine = self.engine
        # On PostgreSQL each statement of a READ COMMITTED transaction sees the data as of its own start anyway, so reads
        # run outside any transaction: no BEGIN and no ROLLBACK, two round trips fewer per read. On SQLite a read
        # transaction keeps one snapshot for all its statements, and costs no round trip.
        self._read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT") if self.is_postgres else self.engine
        self._readers = sessionmaker(self._read_engine, expire_on_commit=False)
        event.listen(self._readers, "before_flush", _refuse_writes)
        self._writers = sessionmaker(self._write_engine, expire_on_commit=False)
        self._flush_listeners: list[Callable[[Session, Any, Any], None]] = []
        # While set, this process's SQLite transactions leave the write-ahead log for one checkpoint afterwards.
        self.checkpoints_deferred = False
        # Called with the session just before each write transaction commits (e.g. fanning events out).
        self.before_commit: list[Callable[[Session], None]] = []
        # Called with the committed session's info after each write transaction (e.g. waking workers).
        self.after_commit: list[Callable[[dict[str, Any]], None]] = []

    def _prepare_sqlite_path(self) -> None:
        database = self.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """Yield a session for reading; it refuses to flush changes (on PostgreSQL it has no transaction to undo them).

        Closing (rather than rolling back) leaves the objects it loaded usable, detached.
        """
        session = self._readers()
        try:
            yield session
        finally:
            session.close()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """Yield a Core connection for reading only: half the cost of a session, for hot paths that load no objects."""
        with self._read_engine.connect() as connection:
            yield connection

    @contextmanager
    def write(self) -> Iterator[Session]:
        """Yield a session whose work is committed on success and rolled back on error."""
        lock = self._write_lock or _NO_LOCK
        with lock:
            session = self._writers()
            try:
                yield session
                for callback in self.before_commit:
                    callback(session)
                info = dict(session.info)
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
        for after in self.after_commit:
            after(info)

    @contextmanager
    def deferring_checkpoints(self) -> Iterator[None]:
        """Write a burst without copying SQLite's write-ahead log back into the database on the way, then do it once.

        A commit that finds the log past ``DEFAULT_SQLITE_AUTOCHECKPOINT``
        pages copies it back (a checkpoint, which also syncs the file). A
        burst of large transactions rewrites the same index pages again and
        again, so one checkpoint after it copies each page once instead of
        once per transaction. The log holds every commit meanwhile, as it
        always does between checkpoints. Other processes checkpoint as usual.
        """
        if not self.is_sqlite:
            yield
            return
        self.checkpoints_deferred = True
        try:
            yield
        finally:
            self.checkpoints_deferred = False
            connection = self.engine.raw_connection()
            try:
                # PASSIVE: copies what it can without waiting for, or holding up, readers and writers.
                connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                connection.close()

    def before_flush(self, callback: Callable[[Session, Any, Any], None]) -> None:
        """Call ``callback`` (a ``before_flush`` session event listener) before each flush of a write session, once however often asked."""
        # Kept here rather than asked of ``event.contains``, whose registry goes by the ids of targets and listeners.
        if callback not in self._flush_listeners:
            self._flush_listeners.append(callback)
            event.listen(self._writers, "before_flush", callback)

    def dispose(self) -> None:
        """Close every pooled connection (after fork, or at shutdown)."""
        self.engine.dispose()


class WriteLock:
    """Let one SQLite writer at a time in, across the threads and processes of a runner.

    SQLite serializes writers anyway, but a writer that finds the database
    locked polls with growing sleeps (up to 100 ms each), which under load
    turns a 1 ms commit into a long tail. Queueing on a kernel file lock
    instead wakes the next writer the moment the previous one commits.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._held = threading.local()
        self._fd: int | None = None
        _locks.add(self)

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def __enter__(self) -> WriteLock:
        if getattr(self._held, "depth", 0):
            raise RuntimeError("a write transaction was opened inside another one on the same thread")
        self._threads.acquire()
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        self._held.depth = 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._held.depth = 0
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_UN)
        finally:
            self._threads.release()


_NO_LOCK = nullcontext()
# A forked child opens descriptors of its own: flock locks belong to the open file, which a fork would share.
_locks: weakref.WeakSet[WriteLock] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for lock in _locks:
        lock._fd = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Check a pooled connection that sat idle longer than ``idle_seconds`` before handing it out; replace it if it is gone.

    A connection the server dropped (a restart, an idle timeout) is found here
    rather than by the request that would use it, and every connection the
    pool opened before it is thrown away too. One that was in use less than
    ``idle_seconds`` ago is handed out unchecked: if the server went away
    meanwhile, its statement fails, and the pool throws the others away then.
    """
    @event.listens_for(engine, "checkin")
    def _idle_from_now(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")  # None for a connection just opened
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.InvalidatePoolError(f"pooled connection is gone: {error}") from error


def _refuse_writes(session: Session, _flush_context: Any, _instances: Any) -> None:
    raise RuntimeError("a read session may not write; use Database.write()")


def _configure_sqlite(engine: Engine, database: Database) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={DEFAULT_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        # Straight to the driver: every transaction starts here, and a statement through SQLAlchemy costs several times more.
        driver = conn.connection.driver_connection
        pages = 0 if database.checkpoints_deferred else DEFAULT_SQLITE_AUTOCHECKPOINT
        kept = conn.connection.info
        if kept.get("wal_autocheckpoint", DEFAULT_SQLITE_AUTOCHECKPOINT) != pages:
            driver.execute(f"PRAGMA wal_autocheckpoint={pages}")
            kept["wal_autocheckpoint"] = pages
        driver.execute(conn.get_execution_options().get("sqlite_begin", "BEGIN"))


class _Prepared:
    """A statement compiled once for a dialect and a set of row keys, with each parameter's value conversion looked up once."""

    def __init__(self, statement: Executable, keys: tuple[str, ...], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        self.positional = compiled.positional
        self.names = list(compiled.positiontup or ()) if self.positional else list(binds)
        # Python-side column defaults, constants in the statement and expanding IN lists are SQLAlchemy's to handle.
        self.usable = (not compiled.insert_prefetch and not compiled.update_prefetch and not compiled.literal_execute_params
                       and all(binds[name].key in keys and not binds[name].expanding for name in self.names))
        self.sql = compiled.string
        self.columns = [(binds[name].key, binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in self.names] \
            if self.usable else []

    def parameters(self, rows: list[dict[str, Any]]) -> list[Any]:
        """The rows as the driver takes them; a value repeated down a column (the batch's timestamp) is converted once."""
        converted: list[list[Any]] = []
        for key, process in self.columns:
            values = [row[key] for row in rows]
            if process is not None:
                last_in: Any = object()
                last_out: Any = None
                out = []
                for value in values:
                    if value is not last_in:
                        last_in, last_out = value, process(value)
                    out.append(last_out)
                values = out
            converted.append(values)
        if self.positional:
            return list(zip(*converted, strict=True))
        return [dict(zip(self.names, values, strict=True)) for values in zip(*converted, strict=True)]


_prepared: dict[tuple[str, Executable, tuple[str, ...]], _Prepared] = {}
_inserts: dict[Table, Executable] = {}


def _prepared_for(connection: Connection, statement: Executable, keys: tuple[str, ...]) -> _Prepared:
    """``statement`` prepared for the connection's dialect and a row's keys, once per process."""
    cache_key = (connection.dialect.name, statement, keys)
    prepared = _prepared.get(cache_key)
    if prepared is None:
        prepared = _prepared[cache_key] = _Prepared(statement, keys, connection.dialect)
    return prepared


def execute_many(connection: Connection, statement: Executable, rows: list[dict[str, Any]]) -> CursorResult[Any] | None:
    """Run ``statement`` once per row with one executemany, converting the values without SQLAlchemy's per-row parameter handling.

    A burst of cron ticks inserts thousands of jobs, events and audit entries:
    there, building each row's parameters through the compiled statement cost
    about as much as the database's own work. Rows must share the first row's
    keys, as with ``connection.execute(statement, rows)``, which is used instead
    when the statement needs what only SQLAlchemy does per row (a Python-side
    column default, a constant or an IN list among its parameters) or a row
    lacks one of those keys. Returns the result (its ``rowcount`` counts the rows of every run), None without rows.
    """
    if not rows:
        return None
    prepared = _prepared_for(connection, statement, tuple(rows[0]))
    if prepared.usable:
        try:
            parameters = prepared.parameters(rows)
        except KeyError:
            pass  # a row lacks one of the first row's keys: SQLAlchemy says which
        else:
            return connection.exec_driver_sql(prepared.sql, parameters)
    return connection.execute(statement, rows)


def execute_one(connection: Connection, statement: Executable, row: dict[str, Any]) -> CursorResult[Any]:
    """Run ``statement`` once with ``row``, compiled and its conversions looked up once per set of keys (see ``execute_many``)."""
    prepared = _prepared_for(connection, statement, tuple(row))
    if prepared.usable:
        return connection.exec_driver_sql(prepared.sql, prepared.parameters([row])[0])
    return connection.execute(statement, row)


def insert_rows(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows into ``table`` with ``execute_many``."""
    statement = _inserts.get(table)
    if statement is None:
        statement = _inserts[table] = insert(table)
    execute_many(connection, statement, rows)
