"""REST-hook subscriptions: subscribe, list, renew, unsubscribe; the delivery log and redelivery."""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, literal_column, select, text, update
from sqlalchemy.orm import Session

from runner.auth import Action, Actor, require
from runner.engine.events import EVENT_TYPES
from runner.errors import Conflict, FieldError, InvalidInput, NotFound
from runner.models import Delivery, DeliveryAttempt, Runbook, Subscription
from runner.models.hooks import UNSUCCESSFUL_DELIVERIES
from runner.runtime import DELIVERIES_DUE, JOBS_DUE, Runtime
from runner.services import audit
from runner.services.pagination import cut_page, decode_cursor

from .fanout import ACTIVE, wake_flow_job
from .outbound import OutboundPolicy, OutboundRefused
from .signing import generate_secret

__all__ = ["subscribe", "list_subscriptions", "get_subscription", "update_subscription", "unsubscribe", "list_deliveries",
           "redeliver", "resolve_runbook_keys", "check_target"]


# Pending deliveries, of every subscription, that a page of one subscription's pending ones sorts at most on SQLite rather
# than walk that subscription's log (see ``list_deliveries``): sorting ten thousand takes a few milliseconds.
PENDING_SORTED_AT_MOST = 10_000


def _new_id() -> str:
    return "sub_" + secrets.token_hex(8)


def check_target(rt: Runtime, url: str, field: str = "target_url") -> list[FieldError]:
    """Check a URL the runner would POST to: http(s), a host, and allowed by the outbound guard."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        host = None
    if not host or parts.scheme not in ("http", "https"):
        return [{"field": field, "message": "must be an absolute http or https URL", "value": url}]
    try:
        OutboundPolicy.from_setting(rt.settings.outbound_allowlist).check(url)
    except OutboundRefused as exc:
        return [{"field": field, "message": str(exc), "value": url}]
    return []


def resolve_runbook_keys(session: Any, workspace_id: int, refs: list[str], field: str = "runbooks") -> tuple[list[str], list[FieldError]]:
    """Turn runbook keys or names into keys; list the ones that do not exist."""
    rows = session.execute(select(Runbook.key, Runbook.name).where(Runbook.workspace_id == workspace_id)).all()
    by_ref = {**{r.key: r.key for r in rows}, **{r.name: r.key for r in rows}}
    keys, errors = [], []
    for ref in refs:
        if ref in by_ref:
            keys.append(by_ref[ref])
        else:
            errors.append({"field": field, "message": "no such runbook in this workspace", "value": ref})
    return sorted(set(keys)), errors


def _to_dict(sub: Subscription, *, secret: bool = False) -> dict[str, Any]:
    result = {
        "id": sub.id,
        "events": sub.event_types,
        "runbooks": sub.runbooks,
        "target_url": sub.target_url,
        "status": sub.status,
        "expires_at": sub.expires_at,
        "created_at": sub.created_at,
        "created_by": sub.created_by,
        "failure_streak": sub.failure_streak,
        "disabled_at": sub.disabled_at,
        "disabled_reason": sub.disabled_reason,
    }
    if secret:
        result["secret"] = sub.secret
    return result


def _check_expiry(expires_at: datetime | None, now: datetime) -> list[FieldError]:
    if expires_at is not None and expires_at <= now:
        return [{"field": "expires_at", "message": "must be in the future", "value": expires_at.isoformat()}]
    return []


def subscribe(rt: Runtime, actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
    """Create a subscription; its signing secret is in this answer only."""
    require(actor, Action.AUTOMATE)
    now = rt.clock.now()
    errors: list[FieldError] = []
    events = list(dict.fromkeys(data["events"]))
    for event_type in events:
        if event_type != "*" and event_type not in EVENT_TYPES:
            errors.append({"field": "events", "message": f"unknown event type; known: {', '.join(EVENT_TYPES)}", "value": event_type})
    if not events:
        errors.append({"field": "events", "message": "name at least one event type", "value": []})
    errors += check_target(rt, data["target_url"])
    errors += _check_expiry(data.get("expires_at"), now)
    with rt.db.write() as session:
        keys = None
        if data.get("runbooks") is not None:
            keys, missing = resolve_runbook_keys(session, actor.workspace_id, data["runbooks"])
            errors += missing
            if not data["runbooks"]:
                errors.append({"field": "runbooks", "message": "omit runbooks to receive every runbook's events, or list at least one", "value": []})
        if errors:
            raise InvalidInput("the subscription cannot be created: " + "; ".join(f"{e['field']}: {e['message']} ({e['value']!r})" for e in errors),
                               errors=errors)
        sub = Subscription(id=_new_id(), workspace_id=actor.workspace_id, event_types=events, runbooks=keys, target_url=data["target_url"],
                           secret=generate_secret(), status=ACTIVE, expires_at=data.get("expires_at"), failure_streak=0,
                           created_at=now, created_by=actor.subject)
        session.add(sub)
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="subscription.create", target=sub.id,
                     detail={"events": events, "runbooks": keys, "target_url": sub.target_url})
        return _to_dict(sub, secret=True)


def _find(session: Any, actor: Actor, sub_id: str) -> Subscription:
    sub = session.get(Subscription, sub_id)
    if sub is None or sub.workspace_id != actor.workspace_id or sub.deleted_at is not None:
        raise NotFound(f"subscription {sub_id!r} not found in workspace {actor.workspace_slug!r}")
    return sub


def list_subscriptions(rt: Runtime, actor: Actor) -> dict[str, Any]:
    """List the workspace's subscriptions (never their secrets)."""
    require(actor, Action.AUTOMATE)
    with rt.db.read() as session:
        rows = session.scalars(select(Subscription).where(Subscription.workspace_id == actor.workspace_id,
                                                          Subscription.deleted_at.is_(None)).order_by(Subscription.created_at))
        return {"items": [_to_dict(s) for s in rows]}


