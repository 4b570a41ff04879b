"""REST-hook subscriptions: subscribe (201 + Location + secret once), read, list, renew, unsubscribe, and what is refused."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import problem

from .conftest import get, runbook, start, subscribe


@pytest.fixture
def target(server) -> str:
    return server.url + "/hook"


def test_subscribe_answers_201_with_a_location_and_a_whsec_secret(api, target):
    response = api.post("/hooks", json={"events": ["job.succeeded"], "target_url": target})

    body = response.get_json()
    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/v1/ws/acme/hooks/{body['id']}"
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > len("whsec_") + 20
    assert (body["events"], body["target_url"], body["status"], body["runbooks"]) == (["job.succeeded"], target, "active", None)


def test_location_of_a_subscription_can_be_deleted_and_is_then_gone(api, target):
    created = api.post("/hooks", json={"events": ["job.succeeded"], "target_url": target})
    location = created.headers["Location"]

    deleted = api.delete(location)

    assert deleted.status_code == 204
    assert problem(api.get(location))["status"] == 404
    assert get(api, "/hooks")["items"] == []


def test_secret_is_only_in_the_creating_answer(api, target):
    created = subscribe(api, target, ["job.succeeded"])

    read = get(api, f"/hooks/{created['id']}")
    [listed] = get(api, "/hooks")["items"]

    assert "secret" not in read and "secret" not in listed
    assert created["secret"] not in str(read) + str(listed)


def test_list_and_read_show_each_subscription(api, target):
    key = runbook(api, "Monitored")
    first = subscribe(api, target, ["job.succeeded"])
    second = subscribe(api, target + "/2", ["job.stopped_by_system", "job.failed"], runbooks=[key])

    listed = get(api, "/hooks")["items"]

    assert [s["id"] for s in listed] == [first["id"], second["id"]]
    read = get(api, f"/hooks/{second['id']}")
    assert (read["events"], read["runbooks"], read["target_url"]) == (["job.stopped_by_system", "job.failed"], [key], target + "/2")


def test_runbook_filter_accepts_a_name_and_stores_the_key(api, target):
    key = runbook(api, "Rotate certificates", name="rotate-certs")

    created = subscribe(api, target, ["job.succeeded"], runbooks=["rotate-certs"])

    assert created["runbooks"] == [key]


def test_patch_expires_at_renews_the_subscription(api, server, clock, deliverer):
    key = runbook(api, "Monitored")
    soon = clock.now() + timedelta(minutes=1)
    created = subscribe(api, server.url + "/hook", ["runbook.invoked"], expires_at=soon.isoformat())
    later = clock.now() + timedelta(hours=1)

    renewed = api.patch(f"/hooks/{created['id']}", json={"expires_at": later.isoformat()})
    clock.advance(120)  # past the first expiry, before the renewed one
    start(api, key)
    deliverer.run_until_idle()

    assert renewed.status_code == 200
    assert renewed.get_json()["expires_at"] == later.isoformat()
    assert server.hits["/hook"] == 1


def test_expired_subscription_gets_no_deliveries(api, server, clock, deliverer):
    key = runbook(api, "Monitored")
    created = subscribe(api, server.url + "/hook", ["runbook.invoked"], expires_at=(clock.now() + timedelta(minutes=1)).isoformat())

    clock.advance(120)
    start(api, key)
    deliverer.run_until_idle()

    assert server.hits["/hook"] == 0
    assert get(api, f"/hooks/{created['id']}/deliveries")["items"] == []


def test_renewing_with_an_expiry_in_the_past_is_refused(api, target, clock):
    created = subscribe(api, target, ["job.succeeded"], expires_at=(clock.now() + timedelta(hours=1)).isoformat())
    past = (clock.now() - timedelta(minutes=1)).isoformat()

    body = problem(api.patch(f"/hooks/{created['id']}", json={"expires_at": past}))

    assert body["status"] == 422
    assert [e["field"] for e in body["errors"]] == ["expires_at"]
    assert get(api, f"/hooks/{created['id']}")["expires_at"] == (clock.now() + timedelta(hours=1)).isoformat()


# --- what is refused ------------------------------------------------------------------------------------------


def _subscription(target: str, **changes) -> dict:
    return {"events": ["job.succeeded"], "target_url": target, **changes}


BAD_SUBSCRIPTIONS = [
    pytest.param({"target_url": "not a url"}, "target_url", "not a url", id="malformed-target-url"),
    pytest.param({"target_url": "http://[::1/hook"}, "target_url", "http://[::1/hook", id="unclosed-ipv6-bracket"),
    pytest.param({"target_url": "ftp://127.0.0.1/hook"}, "target_url", "ftp://127.0.0.1/hook", id="non-http-scheme"),
    pytest.param({"target_url": "http://10.0.0.1/hook"}, "target_url", "http://10.0.0.1/hook", id="private-target"),
    pytest.param({"target_url": "http://169.254.169.254/latest/meta-data"}, "target_url", "http://169.254.169.254/latest/meta-data",
                 id="link-local-metadata-target"),
    pytest.param({"events": ["job.exploded"]}, "events", "job.exploded", id="unknown-event-type"),
    pytest.param({"events": []}, "events", [], id="empty-events"),
    pytest.param({"runbooks": ["RB-09999"]}, "runbooks", "RB-09999", id="unknown-runbook-in-filter"),
    pytest.param({"runbooks": []}, "runbooks", [], id="empty-runbook-filter"),
    pytest.param({"expires_at": "2020-01-01T00:00:00+00:00"}, "expires_at", "2020-01-01T00:00:00+00:00", id="expiry-in-the-past"),
    pytest.param({"colour": "red"}, "colour", "red", id="unknown-field"),
]


@pytest.mark.parametrize(("changes", "field", "value"), BAD_SUBSCRIPTIONS)
def test_bad_subscription_is_refused_naming_the_field_and_creates_nothing(api, target, changes, field, value):
    body = problem(api.post("/hooks", json=_subscription(target, **changes)))

    assert body["status"] == 422
    assert {"field": field, "value": value} in [{"field": e["field"], "value": e["value"]} for e in body["errors"]], body["errors"]
    assert get(api, "/hooks")["items"] == []


@pytest.mark.settings(outbound_allowlist="")
def test_loopback_target_is_refused_unless_allow_listed(api, target):
    body = problem(api.post("/hooks", json=_subscription(target)))

    [error] = body["errors"]
    assert (body["status"], error["field"], error["value"]) == (422, "target_url", target)
    assert "loopback" in error["message"] and "127.0.0.1" in error["message"]
    assert get(api, "/hooks")["items"] == []


@pytest.mark.parametrize(("method", "path", "payload"), [
    ("GET", "/hooks", None),
    ("POST", "/hooks", {"events": ["job.succeeded"], "target_url": "http://127.0.0.1:9/hook"}),
    ("GET", "/hooks/{id}", None),
    ("PATCH", "/hooks/{id}", {"status": "active"}),
    ("DELETE", "/hooks/{id}", None),
    ("GET", "/hooks/{id}/deliveries", None),
])
def test_member_may_not_manage_subscriptions(api, make_api, target, method, path, payload):
    created = subscribe(api, target, ["job.succeeded"])
    member = make_api("member", subject="mia")

    response = member.request(method, path.format(id=created["id"]), json=payload)

    assert problem(response)["status"] == 403
    assert [s["id"] for s in get(api, "/hooks")["items"]] == [created["id"]]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/hooks/{id}"),
    ("PATCH", "/hooks/{id}"),
    ("DELETE", "/hooks/{id}"),
    ("GET", "/hooks/{id}/deliveries"),
])
def test_another_workspaces_token_sees_no_subscription(api, stranger, target, method, path):
    created = subscribe(api, target, ["job.succeeded"])

    response = stranger.request(method, path.format(id=created["id"]), json={"status": "active"} if method == "PATCH" else None)

    assert problem(response)["status"] == 404
    assert get(stranger, "/hooks")["items"] == []
    assert get(api, f"/hooks/{created['id']}")["status"] == "active"


def test_another_workspaces_token_cannot_reach_this_workspaces_hooks(api, stranger, target):
    subscribe(api, target, ["job.succeeded"])

    response = stranger.get("/api/v1/ws/acme/hooks")

    assert problem(response)["status"] == 404
