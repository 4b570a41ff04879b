"""Authoring runbooks: create, edit (each save a new version), lifecycle, history, import and export."""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import marshmallow as ma
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from ..auth import Action, Actor, allowed, require
from ..errors import Conflict, FieldError, IllegalTransition, InvalidInput, NotFound
from ..models import Job, Runbook, RunbookStatus, RunbookVersion, Schedule, Workspace
from ..runtime import Runtime
from ..schemas.runbook import RunbookBodySchema
from . import audit
from .diff import diff_bodies
from .lint import lint
from .pagination import MAX_ROW_NUMBER, cut_page, decode_cursor
from .params import check_placeholders, check_schema
from .textimport import parse_procedure

__all__ = [
    "create",
    "list_runbooks",
    "get",
    "patch",
    "transition",
    "list_versions",
    "get_version",
    "diff",
    "save_external_steps",
    "import_runbook",
    "export_bundle",
    "find",
    "to_dict",
    "BODY_FIELDS",
]

KEY_RE = re.compile(r"^RB-\d{5,}$")
BUNDLE_FORMAT = "runbook-manager.bundle"
BUNDLE_FORMAT_VERSION = 1
BODY_FIELDS = ("name", "title", "description", "category", "owner", "parameters", "callable", "allowed_callers",
               "max_duration_seconds", "environments", "steps")

# Lifecycle: (action, allowed from-states, to-state, permission).
_LIFECYCLE = {
    "publish": ({RunbookStatus.DRAFT}, RunbookStatus.PUBLISHED, Action.PUBLISH),
    "unpublish": ({RunbookStatus.PUBLISHED}, RunbookStatus.DRAFT, Action.PUBLISH),
    "archive": ({RunbookStatus.DRAFT, RunbookStatus.PUBLISHED}, RunbookStatus.ARCHIVED, Action.ARCHIVE),
}


# --- reading -----------------------------------------------------------------

def _visible(actor: Actor, runbook: Runbook) -> bool:
    if runbook.status != RunbookStatus.DRAFT.value:
        return True
    return allowed(actor, Action.VIEW_DRAFTS, runbook_owner=runbook.owner)


def _by_ref(workspace_id: int, ref: str) -> Select[tuple[Runbook]]:
    column = Runbook.key if KEY_RE.match(ref) else Runbook.name
    return select(Runbook).where(Runbook.workspace_id == workspace_id, column == ref)


def find(session: Session, actor: Actor, ref: str, *, for_update: bool = False) -> Runbook:
    """Load a runbook of the actor's workspace by key or name, as the actor may see it."""
    query = _by_ref(actor.workspace_id, ref)
    if for_update:
        query = query.with_for_update()
    runbook = session.scalar(query)
    if runbook is None or not _visible(actor, runbook):
        raise NotFound(f"runbook {ref!r} not found in workspace {actor.workspace_slug!r}")
    return runbook


def _last_jobs(session: Session, runbook_ids: list[int]) -> dict[int, tuple[Any, str]]:
    """When each runbook last ran and how that job stands: {runbook_id: (created_at, status)}."""
    if not runbook_ids:
        return {}
    # One max per runbook, each found at the end of its (workspace, runbook, id) index entries: a max grouped by runbook
    # would read every job of those runbooks, a million of them for a runbook a schedule runs every minute for two years.
    earlier = aliased(Job)
    last_id = (select(func.max(earlier.id)).where(earlier.workspace_id == Runbook.workspace_id, earlier.runbook_id == Runbook.id)
               .correlate(Runbook).scalar_subquery())
    latest = select(last_id).where(Runbook.id.in_(runbook_ids))
    rows = session.execute(select(Job.runbook_id, Job.created_at, Job.status).where(Job.id.in_(latest)))
    return {row.runbook_id: (row.created_at, row.status) for row in rows}


def _shape(session: Session, runbooks: list[Runbook]) -> list[dict[str, Any]]:
    last = _last_jobs(session, [r.id for r in runbooks])
    return [to_dict(r, last.get(r.id)) for r in runbooks]


