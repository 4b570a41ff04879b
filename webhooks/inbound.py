"""Inbound webhook URLs: a secret URL per callable runbook that starts a job when POSTed to."""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from runner.auth import Action, Actor, hash_token, require
from runner.engine.invoke import MAX_IDEMPOTENCY_KEY_LENGTH, JobRequest, Trigger, create_job
from runner.engine.report import job_to_dict
from runner.errors import Conflict, Gone, InvalidInput, NotFound, Unauthorized
from runner.jsonbody import MalformedJson, loads
from runner.models import InboundMessage, InboundWebhook, Runbook
from runner.runtime import Runtime
from runner.services import audit
from runner.services.runbooks import find

from .signing import VerificationError, generate_secret, verify

__all__ = ["create_url", "list_urls", "revoke_url", "receive", "INBOUND_PATH"]

INBOUND_PATH = "/api/v1/hooks/in/"
TOKEN_PREFIX = "rbmwh_"
# Longest webhook-id remembered for replay protection (the column's size).
MAX_MESSAGE_ID_LENGTH = 200


def _to_dict(hook: InboundWebhook, now: datetime) -> dict[str, Any]:
    status = "revoked" if hook.revoked_at else "expired" if hook.expires_at and hook.expires_at <= now else "active"
    return {
        "id": hook.id,
        "prefix": hook.prefix,
        "status": status,
        "require_signature": hook.require_signature,
        "created_at": hook.created_at,
        "created_by": hook.created_by,
        "expires_at": hook.expires_at,
        "revoked_at": hook.revoked_at,
        "last_used_at": hook.last_used_at,
    }


def create_url(rt: Runtime, actor: Actor, ref: str, data: dict[str, Any], *, base_url: str) -> dict[str, Any]:
    """Create an inbound URL for a callable runbook; the URL (and signing secret) are in this answer only."""
    require(actor, Action.AUTOMATE)
    now = rt.clock.now()
    if data.get("expires_at") is not None and data["expires_at"] <= now:
        raise InvalidInput("expires_at must be in the future",
                           errors=[{"field": "expires_at", "message": "in the past", "value": data["expires_at"].isoformat()}])
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with rt.db.write() as session:
        runbook = find(session, actor, ref)
        if not runbook.callable:
            raise Conflict(f"runbook {runbook.key} ({runbook.name}) is not callable; set callable to true before giving it a webhook URL",
                           current_status=runbook.status)
        if runbook.status == "archived":
            raise Conflict(f"runbook {runbook.key} is archived", current_status=runbook.status)
        hook = InboundWebhook(id="iwh_" + secrets.token_hex(8), workspace_id=actor.workspace_id, runbook_id=runbook.id,
                              token_hash=hash_token(token), prefix=token[:12], require_signature=bool(data.get("require_signature")),
                              secret=generate_secret() if data.get("require_signature") else None, created_at=now,
                              created_by=actor.subject, expires_at=data.get("expires_at"))
        session.add(hook)
        audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="webhook_url.create", target=runbook.key,
                     detail={"id": hook.id, "require_signature": hook.require_signature})
        result = {**_to_dict(hook, now), "url": base_url.rstrip("/") + INBOUND_PATH + token, "runbook": runbook.key}
        if hook.secret:
            result["secret"] = hook.secret
        return result


def list_urls(rt: Runtime, actor: Actor, ref: str) -> dict[str, Any]:
    """List a runbook's inbound URLs (never the URLs themselves)."""
    require(actor, Action.AUTOMATE)
    now = rt.clock.now()
    with rt.db.read() as session:
        runbook = find(session, actor, ref)
        rows = session.scalars(select(InboundWebhook).where(InboundWebhook.runbook_id == runbook.id).order_by(InboundWebhook.created_at))
        return {"items": [_to_dict(h, now) for h in rows]}


