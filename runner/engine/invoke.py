"""Creating jobs: checks, parameter validation, idempotency, lineage and the pinned call tree."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid as uuidlib
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, insert, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from ..db import insert_rows
from ..errors import Conflict, InvalidInput, NotFound, RunnerError
from ..models import Job, Runbook, RunbookStatus
from ..runtime import JOBS_DUE, Runtime
from ..services import audit
from ..services.params import validate_values
from ..services.runbooks import KEY_RE
from .events import job_data, record_payload
from .states import JobStatus
from .versions import load_body, load_version

__all__ = ["MAX_IDEMPOTENCY_KEY_LENGTH", "Trigger", "JobRequest", "RunbookHead", "create_job", "create_child", "create_or_stop",
           "pin_call_tree", "request_hash", "find_runbook", "check_runnable", "new_job_uuid", "job_row", "created_documents",
           "record_created", "insert_jobs"]

TRIGGER_KINDS = ("api", "webhook", "schedule", "runbook", "person")
# Longest Idempotency-Key a job can keep (the width of jobs.idempotency_key).
MAX_IDEMPOTENCY_KEY_LENGTH = 200


@dataclass(frozen=True)
class Trigger:
    """Who or what starts a job."""

    kind: str
    actor: str
    ref: str | None = None


@dataclass(frozen=True)
class JobRequest:
    workspace_id: int
    runbook_ref: str
    parameters: Any
    trigger: Trigger
    idempotency_key: str | None = None
    change_ref: str | None = None
    incident_ref: str | None = None
    # Persons may execute any published runbook; flows, webhooks and other runbooks only callable ones.
    require_callable: bool = True
    # A worker that will drive the job itself right away (an invocation with ``wait``): the job is created leased to it.
    driver: str | None = None


def request_hash(runbook_ref: str, parameters: Any, extra: dict[str, Any] | None = None) -> str:
    """Fingerprint an invocation so a reused Idempotency-Key can be matched to its body."""
    raw = json.dumps({"runbook": runbook_ref, "parameters": parameters, **(extra or {})}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class RunbookHead:
    """What invoking needs to know of a runbook: identity, lifecycle, and the body of its current version."""

    id: int
    workspace_id: int
    key: str
    name: str
    status: str
    callable: bool
    version: int
    version_id: int
    body: dict[str, Any]


_RUNBOOKS = Runbook.__table__
_HEAD = select(_RUNBOOKS.c.id, _RUNBOOKS.c.workspace_id, _RUNBOOKS.c.key, _RUNBOOKS.c.name, _RUNBOOKS.c.status,
               _RUNBOOKS.c.callable, _RUNBOOKS.c.version, _RUNBOOKS.c.version_id)
# Built once: invoking is the hot path, and a statement built per call costs more than running it.
_HEAD_BY_KEY = _HEAD.where(_RUNBOOKS.c.workspace_id == bindparam("workspace_id"), _RUNBOOKS.c.key == bindparam("ref"))
_HEAD_BY_NAME = _HEAD.where(_RUNBOOKS.c.workspace_id == bindparam("workspace_id"), _RUNBOOKS.c.name == bindparam("ref"))
_JOBS = Job.__table__
_INSERT_JOB = insert(_JOBS).returning(_JOBS.c.id)
# Many jobs: a plain executemany, then the ids by uuid. INSERT ... RETURNING of many rows is one huge statement that
# psycopg re-parses per page (about 0.2 ms of CPU per job), and without a sentinel column SQLite would sort it one row
# at a time. The uuids are rendered inline: PostgreSQL then plans with the values instead of reusing, once psycopg
# prepared the statement, a generic plan that compares every row with every parameter.
_IDS = select(_JOBS.c.uuid, _JOBS.c.id).where(_JOBS.c.uuid.in_(bindparam("uuids", expanding=True, literal_execute=True)))
# Uuids looked up per query.
DEFAULT_UUID_CHUNK = 500
# Key in ``session.info``: the jobs created in the transaction.
_NEW_JOBS = "rbm_new_jobs"
# Every column of a job, unset: what a new job's row leaves out (started_at, message, ...) reads as None.
_UNSET = dict.fromkeys(_JOBS.columns.keys())
_JOB_CLASS = inspect(Job).class_manager


def find_runbook(reader: Session | Connection, workspace_id: int, ref: str) -> RunbookHead:
    """The runbook ``ref`` (a key or a name) of the workspace, read with a session or a connection."""
    statement = _HEAD_BY_KEY if KEY_RE.match(ref) else _HEAD_BY_NAME
    connection = reader.connection() if isinstance(reader, Session) else reader
    row = connection.execute(statement, {"workspace_id": workspace_id, "ref": ref}).first()
    if row is None:
        raise NotFound(f"runbook {ref!r} not found")
    return RunbookHead(*row, body=load_body(reader, row.version_id))


def check_runnable(rt: Runtime, runbook: RunbookHead, *, require_callable: bool, via: str = "") -> None:
    env = rt.settings.environment
    if runbook.status == RunbookStatus.ARCHIVED.value:
        raise Conflict(f"runbook {runbook.key} ({runbook.name}) is archived and cannot run{via}", current_status=runbook.status)
    if runbook.status != RunbookStatus.PUBLISHED.value:
        raise Conflict(f"runbook {runbook.key} ({runbook.name}) is a {runbook.status}; publish it before running it{via}",
                       current_status=runbook.status)
    if require_callable and not runbook.callable:
        raise Conflict(
            f"runbook {runbook.key} ({runbook.name}) is not callable{via}: configure its Runbook Action trigger "
            "(set callable to true) so flows, runbooks and webhooks may invoke it",
            current_status=runbook.status,
        )
    allowed_envs = runbook.body.get("environments")
    if allowed_envs and env not in allowed_envs:
        raise Conflict(
            f"runbook {runbook.key} ({runbook.name}) may run only in {', '.join(allowed_envs)}; this runner serves {env}{via}",
            current_status=runbook.status,
        )


def pin_call_tree(rt: Runtime, session: Session | Connection, root: RunbookHead, *, start_depth: int = 0) -> dict[str, int]:
    """Fix the version of every runbook the root may call, refusing cycles, depth overruns and forbidden calls.

    Returns ``{str(runbook_id): runbook_version_id}``.
    """
    max_depth = rt.settings.max_call_depth
    pins: dict[str, int] = {}

    def visit(runbook: RunbookHead, path: list[RunbookHead], depth: int) -> None:
        pins[str(runbook.id)] = runbook.version_id
        for step in runbook.body["steps"]:
            action = step["action"]
            if action["type"] != "runbook":
                continue
            ref = action["runbook"]
            where = f" (step {step['order']} of {runbook.key})"
            try:
                child = find_runbook(session, runbook.workspace_id, ref)
            except NotFound:
                raise InvalidInput(f"runbook {runbook.key} calls {ref!r}{where}, which does not exist",
                                   errors=[{"field": "runbook", "message": "unknown child runbook", "value": ref}]) from None
            chain = " → ".join(r.key for r in [*path, runbook, child])
            if any(r.id == child.id for r in [*path, runbook]):
                raise InvalidInput(f"runbook call cycle: {chain}", errors=[{"field": "runbook", "message": "call cycle", "value": chain}])
            if depth + 1 > max_depth:
                raise InvalidInput(
                    f"runbook calls nest deeper than the maximum of {max_depth} (RUNBOOK_MANAGER_MAX_CALL_DEPTH): {chain}",
                    errors=[{"field": "runbook", "message": "call depth exceeded", "value": chain}],
                )
            try:
                check_runnable(rt, child, require_callable=True, via=where)
            except Conflict as exc:
                raise InvalidInput(exc.detail, errors=[{"field": "runbook", "message": "child not runnable", "value": ref}]) from None
            callers = child.body.get("allowed_callers")
            if callers and runbook.key not in callers and runbook.name not in callers:
                raise InvalidInput(
                    f"runbook {child.key} ({child.name}) may be called only by {', '.join(callers)}, not by {runbook.key}{where}",
                    errors=[{"field": "runbook", "message": "caller not allowed", "value": runbook.key}],
                )
            visit(child, [*path, runbook], depth + 1)

    visit(root, [], start_depth)
    return pins


def new_job_uuid(at_ms: int | None = None) -> str:
    """A new job's UUID: version 7 (RFC 9562), the creation time in milliseconds (``at_ms``, else now) and 74 random bits.

    Time-ordered UUIDs go into the jobs' unique index next to the last ones,
    where random ones would each touch a page anywhere in it: with a million
    jobs stored, writing a batch of new ones then costs a few pages, not one
    per job.
    """
    ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | 0x7 << 76  # version 7
    value = (value & ~(0x3 << 62)) | 0x2 << 62  # the RFC's variant
    return str(uuidlib.UUID(int=value))


def job_row(rt: Runtime, *, runbook: RunbookHead, version_id: int, version: int, parameters: dict[str, Any], trigger: Trigger,
            pins: dict[str, int], now: datetime | None, parent: Job | None = None, parent_step: int | None = None,
            idempotency_key: str | None = None, request_digest: str | None = None, change_ref: str | None = None,
            incident_ref: str | None = None, lease: tuple[str, datetime] | None = None) -> dict[str, Any]:
    """The row of a new queued job, due at ``now`` (its creation time).

    ``lease`` (owner, until) hands the new job straight to the worker that will drive it, so no other worker claims it.
    """
    job_uuid = new_job_uuid()
    return dict(
        uuid=job_uuid,
        workspace_id=runbook.workspace_id,
        runbook_id=runbook.id,
        runbook_key=runbook.key,
        runbook_name=runbook.name,
        runbook_version=version,
        version_id=version_id,
        environment=rt.settings.environment,
        parameters=parameters,
        status=JobStatus.QUEUED.value,
        triggered_by=trigger.kind,
        trigger_ref=trigger.ref,
        actor=trigger.actor,
        parent_job_uuid=parent.uuid if parent else None,
        root_job_uuid=parent.root_job_uuid if parent else job_uuid,
        depth=parent.depth + 1 if parent else 0,
        parent_step=parent_step,
        pins=pins,
        change_ref=change_ref if parent is None else parent.change_ref,
        incident_ref=incident_ref if parent is None else parent.incident_ref,
        idempotency_key=idempotency_key,
        request_hash=request_digest,
        created_at=now,
        deadline_at=parent.deadline_at if parent else None,
        cursor=0,
        next_run_at=now,
        pause_requested=False,
        event_seq=2,
        lease_owner=lease[0] if lease else None,
        lease_until=lease[1] if lease else None,
    )


# The payloads of a new job's ``job.created`` and ``runbook.invoked`` events and the detail of its audit entry.
CreatedDocuments = tuple[Any, Any, Any]


def created_documents(job: Any, trigger: Trigger) -> CreatedDocuments:
    """What ``record_created`` writes about ``job``, besides the ids and timestamps (``job`` needs only the job's columns)."""
    data = job_data(job)
    return (data, {**data, "parameters": job.parameters},
            {"runbook": job.runbook_key, "version": job.runbook_version, "triggered_by": trigger.kind, "trigger_ref": trigger.ref})


def record_created(rt: Runtime, session: Session, job: Any, trigger: Trigger, now: datetime,
                   documents: CreatedDocuments | None = None) -> None:
    """Queue a new job's first two events and its audit entry, and wake the workers at commit.

    ``job`` needs only the job's columns (a row's values with its id will do).
    ``documents`` are its ``created_documents``, when they were made ahead.
    """
    session.info[JOBS_DUE] = True
    created, invoked, detail = documents or created_documents(job, trigger)
    record_payload(session, job, 1, "job.created", now, created)
    record_payload(session, job, 2, "runbook.invoked", now, invoked)
    audit.record(session, rt.clock, workspace_id=job.workspace_id, actor=trigger.actor, action="job.create", target=job.uuid,
                 detail=detail)


def _new_job(rt: Runtime, session: Session, *, now: datetime, **fields: Any) -> Job:
    """Insert a queued job (see ``job_row``) and record its creation; return it, persistent in ``session``.

    The object is built from the row just inserted and handed to the session as if loaded, so moving the
    job next in this transaction reads nothing back.
    """
    values = job_row(rt, now=now, **fields)
    [job_id] = insert_jobs(rt, session, [values], [fields["trigger"]], now)
    # Filled in as a query would fill it: no attribute events, no history (the constructor would record all 40 columns as set).
    job = _JOB_CLASS.new_instance()
    job.__dict__.update(_UNSET, **values, id=job_id)
    make_transient_to_detached(job)
    session.add(job)
    # The session holds clean objects weakly; keep the new job for the transaction, or it may be read back after all.
    session.info.setdefault(_NEW_JOBS, []).append(job)
    return job


def insert_jobs(rt: Runtime, session: Session, rows: list[dict[str, Any]], triggers: Sequence[Trigger], now: datetime,
                documents: Sequence[CreatedDocuments | None] | None = None) -> list[int]:
    """Insert new jobs (``job_row``s created at ``now``) and record the creation of each; return their ids in order.

    ``documents``, where given, are each job's ``created_documents`` made ahead.
    """
    connection = session.connection()
    if len(rows) == 1:
        ids = {rows[0]["uuid"]: connection.execute(_INSERT_JOB, rows[0]).scalar_one()}
    else:
        insert_rows(connection, _JOBS, rows)
        ids = {}
        for first in range(0, len(rows), DEFAULT_UUID_CHUNK):
            ids.update(connection.execute(_IDS, {"uuids": [values["uuid"] for values in rows[first:first + DEFAULT_UUID_CHUNK]]}).all())
    for values, trigger, made in zip(rows, triggers, documents or [None] * len(rows), strict=True):
        # The events read only the job's columns: a plain namespace spares building an ORM object per job.
        record_created(rt, session, SimpleNamespace(id=ids[values["uuid"]], **values), trigger, now, made)
    return [ids[values["uuid"]] for values in rows]


@dataclass(frozen=True)
class _Checked:
    """An invocation that passed every check: what inserting its job needs."""

    runbook: RunbookHead
    digest: str | None
    pins: dict[str, int]
    parameters: dict[str, Any]


def _earlier(session: Session, request: JobRequest, digest: str | None) -> Job | None:
    """The job an earlier request with the same Idempotency-Key created, if any (refusing a different body)."""
    if not request.idempotency_key:
        return None
    earlier = session.scalar(select(Job).where(Job.workspace_id == request.workspace_id, Job.idempotency_key == request.idempotency_key))
    if earlier is not None and earlier.request_hash != digest:
        raise InvalidInput(
            f"Idempotency-Key {request.idempotency_key!r} was already used for job {earlier.uuid} with a different request; "
            "use a new key for a new request",
            errors=[{"field": "Idempotency-Key", "message": "reused with a different body", "value": request.idempotency_key}],
            job_uuid=earlier.uuid,
        )
    return earlier


def _check(rt: Runtime, session: Session | Connection, request: JobRequest) -> _Checked | Job:
    """Run every check of an invocation; return what to insert, or the earlier job of a repeated Idempotency-Key.

    Without an Idempotency-Key no job is loaded, and a plain connection will do.
    """
    if request.idempotency_key is not None and not request.idempotency_key.strip():
        # Stored as it is, one blank key would be the key of every later request that sends it.
        raise InvalidInput("Idempotency-Key is blank; send a key that names this request, or no Idempotency-Key header",
                           errors=[{"field": "Idempotency-Key", "message": "blank", "value": request.idempotency_key}])
    if request.idempotency_key and len(request.idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidInput(
            f"Idempotency-Key is {len(request.idempotency_key)} characters long; use at most {MAX_IDEMPOTENCY_KEY_LENGTH}",
            errors=[{"field": "Idempotency-Key", "message": "too long", "value": request.idempotency_key}],
        )
    runbook = find_runbook(session, request.workspace_id, request.runbook_ref)
    digest = request_hash(runbook.key, request.parameters, {"change_ref": request.change_ref, "incident_ref": request.incident_ref}) \
        if request.idempotency_key else None
    earlier = _earlier(session, request, digest)
    if earlier is not None:
        return earlier
    check_runnable(rt, runbook, require_callable=request.require_callable)
    pins = pin_call_tree(rt, session, runbook)
    return _Checked(runbook, digest, pins, validate_values(runbook.body["parameters"], request.parameters))


def _insert(rt: Runtime, session: Session, request: JobRequest, checked: _Checked) -> tuple[Job, bool]:
    earlier = _earlier(session, request, checked.digest)
    if earlier is not None:
        return earlier, False
    now = rt.clock.now()
    lease = (request.driver, now + timedelta(seconds=rt.settings.lease_seconds)) if request.driver else None
    return _new_job(rt, session, now=now, lease=lease, **_job_fields(request, checked)), True


def _job_fields(request: JobRequest, checked: _Checked) -> dict[str, Any]:
    """What ``job_row`` needs of a checked invocation, besides its time and lease."""
    runbook = checked.runbook
    return dict(runbook=runbook, version_id=runbook.version_id, version=runbook.version, parameters=checked.parameters,
                trigger=request.trigger, pins=checked.pins, idempotency_key=request.idempotency_key, request_digest=checked.digest,
                change_ref=request.change_ref, incident_ref=request.incident_ref)


def create_job(rt: Runtime, request: JobRequest, *, session: Session | None = None,
               then: Callable[[Session, Job], None] | None = None) -> tuple[Job | SimpleNamespace, bool]:
    """Create a queued job; return it and whether it is new (False: the Idempotency-Key matched an earlier job).

    On its own, the checks (runbook, parameters, call tree) run before the
    write transaction, which then only inserts: the single SQLite writer is
    held for as short a time as possible, and invocations that arrive while it
    is busy are inserted together (see ``_insert_together``). A runbook
    archived in between is caught when the job starts. Given a ``session``,
    everything happens in it. ``then`` is called with the write session and a
    new job before commit. A job inserted together with others comes back as
    its columns only (a namespace, not an ORM object): load it to change it.
    """
    if session is not None:
        checked = _check(rt, session, request)
        return (checked, False) if isinstance(checked, Job) else _insert(rt, session, request, checked)
    with rt.db.read() if request.idempotency_key else rt.db.connect() as reader:
        checked = _check(rt, reader, request)
    if isinstance(checked, Job):
        return checked, False
    if then is None and request.idempotency_key is None and request.driver is None:
        return _insert_together(rt, request, checked), True
    for attempt in (1, 2):
        try:
            with rt.db.write() as own:
                job, created = _insert(rt, own, request, checked)
                if created and then is not None:
                    then(own, job)
                return job, created
        except IntegrityError:
            # A concurrent request with the same Idempotency-Key won the race: the second attempt answers with its job.
            if request.idempotency_key is None or attempt == 2:
                raise
    raise AssertionError("unreachable")


@dataclass(eq=False)
class _Waiting:
    """A checked invocation waiting for the writer; whoever takes it into a transaction fills in ``row`` or ``failed``."""

    request: JobRequest
    checked: _Checked
    taken: bool = False
    row: dict[str, Any] | None = None
    failed: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class _Group:
    """The invocations of one process waiting for the write lock."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.waiting: list[_Waiting] = []


_groups: weakref.WeakKeyDictionary[Any, _Group] = weakref.WeakKeyDictionary()
_groups_mutex = threading.Lock()


def _group_of(db: Any) -> _Group:
    with _groups_mutex:
        group = _groups.get(db)
        if group is None:
            group = _groups[db] = _Group()
        return group


def _insert_together(rt: Runtime, request: JobRequest, checked: _Checked) -> Job | SimpleNamespace:
    """Insert a checked job together with the others of this process that are waiting for the writer (group commit).

    Each waits for the write transaction; the first to get it inserts every
    invocation queued so far, one row each and one statement for all, and
    commits; the others find theirs done when their turn comes and answer
    with it, committed. If that transaction fails, each invocation is
    inserted again alone, so one bad job does not fail the others.
    """
    group = _group_of(rt.db)
    mine = _Waiting(request, checked)
    with group.mutex:
        group.waiting.append(mine)
    batch: list[_Waiting] = []
    rows: list[dict[str, Any]] = []
    ids: list[int] = []
    try:
        with rt.db.write() as session:
            with group.mutex:
                if not mine.taken:
                    batch, group.waiting = group.waiting, []
                    for waiting in batch:
                        waiting.taken = True
            if batch:
                now = rt.clock.now()
                rows = [job_row(rt, now=now, **_job_fields(w.request, w.checked)) for w in batch]
                ids = insert_jobs(rt, session, rows, [w.request.trigger for w in batch], now)
    except Exception:
        with group.mutex:
            if not mine.taken:  # the writer could not be had at all: nothing of this invocation was tried
                group.waiting.remove(mine)
                raise
    else:
        for waiting, values, job_id in zip(batch, rows, ids, strict=True):
            waiting.row = {**values, "id": job_id}
    finally:
        # Committed, or not: every invocation of the batch learns which (failed ones are then inserted alone).
        for waiting in batch:
            waiting.failed = waiting.row is None
            waiting.done.set()
    mine.done.wait()
    if mine.failed:
        with rt.db.write() as own:
            return _insert(rt, own, request, checked)[0]
    # The columns as read-only attributes: building a detached ORM ``Job`` would cost more than inserting the row did.
    return SimpleNamespace(**{**_UNSET, **mine.row})


def create_child(rt: Runtime, session: Session, parent: Job, step: dict[str, Any], parameters: dict[str, Any], now: datetime) -> Job:
    """Start the child job of a ``runbook`` step with the version pinned by the root job."""
    ref = step["action"]["runbook"]
    child = find_runbook(session, parent.workspace_id, ref)
    if str(child.id) not in parent.pins:
        raise InvalidInput(f"runbook {ref!r} is not part of the call tree pinned when job {parent.root_job_uuid} started")
    if parent.depth + 1 > rt.settings.max_call_depth:
        raise InvalidInput(f"calling {ref!r} would nest deeper than the maximum of {rt.settings.max_call_depth}")
    version_id = parent.pins[str(child.id)]
    version, body = load_version(session, version_id)
    try:
        values = validate_values(body["parameters"], parameters)
    except RunnerError as exc:
        raise InvalidInput(f"runbook {child.key} ({child.name}) refused the parameters: {exc.detail}", errors=exc.errors) from exc
    # The worker moving a parent that waits for the child drives the child next: it holds the child's lease from the start.
    waited = step["action"].get("wait", True)
    lease = (parent.lease_owner, parent.lease_until) if waited and parent.lease_owner and parent.lease_until else None
    return _new_job(rt, session, runbook=child, version_id=version_id, version=version, parameters=values,
                    trigger=Trigger("runbook", parent.actor, parent.uuid), pins=parent.pins, now=now, parent=parent,
                    parent_step=step["order"], lease=lease)


def create_or_stop(rt: Runtime, session: Session, request: JobRequest) -> Job:
    """Create a job; if its parameters or runbook no longer allow it, create it stopped so monitors hear why.

    Used by schedules, whose parameters were valid when saved but may not
    fit the runbook any more when the schedule fires.
    """
    from .machine import Machine
    from .states import StopReason

    try:
        return create_job(rt, request, session=session)[0]
    except (InvalidInput, Conflict) as exc:
        failure = exc
    runbook = find_runbook(session, request.workspace_id, request.runbook_ref)
    parameters = request.parameters if isinstance(request.parameters, dict) else {}
    created = _new_job(rt, session, runbook=runbook, version_id=runbook.version_id, version=runbook.version, parameters=parameters,
                       trigger=request.trigger, pins={str(runbook.id): runbook.version_id}, now=rt.clock.now(),
                       idempotency_key=request.idempotency_key, request_digest=None)
    job = session.get(Job, created.id)
    failing = [e["field"] for e in failure.errors if str(e.get("field", "")).startswith("parameters")]
    if failing:
        reason = StopReason.PARAMS_INVALID
        message = (f"the parameters given by {request.trigger.actor} no longer match runbook {runbook.key} v{runbook.version} "
                   f"({', '.join(failing)}): {failure.detail}")
    else:
        reason = StopReason.RUNBOOK_UNAVAILABLE
        message = f"{request.trigger.actor} could not start runbook {runbook.key}: {failure.detail}"
    Machine(rt, session, job).stop(reason, message)
    return job