def to_dict(runbook: Runbook, last_job: tuple[Any, str] | None = None) -> dict[str, Any]:
    """Shape a runbook for the API: the body of its latest version plus identity, lifecycle and lint."""
    body = runbook.body
    estimates = [s["est_minutes"] for s in body["steps"] if s.get("est_minutes") is not None]
    return {
        **body,
        "key": runbook.key,
        "status": runbook.status,
        "version": runbook.version,
        "step_count": len(body["steps"]),
        "est_minutes": sum(estimates) if estimates else None,
        "created_at": runbook.created_at,
        "updated_at": runbook.updated_at,
        "published_at": runbook.published_at,
        "archived_at": runbook.archived_at,
        "last_job_at": last_job[0] if last_job else None,
        "last_job_status": last_job[1] if last_job else None,
        "lint": lint(body),
    }


def get(rt: Runtime, actor: Actor, ref: str) -> dict[str, Any]:
    """Read one runbook."""
    with rt.db.read() as session:
        return _shape(session, [find(session, actor, ref)])[0]


def list_runbooks(rt: Runtime, actor: Actor, query: dict[str, Any]) -> dict[str, Any]:
    """List runbooks with filters, oldest first, one cursor page at a time."""
    position = decode_cursor(query.get("cursor"))
    statement = select(Runbook).where(Runbook.workspace_id == actor.workspace_id)
    if position:
        statement = statement.where(Runbook.id > position["after"])
    statuses = _parse_statuses(query.get("status"))
    if statuses:
        statement = statement.where(Runbook.status.in_(statuses))
    elif not query.get("include_archived"):
        statement = statement.where(Runbook.status != RunbookStatus.ARCHIVED.value)
    if query.get("category"):
        statement = statement.where(Runbook.category == query["category"])
    if query.get("callable") is not None:
        statement = statement.where(Runbook.callable.is_(query["callable"]))
    if query.get("q"):
        pattern = f"%{query['q'].lower()}%"
        statement = statement.where(
            or_(*(func.lower(c).like(pattern) for c in (Runbook.key, Runbook.name, Runbook.title, Runbook.description)))
        )
    if not allowed(actor, Action.VIEW_DRAFTS):
        statement = statement.where(or_(Runbook.status != RunbookStatus.DRAFT.value, Runbook.owner == actor.subject))
    limit = query["limit"]
    with rt.db.read() as session:
        rows, next_cursor = cut_page(list(session.scalars(statement.order_by(Runbook.id).limit(limit + 1))), limit,
                                     lambda last: {"after": last.id})
        return {"items": _shape(session, rows), "next_cursor": next_cursor}


def _parse_statuses(raw: str | None) -> list[str]:
    if not raw:
        return []
    values = [s.strip() for s in raw.split(",") if s.strip()]
    known = {s.value for s in RunbookStatus}
    bad = [v for v in values if v not in known]
    if bad:
        raise InvalidInput(
            f"status must be among {', '.join(sorted(known))}, got {bad[0]!r}",
            errors=[{"field": "status", "message": "unknown status", "value": v} for v in bad],
        )
    return values


# --- writing -----------------------------------------------------------------

def _slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:110].strip("-")
    return slug if len(slug) >= 2 else f"runbook-{slug}".strip("-")


def _free_name(session: Session, workspace_id: int, base: str) -> str:
    taken = set(session.scalars(select(Runbook.name).where(Runbook.workspace_id == workspace_id, Runbook.name.like(f"{base}%"))))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _check_body(rt: Runtime, session: Session, actor: Actor, body: dict[str, Any], runbook: Runbook | None) -> None:
    """Refuse a body that cannot run: every problem found is listed at once."""
    errors: list[FieldError] = []
    schema_errors = check_schema(body["parameters"])
    errors += schema_errors
    if not schema_errors:
        errors += check_placeholders(body["steps"], body["parameters"])
    known_envs = rt.settings.environment_labels
    for env in body.get("environments") or []:
        if env not in known_envs:
            errors.append({"field": "environments", "message": f"unknown environment; known: {', '.join(known_envs)}", "value": env})
    refs = {s["action"]["runbook"] for s in body["steps"] if s["action"]["type"] == "runbook"} | set(body.get("allowed_callers") or [])
    existing = _resolve_refs(session, actor.workspace_id, refs)
    own = {runbook.key, runbook.name} if runbook else {body["name"]}
    for step in body["steps"]:
        action = step["action"]
        if action["type"] != "runbook":
            continue
        target = action["runbook"]
        problem = None
        if target in own:
            problem = "calls this runbook itself (a cycle)"
        elif target not in existing:
            problem = f"calls runbook {target!r}, which does not exist"
        elif existing[target].status == RunbookStatus.ARCHIVED.value:
            problem = f"calls runbook {target!r}, which is archived"
        if problem:
            errors.append({"field": f"steps.{step['order'] - 1}.action.runbook", "message": f"step {step['order']} {problem}", "value": target})
    for caller in body.get("allowed_callers") or []:
        if caller not in existing and caller not in own:
            errors.append({"field": "allowed_callers", "message": f"runbook {caller!r} does not exist", "value": caller})
    if errors:
        summary = "; ".join(e["message"] if e["field"].startswith("steps") else f"{e['field']}: {e['message']}" for e in errors[:5])
        raise InvalidInput(f"the runbook cannot be saved: {summary}", errors=errors)


