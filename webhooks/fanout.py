"""Turning events into deliveries, in the transaction that wrote the events.

Because a delivery row is committed together with its event, an event that
exists always has its deliveries: nothing written is lost between the two.
"""
from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from runner.db import insert_rows
from runner.models import Delivery, Event, Job, Subscription

__all__ = ["PENDING_EVENTS", "fan_out", "new_message_id", "matches", "flow_delivery_state", "read_flow_deliveries", "ACTIVE", "wake_flow_job", "WAKE_FLOW_JOBS"]

# Key in ``session.info`` under which ``runner.engine.events.emit`` lists the events of the transaction.
PENDING_EVENTS = "rbm_pending_events"
# Key in ``session.info`` set when a transaction created deliveries (so workers in this process wake up).
CREATED_DELIVERIES = "rbm_created_deliveries"
ACTIVE = "active"
RUNBOOK_INVOKED = "runbook.invoked"


def new_message_id() -> str:
    """A ``webhook-id``: unique, stable across the retries of one delivery."""
    return "msg_" + secrets.token_hex(12)


def matches(subscription: Any, event_type: str, runbook_key: str | None) -> bool:
    """Whether ``subscription`` (anything with event_types and runbooks) wants an event of this type and runbook."""
    types = subscription.event_types
    if "*" not in types and event_type not in types:
        return False
    return subscription.runbooks is None or runbook_key in subscription.runbooks


_SUBSCRIPTIONS = Subscription.__table__
# Built once: these run in every transaction that writes events.
_EVENTS = Event.__table__
_INSERT_EVENTS_RETURNING_KEYS = insert(_EVENTS).returning(_EVENTS.c.id, _EVENTS.c.job_id, _EVENTS.c.seq)
_INSERT_EVENTS_IN_ORDER = insert(_EVENTS).returning(_EVENTS.c.id, sort_by_parameter_order=True)
_LIVE_SUBSCRIPTIONS = select(_SUBSCRIPTIONS.c.id, _SUBSCRIPTIONS.c.event_types, _SUBSCRIPTIONS.c.runbooks,
                             _SUBSCRIPTIONS.c.expires_at).where(
    _SUBSCRIPTIONS.c.workspace_id == bindparam("workspace_id"),
    _SUBSCRIPTIONS.c.status == ACTIVE,
    _SUBSCRIPTIONS.c.deleted_at.is_(None),
    or_(_SUBSCRIPTIONS.c.expires_at.is_(None), _SUBSCRIPTIONS.c.expires_at > bindparam("now")),
)


# Key in ``session.info``: the live subscriptions this transaction read, per workspace. A transaction that moves a
# job it created fans out twice (before the move and at commit), and the second needs no second look.
_READ_SUBSCRIPTIONS = "rbm_read_subscriptions"


def _live_subscriptions(session: Session, connection: Any, workspace_id: int, now: datetime) -> list[Any]:
    read = session.info.setdefault(_READ_SUBSCRIPTIONS, {})
    rows = read.get(workspace_id)
    if rows is None:
        rows = read[workspace_id] = connection.execute(_LIVE_SUBSCRIPTIONS, {"workspace_id": workspace_id, "now": now}).all()
    return [row for row in rows if row.expires_at is None or row.expires_at > now]


def fan_out(session: Session) -> None:
    """Insert the transaction's events, then a pending delivery per (event, matching live subscription)."""
    rows: list[dict[str, Any]] = session.info.pop(PENDING_EVENTS, [])
    if not rows:
        return
    session.flush()
    connection = session.connection()
    by_workspace: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_workspace[row["workspace_id"]].append(row)
    wanted: list[tuple[dict[str, Any], list[Any]]] = []
    for workspace_id, batch in by_workspace.items():
        subscriptions = _live_subscriptions(session, connection, workspace_id, batch[-1]["created_at"])
        # A burst's thousands of events come in a few (type, runbook) pairs: each pair is matched once.
        by_kind: dict[tuple[str, str | None], list[Any]] = {}
        for row in batch:
            kind = (row["type"], row["runbook_key"])
            matching = by_kind.get(kind)
            if matching is None:
                matching = by_kind[kind] = [s for s in subscriptions if matches(s, *kind)]
            if matching:
                wanted.append((row, matching))
    if not wanted:
        # Nobody listens: the events go in with one statement, their ids unneeded.
        insert_rows(connection, _EVENTS, rows)
        return
    ids = _insert_numbered(connection, rows)
    deliveries = [
        {"id": new_message_id(), "workspace_id": row["workspace_id"], "subscription_id": subscription.id, "event_id": ids[id(row)],
         "event_type": row["type"], "job_id": row["job_id"], "status": "pending", "attempts": 0, "next_attempt_at": row["created_at"],
         "created_at": row["created_at"]}
        for row, matching in wanted for subscription in matching
    ]
    insert_rows(connection, Delivery.__table__, deliveries)
    session.info[CREATED_DELIVERIES] = len(deliveries)


