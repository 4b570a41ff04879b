"""The API tab: how to call the runbook, and its inbound webhook URLs."""
from __future__ import annotations

import dataclasses

from runner import create_app
from runner.runtime import Runtime
from runner.services import tenancy
from tests.console.conftest import Console, page
from tests.runner.helpers import create_runbook


def test_api_tab_shows_a_copyable_curl_for_this_runner(console, api):
    published = create_runbook(api, status="published", callable=True,
                               parameters={"type": "object", "properties": {"region": {"type": "string", "default": "eu-west-1"}}},
                               steps=[{"title": "Restart the pods in {{ params.region }}"}])

    tab = page(console.get(f"/runbooks/{published['key']}/api"))

    assert tab.has("pre", id="curl-invoke") and tab.has("button", data_copy="curl-invoke")
    assert f'curl -X POST "http://localhost/api/v1/ws/acme/runbooks/{published["key"]}/jobs"' in tab.text
    assert '-H "Authorization: Bearer $RUNBOOK_MANAGER_TOKEN"' in tab.text
    assert '-H "X-Runbook-Environment: eu-qa"' in tab.text
    assert """-d '{"parameters": {"region": "eu-west-1"}}'""" in tab.text
    assert "GET http://localhost/api/v1/ws/acme/jobs/{uuid}" in tab.text
    assert f"{published['title']} ({published['key']})" in tab.text


def test_api_tab_uses_the_configured_public_url(rt, workspace, api):
    published = create_runbook(api, status="published", callable=True)
    public = create_app(runtime=Runtime(dataclasses.replace(rt.settings, public_url="https://runbooks.example.com"), rt.db, rt.clock))
    token, _ = tenancy.create_token(rt, workspace, role="owner")
    console = Console(public.test_client(), workspace, token)
    console.sign_in()

    tab = page(console.get(f"/runbooks/{published['key']}/api"))

    assert f'"https://runbooks.example.com/api/v1/ws/acme/runbooks/{published["key"]}/jobs"' in tab.text


def test_creating_a_webhook_url_shows_it_once(console, api):
    published = create_runbook(api, status="published", callable=True)

    created = console.post(f"/runbooks/{published['key']}/webhooks", {"require_signature": "on"})
    later = console.get(f"/runbooks/{published['key']}/api")

    assert created.status_code == 201
    shown = page(created)
    url = shown.text[shown.text.index("http://localhost/api/v1/hooks/in/"):].split()[0]
    listed = api.get(f"/runbooks/{published['key']}/webhooks").get_json()["items"]
    assert [(h["status"], h["require_signature"]) for h in listed] == [("active", True)]
    assert url.startswith("http://localhost/api/v1/hooks/in/rbmwh_")
    assert "whsec_" in shown.text
    assert url not in later.get_data(as_text=True)
    assert page(later).has("tr", data_hook=listed[0]["id"])


def test_a_created_webhook_url_starts_jobs(console, api, client):
    published = create_runbook(api, status="published", callable=True)
    shown = page(console.post(f"/runbooks/{published['key']}/webhooks", {}))
    url = shown.text[shown.text.index("http://localhost/api/v1/hooks/in/"):].split()[0]

    answer = client.post(url.removeprefix("http://localhost"), json={})

    assert answer.status_code == 202


def test_a_webhook_url_with_a_past_expiry_is_refused_on_the_tab(console, api):
    published = create_runbook(api, status="published", callable=True)

    answer = console.post(f"/runbooks/{published['key']}/webhooks", {"expires_at": "2001-01-01T00:00"})

    assert answer.status_code == 422
    assert "expires_at must be in the future" in page(answer).text
    assert api.get(f"/runbooks/{published['key']}/webhooks").get_json()["items"] == []


def test_revoking_a_webhook_url(console, api):
    published = create_runbook(api, status="published", callable=True)
    hook = api.post(f"/runbooks/{published['key']}/webhooks", json={}).get_json()

    answer = console.post(f"/runbooks/{published['key']}/webhooks/{hook['id']}/revoke")

    assert answer.status_code == 303
    assert api.get(f"/runbooks/{published['key']}/webhooks").get_json()["items"][0]["status"] == "revoked"
    assert not page(console.get(f"/runbooks/{published['key']}/api")).has(
        "form", action=f"/console/ws/acme/runbooks/{published['key']}/webhooks/{hook['id']}/revoke")


def test_a_member_cannot_revoke_a_webhook_url(make_console, api):
    published = create_runbook(api, status="published", callable=True)
    hook = api.post(f"/runbooks/{published['key']}/webhooks", json={}).get_json()
    member = make_console("member")

    answer = member.post(f"/runbooks/{published['key']}/webhooks/{hook['id']}/revoke")

    assert answer.status_code == 403
    assert api.get(f"/runbooks/{published['key']}/webhooks").get_json()["items"][0]["status"] == "active"
