"""The delivery worker: claims due deliveries, POSTs them signed, records every attempt, retries with backoff.

Failures are recorded and retried, never raised into the caller (a failed
delivery never breaks a job). This module uses the runner's models; the pure
signing and classifying it relies on do not.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import requests
from sqlalchemy import bindparam, or_, select, update

from runner import metrics
from runner.engine.events import emit_workspace
from runner.engine.worker import LeasedWorker
from runner.models import Delivery, DeliveryAttempt, Event, Subscription
from runner.runtime import DELIVERIES_DUE, JOBS_DUE, Runtime

from .backoff import compute_backoff
from .classify import Verdict, classify_response
from .fanout import ACTIVE, describe_target, wake_flow_job
from .outbound import OutboundPolicy, OutboundRefused, thread_session
from .signing import signed_headers

__all__ = ["DeliveryWorker", "claim_deliveries", "send_deliveries", "delivery_body"]

log = logging.getLogger(__name__)

# Bytes of a receiver's answer kept with each attempt.
EXCERPT_BYTES = 512
# Deliveries one thread claims at a time (it sends them one after the other; leases are renewed by the heartbeat).
DEFAULT_CLAIM_BATCH = 10
# Jitter of delivery retry delays (fraction of the delay).
DEFAULT_DELIVERY_JITTER = 0.2
USER_AGENT = "runbook-manager-webhooks/1"

def delivery_body(event: Any) -> bytes:
    """The JSON a subscriber receives for an event (Standard Webhooks shape: type, timestamp, data)."""
    return json.dumps(
        {"type": event.type, "timestamp": event.created_at.isoformat().replace("+00:00", "Z"), "event_id": event.id, "data": event.payload},
        separators=(",", ":"), default=str,
    ).encode()


def claim_deliveries(rt: Runtime, worker_id: str, limit: int) -> list[str]:
    """Lease up to ``limit`` due deliveries; each is leased by one worker at a time."""
    now = rt.clock.now()
    due = (Delivery.next_attempt_at <= now, Delivery.status == "pending",
           or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
    with rt.db.read() as session:
        if session.scalar(select(Delivery.id).where(*due).limit(1)) is None:
            return []
    with rt.db.write() as session:
        query = select(Delivery.id).where(*due).order_by(Delivery.next_attempt_at).limit(limit)
        if rt.db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        ids = list(session.scalars(query))
        if ids:
            lease = now + timedelta(seconds=rt.settings.lease_seconds + 2 * rt.settings.delivery_timeout)
            session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(lease_owner=worker_id, lease_until=lease))
    return ids


@dataclass
class _Outcome:
    status: int | None = None
    headers: dict[str, str] | None = None
    excerpt: str | None = None
    error: str | None = None
    latency_ms: float = 0.0


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float, policy: OutboundPolicy) -> _Outcome:
    try:
        policy.check(url)
    except OutboundRefused as exc:
        return _Outcome(error=f"refused: {exc}")
    started = time.perf_counter()
    try:
        response = thread_session().post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        return _Outcome(error=f"timed out after {timeout:g}s", latency_ms=(time.perf_counter() - started) * 1000)
    except requests.RequestException as exc:
        return _Outcome(error=f"{exc.__class__.__name__}: {exc}", latency_ms=(time.perf_counter() - started) * 1000)
    latency = (time.perf_counter() - started) * 1000
    return _Outcome(status=response.status_code, headers=dict(response.headers), excerpt=response.text[:EXCERPT_BYTES], latency_ms=latency)


_D, _S, _E = Delivery.__table__, Subscription.__table__, Event.__table__
# Everything one attempt needs, for a batch of claimed deliveries, in one read.
_TO_SEND = (
    select(_D.c.id, _D.c.lease_owner, _D.c.status, _S.c.target_url, _S.c.secret, _S.c.status.label("subscription_status"),
           _S.c.deleted_at, _E.c.id.label("event_id"), _E.c.type, _E.c.created_at, _E.c.payload)
    .select_from(_D.join(_S, _S.c.id == _D.c.subscription_id).join(_E, _E.c.id == _D.c.event_id))
    .where(_D.c.id.in_(bindparam("ids", expanding=True)))
)


def send_deliveries(rt: Runtime, delivery_ids: list[str], worker_id: str, policy: OutboundPolicy) -> dict[str, str]:
    """Make one attempt of each leased delivery, then record all outcomes in one transaction; return new statuses."""
    with rt.db.read() as session:
        rows = [r for r in session.connection().execute(_TO_SEND, {"ids": delivery_ids}) if r.lease_owner == worker_id and r.status == "pending"]
    outcomes: list[tuple[str, _Outcome | None]] = []
    for row in rows:
        if row.subscription_status != ACTIVE or row.deleted_at is not None:
            outcomes.append((row.id, None))
            continue
        body = delivery_body(SimpleNamespace(type=row.type, created_at=row.created_at, id=row.event_id, payload=row.payload))
        headers = {
            **signed_headers(row.secret, row.id, body, timestamp=int(rt.clock.now().timestamp())),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Runbook-Environment": rt.settings.environment,
        }
        outcomes.append((row.id, _post(row.target_url, body, headers, rt.settings.delivery_timeout, policy)))
    if not outcomes:
        return {}
    with rt.db.write() as session:
        return {delivery_id: status for delivery_id, outcome in outcomes
                if (status := _record(rt, session, delivery_id, worker_id, outcome)) is not None}


def _record(rt: Runtime, session: Any, delivery_id: str, worker_id: str, outcome: _Outcome | None) -> str | None:
    """Record one attempt's outcome (None: the subscription is no longer active) in the caller's transaction."""
    settings = rt.settings
    delivery = session.get(Delivery, delivery_id)
    if delivery is None or delivery.lease_owner != worker_id or delivery.status != "pending":
        return None
    now = rt.clock.now()
    delivery.lease_owner = delivery.lease_until = None
    if outcome is None:
        delivery.status = "cancelled"
        delivery.last_error = "the subscription is no longer active"
        delivery.next_attempt_at = None
        delivery.completed_at = now
        wake_flow_job(session, delivery, now)
        session.info[JOBS_DUE] = True
        return delivery.status
    subscription = session.get(Subscription, delivery.subscription_id)
    verdict = classify_response(outcome.status, outcome.headers, error=outcome.error)
    delivery.attempts += 1
    delivery.last_status = outcome.status
    delivery.last_error = outcome.error
    session.add(DeliveryAttempt(delivery_id=delivery.id, attempted_at=now, status_code=outcome.status, latency_ms=round(outcome.latency_ms, 1),
                                outcome=verdict.verdict.value, error=outcome.error, response_excerpt=outcome.excerpt))
    metrics.DELIVERY_ATTEMPTS.labels(verdict.verdict.value).inc()
    if verdict.verdict is Verdict.SUCCESS:
        delivery.status = "succeeded"
        delivery.next_attempt_at = None
        delivery.completed_at = now
        if subscription.failure_streak:
            subscription.failure_streak = 0
    elif verdict.verdict is Verdict.GONE:
        delivery.status = "gone"
        delivery.next_attempt_at = None
        delivery.completed_at = now
        _end_subscription(session, subscription, now, deleted=True, reason=f"{describe_target(subscription)} answered 410 Gone")
    elif delivery.attempts < settings.delivery_max_attempts:
        delay = compute_backoff(delivery.attempts, base=settings.delivery_backoff_base, max_delay=settings.delivery_backoff_max,
                                jitter=DEFAULT_DELIVERY_JITTER)
        if verdict.retry_after is not None:
            delay = max(delay, min(verdict.retry_after, settings.delivery_backoff_max))
        delivery.next_attempt_at = now + timedelta(seconds=delay)
    else:
        delivery.status = "failed"
        delivery.next_attempt_at = None
        delivery.completed_at = now
        subscription.failure_streak += 1
        if subscription.failure_streak >= settings.subscription_failure_limit and subscription.status == ACTIVE:
            _end_subscription(session, subscription, now, deleted=False,
                              reason=f"{subscription.failure_streak} deliveries in a row failed for good; last: {verdict.reason}")
    if delivery.status != "pending":
        wake_flow_job(session, delivery, now)
        session.info[JOBS_DUE] = True
    return delivery.status


def _end_subscription(session: Any, subscription: Subscription, now: datetime, *, deleted: bool, reason: str) -> None:
    """Disable (or, after 410 Gone, remove) a subscription and give up its pending deliveries."""
    if deleted:
        subscription.deleted_at = now
        subscription.status = "deleted"
    else:
        subscription.status = "disabled"
    subscription.disabled_at = now
    subscription.disabled_reason = reason
    pending = list(session.scalars(select(Delivery).where(Delivery.subscription_id == subscription.id, Delivery.status == "pending")))
    for other in pending:
        other.status = "cancelled"
        other.last_error = f"subscription {subscription.status}: {reason}"
        other.next_attempt_at = None
        other.completed_at = now
        wake_flow_job(session, other, now)
    emit_workspace(session, subscription.workspace_id, "subscription.disabled", now,
                   {"subscription": {"id": subscription.id, "target_url": subscription.target_url, "status": subscription.status},
                    "reason": reason})


class DeliveryWorker(LeasedWorker):
    """Claim due deliveries and send them, a batch per thread at a time."""

    role = "delivery-worker"
    leased = Delivery
    signal_key = DELIVERIES_DUE
    loop_batch = DEFAULT_CLAIM_BATCH

    def default_threads(self, rt: Runtime) -> int:
        """RUNBOOK_MANAGER_DELIVERY_THREADS."""
        return rt.settings.delivery_threads

    def claim(self, limit: int) -> list[str]:
        """Lease due deliveries."""
        return claim_deliveries(self.rt, self.worker_id, limit)

    def process(self, ids: list[str]) -> None:
        """Attempt each delivery once and record the outcomes."""
        try:
            send_deliveries(self.rt, ids, self.worker_id, self.policy)
        except Exception:  # noqa: BLE001 - a broken delivery must not stop the worker; its lease expires and it is retried
            log.exception("deliveries %s failed unexpectedly", ", ".join(ids))
