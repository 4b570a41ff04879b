"""The event feed for iPaaS platforms that poll instead of receiving webhooks."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from runner.auth import Action, Actor, require
from runner.engine.events import EVENT_TYPES
from runner.engine.report import event_to_dict
from runner.errors import InvalidInput
from runner.models import Event
from runner.runtime import Runtime
from runner.services.pagination import decode_cursor, encode_cursor

from .subscriptions import resolve_runbook_keys

__all__ = ["poll"]


def _split(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def poll(rt: Runtime, actor: Actor, query: dict[str, Any]) -> dict[str, Any]:
    """Return events after the cursor, oldest first, with the cursor to pass next time (even when empty)."""
    require(actor, Action.VIEW_PUBLISHED)
    after = (decode_cursor(query.get("after"), name="after") or {"after": 0})["after"]
    types = _split(query.get("type"))
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(f"unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}",
                           errors=[{"field": "type", "message": "unknown event type", "value": t} for t in unknown])
    with rt.db.read() as session:
        statement = select(Event).where(Event.workspace_id == actor.workspace_id, Event.id > after)
        if types:
            statement = statement.where(Event.type.in_(types))
        refs = _split(query.get("runbooks"))
        if refs:
            keys, errors = resolve_runbook_keys(session, actor.workspace_id, refs)
            if errors:
                raise InvalidInput(f"unknown runbook {errors[0]['value']!r} in runbooks", errors=errors)
            statement = statement.where(Event.runbook_key.in_(keys))
        rows = list(session.scalars(statement.order_by(Event.id).limit(query["limit"])))
        items = [event_to_dict(e) for e in rows]
    last = rows[-1].id if rows else after
    return {"items": items, "next_cursor": encode_cursor({"after": last})}