def revoke_url(rt: Runtime, actor: Actor, ref: str, hook_id: str) -> None:
    """Revoke an inbound URL: later calls to it are refused with 410."""
    require(actor, Action.AUTOMATE)
    with rt.db.write() as session:
        runbook = find(session, actor, ref)
        hook = session.get(InboundWebhook, hook_id)
        if hook is None or hook.runbook_id != runbook.id:
            raise NotFound(f"webhook URL {hook_id!r} not found for runbook {runbook.key}")
        if hook.revoked_at is None:
            hook.revoked_at = rt.clock.now()
            audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="webhook_url.revoke", target=runbook.key,
                         detail={"id": hook.id})


def receive(rt: Runtime, token: str, headers: dict[str, str], body: bytes, *, idempotency_key: str | None) -> dict[str, Any]:
    """Start a job from an inbound webhook call; return the job."""
    now = rt.clock.now()
    with rt.db.read() as session:
        hook = session.scalar(select(InboundWebhook).where(InboundWebhook.token_hash == hash_token(token)))
        runbook_key = session.scalar(select(Runbook.key).where(Runbook.id == hook.runbook_id)) if hook else None
    if hook is None:
        raise NotFound("no webhook URL matches this token")
    if hook.revoked_at is not None:
        raise Gone(f"this webhook URL of runbook {runbook_key} was revoked at {hook.revoked_at.isoformat()}")
    if hook.expires_at is not None and hook.expires_at <= now:
        raise Gone(f"this webhook URL of runbook {runbook_key} expired at {hook.expires_at.isoformat()}")
    message_id = None
    if hook.require_signature:
        try:
            message_id = verify(hook.secret, headers, body, tolerance=rt.settings.webhook_tolerance_seconds, now=now.timestamp())
        except VerificationError as exc:
            raise Unauthorized(f"signature check failed: {exc}") from exc
        if len(message_id) > MAX_MESSAGE_ID_LENGTH:
            raise InvalidInput(f"webhook-id is {len(message_id)} characters long; at most {MAX_MESSAGE_ID_LENGTH} are accepted",
                               errors=[{"field": "webhook-id", "message": "too long", "value": message_id[:40] + "…"}])
    scoped_key = None
    # A blank key is no key: callers (CI systems, alerting tools) send the header empty when the variable behind it is unset.
    if idempotency_key is not None and idempotency_key.strip():
        # A URL's keys are its own: each is kept prefixed with the URL's id, which takes part of the width a job keeps.
        longest = MAX_IDEMPOTENCY_KEY_LENGTH - len(hook.id) - 1
        if len(idempotency_key) > longest:
            raise InvalidInput(f"Idempotency-Key is {len(idempotency_key)} characters long; a webhook URL takes at most {longest}",
                               errors=[{"field": "Idempotency-Key", "message": "too long", "value": idempotency_key[:40] + "…"}])
        scoped_key = f"{hook.id}:{idempotency_key}"
    try:
        parameters = loads(body) if body.strip() else {}
    except MalformedJson as exc:
        raise InvalidInput(f"the body is not JSON: {exc}", errors=[exc.error]) from exc
    except ValueError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}", errors=[{"field": "body", "message": "invalid JSON", "value": None}]) from exc
    if not isinstance(parameters, dict):
        raise InvalidInput(f"the body must be a JSON object of parameters, got {type(parameters).__name__}",
                           errors=[{"field": "body", "message": "not an object", "value": parameters}])
    request = JobRequest(workspace_id=hook.workspace_id, runbook_ref=runbook_key, parameters=parameters,
                         trigger=Trigger("webhook", f"webhook:{hook.id}", hook.id),
                         idempotency_key=scoped_key)

    def start() -> dict[str, Any]:
        with rt.db.write() as session:
            job, _ = create_job(rt, request, session=session)
            if message_id is not None:
                session.add(InboundMessage(webhook_id=hook.id, message_id=message_id, received_at=now, job_uuid=job.uuid))
                session.flush()
            session.get(InboundWebhook, hook.id).last_used_at = now
            return job_to_dict(rt, session, job, with_steps=False)

    try:
        return start()
    except IntegrityError:
        if message_id is not None:
            raise Conflict(f"message {message_id!r} was already received (replayed webhook); send a new webhook-id for a new request") from None
        if request.idempotency_key is None:
            raise
    # A concurrent call with the same Idempotency-Key won the race: answer with its job.
    return start()
