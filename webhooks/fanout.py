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

from runner.models import Delivery, Event, Job, Subscription

__all__ = ["PENDING_EVENTS", "fan_out", "new_message_id", "matches", "flow_delivery_state", "ACTIVE", "wake_flow_job"]

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
_INSERT_EVENTS = insert(Event.__table__).returning(Event.__table__.c.id, sort_by_parameter_order=True)
_LIVE_SUBSCRIPTIONS = select(_SUBSCRIPTIONS.c.id, _SUBSCRIPTIONS.c.event_types, _SUBSCRIPTIONS.c.runbooks).where(
    _SUBSCRIPTIONS.c.workspace_id == bindparam("workspace_id"),
    _SUBSCRIPTIONS.c.status == ACTIVE,
    _SUBSCRIPTIONS.c.deleted_at.is_(None),
    or_(_SUBSCRIPTIONS.c.expires_at.is_(None), _SUBSCRIPTIONS.c.expires_at > bindparam("now")),
)


def fan_out(session: Session) -> None:
    """Insert the transaction's events, then a pending delivery per (event, matching live subscription)."""
    rows: list[dict[str, Any]] = session.info.pop(PENDING_EVENTS, [])
    if not rows:
        return
    session.flush()
    connection = session.connection()
    ids = connection.execute(_INSERT_EVENTS, rows).scalars().all()
    by_workspace: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for event_id, row in zip(ids, rows, strict=True):
        by_workspace[row["workspace_id"]].append((event_id, row))
    deliveries = []
    for workspace_id, batch in by_workspace.items():
        now = batch[-1][1]["created_at"]
        subscriptions = connection.execute(_LIVE_SUBSCRIPTIONS, {"workspace_id": workspace_id, "now": now}).all()
        for event_id, row in batch:
            for subscription in subscriptions:
                if matches(subscription, row["type"], row["runbook_key"]):
                    deliveries.append({
                        "id": new_message_id(), "workspace_id": workspace_id, "subscription_id": subscription.id, "event_id": event_id,
                        "event_type": row["type"], "job_id": row["job_id"], "status": "pending", "attempts": 0,
                        "next_attempt_at": row["created_at"], "created_at": row["created_at"],
                    })
    if deliveries:
        connection.execute(insert(Delivery.__table__), deliveries)
        session.info[CREATED_DELIVERIES] = len(deliveries)


def flow_delivery_state(session: Session, job: Job) -> tuple[str, Delivery | None]:
    """For a flow-backed job: "none" (no Runbook Action subscriber), "pending", "succeeded" or "failed" (with that delivery)."""
    rows = list(session.execute(
        select(Delivery, Subscription.runbooks)
        .join(Subscription, Subscription.id == Delivery.subscription_id)
        .where(Delivery.job_id == job.id, Delivery.event_type == RUNBOOK_INVOKED, Subscription.runbooks.is_not(None))
    ))
    deliveries = [d for d, runbooks in rows if job.runbook_key in (runbooks or [])]
    if not deliveries:
        return "none", None
    failed = [d for d in deliveries if d.status in ("failed", "gone", "cancelled")]
    if failed:
        return "failed", failed[0]
    if all(d.status == "succeeded" for d in deliveries):
        return "succeeded", deliveries[0]
    return "pending", None


def wake_flow_job(session: Session, delivery: Delivery, now: datetime) -> None:
    """Tell a flow-backed job waiting on this delivery to look again."""
    if delivery.event_type == RUNBOOK_INVOKED and delivery.job_id is not None:
        session.execute(
            update(Job).where(Job.id == delivery.job_id, Job.status == "waiting", Job.waiting_for == "delivery").values(next_run_at=now)
        )


def describe_target(subscription: Subscription | Any) -> str:
    """The host a subscription delivers to, for messages."""
    return urlsplit(subscription.target_url).hostname or subscription.target_url
