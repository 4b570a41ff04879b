"""Demo content for ``serve --demo``: a workspace, an owner token and a few runbooks to try."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .auth import Actor, Role
from .errors import RunnerError
from .runtime import Runtime
from .services import runbooks, tenancy

__all__ = ["bootstrap", "DEMO_RUNBOOKS"]

TOKEN_FILE = "demo-token"

DEMO_RUNBOOKS: list[dict[str, Any]] = [
    {
        "name": "incident-response-database",
        "title": "Incident response: database",
        "description": "First response when the primary database degrades. Link the job to the incident.",
        "category": "incident-response",
        "callable": True,
        "parameters": {
            "type": "object",
            "properties": {
                "service": {"type": "string", "description": "Affected service", "default": "orders-db"},
                "severity": {"type": "string", "enum": ["sev1", "sev2", "sev3"], "default": "sev2"},
            },
        },
        "steps": [
            {"title": "Page the on-call engineer via send_email", "owner_role": "operator", "est_minutes": 2,
             "description": "Subject: `{{ params.severity }}` incident on {{ params.service }}."},
            {"title": "Snapshot the database logs to the data store", "owner_role": "operator", "est_minutes": 5,
             "verification": "The snapshot for {{ params.service }} is listed in the data store."},
            {"title": "Run a diagnostic web_fetch against /health", "owner_role": "operator", "est_minutes": 3,
             "verification": "/health of {{ params.service }} answers 200."},
            {"title": "Post a status update to #incidents on Slack", "owner_role": "operator", "est_minutes": 2},
        ],
    },
    {
        "name": "rotate-tls-certificate",
        "title": "Rotate a TLS certificate",
        "description": "Replace the certificate of a public endpoint before it expires.",
        "category": "maintenance",
        "callable": True,
        "parameters": {
            "type": "object",
            "required": ["domain"],
            "properties": {"domain": {"type": "string", "description": "Domain whose certificate is rotated"}},
        },
        "steps": [
            {"title": "Issue a new certificate for {{ params.domain }}", "owner_role": "operator", "est_minutes": 10},
            {"title": "Deploy the certificate to the load balancer", "owner_role": "admin", "est_minutes": 10,
             "requires_approval": True, "is_destructive": True,
             "rollback_note": "Re-attach the previous certificate from the load balancer's history."},
            {"title": "Verify the served certificate of {{ params.domain }}", "owner_role": "operator", "est_minutes": 3,
             "verification": "openssl s_client shows the new expiry date."},
        ],
    },
    {
        "name": "health-sweep",
        "title": "Weekly health sweep",
        "description": "Routine checks an operator walks through every Monday.",
        "category": "maintenance",
        "callable": False,
        "steps": [
            {"title": "Review the error budget dashboard", "owner_role": "member", "est_minutes": 5},
            {"title": "Check disk usage on the database hosts", "owner_role": "operator", "est_minutes": 5},
            {"title": "Record the findings in the operations log", "owner_role": "member", "est_minutes": 3},
        ],
    },
]


def _load_token(path: Path, rt: Runtime, slug: str) -> str | None:
    if not path.exists():
        return None
    token = path.read_text().strip()
    try:
        tenancy.authenticate(rt, token, slug)
    except RunnerError:
        return None
    return token


def bootstrap(rt: Runtime) -> tuple[str, str]:
    """Make sure the demo workspace, its runbooks and an owner token exist; return (slug, token)."""
    from .schemas.runbook import RunbookBodySchema

    slug = rt.settings.demo_workspace
    workspace = tenancy.ensure_workspace(rt, slug)
    actor = Actor(workspace.id, slug, "demo-owner", Role.OWNER, source="serve --demo")
    for spec in DEMO_RUNBOOKS:
        try:
            runbooks.get(rt, actor, spec["name"])
            continue
        except RunnerError:
            pass
        created = runbooks.create(rt, actor, RunbookBodySchema().load(spec))
        runbooks.transition(rt, actor, created["key"], "publish")
    token_path = Path(rt.settings.var_dir) / TOKEN_FILE
    token = _load_token(token_path, rt, slug)
    if token is None:
        token, _ = tenancy.create_token(rt, slug, role="owner", subject="demo-owner")
        token_path.parent.mkdir(parents=True, exist_ok=True)
        token_path.write_text(token + "\n")
        os.chmod(token_path, 0o600)
    return slug, token
