"""Who is asking, and what their role lets them do (DESIGN §5).

The permission table is data (``POLICY``) and ``allowed`` is a pure function
of it, so the table in the README, the API and the tests cannot drift apart.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import Enum

from .errors import Forbidden

__all__ = ["Role", "Action", "Actor", "POLICY", "allowed", "require", "new_token", "hash_token", "role_satisfies"]

TOKEN_PREFIX = "rbm_"


class Role(str, Enum):
    MEMBER = "member"
    OPERATOR = "operator"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        """Position in member < operator < admin < owner."""
        return _RANKS[self]


_RANKS = {Role.MEMBER: 0, Role.OPERATOR: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Action(str, Enum):
    VIEW_PUBLISHED = "view published runbooks and their jobs"
    VIEW_DRAFTS = "view drafts"
    CREATE = "create a runbook"
    EDIT = "edit a runbook"
    PUBLISH = "publish or unpublish a runbook"
    EXECUTE = "execute a runbook"
    OPERATE = "act on a job"
    AUTOMATE = "manage schedules, inbound webhooks and subscriptions"
    ARCHIVE = "archive a runbook"
    VIEW_AUDIT = "read the audit log"
    MANAGE_TOKENS = "manage API tokens"


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role]
    # The runbook's own owner is allowed whatever their role.
    runbook_owner: bool = False


_EVERYONE = frozenset(Role)
_OPERATORS = frozenset({Role.OPERATOR, Role.ADMIN, Role.OWNER})
_ADMINS = frozenset({Role.ADMIN, Role.OWNER})

POLICY: dict[Action, Rule] = {
    Action.VIEW_PUBLISHED: Rule(_EVERYONE),
    Action.VIEW_DRAFTS: Rule(_ADMINS, runbook_owner=True),
    Action.CREATE: Rule(_OPERATORS),
    Action.EDIT: Rule(_ADMINS, runbook_owner=True),
    Action.PUBLISH: Rule(_ADMINS, runbook_owner=True),
    Action.EXECUTE: Rule(_OPERATORS),
    Action.OPERATE: Rule(_OPERATORS),
    Action.AUTOMATE: Rule(_OPERATORS),
    Action.ARCHIVE: Rule(_ADMINS),
    Action.VIEW_AUDIT: Rule(_ADMINS),
    Action.MANAGE_TOKENS: Rule(frozenset({Role.OWNER})),
}


@dataclass(frozen=True)
class Actor:
    """The caller of a request: a token's subject, its role and its workspace."""

    workspace_id: int
    workspace_slug: str
    subject: str
    role: Role
    token_id: int | None = None
    source: str | None = None


def allowed(actor: Actor, action: Action, *, runbook_owner: str | None = None) -> bool:
    """Say whether ``actor`` may perform ``action`` (on a runbook owned by ``runbook_owner``)."""
    rule = POLICY[action]
    if actor.role in rule.roles:
        return True
    return rule.runbook_owner and runbook_owner is not None and runbook_owner == actor.subject


def require(actor: Actor, action: Action, *, runbook_owner: str | None = None) -> None:
    """Raise ``Forbidden`` unless ``actor`` may perform ``action``."""
    if not allowed(actor, action, runbook_owner=runbook_owner):
        owner_clause = " or the runbook's owner" if POLICY[action].runbook_owner else ""
        roles = ", ".join(r.value for r in Role if r in POLICY[action].roles)
        raise Forbidden(
            f"role {actor.role.value!r} may not {action.value}; allowed: {roles}{owner_clause}",
            required_roles=[r.value for r in Role if r in POLICY[action].roles],
        )


def role_satisfies(role: Role, required: str | None) -> bool:
    """Say whether ``role`` is at least the ``required`` role (None requires nothing)."""
    if not required:
        return True
    return role.rank >= Role(required).rank


def new_token() -> str:
    """Make a fresh API token (shown once, stored only as a hash)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Hash a token for storage and lookup.

    Tokens carry 256 random bits, so one SHA-256 is enough: a slow password
    hash would only add latency to every request without adding safety.
    """
    return hashlib.sha256(token.encode()).hexdigest()
