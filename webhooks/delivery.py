"""The delivery worker: claims due deliveries, POSTs them signed, records every attempt, retries with backoff.

Failures are recorded and retried, never raised into the caller (a failed
delivery never breaks a job). This module uses the runner's models; the pure
signing and classifying it relies on do not.

Each worker thread claims a batch, sends it through its own small pool of
senders (each with its own kept-alive connections: ``webhooks.sender``), and
records the answers in one transaction: successes, the common case, with a
few prebuilt statements; everything else through the ORM, one delivery at a
time.
"""
from __future__ import annotations

import codecs
import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, or_, select, update

from runner import metrics
from runner.db import insert_rows
from runner.engine.events import emit_workspace
from runner.engine.worker import LeasedWorker
from runner.models import Delivery, DeliveryAttempt, Event, Subscription
from runner.runtime import DELIVERIES_DUE, JOBS_DUE, Runtime

from .backoff import compute_backoff
from .classify import Classification, Verdict, classify_response
from .fanout import ACTIVE, RUNBOOK_INVOKED, WAKE_FLOW_JOBS, describe_target, wake_flow_job
from .outbound import SEND_ERRORS, OutboundPolicy, OutboundRefused, describe_send_error
from .sender import post
from .signing import signed_headers

__all__ = ["DeliveryWorker", "claim_deliveries", "send_deliveries", "delivery_body"]

log = logging.getLogger(__name__)

# Bytes of a receiver's answer kept with each attempt.
EXCERPT_BYTES = 512
# Deliveries one thread claims at a time (sent concurrently by its senders; leases are renewed by the heartbeat).
DEFAULT_CLAIM_BATCH = 32
# Requests one worker thread has in flight at once: bounds the connections (and threads) a batch may use.
DEFAULT_SENDERS = 8
# Seconds a batch waits, after an answer comes in, for the rest before recording the answers in so far (so a slow
# receiver holds up recording the others' answers, and the flow-backed jobs waiting on them, this long at most).
DEFAULT_RECORD_EARLY_AFTER = 1.0
# Jitter of delivery retry delays (fraction of the delay).
DEFAULT_DELIVERY_JITTER = 0.2
USER_AGENT = "runbook-manager-webhooks/1"
_CHARSET = re.compile(r"charset=[\"']?([\w.:-]+)", re.IGNORECASE)


def delivery_body(event: Any) -> bytes:
    """The JSON a subscriber receives for an event (Standard Webhooks shape: type, timestamp, data)."""
    return json.dumps(
        {"type": event.type, "timestamp": event.created_at.isoformat().replace("+00:00", "Z"), "event_id": event.id, "data": event.payload},
        separators=(",", ":"), default=str,
    ).encode()


_D, _S, _E, _A = (model.__table__ for model in (Delivery, Subscription, Event, DeliveryAttempt))

# Built once: claiming runs several times per batch of deliveries.
_DUE = (_D.c.next_attempt_at <= bindparam("now"), _D.c.status == "pending",
        or_(_D.c.lease_until.is_(None), _D.c.lease_until < bindparam("now")))
# In due order, as claiming reads them: PostgreSQL then walks ix_deliveries_pending even before it has statistics of a
# grown table, where without an order it may guess that a scan of every delivery would soon meet a due one.
_ANY_DUE = select(_D.c.id).where(*_DUE).order_by(_D.c.next_attempt_at).limit(1)
_OLDEST_DUE = select(_D.c.id).where(*_DUE).order_by(_D.c.next_attempt_at).limit(bindparam("limit"))


def _lease_statement(oldest_due: Any) -> Any:
    return (update(_D).where(_D.c.id.in_(oldest_due.scalar_subquery()))
            .values(lease_owner=bindparam("worker"), lease_until=bindparam("lease")).returning(_D.c.id))


_LEASE = _lease_statement(_OLDEST_DUE)
# PostgreSQL: workers skip the rows another is leasing instead of queueing behind its lock.
_LEASE_SKIP_LOCKED = _lease_statement(_OLDEST_DUE.with_for_update(skip_locked=True))


