"""Creating many jobs at once: what a burst of cron ticks needs, at a fraction of the cost of one by one.

``create_many`` gives every request the job ``create_or_stop`` would give it
(same row, the same ``job.created`` and ``runbook.invoked`` events, the same
audit entry, the same wake-up of the workers), but checks each runbook once,
looks the Idempotency-Keys of the whole batch up in one query and inserts the
new jobs in one executemany. Events and audit entries are queued as usual and
written in one statement each when the transaction commits. A request the
fast path cannot vouch for (a runbook that cannot run, a call tree that does
not resolve, parameters that no longer validate, a reused key with another
body) goes through ``create_or_stop`` itself, so it ends as it would have
alone: stopped, with the reason.

Most of that work depends only on the request and the runbook's current
version, so ``prepare_many`` does it ahead of time (the scheduler does,
seconds before a burst of ticks): each request gets a ``Draft``, its job's
row and the JSON of its events and audit entry, all but the ids and
timestamps. ``create_many`` takes a draft as it is when its request and the
runbook it was checked against are unchanged, and does the work again
otherwise.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ..db import encoded
from ..errors import Conflict, InvalidInput, NotFound
from ..models import Job
from ..runtime import Runtime
from ..services.params import validate_values
from .invoke import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    CreatedDocuments,
    JobRequest,
    RunbookHead,
    check_runnable,
    create_or_stop,
    created_documents,
    find_runbook,
    insert_jobs,
    job_row,
    pin_call_tree,
    request_hash,
)

__all__ = ["Draft", "create_many", "earlier_jobs", "prepare_many"]

# Idempotency-Keys (or uuids) looked up per query.
DEFAULT_KEY_CHUNK = 500
# Validated parameters kept per process (about half a kilobyte each); the memory is emptied when it is full.
DEFAULT_VALIDATED_CACHE = 20_000

_JOBS = Job.__table__
# The keys are rendered inline: PostgreSQL then plans with the values (a hashed IN, or the unique index) instead
# of reusing, once psycopg prepared the statement, a generic plan that compares every row with every parameter.
_EARLIER = select(_JOBS.c.idempotency_key, _JOBS.c.uuid, _JOBS.c.request_hash).where(
    _JOBS.c.workspace_id == bindparam("workspace_id"),
    _JOBS.c.idempotency_key.in_(bindparam("keys", expanding=True, literal_execute=True)))


@dataclass(frozen=True)
class _Runnable:
    """A runbook that passed every check of invoking it: what its jobs share."""

    runbook: RunbookHead
    pins: dict[str, int]
    # Identifies the parameters schema, so values validated against it once need not be validated again.
    schema_key: bytes


# Parameters that passed validation, by (schema, request fingerprint): validating is a pure function of the two,
# and costs tens of microseconds, so a schedule's values are checked once, ahead of its first burst, not at every fire.
_validated: dict[tuple[bytes, str], dict[str, Any]] = {}
_validated_lock = threading.Lock()


class _Checks:
    """The checks of invoking, done once per runbook and once per (schema, parameters) for a batch of requests."""

    def __init__(self, rt: Runtime, session: Session) -> None:
        self.rt, self.session = rt, session
        self._runnable: dict[tuple[int, str, bool], _Runnable | None] = {}

    def runnable(self, request: JobRequest) -> _Runnable | None:
        """The runbook a request invokes, if it may run now; None when the request must go the slow way (which explains why)."""
        key = request.idempotency_key
        if key and len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            return None
        target = (request.workspace_id, request.runbook_ref, request.require_callable)
        if target not in self._runnable:
            self._runnable[target] = self._check(request)
        return self._runnable[target]

    def _check(self, request: JobRequest) -> _Runnable | None:
        try:
            runbook = find_runbook(self.session, request.workspace_id, request.runbook_ref)
            check_runnable(self.rt, runbook, require_callable=request.require_callable)
            pins = pin_call_tree(self.rt, self.session, runbook)
        except (NotFound, Conflict, InvalidInput):
            return None
        schema = json.dumps(runbook.body["parameters"], sort_keys=True, default=str)
        return _Runnable(runbook, pins, hashlib.blake2b(schema.encode(), digest_size=16).digest())

    @staticmethod
    def fingerprint(checked: _Runnable, request: JobRequest) -> str:
        """The request hash ``create_job`` stores with an Idempotency-Key."""
        extra = {"change_ref": request.change_ref, "incident_ref": request.incident_ref}
        return request_hash(checked.runbook.key, request.parameters, extra)

    @staticmethod
    def parameters(checked: _Runnable, request: JobRequest, fingerprint: str) -> dict[str, Any] | None:
        """The request's parameters with defaults applied, or None when they do not validate (read-only: shared by the cache)."""
        key = (checked.schema_key, fingerprint)
        known = _validated.get(key)
        if known is not None:
            return known
        try:
            parameters = validate_values(checked.runbook.body["parameters"], request.parameters)
        except InvalidInput:
            return None
        with _validated_lock:
            if len(_validated) >= DEFAULT_VALIDATED_CACHE:
                _validated.clear()
            _validated[key] = parameters
        return parameters


@dataclass(frozen=True)
class Draft:
    """A request's job made ahead of time: ``create_many`` stamps it and inserts it, if nothing it depends on changed."""

    request: JobRequest
    # The checks it passed (the runbook's version, the pinned call tree, the parameters' schema).
    checked: _Runnable
    fingerprint: str
    # The job's row (a ``job_row`` without its timestamps) with its JSON columns encoded.
    row: dict[str, Any]
    # Its ``created_documents``, encoded.
    documents: CreatedDocuments