def get_subscription(rt: Runtime, actor: Actor, sub_id: str) -> dict[str, Any]:
    """Read one subscription."""
    require(actor, Action.AUTOMATE)
    with rt.db.read() as session:
        return _to_dict(_find(session, actor, sub_id))


def update_subscription(rt: Runtime, actor: Actor, sub_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Renew the expiry or re-enable a disabled subscription."""
    require(actor, Action.AUTOMATE)
    now = rt.clock.now()
    errors = _check_expiry(data.get("expires_at"), now)
    if errors:
        raise InvalidInput("expires_at must be in the future", errors=errors)
    with rt.db.write() as session:
        sub = _find(session, actor, sub_id)
        if "expires_at" in data:
            sub.expires_at = data["expires_at"]
        if data.get("status") == ACTIVE and sub.status != ACTIVE:
            sub.status = ACTIVE
            sub.failure_streak = 0
            sub.disabled_at = None
            sub.disabled_reason = None
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="subscription.update", target=sub.id,
                     detail={k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()})
        return _to_dict(sub)


def unsubscribe(rt: Runtime, actor: Actor, sub_id: str) -> None:
    """Remove a subscription; its pending deliveries are cancelled."""
    require(actor, Action.AUTOMATE)
    now = rt.clock.now()
    with rt.db.write() as session:
        sub = _find(session, actor, sub_id)
        sub.status = "deleted"
        sub.deleted_at = now
        pending = list(session.scalars(select(Delivery).where(Delivery.subscription_id == sub.id, Delivery.status == "pending")))
        session.execute(update(Delivery).where(Delivery.subscription_id == sub.id, Delivery.status == "pending")
                        .values(status="cancelled", next_attempt_at=None, completed_at=now, last_error="unsubscribed"))
        for delivery in pending:  # a flow-backed job waiting on one of them must learn that nobody will acknowledge it
            wake_flow_job(session, delivery, now)
        if pending:
            session.info[JOBS_DUE] = True
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="subscription.delete", target=sub.id)


def _delivery_dict(delivery: Delivery, attempts: list[DeliveryAttempt]) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "completed_at": delivery.completed_at,
        "attempt_log": [
            {"at": a.attempted_at, "status": a.status_code, "latency_ms": a.latency_ms, "outcome": a.outcome, "error": a.error,
             "response_excerpt": a.response_excerpt}
            for a in attempts
        ],
    }


def list_deliveries(rt: Runtime, actor: Actor, sub_id: str, query: dict[str, Any]) -> dict[str, Any]:
    """List a subscription's deliveries, newest first, each with its attempt log."""
    require(actor, Action.AUTOMATE)
    position = decode_cursor(query.get("cursor"), keys=("before",))
    status = query.get("status")
    with rt.db.read() as session:
        sub = _find(session, actor, sub_id)
        # SQLite keeps no statistics: for a page of pending deliveries it walks the subscription's whole log newest first,
        # most of it long delivered. While few deliveries are pending in all, reading them from their own index and sorting
        # them costs less; the subscription's log and the event ids, stated so that no index serves them, steer it there.
        sorting = status == "pending" and rt.db.is_sqlite and _few_pending(session)
        subscription_id, event_id = (_unindexed(Delivery.subscription_id), _unindexed(Delivery.event_id)) if sorting else \
            (Delivery.subscription_id, Delivery.event_id)
        statement = select(Delivery).where(subscription_id == sub.id)
        if position:
            statement = statement.where(event_id < position["before"])
        if status:
            statement = statement.where(Delivery.status == status)
            if status not in ("pending", "succeeded"):
                # The condition of the index of unsuccessful deliveries, as it is written there: SQLite uses a partial index
                # only for a query that states its condition.
                statement = statement.where(text(UNSUCCESSFUL_DELIVERIES))
            elif status == "pending":
                # Pending deliveries are the ones with a next attempt, which their own index holds.
                statement = statement.where(Delivery.next_attempt_at.is_not(None))
        rows, next_cursor = cut_page(list(session.scalars(statement.order_by(event_id.desc()).limit(query["limit"] + 1))),
                                     query["limit"], lambda last: {"before": last.event_id})
        attempts: dict[str, list[DeliveryAttempt]] = {r.id: [] for r in rows}
        if rows:
            for attempt in session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(list(attempts)))
                                           .order_by(DeliveryAttempt.id)):
                attempts[attempt.delivery_id].append(attempt)
        return {"items": [_delivery_dict(r, attempts[r.id]) for r in rows], "next_cursor": next_cursor}


