"""Roles, runbook ownership and workspace isolation (DESIGN §5)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from runner.auth import POLICY, Action, Role
from runner.services import tenancy
from tests.conftest import Api, problem
from tests.runner.helpers import create_runbook, runbook_body

M, O, A, W = Role.MEMBER, Role.OPERATOR, Role.ADMIN, Role.OWNER

# DESIGN §5 written out again: (roles allowed, the runbook's owner allowed whatever their role).
# A change to runner.auth.POLICY that is not also a change of the design fails here.
DESIGN_TABLE: dict[Action, tuple[set[Role], bool]] = {
    Action.VIEW_PUBLISHED: ({M, O, A, W}, False),
    Action.VIEW_DRAFTS: ({A, W}, True),
    Action.CREATE: ({O, A, W}, False),
    Action.EDIT: ({A, W}, True),
    Action.PUBLISH: ({A, W}, True),
    Action.EXECUTE: ({O, A, W}, False),
    Action.OPERATE: ({O, A, W}, False),
    Action.AUTOMATE: ({O, A, W}, False),
    Action.ARCHIVE: ({A, W}, False),
    Action.VIEW_AUDIT: ({A, W}, False),
    Action.MANAGE_TOKENS: ({W}, False),
}


@pytest.mark.parametrize("action", list(Action), ids=[a.name for a in Action])
def test_policy_matches_the_design(action):
    rule = POLICY[action]

    assert (set(rule.roles), rule.runbook_owner) == DESIGN_TABLE[action]


# --- the permission table, walked over HTTP ------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One row of the table: an action done on a runbook in some state by someone who may own it."""

    action: Action
    state: str | None  # the runbook's status before the request, None when no runbook is involved
    request: Callable[[Api, str], Any]
    caller_owns: bool = False


def _edit(api: Api, key: str):
    return api.patch(f"/runbooks/{key}", json={"title": "Edited title"})


def _save_external(api: Api, key: str):
    return api.post(f"/runbooks/{key}/versions", json={"source": "CHG-7", "steps": [{"title": "Fail over to the replica"}]})


CASES: dict[str, Case] = {
    "view published": Case(Action.VIEW_PUBLISHED, "published", lambda api, key: api.get(f"/runbooks/{key}")),
    "list published": Case(Action.VIEW_PUBLISHED, "published", lambda api, key: api.get("/runbooks")),
    "view draft": Case(Action.VIEW_DRAFTS, "draft", lambda api, key: api.get(f"/runbooks/{key}")),
    "view own draft": Case(Action.VIEW_DRAFTS, "draft", lambda api, key: api.get(f"/runbooks/{key}"), caller_owns=True),
    "view draft versions": Case(Action.VIEW_DRAFTS, "draft", lambda api, key: api.get(f"/runbooks/{key}/versions")),
    "create": Case(Action.CREATE, None, lambda api, key: api.post("/runbooks", json=runbook_body("Brand new runbook"))),
    "import": Case(Action.CREATE, None, lambda api, key: api.post("/runbooks/import", json={"text": "1. Drain the node 2. Reboot it"})),
    "edit": Case(Action.EDIT, "published", _edit),
    "edit draft": Case(Action.EDIT, "draft", _edit),
    "edit own": Case(Action.EDIT, "published", _edit, caller_owns=True),
    "save from external list": Case(Action.EDIT, "published", _save_external),
    "save own from external list": Case(Action.EDIT, "published", _save_external, caller_owns=True),
    "publish": Case(Action.PUBLISH, "draft", lambda api, key: api.post(f"/runbooks/{key}/publish")),
    "publish own": Case(Action.PUBLISH, "draft", lambda api, key: api.post(f"/runbooks/{key}/publish"), caller_owns=True),
    "unpublish": Case(Action.PUBLISH, "published", lambda api, key: api.post(f"/runbooks/{key}/unpublish")),
    "unpublish own": Case(Action.PUBLISH, "published", lambda api, key: api.post(f"/runbooks/{key}/unpublish"), caller_owns=True),
    "archive": Case(Action.ARCHIVE, "published", lambda api, key: api.post(f"/runbooks/{key}/archive")),
    "archive own": Case(Action.ARCHIVE, "published", lambda api, key: api.post(f"/runbooks/{key}/archive"), caller_owns=True),
    "read audit log": Case(Action.VIEW_AUDIT, None, lambda api, key: api.get("/audit")),
    "list tokens": Case(Action.MANAGE_TOKENS, None, lambda api, key: api.get("/tokens")),
    "create token": Case(Action.MANAGE_TOKENS, None, lambda api, key: api.post("/tokens", json={"role": "member", "subject": "newbie"})),
}

