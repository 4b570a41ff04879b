"""Writing the state machine's changes to jobs and step events with prebuilt statements instead of the ORM's flush.

Every move of a job changes a few columns of its row and of a step event's,
and starts a step now and then. The ORM's unit of work would work out the
same statements on every flush, at about the cost of running them again.
``write_plainly`` runs before each flush of a write session: it updates each
changed ``Job`` and ``StepEvent`` by primary key with a statement prepared once
per set of changed columns, inserts each new ``StepEvent``, and then registers
the objects with the session as the ORM's flush does with those it saved
(persistent, clean, expired again if the transaction rolls back), leaving the
ORM's flush nothing to do for them. Anything else (other models, deletions,
new jobs made through the ORM) is left to the ORM. Mapper events
(``before_update``, ``after_insert``) do not fire for the objects saved here,
nor do ``after_flush`` events when the ORM is left nothing to do; nothing
listens for them. The models have no ``onupdate`` defaults to apply.

The objects are registered with the session through the calls SQLAlchemy's
own flush ends with (``InstanceState._commit_all_states``,
``Session._register_altered``, ``Session._register_persistent``), which are
not public: ``setup.cfg`` keeps SQLAlchemy to the minor release the tests run on.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, bindparam, insert, inspect, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.state import InstanceState

from ..db import execute_many, execute_one
from .job import Job, StepEvent

__all__ = ["write_plainly"]

# The models saved here, in the order their updates go in (a step event's row refers to its job's), then by id; each
# maps its attributes to columns of the same names.
PLAIN_MODELS = (Job, StepEvent)
_ORDER = {model: position for position, model in enumerate(PLAIN_MODELS)}
_TABLES: dict[type, Table] = {model: model.__table__ for model in PLAIN_MODELS}
_COLUMNS: dict[type, frozenset[str]] = {model: frozenset(attr.key for attr in inspect(model).column_attrs) for model in PLAIN_MODELS}
if any(_COLUMNS[model] != frozenset(_TABLES[model].c.keys()) for model in PLAIN_MODELS):
    raise TypeError("write_plainly saves models whose attribute names are their column names")

_STEP_EVENTS = StepEvent.__table__
# A new step event may leave out a column that is NULL unless set (the ORM writes NULL); the others it must carry. A
# JSON column left out would be SQL NULL through the ORM but JSON null here: it must be carried too.
_NULL_UNLESS_SET = frozenset(column.key for column in _STEP_EVENTS.c
                             if column.nullable and column.default is None and column.server_default is None
                             and not column.type.should_evaluate_none)
_REQUIRED = _COLUMNS[StepEvent] - _NULL_UNLESS_SET - {"id"}
_INSERTED = tuple(sorted(_COLUMNS[StepEvent] - {"id"}))
_updates: dict[tuple[Table, frozenset[str]], tuple[Any, tuple[str, ...]]] = {}
# The new ids come back with each row's (job_id, order), unique, so the rows may come back in any order: SQLite then
# takes them in one statement (a RETURNING that must keep the parameters' order goes one row at a time there).
_INSERT_STEP_EVENT = insert(_STEP_EVENTS).returning(_STEP_EVENTS.c.id, _STEP_EVENTS.c.job_id, _STEP_EVENTS.c.order)


def _update_of(table: Table, keys: frozenset[str]) -> tuple[Any, tuple[str, ...]]:
    """``UPDATE table SET <keys> WHERE id = :id_`` and its keys in order, built once per set of columns."""
    found = _updates.get((table, keys))
    if found is None:
        ordered = tuple(sorted(keys))
        statement = update(table).where(table.c.id == bindparam("id_")).values({key: bindparam(key) for key in ordered})
        found = _updates[(table, keys)] = (statement, ordered)
    return found


def _changes(state: InstanceState[Any]) -> dict[str, Any] | None:
    """The columns set to a new value since the object was loaded or saved; None if one was deleted (the ORM's case)."""
    values = state.dict
    changed = {}
    for key, old in state.committed_state.items():
        if key not in values:
            return None
        new = values[key]
        if old is NO_VALUE or old is not new and old != new:
            changed[key] = new
    return changed


def _insertable(obj: object) -> bool:
    """Whether a new step event carries every column it must, none of them left to a default, and no id of its own."""
    values = obj.__dict__
    return type(obj) is StepEvent and values.get("id") is None and all(values.get(key) is not None for key in _REQUIRED)


def write_plainly(session: Session, flush_context: Any, instances: Iterable[object] | None) -> None:
    """Before a flush: save the changed jobs and step events and the new step events, so the ORM finds them clean.

    The whole flush is left to the ORM when it was asked for chosen objects, when
    it deletes, or when new objects other than step events are pending (a job made
    through the ORM must go in before its step events, and the ORM orders that).
    Within jobs and step events, updates go in the ORM's order (jobs before step
    events, each by id), so that transactions lock those rows in the same order;
    they go before anything the ORM writes in the same flush. A column set to the
    value it had is not written, as with the ORM.
    """
    if instances is not None or session.deleted:
        return
    new = list(session.new)
    if not all(type(obj) is StepEvent for obj in new):
        return
    saved: list[InstanceState[Any]] = []
    updates = []
    for obj in session.dirty:
        model = type(obj)
        if model in _ORDER:
            state: InstanceState[Any] = inspect(obj)
            changes = _changes(state)
            if changes is not None and "id" not in changes:  # a changed primary key is the ORM's to handle
                saved.append(state)
                if changes:
                    updates.append((_ORDER[model], state.key[1][0], model, changes))
    inserts = new if new and all(_insertable(obj) for obj in new) else []
    if not updates and not inserts:
        if saved:
            _saved(session, saved)
        return
    try:
        _write(session.connection(), sorted(updates, key=lambda update: update[:2]), inserts)
        _saved(session, saved)
        if inserts:
            session._register_persistent({inspect(obj) for obj in inserts})
    except BaseException:
        # As after a failed flush of the ORM (which runs in a subtransaction, rolled back on failure): the transaction
        # is rolled back and the session refuses to be used until it is rolled back too. The subtransaction is made
        # only then, since making one for every flush costs about a twentieth of a wait round trip.
        session._autobegin_t()._begin().rollback(_capture_exception=True)
        raise


def _write(connection: Connection, updates: list[tuple[int, int, type, dict[str, Any]]], inserts: list[StepEvent]) -> None:
    """Run the updates (in order) and the inserts, giving each new step event its id."""
    # Neighbours that change the same columns of the same table go in with one executemany: a batch of jobs starting
    # together changes the same columns of each.
    for (_, model, keys), group in itertools.groupby(updates, key=lambda update: (update[0], update[2], frozenset(update[3]))):
        statement, ordered = _update_of(_TABLES[model], keys)
        rows = [{**{key: changes[key] for key in ordered}, "id_": id_} for _, id_, _, changes in group]
        result = execute_one(connection, statement, rows[0]) if len(rows) == 1 else execute_many(connection, statement, rows)
        if result.rowcount != len(rows):
            ids = ", ".join(str(row["id_"]) for row in rows)
            raise StaleDataError(f"UPDATE of {model.__name__} {ids} matched {result.rowcount} of {len(rows)} rows")
    if inserts:
        for obj in inserts:
            for key in _NULL_UNLESS_SET:
                obj.__dict__.setdefault(key, None)
        rows = [{key: obj.__dict__[key] for key in _INSERTED} for obj in inserts]
        ids = {(job_id, order): id_ for id_, job_id, order in connection.execute(_INSERT_STEP_EVENT, rows)}
        for obj in inserts:
            obj.__dict__["id"] = ids[(obj.job_id, obj.order)]


def _saved(session: Session, saved: list[InstanceState[Any]]) -> None:
    """What the ORM's flush does with the objects it updated: they are clean, and a rollback of the transaction expires them."""
    InstanceState._commit_all_states([(state, state.dict) for state in saved], session.identity_map)
    session._register_altered(saved)
