"""The event feed for iPaaS platforms that poll instead of receiving webhooks."""
from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Text, cast, func, select, tuple_

from runner.auth import Action, Actor, require
from runner.engine.events import EVENT_TYPES
from runner.engine.report import event_to_dict
from runner.errors import InvalidInput
from runner.models import Event
from runner.runtime import Runtime
from runner.services.pagination import MAX_BIGINT, decode_cursor, encode_cursor

from .subscriptions import resolve_runbook_keys

__all__ = ["poll"]

# The oldest transaction still open on PostgreSQL: every event written by an older one is committed (or gone) for good.
_HORIZON = cast(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger)


def _split(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def poll(rt: Runtime, actor: Actor, query: dict[str, Any]) -> dict[str, Any]:
    """Return events after the cursor, oldest first, with the cursor to pass next time (even when empty)."""
    require(actor, Action.VIEW_PUBLISHED)
    postgres = rt.db.is_postgres
    fields = ("tx", "after") if postgres else ("after",)
    position = decode_cursor(query.get("after"), keys=fields, name="after", largest={"tx": MAX_BIGINT}) or dict.fromkeys(fields, 0)
    types = _split(query.get("type"))
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(f"unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}",
                           errors=[{"field": "type", "message": "unknown event type", "value": t} for t in unknown])
    with rt.db.read() as session:
        statement = select(Event).where(Event.workspace_id == actor.workspace_id)
        if postgres:
            # Order by (writing transaction, id) and stop below the oldest transaction still open: an event
            # committed later always sorts after the cursor, so no event is ever skipped. The horizon is read
            # first, so that every statement below stops at the same one (each read sees a snapshot of its own).
            horizon = session.scalar(select(_HORIZON))
            below = (Event.txid < horizon,)
            statement = statement.where(tuple_(Event.txid, Event.id) > tuple_(position["tx"], position["after"]), *below)
            order = (Event.txid, Event.id)
        else:
            # SQLite commits one writer at a time, so ids are committed in order.
            below = ()
            statement = statement.where(Event.id > position["after"])
            order = (Event.id,)
        if types:
            statement = statement.where(Event.type.in_(types))
        refs = _split(query.get("runbooks"))
        if refs:
            keys, errors = resolve_runbook_keys(session, actor.workspace_id, refs)
            if errors:
                raise InvalidInput(f"unknown runbook {errors[0]['value']!r} in runbooks", errors=errors)
            statement = statement.where(Event.runbook_key.in_(keys))
        rows = list(session.scalars(statement.order_by(*order).limit(query["limit"])))
        items = [event_to_dict(e) for e in rows]
        last = rows[-1] if rows else None
        if (types or refs) and len(rows) < query["limit"]:
            # The page is not full, so every event up to the newest one (below the horizon) was read and passed over:
            # the cursor moves past them all, or the next poll would read them again, and the one after that.
            last = session.execute(select(Event.txid, Event.id).where(Event.workspace_id == actor.workspace_id, *below)
                                   .order_by(*(column.desc() for column in order)).limit(1)).first() or last
    if last is not None:
        reached = {"tx": last.txid or 0, "after": last.id} if postgres else {"after": last.id}
        if tuple(reached.values()) > tuple(position[name] for name in fields):
            position = reached
    return {"items": items, "next_cursor": encode_cursor({name: position[name] for name in fields})}