def earlier_jobs(session: Session, requests: Sequence[JobRequest]) -> dict[tuple[int, str], tuple[str, str | None]]:
    """``(workspace, Idempotency-Key) -> (uuid, request hash)`` of the jobs the keys of ``requests`` already made."""
    keys: dict[int, set[str]] = {}
    for request in requests:
        if request.idempotency_key:
            keys.setdefault(request.workspace_id, set()).add(request.idempotency_key)
    found: dict[tuple[int, str], tuple[str, str | None]] = {}
    connection = session.connection()
    for workspace_id, wanted in keys.items():
        ordered = sorted(wanted)
        for first in range(0, len(ordered), DEFAULT_KEY_CHUNK):
            rows = connection.execute(_EARLIER, {"workspace_id": workspace_id, "keys": ordered[first:first + DEFAULT_KEY_CHUNK]})
            found.update({(workspace_id, key): (job_uuid, digest) for key, job_uuid, digest in rows})
    return found


def _row(rt: Runtime, checked: _Runnable, request: JobRequest, fingerprint: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The row of the job a checked request creates, without its timestamps."""
    runbook = checked.runbook
    key = request.idempotency_key
    return job_row(rt, runbook=runbook, version_id=runbook.version_id, version=runbook.version, parameters=parameters,
                   trigger=request.trigger, pins=checked.pins, now=None, idempotency_key=key,
                   request_digest=fingerprint if key else None, change_ref=request.change_ref, incident_ref=request.incident_ref)


def prepare_many(rt: Runtime, session: Session, requests: Sequence[JobRequest]) -> list[Draft | None]:
    """Make ahead of time what ``create_many`` will need for these requests; None for a request it must handle the slow way."""
    checks = _Checks(rt, session)
    drafts: list[Draft | None] = []
    for request in requests:
        checked = checks.runnable(request)
        if checked is None:
            drafts.append(None)
            continue
        fingerprint = checks.fingerprint(checked, request)
        parameters = checks.parameters(checked, request, fingerprint)
        if parameters is None:
            drafts.append(None)
            continue
        row = _row(rt, checked, request, fingerprint, parameters)
        documents = tuple(encoded(document) for document in created_documents(SimpleNamespace(**row), request.trigger))
        row["parameters"], row["pins"] = encoded(parameters), encoded(checked.pins)
        drafts.append(Draft(request, checked, fingerprint, row, documents))
    return drafts


def create_many(rt: Runtime, session: Session, requests: Sequence[JobRequest], *, drafts: Sequence[Draft | None] = (),
                earlier: dict[tuple[int, str], tuple[str, str | None]] | None = None) -> list[str]:
    """Create the job of each request as ``create_or_stop`` would, in ``session``; return their uuids in request order.

    ``drafts`` (by request, from ``prepare_many``) are taken where still valid;
    ``earlier`` is what ``earlier_jobs`` found for these requests, if the caller looked already.
    """
    uuids: list[str | None] = [None] * len(requests)
    slow: list[int] = []
    if earlier is None:
        earlier = earlier_jobs(session, requests)
    checks = _Checks(rt, session)
    # Whether a draft's checks are the ones just done: compared once per pair, not per request.
    still: dict[tuple[int, int], bool] = {}
    # Requests that share a key with one before them in the batch: they get that one's job, as they would one by one.
    repeats: list[tuple[int, int]] = []
    claimed: dict[tuple[int, str], tuple[int, str]] = {}
    rows: list[dict[str, Any]] = []
    made: list[JobRequest] = []
    documents: list[CreatedDocuments | None] = []
    for index, request in enumerate(requests):
        key = request.idempotency_key
        checked = checks.runnable(request)
        if checked is None:
            slow.append(index)
            continue
        draft = drafts[index] if index < len(drafts) else None
        if draft is not None:
            pair = (id(draft.checked), id(checked))
            if pair not in still:
                still[pair] = draft.checked == checked
            if not still[pair] or (draft.request is not request and draft.request != request):
                draft = None
        fingerprint = draft.fingerprint if draft is not None else checks.fingerprint(checked, request)
        if key and (request.workspace_id, key) in earlier:
            job_uuid, digest = earlier[(request.workspace_id, key)]
            if digest == fingerprint:
                uuids[index] = job_uuid
            else:
                slow.append(index)
            continue
        if key and (request.workspace_id, key) in claimed:
            first, digest = claimed[(request.workspace_id, key)]
            if digest == fingerprint:
                repeats.append((index, first))
            else:
                slow.append(index)
            continue
        if draft is not None:
            rows.append(dict(draft.row))
            documents.append(draft.documents)
        else:
            parameters = checks.parameters(checked, request, fingerprint)
            if parameters is None:
                slow.append(index)
                continue
            rows.append(_row(rt, checked, request, fingerprint, parameters))
            documents.append(None)
        if key:
            claimed[(request.workspace_id, key)] = (index, fingerprint)
        uuids[index] = rows[-1]["uuid"]
        made.append(request)
    if rows:
        _insert(rt, session, rows, made, documents)
    for index, first_index in repeats:
        uuids[index] = uuids[first_index]
    for index in slow:
        uuids[index] = create_or_stop(rt, session, requests[index]).uuid
    return [job_uuid for job_uuid in uuids if job_uuid is not None]  # every request has its job by now


def _insert(rt: Runtime, session: Session, rows: list[dict[str, Any]], requests: list[JobRequest],
            documents: list[CreatedDocuments | None]) -> None:
    """Insert queued jobs, queue their first two events and their audit entries, and wake the workers at commit."""
    # Stamped when the checks are done, just before the insert, as one by one would.
    now = rt.clock.now()
    for values in rows:
        values["created_at"] = values["next_run_at"] = now
    insert_jobs(rt, session, rows, [request.trigger for request in requests], now, documents)