def _resolve_refs(session: Session, workspace_id: int, refs: Iterable[str]) -> dict[str, Runbook]:
    refs = set(refs)
    if not refs:
        return {}
    rows = session.scalars(select(Runbook).where(Runbook.workspace_id == workspace_id, or_(Runbook.key.in_(refs), Runbook.name.in_(refs))))
    found: dict[str, Runbook] = {}
    for row in rows:
        for ref in (row.key, row.name):
            if ref in refs:
                found[ref] = row
    return found


def _store_version(rt: Runtime, session: Session, actor: Actor, runbook: Runbook, body: dict[str, Any], source: str | None) -> None:
    now = rt.clock.now()
    runbook.body = body
    runbook.name, runbook.title, runbook.owner = body["name"], body["title"], body["owner"]
    runbook.description, runbook.category, runbook.callable = body["description"], body["category"], body["callable"]
    runbook.updated_at = now
    version = RunbookVersion(runbook_id=runbook.id, version=runbook.version, body=body, created_at=now,
                             created_by=actor.subject, source=source)
    session.add(version)
    session.flush()
    runbook.version_id = version.id


def create(rt: Runtime, actor: Actor, data: dict[str, Any], *, source: str | None = None, audit_detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create a draft runbook at version 1."""
    require(actor, Action.CREATE)
    with rt.db.write() as session:
        # Taking the next number first locks the workspace row, so concurrent creates check names one at a time.
        number = session.execute(
            update(Workspace).where(Workspace.id == actor.workspace_id)
            .values(runbook_counter=Workspace.runbook_counter + 1).returning(Workspace.runbook_counter)
        ).scalar_one()
        body = {f: data.get(f) for f in BODY_FIELDS}
        body["owner"] = data.get("owner") or actor.subject
        if data.get("name"):
            if session.scalar(select(Runbook.id).where(Runbook.workspace_id == actor.workspace_id, Runbook.name == data["name"])):
                raise Conflict(f"a runbook named {data['name']!r} already exists in this workspace",
                               errors=[{"field": "name", "message": "already taken", "value": data["name"]}])
        else:
            body["name"] = _free_name(session, actor.workspace_id, _slugify(body["title"]))
        _check_body(rt, session, actor, body, None)
        now = rt.clock.now()
        runbook = Runbook(
            workspace_id=actor.workspace_id, number=number, key=f"RB-{number:05d}", name=body["name"], title=body["title"],
            owner=body["owner"], status=RunbookStatus.DRAFT.value, version=1, body=body, created_at=now, updated_at=now,
        )
        session.add(runbook)
        session.flush()
        _store_version(rt, session, actor, runbook, body, source)
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="runbook.create", target=runbook.key,
                     detail={"version": 1, "name": runbook.name, **({"source": source} if source else {}), **(audit_detail or {})})
        return _shape(session, [runbook])[0]


def _check_base(runbook: Runbook, base_version: int | None) -> None:
    if base_version is not None and base_version != runbook.version:
        raise Conflict(
            f"runbook {runbook.key} is at version {runbook.version}, not {base_version}; reload it and apply your edit again",
            current_version=runbook.version,
        )


def _editable(actor: Actor, runbook: Runbook) -> None:
    require(actor, Action.EDIT, runbook_owner=runbook.owner)
    if runbook.status == RunbookStatus.ARCHIVED.value:
        raise IllegalTransition(f"runbook {runbook.key} is archived and can no longer be edited", current_status=runbook.status)


def patch(rt: Runtime, actor: Actor, ref: str, changes: dict[str, Any], *, source: str | None = None,
          audit_action: str = "runbook.edit") -> dict[str, Any]:
    """Apply an edit, bump the version and store the whole body as that version."""
    with rt.db.write() as session:
        runbook = find(session, actor, ref, for_update=True)
        _editable(actor, runbook)
        _check_base(runbook, changes.pop("base_version", None))
        body = {**runbook.body, **{k: v for k, v in changes.items() if k in BODY_FIELDS}}
        if body["name"] != runbook.name and session.scalar(
            select(Runbook.id).where(Runbook.workspace_id == actor.workspace_id, Runbook.name == body["name"])
        ):
            raise Conflict(f"a runbook named {body['name']!r} already exists in this workspace",
                           errors=[{"field": "name", "message": "already taken", "value": body["name"]}])
        _check_body(rt, session, actor, body, runbook)
        runbook.version += 1
        _store_version(rt, session, actor, runbook, body, source)
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action=audit_action, target=runbook.key,
                     detail={"version": runbook.version, "fields": sorted(k for k in changes if k in BODY_FIELDS),
                             **({"source": source} if source else {})})
        return _shape(session, [runbook])[0]


def transition(rt: Runtime, actor: Actor, ref: str, action: str) -> dict[str, Any]:
    """Publish, unpublish or archive a runbook."""
    sources, target, permission = _LIFECYCLE[action]
    with rt.db.write() as session:
        runbook = find(session, actor, ref, for_update=True)
        require(actor, permission, runbook_owner=runbook.owner)
        current = RunbookStatus(runbook.status)
        if current not in sources:
            raise IllegalTransition(
                f"cannot {action} runbook {runbook.key}: it is {current.value}"
                f" (only {' or '.join(s.value for s in sorted(sources, key=lambda s: s.value))} runbooks can be {action}ed)",
                current_status=current.value,
            )
        if action == "publish" and not runbook.body["steps"] and not runbook.callable:
            raise IllegalTransition(
                f"runbook {runbook.key} has no steps; add steps, or make it callable so a flow subscribed to it does the work",
                current_status=current.value,
            )
        now = rt.clock.now()
        runbook.status = target.value
        runbook.updated_at = now
        if target == RunbookStatus.PUBLISHED:
            runbook.published_at = now
        if target == RunbookStatus.ARCHIVED:
            runbook.archived_at = now
            session.execute(update(Schedule).where(Schedule.runbook_id == runbook.id, Schedule.enabled.is_(True))
                            .values(enabled=False, paused_reason=f"runbook {runbook.key} was archived", updated_at=now,
                                    revision=Schedule.revision + 1))
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action=f"runbook.{action}", target=runbook.key,
                     detail={"from": current.value, "to": target.value, "version": runbook.version})
        return _shape(session, [runbook])[0]


# --- history -----------------------------------------------------------------

def _version_summary(row: RunbookVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "title": row.body["title"],
        "step_count": len(row.body["steps"]),
        "created_at": row.created_at,
        "created_by": row.created_by,
        "source": row.source,
    }


def list_versions(rt: Runtime, actor: Actor, ref: str) -> dict[str, Any]:
    """List every saved version, newest first."""
    with rt.db.read() as session:
        runbook = find(session, actor, ref)
        rows = session.scalars(select(RunbookVersion).where(RunbookVersion.runbook_id == runbook.id).order_by(RunbookVersion.version.desc()))
        return {"items": [_version_summary(r) for r in rows]}


def _load_version(session: Session, runbook: Runbook, number: int, field: str = "version") -> RunbookVersion:
    row = None if number > MAX_ROW_NUMBER else session.scalar(
        select(RunbookVersion).where(RunbookVersion.runbook_id == runbook.id, RunbookVersion.version == number))
    if row is None:
        raise NotFound(f"runbook {runbook.key} has no version {number} (latest is {runbook.version})",
                       errors=[{"field": field, "message": "no such version", "value": number}])
    return row


def get_version(rt: Runtime, actor: Actor, ref: str, number: int) -> dict[str, Any]:
    """Read one saved version with its whole body."""
    with rt.db.read() as session:
        row = _load_version(session, find(session, actor, ref), number)
        return {**_version_summary(row), "body": row.body}


def diff(rt: Runtime, actor: Actor, ref: str, from_version: int, to_version: int) -> dict[str, Any]:
    """Compare two versions step by step."""
    with rt.db.read() as session:
        runbook = find(session, actor, ref)
        old = _load_version(session, runbook, from_version, "from")
        new = _load_version(session, runbook, to_version, "to")
        return {"key": runbook.key, "from": from_version, "to": to_version, **diff_bodies(old.body, new.body)}


def save_external_steps(rt: Runtime, actor: Actor, ref: str, data: dict[str, Any]) -> dict[str, Any]:
    """Save a step list from outside (e.g. a change's implementation plan) as a new version."""
    steps = []
    for item in data["steps"]:
        if not item["title"].strip() and not item["description"].strip():
            continue
        title = item["title"].strip() or item["description"].strip().splitlines()[0][:200]
        steps.append({**item, "title": title, "order": len(steps) + 1, "idempotent": False, "timeout_seconds": None,
                      "action": {"type": "manual"}})
    if not steps:
        raise InvalidInput(
            f"the step list from {data['source']!r} has no non-empty step; a runbook needs at least one instruction",
            errors=[{"field": "steps", "message": "no non-empty step", "value": len(data["steps"])}],
        )
    with rt.db.write() as session:
        runbook = find(session, actor, ref, for_update=True)
        _editable(actor, runbook)
        _check_base(runbook, data.get("base_version"))
        body = {**runbook.body, "steps": steps}
        _check_body(rt, session, actor, body, runbook)
        runbook.version += 1
        _store_version(rt, session, actor, runbook, body, data["source"])
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="runbook.save_from_source", target=runbook.key,
                     detail={"version": runbook.version, "source": data["source"], "steps": len(steps)})
        return _shape(session, [runbook])[0]


# --- import and export -------------------------------------------------------------

def _load_body(raw: Any, field: str) -> dict[str, Any]:
    try:
        return RunbookBodySchema().load(raw)
    except ma.ValidationError as exc:
        from ..problems import flatten_messages

        errors = [{**e, "field": f"{field}.{e['field']}"} for e in flatten_messages(exc.messages)]
        raise InvalidInput(f"the {field} is not a valid runbook: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]),
                           errors=errors) from exc


def import_runbook(rt: Runtime, actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
    """Create a draft from numbered text, or a draft (or new version) from an exported bundle."""
    if "text" in data:
        parsed = parse_procedure(data["text"])
        body = _load_body(
            {"title": data.get("title") or parsed["title"] or "Imported runbook", "description": parsed["description"],
             "category": data.get("category", ""), "steps": parsed["steps"], **({"name": data["name"]} if data.get("name") else {})},
            "text",
        )
        return create(rt, actor, body, source="import:text", audit_detail={"imported_steps": len(body["steps"])})
    bundle = data["bundle"]
    if not isinstance(bundle, dict):
        raise InvalidInput(
            f"bundle must be a JSON object exported by 'runbook-manager runbook export', got {type(bundle).__name__}",
            errors=[{"field": "bundle", "message": "not a runbook bundle", "value": None}],
        )
    if bundle.get("format") != BUNDLE_FORMAT or bundle.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise InvalidInput(
            f"bundle.format must be {BUNDLE_FORMAT!r} version {BUNDLE_FORMAT_VERSION}, got {bundle.get('format')!r} version {bundle.get('format_version')!r}",
            errors=[{"field": "bundle.format", "message": "not a runbook bundle", "value": bundle.get("format")}],
        )
    body = _load_body(bundle.get("runbook"), "bundle.runbook")
    origin = bundle.get("exported_from") or {}
    if not isinstance(origin, dict):
        raise InvalidInput(f"bundle.exported_from must be an object, got {origin!r}",
                           errors=[{"field": "bundle.exported_from", "message": "not an object", "value": origin}])
    source = f"import:{origin.get('environment', 'unknown')}/{origin.get('key', '?')}@v{origin.get('version', '?')}"
    name = data.get("name") or body.get("name")
    if name:
        body["name"] = name
        with rt.db.read() as session:
            exists = session.scalar(select(Runbook.key).where(Runbook.workspace_id == actor.workspace_id, Runbook.name == name))
        if exists:
            changes = {k: v for k, v in body.items() if k != "owner"}
            return patch(rt, actor, exists, changes, source=source, audit_action="runbook.import")
    body.pop("owner", None)
    return create(rt, actor, body, source=source, audit_detail={"bundle_from": origin})


def export_bundle(rt: Runtime, actor: Actor, ref: str) -> dict[str, Any]:
    """Export the latest version as a bundle another runner can import."""
    with rt.db.read() as session:
        runbook = find(session, actor, ref)
        return {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "exported_at": rt.clock.now(),
            "exported_from": {"environment": rt.settings.environment, "workspace": actor.workspace_slug,
                              "key": runbook.key, "version": runbook.version, "status": runbook.status},
            "runbook": runbook.body,
        }
