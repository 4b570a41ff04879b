"""The console shows and does exactly what the token's role and workspace allow over the API (DESIGN §5)."""
from __future__ import annotations

import pytest

from runner.services import tenancy
from tests.console.conftest import page
from tests.runner.helpers import create_runbook

# What each role sees on a published runbook it does not own (DESIGN §5), button by button.
VISIBLE = {
    #            new    edit   execute publish archive webhooks
    "member":   (False, False, False, False, False, False),
    "operator": (True, False, True, False, False, True),
    "admin":    (True, True, True, True, True, True),
    "owner":    (True, True, True, True, True, True),
}


def _buttons(console, key: str) -> tuple[bool, ...]:
    listing = page(console.get("/runbooks"))
    steps = page(console.get(f"/runbooks/{key}"))
    api_tab = page(console.get(f"/runbooks/{key}/api"))
    return (
        listing.has("a", href="/console/ws/acme/runbooks/new"),
        steps.has("form", id="editor"),
        steps.has("a", href=f"/console/ws/acme/runbooks/{key}/execute"),
        steps.has("form", action=f"/console/ws/acme/runbooks/{key}/unpublish"),
        steps.has("form", action=f"/console/ws/acme/runbooks/{key}/archive"),
        api_tab.has("form", action=f"/console/ws/acme/runbooks/{key}/webhooks"),
    )


@pytest.mark.parametrize("role", list(VISIBLE))
def test_each_role_sees_the_buttons_its_role_allows(make_console, api, role):
    published = create_runbook(api, status="published", callable=True)
    console = make_console(role, subject=f"{role}-person")

    assert _buttons(console, published["key"]) == VISIBLE[role]


def test_the_runbook_owner_may_edit_and_publish_whatever_their_role(make_console, make_api):
    operator_api = make_api("operator", subject="olga")
    own = create_runbook(operator_api)
    olga = make_console("operator", subject="olga")

    steps = page(olga.get(f"/runbooks/{own['key']}"))

    assert steps.has("form", id="editor")
    assert steps.has("form", action=f"/console/ws/acme/runbooks/{own['key']}/publish")
    assert not steps.has("form", action=f"/console/ws/acme/runbooks/{own['key']}/archive")


def test_member_cannot_open_new_runbook(make_console):
    member = make_console("member")

    answer = member.get("/runbooks/new")

    assert answer.status_code == 403
    assert "may not create a runbook" in page(answer).text


def test_member_cannot_execute_and_no_job_is_created(make_console, api):
    published = create_runbook(api, status="published")
    member = make_console("member")

    answer = member.post(f"/runbooks/{published['key']}/execute", {})

    assert answer.status_code == 403
    assert api.get("/jobs").get_json()["items"] == []


def test_member_cannot_save_an_edit(make_console, api):
    published = create_runbook(api, status="published")
    member = make_console("member")

    answer = member.post(f"/runbooks/{published['key']}", {"title": "Hijacked", "base_version": "1", "op": "save"})

    assert answer.status_code == 403
    assert api.get(f"/runbooks/{published['key']}").get_json()["version"] == 1


def test_operator_cannot_archive(make_console, api):
    published = create_runbook(api, status="published")
    operator = make_console("operator")

    answer = operator.post(f"/runbooks/{published['key']}/archive")

    assert answer.status_code == 403
    assert "may not archive" in page(answer).text
    assert api.get(f"/runbooks/{published['key']}").get_json()["status"] == "published"


def test_member_does_not_see_drafts_of_others(make_console, api):
    draft = create_runbook(api)
    member = make_console("member")

    answer = member.get(f"/runbooks/{draft['key']}")

    assert answer.status_code == 404
    assert draft["title"] not in page(member.get("/runbooks")).text


def test_another_workspaces_runbook_is_not_found(make_console, api, rt):
    published = create_runbook(api, status="published")
    tenancy.create_workspace(rt, "globex")
    outsider = make_console("owner", slug="globex")

    in_their_workspace = outsider.get(f"/runbooks/{published['key']}")
    in_acme = outsider.get(f"/console/ws/acme/runbooks/{published['key']}")

    assert in_their_workspace.status_code == 404
    assert f"runbook '{published['key']}' not found in workspace 'globex'" in page(in_their_workspace).text
    assert in_acme.status_code == 404
    assert "workspace 'acme' not found" in page(in_acme).text
    assert published["title"] not in page(in_acme).text


def test_unknown_console_page_is_a_not_found_page(console):
    answer = console.get("/console/no/such/page")

    assert answer.status_code == 404
    assert "no console page at /console/no/such/page" in page(answer).text
