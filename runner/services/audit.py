"""The audit log: who did what, to what, when, from where."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ..auth import Action, Actor, require
from ..clock import Clock
from ..db import insert_rows
from ..models import AuditEntry
from ..models.tenancy import NOT_ABOUT_A_JOB
from ..runtime import Runtime
from .pagination import cut_page, decode_cursor

__all__ = ["record", "flush", "entry_to_dict", "page"]

# Key in ``session.info`` holding audit rows until the transaction commits.
PENDING_AUDIT = "rbm_pending_audit"


def record(
    session: Session,
    clock: Clock,
    *,
    workspace_id: int,
    actor: Actor | str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one audit entry to the caller's transaction."""
    if isinstance(actor, Actor):
        name, role, source = actor.subject, actor.role.value, actor.source
    else:
        name, role, source = actor, None, "system"
    session.info.setdefault(PENDING_AUDIT, []).append({
        "workspace_id": workspace_id, "at": clock.now(), "actor": name, "role": role, "action": action,
        "target": target, "source": source, "detail": detail or {},
    })


def flush(session: Session) -> None:
    """Insert the transaction's audit entries in one statement (called just before commit)."""
    rows = session.info.pop(PENDING_AUDIT, [])
    if rows:
        insert_rows(session.connection(), AuditEntry.__table__, rows)


def entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    """Shape an entry for the API."""
    return {
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "target": entry.target,
        "source": entry.source,
        "detail": entry.detail,
    }


def _like_a_job(target: str) -> bool:
    """Whether ``target`` is shaped like a job's UUID, as ``NOT_ABOUT_A_JOB`` tells (LIKE's ``_`` is any one character)."""
    return len(target) == 36 and target[8] == target[13] == target[18] == target[23] == "-"


def page(rt: Runtime, actor: Actor, query: dict[str, Any]) -> dict[str, Any]:
    """Read one page of the workspace's audit log, oldest first."""
    require(actor, Action.VIEW_AUDIT)
    after = (decode_cursor(query.get("cursor")) or {"after": 0})["after"]
    limit = query["limit"]
    statement = select(AuditEntry).where(AuditEntry.workspace_id == actor.workspace_id, AuditEntry.id > after)
    if query.get("target"):
        statement = statement.where(AuditEntry.target == query["target"])
        if not _like_a_job(query["target"]):
            # The condition of the index of entries about anything but a job, as it is written there (SQLite uses a partial
            # index only for a query that states its condition): true of this target, and it lets the page read that index.
            statement = statement.where(text(NOT_ABOUT_A_JOB))
    with rt.db.read() as session:
        rows, next_cursor = cut_page(list(session.scalars(statement.order_by(AuditEntry.id).limit(limit + 1))), limit,
                                     lambda last: {"after": last.id})
        return {"items": [entry_to_dict(r) for r in rows], "next_cursor": next_cursor}
