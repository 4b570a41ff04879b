"""Inbound webhook URLs: created once, listed without the URL, revoked, expiring; starting jobs, idempotency,
hashed tokens, and signed URLs (Standard Webhooks) refusing unsigned, forged, stale and replayed calls."""
from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from runner.models import InboundWebhook
from tests.conftest import problem
from webhooks.signing import generate_secret, signed_headers

from .conftest import get, runbook


@pytest.fixture
def key(api) -> str:
    return runbook(api, "Deploy")


def create_url(api, key: str, **body) -> dict:
    response = api.post(f"/runbooks/{key}/webhooks", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def path_of(created: dict) -> str:
    return urlsplit(created["url"]).path


def jobs(api) -> list[dict]:
    return get(api, "/jobs")["items"]


def test_created_url_is_shown_once_and_not_in_the_list(api, key):
    created = create_url(api, key)

    [listed] = get(api, f"/runbooks/{key}/webhooks")["items"]

    assert path_of(created).startswith("/api/v1/hooks/in/rbmwh_")
    assert (listed["id"], listed["status"]) == (created["id"], "active")
    assert "url" not in listed
    assert path_of(created).rsplit("/", 1)[1] not in json.dumps(listed)


def test_post_with_a_json_object_starts_a_job_triggered_by_webhook(api, client, key):
    created = create_url(api, key)

    response = client.post(path_of(created), json={"x": "from-ci"})

    job = response.get_json()["job"]
    assert response.status_code == 202
    assert (job["triggered_by"], job["parameters"], job["runbook"]["key"]) == ("webhook", {"x": "from-ci"}, key)
    assert [j["uuid"] for j in jobs(api)] == [job["uuid"]]


@pytest.mark.parametrize("body", [b'\xef\xbb\xbf{"x": "from-ci"}', '{"x": "from-ci"}'.encode("utf-16"), '{"x": "from-ci"}'.encode("utf-32")],
                         ids=["utf-8-with-a-byte-order-mark", "utf-16", "utf-32"])
def test_a_json_object_in_any_encoding_json_allows_starts_a_job(api, client, key, body):
    created = create_url(api, key)

    response = client.post(path_of(created), data=body, content_type="application/json")

    assert response.status_code == 202, response.get_json()
    assert response.get_json()["job"]["parameters"] == {"x": "from-ci"}


def test_revoked_url_is_gone(api, client, key):
    created = create_url(api, key)

    revoked = api.delete(f"/runbooks/{key}/webhooks/{created['id']}")
    response = client.post(path_of(created), json={"x": "late"})

    assert revoked.status_code == 204
    assert problem(response)["status"] == 410
    assert get(api, f"/runbooks/{key}/webhooks")["items"][0]["status"] == "revoked"
    assert jobs(api) == []


def test_expired_url_is_gone(api, client, clock, key):
    created = create_url(api, key, expires_at=(clock.now() + timedelta(minutes=5)).isoformat())

    clock.advance(301)
    response = client.post(path_of(created), json={})

    assert problem(response)["status"] == 410
    assert "expired" in problem(response)["detail"]
    assert jobs(api) == []


def test_unknown_token_is_not_found(api, client, key):
    create_url(api, key)

    response = client.post("/api/v1/hooks/in/rbmwh_" + "x" * 43, json={})

    assert problem(response)["status"] == 404
    assert jobs(api) == []


def test_url_of_a_non_callable_runbook_is_refused(api):
    key = runbook(api, "Internal only", callable=False)

    response = api.post(f"/runbooks/{key}/webhooks", json={})

    assert problem(response)["status"] == 409
    assert get(api, f"/runbooks/{key}/webhooks")["items"] == []


def test_url_expiring_in_the_past_is_refused(api, clock, key):
    response = api.post(f"/runbooks/{key}/webhooks", json={"expires_at": (clock.now() - timedelta(minutes=1)).isoformat()})

    assert [e["field"] for e in problem(response)["errors"]] == ["expires_at"]
    assert get(api, f"/runbooks/{key}/webhooks")["items"] == []


def test_member_may_not_create_a_url(make_api, key):
    response = make_api("member", subject="mia").post(f"/runbooks/{key}/webhooks", json={})

    assert problem(response)["status"] == 403


@pytest.mark.parametrize(("body", "content_type"), [
    pytest.param(b"[1, 2]", "application/json", id="array"),
    pytest.param(b'"deploy"', "application/json", id="string"),
    pytest.param(b"42", "application/json", id="number"),
    pytest.param(b"{not json", "application/json", id="malformed-json"),
    pytest.param(b"[" * 100_000, "application/json", id="nested-too-deep"),
])
def test_body_that_is_not_a_json_object_is_refused(api, client, key, body, content_type):
    created = create_url(api, key)

    response = client.post(path_of(created), data=body, content_type=content_type)

    assert problem(response)["status"] == 422
    assert jobs(api) == []


@pytest.mark.parametrize(("body", "field", "value"), [
    pytest.param(b'{"severity": NaN}', "body", "NaN", id="NaN"),
    pytest.param(b'{"severity": 1e999}', "body", "1e999", id="out-of-range"),
    pytest.param(b'{"service": "\\udc00"}', "service", "\\udc00", id="lone-surrogate"),
    pytest.param(b'{"service": ' + b"[" * 70 + b"]" * 70 + b"}", "body", None, id="70-levels"),
])
def test_json_no_store_keeps_is_refused_naming_what_and_where(api, client, key, body, field, value):
    created = create_url(api, key)

    response = client.post(path_of(created), data=body, content_type="application/json")

    refused = problem(response)
    assert refused["status"] == 422
    assert [(e["field"], e["value"]) for e in refused["errors"]] == [(field, value)]
    assert jobs(api) == []


def test_parameters_the_runbook_refuses_start_no_job(api, client, key):
    created = create_url(api, key)

    response = client.post(path_of(created), json={"x": 42})

    assert problem(response)["status"] == 422
    assert jobs(api) == []


def test_idempotency_key_with_the_same_body_returns_the_same_job(api, client, key):
    created = create_url(api, key)

    first = client.post(path_of(created), json={"x": "a"}, headers={"Idempotency-Key": "build-17"})
    again = client.post(path_of(created), json={"x": "a"}, headers={"Idempotency-Key": "build-17"})

    assert (first.status_code, again.status_code) == (202, 202)
    assert first.get_json()["job"]["uuid"] == again.get_json()["job"]["uuid"]
    assert len(jobs(api)) == 1


def test_idempotency_key_as_long_as_a_url_keeps_is_taken_one_longer_is_refused_as_sent(api, client, key):
    """A URL's keys are kept prefixed with its id (iwh_ and 16 hex digits, then a colon): 179 of the 200 characters are left.

    The refusal shows the start of the key the caller sent, not the prefixed one."""
    created = create_url(api, key)

    taken = client.post(path_of(created), json={"x": "a"}, headers={"Idempotency-Key": "k" * 179})
    refused = client.post(path_of(created), json={"x": "a"}, headers={"Idempotency-Key": "k" * 180})

    assert taken.status_code == 202, taken.get_json()
    assert problem(refused)["status"] == 422
    assert problem(refused)["errors"] == [{"field": "Idempotency-Key", "message": "too long", "value": "k" * 40 + "…"}]
    assert "at most 179" in problem(refused)["detail"]
    assert len(jobs(api)) == 1


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_idempotency_key_is_no_key(api, client, key, blank):
    """Callers send the header empty when the variable behind it is unset: each such call starts a job of its own."""
    created = create_url(api, key)

    answers = [client.post(path_of(created), json={"x": "a"}, headers={"Idempotency-Key": blank}) for _ in range(2)]

    assert [a.status_code for a in answers] == [202, 202]
    assert len({a.get_json()["job"]["uuid"] for a in answers}) == 2
    assert len(jobs(api)) == 2


def test_idempotency_key_reused_with_another_body_is_refused(api, client, key):
    created = create_url(api, key)
    client.post(path_of(created), json={"x": "a"}, headers={"Idempotency-Key": "build-17"})

    response = client.post(path_of(created), json={"x": "b"}, headers={"Idempotency-Key": "build-17"})

    assert problem(response)["status"] == 422
    assert len(jobs(api)) == 1


def test_token_is_stored_only_hashed(api, rt, key):
    created = create_url(api, key)
    token = path_of(created).rsplit("/", 1)[1]

    with rt.db.read() as session:
        rows = [{c.name: getattr(row, c.name) for c in InboundWebhook.__table__.columns}
                for row in session.scalars(select(InboundWebhook))]

    assert len(rows) == 1
    assert all(token not in str(value) for value in rows[0].values())


# --- signed URLs ------------------------------------------------------------------------------------------------------


@pytest.fixture
def signed(api, key) -> tuple[str, str]:
    """A signed inbound URL: (path, secret)."""
    created = create_url(api, key, require_signature=True)
    assert created["secret"].startswith("whsec_")
    return path_of(created), created["secret"]


def send_signed(client, clock, path: str, secret: str, payload: dict, *, msg_id: str = "msg_1", skew: float = 0.0):
    body = json.dumps(payload).encode()
    headers = signed_headers(secret, msg_id, body, timestamp=int(clock.now().timestamp() + skew))
    return client.post(path, data=body, headers=headers, content_type="application/json")


def test_signed_request_starts_a_job(api, client, clock, signed):
    response = send_signed(client, clock, *signed, {"x": "signed"})

    assert response.status_code == 202
    assert response.get_json()["job"]["parameters"] == {"x": "signed"}


def test_secret_of_a_signed_url_is_not_in_the_list(api, key, signed):
    listed = get(api, f"/runbooks/{key}/webhooks")["items"]

    assert [h["require_signature"] for h in listed] == [True]
    assert signed[1] not in json.dumps(listed)


def test_unsigned_request_to_a_signed_url_is_unauthorized(api, client, signed):
    response = client.post(signed[0], json={"x": "unsigned"})

    assert problem(response)["status"] == 401
    assert jobs(api) == []


def test_wrong_signature_is_unauthorized(api, client, clock, signed):
    response = send_signed(client, clock, signed[0], generate_secret(), {"x": "forged"})

    assert problem(response)["status"] == 401
    assert jobs(api) == []


def test_tampered_body_is_unauthorized(api, client, clock, signed):
    path, secret = signed
    headers = signed_headers(secret, "msg_1", b'{"x": "a"}', timestamp=int(clock.now().timestamp()))

    response = client.post(path, data=b'{"x": "b"}', headers=headers, content_type="application/json")

    assert problem(response)["status"] == 401
    assert jobs(api) == []


@pytest.mark.parametrize("direction", [-1, 1], ids=["too-old", "too-new"])
def test_timestamp_outside_the_tolerance_is_unauthorized(api, client, clock, rt, signed, direction):
    skew = direction * (rt.settings.webhook_tolerance_seconds + 5)

    response = send_signed(client, clock, *signed, {"x": "stale"}, skew=skew)

    assert problem(response)["status"] == 401
    assert "webhook-timestamp" in problem(response)["detail"]
    assert jobs(api) == []


def test_timestamp_within_the_tolerance_is_accepted(api, client, clock, rt, signed):
    response = send_signed(client, clock, *signed, {"x": "late"}, skew=-(rt.settings.webhook_tolerance_seconds - 5))

    assert response.status_code == 202


def test_replayed_webhook_id_is_refused_and_starts_no_second_job(api, client, clock, signed):
    first = send_signed(client, clock, *signed, {"x": "once"}, msg_id="msg_replayed")

    replay = send_signed(client, clock, *signed, {"x": "once"}, msg_id="msg_replayed")

    assert first.status_code == 202
    assert problem(replay)["status"] == 409
    assert [j["uuid"] for j in jobs(api)] == [first.get_json()["job"]["uuid"]]


def test_new_webhook_id_starts_another_job(api, client, clock, signed):
    send_signed(client, clock, *signed, {"x": "one"}, msg_id="msg_1")

    response = send_signed(client, clock, *signed, {"x": "two"}, msg_id="msg_2")

    assert response.status_code == 202
    assert len(jobs(api)) == 2


def test_an_overlong_webhook_id_is_refused_and_starts_no_job(api, client, clock, signed):
    response = send_signed(client, clock, *signed, {"x": "long"}, msg_id="msg_" + "x" * 300)

    body = problem(response)
    assert body["status"] == 422 and body["errors"][0]["field"] == "webhook-id"
    assert jobs(api) == []