def claim_deliveries(rt: Runtime, worker_id: str, limit: int, *, probe: bool = True) -> list[str]:
    """Lease up to ``limit`` due deliveries; each is leased by one worker at a time.

    With ``probe``, a read looks first whether anything is due, so that idle
    workers do not queue for the (SQLite: store-wide) write lock.
    """
    now = rt.clock.now()
    if probe:
        with rt.db.read() as session:
            if session.connection().execute(_ANY_DUE, {"now": now}).first() is None:
                return []
    lease = now + timedelta(seconds=rt.settings.lease_seconds + 2 * rt.settings.delivery_timeout)
    statement = _LEASE_SKIP_LOCKED if rt.db.is_postgres else _LEASE
    with rt.db.write() as session:
        return list(session.connection().execute(statement, {"now": now, "limit": limit, "worker": worker_id, "lease": lease}).scalars())


@dataclass
class _Outcome:
    status: int | None = None
    headers: dict[str, str] | None = None
    excerpt: str | None = None
    error: str | None = None
    latency_ms: float = 0.0


def _excerpt(content: bytes, content_type: str | None) -> str:
    """The start of an answer as text, decoded with the charset it declares (UTF-8 when none), undecodable bytes replaced."""
    match = _CHARSET.search(content_type or "")
    try:
        decoder = codecs.getincrementaldecoder(match.group(1) if match else "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(content[:EXCERPT_BYTES * 4])[:EXCERPT_BYTES]


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float, policy: OutboundPolicy) -> _Outcome:
    try:
        addresses = policy.check(url)
    except OutboundRefused as exc:
        return _Outcome(error=f"refused: {exc}")
    started = time.perf_counter()
    try:
        answer = post(url, body, headers, timeout=timeout, addresses=addresses)
    except SEND_ERRORS as exc:
        return _Outcome(error=describe_send_error(exc, timeout), latency_ms=(time.perf_counter() - started) * 1000)
    latency = (time.perf_counter() - started) * 1000
    return _Outcome(status=answer.status, headers=answer.headers, excerpt=_excerpt(answer.body, answer.header("Content-Type")), latency_ms=latency)


# Everything one attempt needs, for a batch of claimed deliveries, in one read.
_TO_SEND = (
    select(_D.c.id, _D.c.lease_owner, _D.c.status, _S.c.target_url, _S.c.secret, _S.c.status.label("subscription_status"),
           _S.c.deleted_at, _E.c.id.label("event_id"), _E.c.type, _E.c.created_at, _E.c.payload)
    .select_from(_D.join(_S, _S.c.id == _D.c.subscription_id).join(_E, _E.c.id == _D.c.event_id))
    .where(_D.c.id.in_(bindparam("ids", expanding=True)))
)


def _fair_order(rows: list[Any]) -> list[Any]:
    """Interleave the rows by target, so that a receiver with many deliveries due does not take every sender first."""
    by_target: dict[str, list[Any]] = {}
    for row in rows:
        by_target.setdefault(row.target_url, []).append(row)
    if len(by_target) < 2:
        return rows
    queues = [iter(queue) for queue in by_target.values()]
    ordered: list[Any] = []
    while queues:
        for queue in list(queues):
            row = next(queue, None)
            if row is None:
                queues.remove(queue)
            else:
                ordered.append(row)
    return ordered


