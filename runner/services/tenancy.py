"""Workspaces and API tokens."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..auth import Actor, Role, hash_token, new_token
from ..errors import Conflict, InvalidInput, NotFound, Unauthorized
from ..models import ApiToken, Workspace
from ..runtime import Runtime
from . import audit
from .pagination import MAX_ROW_NUMBER

__all__ = ["create_workspace", "get_workspace", "ensure_workspace", "create_token", "authenticate", "authenticate_hash", "list_tokens", "revoke_token"]

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def _check_slug(slug: str) -> None:
    if not SLUG_RE.match(slug):
        raise InvalidInput(
            f"workspace slug must be lowercase letters, digits and dashes (1-64), got {slug!r}",
            errors=[{"field": "slug", "message": "invalid slug", "value": slug}],
        )


def create_workspace(rt: Runtime, slug: str, *, name: str | None = None) -> Workspace:
    """Create a workspace; refuse a slug that exists."""
    _check_slug(slug)
    with rt.db.write() as session:
        if session.scalar(select(Workspace.id).where(Workspace.slug == slug)) is not None:
            raise Conflict(f"workspace {slug!r} already exists")
        workspace = Workspace(slug=slug, name=name or slug, created_at=rt.clock.now())
        session.add(workspace)
        session.flush()
        audit.record(session, rt.clock, workspace_id=workspace.id, actor="cli", action="workspace.create", target=slug)
        return workspace


def ensure_workspace(rt: Runtime, slug: str) -> Workspace:
    """Return the workspace, creating it first if needed."""
    try:
        return get_workspace(rt, slug)
    except NotFound:
        return create_workspace(rt, slug)


def get_workspace(rt: Runtime, slug: str) -> Workspace:
    """Find a workspace by slug."""
    with rt.db.read() as session:
        workspace = session.scalar(select(Workspace).where(Workspace.slug == slug))
        if workspace is not None:
            # Detach it loaded: the read session's rollback would expire it otherwise.
            session.expunge(workspace)
    if workspace is None:
        raise NotFound(f"workspace {slug!r} not found")
    return workspace


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(
            f"role must be one of {', '.join(r.value for r in Role)}, got {value!r}",
            errors=[{"field": "role", "message": "unknown role", "value": value}],
        ) from None


def create_token(
    rt: Runtime,
    slug: str,
    *,
    role: str,
    subject: str | None = None,
    expires_at: datetime | None = None,
    actor: Actor | None = None,
) -> tuple[str, ApiToken]:
    """Create a token for a workspace; return the secret (shown once) and its row."""
    role_value = _role(role)
    if expires_at is not None and expires_at <= rt.clock.now():
        raise InvalidInput("expires_at must be in the future: a token that has expired already would never authenticate",
                           errors=[{"field": "expires_at", "message": "in the past", "value": expires_at.isoformat()}])
    secret = new_token()
    with rt.db.write() as session:
        workspace = session.scalar(select(Workspace).where(Workspace.slug == slug))
        if workspace is None:
            raise NotFound(f"workspace {slug!r} not found")
        token = ApiToken(
            workspace_id=workspace.id,
            subject=subject or f"{role_value.value}-{secret[4:10]}",
            role=role_value.value,
            token_hash=hash_token(secret),
            prefix=secret[:10],
            created_at=rt.clock.now(),
            expires_at=expires_at,
        )
        session.add(token)
        session.flush()
        audit.record(
            session,
            rt.clock,
            workspace_id=workspace.id,
            actor=actor or "cli",
            action="token.create",
            target=f"token:{token.id}",
            detail={"role": token.role, "subject": token.subject},
        )
        return secret, token


def list_tokens(rt: Runtime, actor: Actor) -> list[dict[str, Any]]:
    """List the workspace's tokens, never their secrets."""
    with rt.db.read() as session:
        rows = session.scalars(select(ApiToken).where(ApiToken.workspace_id == actor.workspace_id).order_by(ApiToken.id))
        return [token_to_dict(t) for t in rows]


def revoke_token(rt: Runtime, actor: Actor, token_id: int) -> dict[str, Any]:
    """Revoke a token of the actor's workspace."""
    with rt.db.write() as session:
        token = session.get(ApiToken, token_id) if token_id <= MAX_ROW_NUMBER else None
        if token is None or token.workspace_id != actor.workspace_id:
            raise NotFound(f"token {token_id} not found")
        if token.revoked_at is None:
            token.revoked_at = rt.clock.now()
            audit.record(session, rt.clock, workspace_id=actor.workspace_id, actor=actor, action="token.revoke", target=f"token:{token_id}")
        result = token_to_dict(token)
    rt.tokens.clear()
    return result


def token_to_dict(token: ApiToken) -> dict[str, Any]:
    """Shape a token row for the API (no secret, no hash)."""
    return {
        "id": token.id,
        "subject": token.subject,
        "role": token.role,
        "prefix": token.prefix,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
    }


def authenticate(rt: Runtime, token: str | None, slug: str, *, source: str | None = None) -> Actor:
    """Turn a bearer token into an Actor of workspace ``slug``.

    A valid token of another workspace gets the same 404 as a missing
    workspace, so one tenant cannot learn another's slugs.
    """
    if not token:
        raise Unauthorized("send an API token as 'Authorization: Bearer <token>'")
    return authenticate_hash(rt, hash_token(token), slug, source=source)


def authenticate_hash(rt: Runtime, digest: str, slug: str | None, *, source: str | None = None) -> Actor:
    """Turn a token's hash (as the console's session keeps it) into an Actor; ``slug`` None accepts the token's own workspace."""
    cached = rt.tokens.get(digest)
    if cached is None:
        with rt.db.read() as session:
            cached = _lookup(session, digest, rt.clock.now())
        if cached is None:
            raise Unauthorized("the API token is unknown, revoked or expired")
        rt.tokens.put(digest, cached)
    workspace_id, workspace_slug, subject, role, token_id = cached
    if slug is not None and workspace_slug != slug:
        raise NotFound(f"workspace {slug!r} not found")
    return Actor(workspace_id, workspace_slug, subject, Role(role), token_id, source)


def _lookup(session: Session, digest: str, now: datetime) -> tuple[int, str, str, str, int] | None:
    row = session.execute(
        select(ApiToken.id, ApiToken.subject, ApiToken.role, ApiToken.expires_at, ApiToken.revoked_at, Workspace.id, Workspace.slug)
        .join(Workspace, Workspace.id == ApiToken.workspace_id)
        .where(ApiToken.token_hash == digest)
    ).first()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return (row[5], row.slug, row.subject, row.role, row.id)