# Actions the job engine's routes exercise; the foundation has no route for them yet.
ENGINE_ACTIONS = {Action.EXECUTE, Action.OPERATE, Action.AUTOMATE}


def test_every_foundation_action_of_the_policy_is_walked():
    assert {case.action for case in CASES.values()} == set(POLICY) - ENGINE_ACTIONS


def _expected(case: Case, role: Role) -> int | None:
    """None when allowed; else the refusal status: 404 where the draft is invisible, 403 otherwise."""
    rule = POLICY[case.action]
    if role in rule.roles or (rule.runbook_owner and case.caller_owns):
        return None
    draft_rule = POLICY[Action.VIEW_DRAFTS]
    sees_draft = role in draft_rule.roles or (draft_rule.runbook_owner and case.caller_owns)
    return 404 if case.state == "draft" and not sees_draft else 403


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
@pytest.mark.parametrize("name", list(CASES))
def test_permission_table(api, make_api, name, role):
    case = CASES[name]
    subject = f"{role.value}-user"
    key = ""
    if case.state is not None:
        owner = subject if case.caller_owns else "olivia"
        key = create_runbook(api, "Restart the primary database", status=case.state, owner=owner)["key"]
    before = api.get(f"/runbooks/{key}").get_json() if key else None
    caller = make_api(role.value, subject=subject)

    response = case.request(caller, key)

    refusal = _expected(case, role)
    if refusal is None:
        assert 200 <= response.status_code < 300, (response.status_code, response.get_json())
    else:
        body = problem(response)
        assert response.status_code == refusal, body
        if key:
            assert api.get(f"/runbooks/{key}").get_json() == before


def test_member_lists_only_published_runbooks_and_the_drafts_they_own(api, make_api):
    published = create_runbook(api, "Published runbook", status="published")["key"]
    create_runbook(api, "Someone else's draft")
    own_draft = create_runbook(api, "Mary's draft", owner="mary")["key"]

    keys = [r["key"] for r in make_api("member", subject="mary").get("/runbooks").get_json()["items"]]

    assert keys == [published, own_draft]


def test_refused_action_is_named_with_the_roles_that_may_do_it(api, make_api):
    key = create_runbook(api, status="published")["key"]

    body = problem(make_api("operator").post(f"/runbooks/{key}/archive"))

    assert body["status"] == 403
    assert "'operator'" in body["detail"]
    assert body["required_roles"] == ["admin", "owner"]


def test_created_token_authenticates_with_its_role(make_api, client):
    created = make_api("owner").post("/tokens", json={"role": "operator", "subject": "otto"})
    assert created.status_code == 201
    secret = created.get_json()["token"]

    me = client.get("/api/v1/ws/acme", headers={"Authorization": f"Bearer {secret}"})

    assert me.status_code == 200
    assert (me.get_json()["subject"], me.get_json()["role"]) == ("otto", "operator")


def test_a_token_expiring_in_the_past_is_refused_and_none_is_created(make_api, clock):
    owner = make_api("owner")
    before = owner.get("/tokens").get_json()["items"]
    past = (clock.now() - timedelta(minutes=1)).isoformat()

    response = owner.post("/tokens", json={"role": "operator", "subject": "otto", "expires_at": past})

    assert problem(response)["status"] == 422
    assert problem(response)["errors"] == [{"field": "expires_at", "message": "in the past", "value": past}]
    assert owner.get("/tokens").get_json()["items"] == before


# --- tenancy -------------------------------------------------------------------------------------