def _few_pending(session: Session) -> bool:
    """Whether at most ``PENDING_SORTED_AT_MOST`` deliveries are pending, of every subscription (read from their index alone)."""
    pending = select(Delivery.next_attempt_at).where(Delivery.next_attempt_at.is_not(None)).limit(PENDING_SORTED_AT_MOST + 1)
    return session.scalar(select(func.count()).select_from(pending.subquery())) <= PENDING_SORTED_AT_MOST


def _unindexed(column: Any) -> Any:
    """``column`` as SQLite's unary ``+`` states it: the same value, which no index serves."""
    return literal_column(f"+{column.table.name}.{column.name}", type_=column.type)


def redeliver(rt: Runtime, actor: Actor, sub_id: str, delivery_id: str) -> dict[str, Any]:
    """Send a delivery again (same webhook-id) with a fresh run of attempts."""
    require(actor, Action.AUTOMATE)
    now = rt.clock.now()
    with rt.db.write() as session:
        sub = _find(session, actor, sub_id)
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.subscription_id != sub.id:
            raise NotFound(f"delivery {delivery_id!r} not found for subscription {sub_id!r}")
        if sub.status != ACTIVE:
            raise Conflict(f"subscription {sub.id} is {sub.status}; re-enable it (PATCH status active) before redelivering",
                           current_status=sub.status)
        if delivery.status == "pending":
            raise Conflict(f"delivery {delivery.id} is still pending (attempt {delivery.attempts} made); it will be retried",
                           current_status=delivery.status)
        delivery.status = "pending"
        delivery.attempts = 0
        delivery.next_attempt_at = now
        delivery.completed_at = None
        delivery.lease_owner = delivery.lease_until = None
        session.info[DELIVERIES_DUE] = True
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="delivery.redeliver", target=delivery.id,
                     detail={"subscription": sub.id})
        return _delivery_dict(delivery, list(session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery.id))))