def _insert_numbered(connection: Any, rows: list[dict[str, Any]]) -> dict[int, int]:
    """Insert event rows and return each row's new id, keyed by ``id(row)``.

    Job events are told apart by (job, sequence number), so they go in with one
    multi-row statement whatever order its RETURNING comes back in; a batch with
    a workspace event (no job) is inserted in parameter order instead.
    """
    if all(row["job_id"] is not None for row in rows):
        by_key = {(row["job_id"], row["seq"]): id(row) for row in rows}
        return {by_key[(job_id, seq)]: event_id for event_id, job_id, seq in connection.execute(_INSERT_EVENTS_RETURNING_KEYS, rows)}
    ids = connection.execute(_INSERT_EVENTS_IN_ORDER, rows).scalars().all()
    return {id(row): event_id for row, event_id in zip(rows, ids, strict=True)}


_DELIVERIES = Delivery.__table__
# The Runbook Action deliveries of jobs' runbook.invoked events. Built once: every step-less job looks for its own when it
# finishes (through ix_deliveries_job_id_event_type), alone or with the others of its batch.
_INVOKED_DELIVERIES = (
    select(_DELIVERIES.c.id, _DELIVERIES.c.status, _DELIVERIES.c.subscription_id, _DELIVERIES.c.attempts,
           _DELIVERIES.c.last_status, _DELIVERIES.c.last_error, _SUBSCRIPTIONS.c.runbooks, _DELIVERIES.c.job_id)
    .join(_SUBSCRIPTIONS, _SUBSCRIPTIONS.c.id == _DELIVERIES.c.subscription_id)
    .where(_DELIVERIES.c.event_type == RUNBOOK_INVOKED, _SUBSCRIPTIONS.c.runbooks.is_not(None))
)
_FLOW_DELIVERIES = _INVOKED_DELIVERIES.where(_DELIVERIES.c.job_id == bindparam("job_id"))


# The same for a batch of jobs (their ids written into the statement, so that PostgreSQL plans it with them), and the key
# in ``session.info`` under which their rows wait for ``flow_delivery_state``.
_FLOW_DELIVERIES_OF_JOBS = _INVOKED_DELIVERIES.where(_DELIVERIES.c.job_id.in_(bindparam("job_ids", expanding=True, literal_execute=True)))
_READ_FLOW_DELIVERIES = "rbm_flow_deliveries"


def read_flow_deliveries(session: Session, job_ids: list[int]) -> None:
    """Look up the flow deliveries of several step-less jobs about to finish with one query; ``flow_delivery_state`` uses them once."""
    if not job_ids:
        return
    read: dict[int, list[Any]] = session.info.setdefault(_READ_FLOW_DELIVERIES, {})
    found: dict[int, list[Any]] = {job_id: [] for job_id in job_ids}
    for row in session.connection().execute(_FLOW_DELIVERIES_OF_JOBS, {"job_ids": sorted(found)}):
        found[row.job_id].append(row)
    read.update(found)


def flow_delivery_state(session: Session, job: Job) -> tuple[str, Any]:
    """For a flow-backed job: "none" (no Runbook Action subscriber), "pending", "succeeded" or "failed" (with that delivery).

    The delivery is a row with the delivery's ``id``, ``status``, ``subscription_id``, ``attempts``,
    ``last_status`` and ``last_error``.
    """
    rows = session.info.get(_READ_FLOW_DELIVERIES, {}).pop(job.id, None)
    if rows is None:
        rows = session.connection().execute(_FLOW_DELIVERIES, {"job_id": job.id}).all()
    deliveries = [row for row in rows if job.runbook_key in (row.runbooks or [])]
    if not deliveries:
        return "none", None
    failed = [d for d in deliveries if d.status in ("failed", "gone", "cancelled")]
    if failed:
        return "failed", failed[0]
    if all(d.status == "succeeded" for d in deliveries):
        return "succeeded", deliveries[0]
    return "pending", None


_JOBS = Job.__table__
# Flow-backed jobs (by id) that wait for their invocation's delivery: due now.
WAKE_FLOW_JOBS = (update(_JOBS).where(_JOBS.c.id.in_(bindparam("ids", expanding=True)), _JOBS.c.status == "waiting",
                                      _JOBS.c.waiting_for == "delivery").values(next_run_at=bindparam("now")))


def wake_flow_job(session: Session, delivery: Delivery, now: datetime) -> None:
    """Tell a flow-backed job waiting on this delivery to look again."""
    if delivery.event_type == RUNBOOK_INVOKED and delivery.job_id is not None:
        session.connection().execute(WAKE_FLOW_JOBS, {"ids": [delivery.job_id], "now": now})


def describe_target(subscription: Subscription | Any) -> str:
    """The host a subscription delivers to, for messages."""
    return urlsplit(subscription.target_url).hostname or subscription.target_url