def send_deliveries(rt: Runtime, delivery_ids: list[str], worker_id: str, policy: OutboundPolicy, *,
                    senders: Executor | None = None, record_early_after: float = DEFAULT_RECORD_EARLY_AFTER) -> dict[str, str]:
    """Make one attempt of each leased delivery (concurrently through ``senders`` if given), record the outcomes; return new statuses.

    Outcomes are recorded in one transaction when every answer comes in
    within ``record_early_after`` seconds of the first; otherwise the answers
    already in are recorded without waiting for the stragglers.
    """
    with rt.db.read() as session:
        rows = [r for r in session.connection().execute(_TO_SEND, {"ids": delivery_ids}) if r.lease_owner == worker_id and r.status == "pending"]
    ready: list[tuple[str, _Outcome | None]] = []
    to_send: list[tuple[str, str, bytes, dict[str, str]]] = []
    for row in _fair_order(rows):
        if row.subscription_status != ACTIVE or row.deleted_at is not None:
            ready.append((row.id, None))
            continue
        body = delivery_body(SimpleNamespace(type=row.type, created_at=row.created_at, id=row.event_id, payload=row.payload))
        headers = {
            **signed_headers(row.secret, row.id, body, timestamp=int(rt.clock.now().timestamp())),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Runbook-Environment": rt.settings.environment,
        }
        to_send.append((row.id, row.target_url, body, headers))
    timeout = rt.settings.delivery_timeout
    if senders is None or len(to_send) < 2:
        ready += [(delivery_id, _post(url, body, headers, timeout, policy)) for delivery_id, url, body, headers in to_send]
        return _record_all(rt, worker_id, ready)
    futures = {senders.submit(_post, url, body, headers, timeout, policy): delivery_id for delivery_id, url, body, headers in to_send}
    statuses: dict[str, str] = {}
    pending: set[Future[_Outcome]] = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        if pending:
            more, pending = wait(pending, timeout=record_early_after)
            done |= more
        statuses |= _record_all(rt, worker_id, ready + _results(futures, done))
        ready = []
    return statuses


def _results(futures: dict[Future[_Outcome], str], done: Iterable[Future[_Outcome]]) -> list[tuple[str, _Outcome]]:
    """(delivery id, outcome) of each finished send; a send that raised is left to its lease expiring, and logged."""
    results = []
    for future in done:
        try:
            results.append((futures[future], future.result()))
        except Exception:  # noqa: BLE001 - _post turns request errors into outcomes; anything else is a bug, retried after the lease
            log.exception("sending delivery %s failed unexpectedly", futures[future])
    return results


def _record_all(rt: Runtime, worker_id: str, outcomes: list[tuple[str, _Outcome | None]]) -> dict[str, str]:
    """Record the outcomes in one transaction: successes in bulk, then the rest one by one; return the new statuses."""
    if not outcomes:
        return {}
    succeeded: dict[int, list[tuple[str, _Outcome]]] = {}
    others: list[tuple[str, _Outcome | None, Classification | None]] = []
    for delivery_id, outcome in outcomes:
        verdict = None if outcome is None else classify_response(outcome.status, outcome.headers, error=outcome.error)
        if verdict is not None and verdict.verdict is Verdict.SUCCESS:
            succeeded.setdefault(outcome.status, []).append((delivery_id, outcome))
        else:
            others.append((delivery_id, outcome, verdict))
    # What may end a subscription (and so cancel its other pending deliveries) goes last, after their attempts are logged.
    others.sort(key=lambda item: _RECORD_ORDER[item[2].verdict if item[2] else None])
    with rt.db.write() as session:
        statuses = dict.fromkeys(_record_successes(rt, session, worker_id, succeeded), "succeeded")
        for delivery_id, outcome, verdict in others:
            if (status := _record(rt, session, delivery_id, worker_id, outcome, verdict)) is not None:
                statuses[delivery_id] = status
    return statuses


_RECORD_ORDER = {None: 0, Verdict.RETRY: 1, Verdict.GIVE_UP: 2, Verdict.GONE: 3, Verdict.SUCCESS: 4}

# Built once: the common case, a batch of answers in the 2xx range.
_SUCCEED = (
    update(_D)
    .where(_D.c.id.in_(bindparam("ids", expanding=True)), _D.c.lease_owner == bindparam("worker"), _D.c.status == "pending")
    .values(status="succeeded", attempts=_D.c.attempts + 1, last_status=bindparam("status_code"), last_error=None,
            next_attempt_at=None, completed_at=bindparam("now"), lease_owner=None, lease_until=None)
    .returning(_D.c.id, _D.c.subscription_id, _D.c.event_type, _D.c.job_id)
)
_RESET_STREAKS = update(_S).where(_S.c.id.in_(bindparam("ids", expanding=True)), _S.c.failure_streak != 0).values(failure_streak=0)