@pytest.fixture
def other_workspace(rt, make_api):
    """Workspace ``globex`` with a published runbook RB-00001 at version 2, and its owner's Api."""
    tenancy.create_workspace(rt, "globex")
    owner = make_api("owner", subject="gustav", slug="globex")
    key = create_runbook(owner, "Globex failover", name="globex-failover", status="published")["key"]
    owner.patch(f"/runbooks/{key}", json={"category": "failover"})
    return owner


@pytest.mark.parametrize(
    "path",
    [
        "/runbooks/RB-00001",
        "/runbooks/globex-failover",
        "/runbooks/RB-00001/versions",
        "/runbooks/RB-00001/versions/1",
        "/runbooks/RB-00001/diff?from=1&to=2",
        "/runbooks/RB-00001/export",
    ],
)
def test_other_workspaces_runbooks_are_not_found_in_your_own(api, other_workspace, path):
    response = api.get(path)

    assert problem(response)["status"] == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("GET", "/runbooks"),
        ("GET", "/runbooks/RB-00001"),
        ("GET", "/runbooks/RB-00001/versions"),
        ("GET", "/runbooks/RB-00001/diff?from=1&to=2"),
        ("GET", "/audit"),
        ("GET", "/tokens"),
        ("PATCH", "/runbooks/RB-00001"),
        ("POST", "/runbooks/RB-00001/archive"),
        ("POST", "/runbooks"),
    ],
)
def test_token_of_one_workspace_gets_404_on_another_workspaces_routes(api, other_workspace, method, path):
    kwargs = {"json": {"title": "Intruder"}} if method in ("PATCH", "POST") else {}

    response = api.request(method, f"/api/v1/ws/globex{path}", **kwargs)

    body = problem(response)
    assert response.status_code == 404
    assert "globex" in body["detail"]
    runbook = other_workspace.get("/runbooks/RB-00001").get_json()
    assert (runbook["title"], runbook["status"], runbook["version"]) == ("Globex failover", "published", 2)
    assert [r["key"] for r in other_workspace.get("/runbooks").get_json()["items"]] == ["RB-00001"]


def test_unknown_workspace_looks_like_another_workspace(api):
    response = api.get("/api/v1/ws/nowhere/runbooks")

    assert problem(response)["status"] == 404


@pytest.fixture
def bad_tokens(rt, clock, make_api) -> dict[str, str | None]:
    """Bearer values that must not authenticate."""
    revoked, admin = make_api("owner"), make_api("owner")
    token_id = next(t["id"] for t in admin.get("/tokens").get_json()["items"] if t["prefix"] == revoked.token[:10])
    assert admin.delete(f"/tokens/{token_id}").status_code == 200
    expired, _ = tenancy.create_token(rt, "acme", role="owner", expires_at=clock.now() + timedelta(seconds=1))
    clock.advance(2)
    return {"missing": None, "unknown": "rbm_not-a-token", "revoked": revoked.token, "expired": expired}


@pytest.mark.parametrize("kind", ["missing", "unknown", "revoked", "expired"])
def test_unusable_token_is_401(client, workspace, bad_tokens, kind):
    token = bad_tokens[kind]
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    response = client.get(f"/api/v1/ws/{workspace}/runbooks", headers=headers)

    assert problem(response)["status"] == 401


@pytest.mark.parametrize("header", ["Basic b2xpdmlhOnNlY3JldA==", "Bearer", "rbm_token-without-scheme"])
def test_authorization_header_that_is_not_a_bearer_token_is_401(client, api, header):
    response = client.get("/api/v1/ws/acme/runbooks", headers={"Authorization": header})

    assert problem(response)["status"] == 401


def test_token_expiring_later_works_until_it_expires(rt, clock, client, workspace):
    secret, _ = tenancy.create_token(rt, workspace, role="member", expires_at=clock.now() + timedelta(minutes=5))
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/ws/acme/runbooks", headers=headers).status_code == 200

    clock.advance(minutes=5)

    assert client.get("/api/v1/ws/acme/runbooks", headers=headers).status_code == 401