def _record_successes(rt: Runtime, session: Any, worker_id: str, by_status: dict[int, list[tuple[str, _Outcome]]]) -> list[str]:
    """Mark succeeded, log the attempts of, and reset the failure streaks behind the deliveries still leased; return their ids."""
    if not by_status:
        return []
    connection = session.connection()
    now = rt.clock.now()
    attempts: list[dict[str, Any]] = []
    subscription_ids: set[str] = set()
    flow_job_ids: set[int] = set()
    for status_code, batch in by_status.items():
        outcomes = dict(batch)
        for row in connection.execute(_SUCCEED, {"ids": list(outcomes), "worker": worker_id, "status_code": status_code, "now": now}):
            outcome = outcomes[row.id]
            attempts.append({"delivery_id": row.id, "attempted_at": now, "status_code": status_code, "latency_ms": round(outcome.latency_ms, 1),
                             "outcome": Verdict.SUCCESS.value, "error": None, "response_excerpt": outcome.excerpt})
            subscription_ids.add(row.subscription_id)
            if row.event_type == RUNBOOK_INVOKED and row.job_id is not None:
                flow_job_ids.add(row.job_id)
    if not attempts:
        return []
    insert_rows(connection, _A, attempts)
    connection.execute(_RESET_STREAKS, {"ids": sorted(subscription_ids)})
    if flow_job_ids:
        connection.execute(WAKE_FLOW_JOBS, {"ids": sorted(flow_job_ids), "now": now})
        session.info[JOBS_DUE] = True
    metrics.DELIVERY_ATTEMPTS.labels(Verdict.SUCCESS.value).inc(len(attempts))
    return [attempt["delivery_id"] for attempt in attempts]


def _record(rt: Runtime, session: Any, delivery_id: str, worker_id: str, outcome: _Outcome | None,
            verdict: Classification | None = None) -> str | None:
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
    verdict = verdict or classify_response(outcome.status, outcome.headers, error=outcome.error)
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
    """Claim due deliveries and send them, a batch per thread at a time, each batch through the thread's senders."""

    role = "delivery-worker"
    leased = Delivery
    signal_key = DELIVERIES_DUE
    loop_batch = DEFAULT_CLAIM_BATCH
    record_early_after = DEFAULT_RECORD_EARLY_AFTER

    def __init__(self, rt: Runtime, *, senders: int = DEFAULT_SENDERS, **options: Any) -> None:
        super().__init__(rt, **options)
        self.senders = senders
        self._pools: dict[int, ThreadPoolExecutor] = {}
        self._pools_lock = threading.Lock()

    def default_threads(self, rt: Runtime) -> int:
        """RUNBOOK_MANAGER_DELIVERY_THREADS."""
        return rt.settings.delivery_threads

    def claim(self, limit: int) -> list[str]:
        """Lease due deliveries."""
        return claim_deliveries(self.rt, self.worker_id, limit)

    def process(self, ids: list[str]) -> None:
        """Attempt each delivery once and record the outcomes."""
        try:
            send_deliveries(self.rt, ids, self.worker_id, self.policy, senders=self._senders(), record_early_after=self.record_early_after)
        except Exception:  # noqa: BLE001 - a broken delivery must not stop the worker; its lease expires and it is retried
            log.exception("deliveries %s failed unexpectedly", ", ".join(ids))

    def _senders(self) -> ThreadPoolExecutor | None:
        """The calling thread's pool of senders (None when one sender is asked for)."""
        if self.senders < 2:
            return None
        key = threading.get_ident()
        pool = self._pools.get(key)
        if pool is None:
            with self._pools_lock:
                pool = self._pools[key] = ThreadPoolExecutor(self.senders, thread_name_prefix=f"{self.role}-sender")
        return pool

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the work under way finishes, then let the senders go."""
        super().stop(timeout)
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False)
