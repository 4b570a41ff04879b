"""The HTTP contract: problem+json errors, body limits, environments, OpenAPI and health."""
from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from runner import create_app
from runner.config import Settings
from runner.runtime import Runtime
from tests.conftest import Api, problem
from tests.runner.helpers import create_runbook, runbook_body

ENVIRONMENT_HEADER = "X-Runbook-Environment"


@pytest.fixture
def make_app(settings: Settings, clock) -> Iterator[Any]:
    """Build an app on the test database with some settings changed: ``make_app(max_body_bytes=512)``."""
    runtimes: list[Runtime] = []

    def build(**overrides: Any) -> Flask:
        runtime = Runtime.from_settings(dataclasses.replace(settings, **overrides), clock=clock)
        runtimes.append(runtime)
        return create_app(runtime=runtime)

    yield build
    for runtime in runtimes:
        runtime.db.dispose()


def _with_app(app: Flask, api: Api) -> Api:
    """The same token, sent to another app."""
    return Api(app.test_client(), api.slug, api.token)


# --- errors are problem+json ---------------------------------------------------------------------


def test_malformed_json_is_400(api):
    response = api.post("/runbooks", data='{"title": "Restart', content_type="application/json")

    body = problem(response)
    assert response.status_code == 400
    assert body["type"] == "/problems/malformed-request"
    assert body["errors"] == [{"field": "body", "message": "invalid JSON", "value": None}]
    assert api.get("/runbooks").get_json()["items"] == []


@pytest.mark.parametrize("path", ["/runbooks", "/hooks", "/runbooks/RB-00001/jobs"])
def test_json_nested_too_deep_to_decode_is_400(api, path):
    response = api.post(path, data="[" * 100_000, content_type="application/json")

    body = problem(response)
    assert response.status_code == 400
    assert body["errors"] == [{"field": "body", "message": "nested too deeply to decode (at most 64 levels)", "value": None}]


# Bodies Python's decoder accepts but the runner refuses (runner.jsonbody): (body, field, message, value).
REFUSED_BODIES = {
    "NaN": ('{"title": "Restart", "x": NaN}', "body", "NaN is not a JSON number", "NaN"),
    "Infinity": ('{"title": "Restart", "x": [Infinity]}', "body", "Infinity is not a JSON number", "Infinity"),
    "-Infinity": ('{"title": "Restart", "x": -Infinity}', "body", "-Infinity is not a JSON number", "-Infinity"),
    "1e400": ('{"title": "Restart", "x": 1e400}', "body", "the number 1e400 is out of range (a double's, about ±1.8e308)", "1e400"),
    "5,000 digits": ('{"title": "Restart", "x": ' + "7" * 5_000 + "}", "body",
                     "an integer of 5000 digits is out of range (at most 308)", "7" * 40 + "…"),
    "lone surrogate": ('{"title": "\\ud800 Restart"}', "title", "a string holds a lone UTF-16 surrogate (\\ud800), which is not text",
                       "\\ud800"),
    "lone surrogate in a key": ('{"title": "Restart", "steps": [{"title": "a", "\\udfff": 1}]}', "steps.0",
                                "a string holds a lone UTF-16 surrogate (\\udfff), which is not text", "\\udfff"),
    "NUL": ('{"title": "Re\\u0000start"}', "title", "a string holds a NUL character (\\u0000), which is not text", "\\u0000"),
    "65 levels": ('{"title": "Restart", "x": ' + "[" * 64 + "]" * 64 + "}", "body", "nested more than 64 levels deep", None),
}


@pytest.mark.parametrize("path", ["/runbooks", "/hooks", "/runbooks/RB-00001/jobs"])
@pytest.mark.parametrize("case", list(REFUSED_BODIES))
def test_json_python_decodes_but_no_store_keeps_is_400_naming_what_and_where(api, path, case):
    data, field, message, value = REFUSED_BODIES[case]
    response = api.post(path, data=data, content_type="application/json")

    body = problem(response)
    assert response.status_code == 400
    assert body["type"] == "/problems/malformed-request"
    assert body["errors"] == [{"field": field, "message": message, "value": value}]
    assert message in body["detail"]
    assert api.get("/runbooks").get_json()["items"] == []
    assert api.get("/hooks").get_json()["items"] == []


def test_json_with_a_surrogate_pair_and_64_levels_is_accepted(api):
    """An escaped pair is one character (here an emoji); 64 levels of nesting are allowed."""
    response = api.post("/runbooks", data='{"title": "Restart \\ud83d\\ude80", "description": ' + "[" * 63 + "]" * 63 + "}",
                        content_type="application/json")

    assert response.status_code == 422, response.get_json()  # the description must be a string: decoded, then checked
    created = api.post("/runbooks", data='{"title": "Restart \\ud83d\\ude80"}', content_type="application/json")
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["title"] == "Restart \U0001f680"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_body_that_is_not_json_is_415(api, content_type):
    response = api.post("/runbooks", data="title=Restart", content_type=content_type)

    body = problem(response)
    assert response.status_code == 415
    assert content_type.split(";")[0] in body["detail"]
    assert body["errors"][0]["field"] == "Content-Type"


def test_body_over_the_size_limit_is_413_and_changes_nothing(make_app, api):
    small = _with_app(make_app(max_body_bytes=512), api)
    big = runbook_body(description="x" * 600)

    response = small.post("/runbooks", json=big)

    body = problem(response)
    assert response.status_code == 413
    assert "512" in body["detail"]
    assert small.get("/runbooks").get_json()["items"] == []
    assert small.post("/runbooks", json=runbook_body()).status_code == 201


@pytest.mark.parametrize("path", ["/api/v1/ws/{ws}/runbooks", "/api/v1/hooks/in/rbmwh_unknown"])
def test_a_chunked_body_over_the_size_limit_is_413_not_cut_off(make_app, api, path):
    """A chunked body has no Content-Length; read up to the limit it would be cut off and answered as malformed JSON."""
    small = make_app(max_body_bytes=512)
    big = json.dumps(runbook_body(description="x" * 600)).encode()

    def send(body: bytes) -> Any:
        # The test client sends a length with every body; a server that reads chunked bodies (gunicorn) says that it ends them.
        return small.test_client().open(path.format(ws=api.slug), method="POST", input_stream=io.BytesIO(body),
                                        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json",
                                                 "Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})

    response = send(big)

    body = problem(response)
    assert response.status_code == 413, body
    assert "512" in body["detail"] and "chunked" in body["detail"]
    assert _with_app(small, api).get("/runbooks").get_json()["items"] == []
    if "runbooks" in path:
        fits = json.dumps(runbook_body(description="")).encode()
        exactly = json.dumps(runbook_body(description="x" * (512 - len(fits)))).encode()
        assert (len(exactly), send(exactly).status_code) == (512, 201)


@pytest.mark.parametrize(
    ("payload", "field", "value"),
    [
        ({**runbook_body(), "colour": "blue"}, "colour", "blue"),
        ({**runbook_body(), "steps": [{"title": "Reboot", "colour": "red"}]}, "steps.0.colour", "red"),
        ({**runbook_body(), "steps": [{"title": "Reboot", "action": {"type": "wait", "seconds": 5, "url": "http://x"}}]},
         "steps.0.action.url", "http://x"),
    ],
)
def test_unknown_field_is_422_naming_the_field_and_value(api, payload, field, value):
    response = api.post("/runbooks", json=payload)

    body = problem(response)
    assert response.status_code == 422
    assert body["type"] == "/problems/invalid-input"
    assert field in body["detail"]
    assert {"field": field, "value": value} == {k: v for k, v in body["errors"][0].items() if k != "message"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"title": 5}, "title"),
        ({"title": "   "}, "title"),
        ({}, "title"),
        ({"title": "Reboot", "steps": "1. Reboot"}, "steps"),
        ({"title": "Reboot", "callable": "maybe"}, "callable"),
        ({"title": "Reboot", "steps": [{"title": "Reboot", "est_minutes": "soon"}]}, "steps.0.est_minutes"),
        ({"title": "Reboot", "steps": [{"title": "Reboot", "owner_role": "janitor"}]}, "steps.0.owner_role"),
        ({"title": "Reboot", "steps": [{"title": "Reboot", "order": 2}]}, "steps.0.order"),
        ({"title": "Reboot", "steps": [{"title": "Call", "action": {"type": "http"}}]}, "steps.0.action.url"),
        ({"title": "Reboot", "environments": ["mars"]}, "environments"),
        ({"title": "Reboot", "name": "Not A Slug"}, "name"),
    ],
)
def test_wrong_type_or_value_is_422_naming_the_field(api, payload, field):
    response = api.post("/runbooks", json=payload)

    body = problem(response)
    assert response.status_code == 422
    assert field in [e["field"] for e in body["errors"]], body["errors"]
    assert api.get("/runbooks").get_json()["items"] == []


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:30:00+01:00"])
def test_an_expiry_utc_cannot_hold_is_422_naming_it_and_creates_nothing(api, moment):
    """Each is a real time with its offset, but in the year 10000 or 0 in UTC, where every time is stored."""
    key = create_runbook(api, "Reboot", status="published", callable=True)["key"]
    sub = api.post("/hooks", json={"events": ["job.created"], "target_url": "http://127.0.0.1:9/hook"}).get_json()
    routes = [("post", "/tokens", {"role": "member"}), ("post", "/hooks", {"events": ["job.created"], "target_url": "http://127.0.0.1:9/x"}),
              ("patch", f"/hooks/{sub['id']}", {}), ("post", f"/runbooks/{key}/webhooks", {})]

    for method, path, body in routes:
        response = getattr(api, method)(path, json={**body, "expires_at": moment})

        refused = problem(response)
        assert response.status_code == 422, (path, refused)
        assert refused["errors"] == [{"field": "expires_at", "value": moment,
                                      "message": f"{moment} is outside what UTC can hold (0001-01-01 to 9999-12-31)"}], path
    assert [h["id"] for h in api.get("/hooks").get_json()["items"]] == [sub["id"]]
    assert api.get(f"/hooks/{sub['id']}").get_json()["expires_at"] is None
    assert api.get(f"/runbooks/{key}/webhooks").get_json()["items"] == []
    assert len(api.get("/tokens").get_json()["items"]) == 1  # the test's own


def test_json_that_is_not_an_object_is_422(api):
    response = api.post("/runbooks", data=json.dumps(["Reboot"]), content_type="application/json")

    assert problem(response)["status"] == 422


def test_unknown_runbook_key_is_404(api):
    body = problem(api.patch("/runbooks/RB-04242", json={"title": "Nothing"}))

    assert body["status"] == 404
    assert body["type"] == "/problems/not-found"
    assert "RB-04242" in body["detail"]


def test_bad_cursor_is_400(api):
    body = problem(api.get("/audit?cursor=bm90LWEtY3Vyc29y"))

    assert body["status"] == 400
    assert body["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize("position", [{"after": True}, {"after": 10**30}], ids=["boolean", "beyond-any-row"])
def test_cursor_this_runner_cannot_have_issued_is_400(api, position):
    cursor = base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")

    body = problem(api.get("/audit", query_string={"cursor": cursor}))

    assert body["status"] == 400
    assert body["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/runbooks/{key}/versions/{huge}", 404),
    ("GET", "/runbooks/{key}/diff?from=1&to={huge}", 404),
    ("DELETE", "/tokens/{huge}", 404),
], ids=["version", "diff", "token"])
def test_number_beyond_any_row_is_not_found(api, method, path, status):
    key = create_runbook(api)["key"]

    body = problem(api.request(method, path.format(key=key, huge=10**30)))

    assert body["status"] == status


def test_events_after_a_number_beyond_any_event_is_an_empty_page(api, worker):
    key = create_runbook(api, status="published", callable=True)["key"]
    job = api.post(f"/runbooks/{key}/jobs", json={}).get_json()["job"]["uuid"]

    page = api.get(f"/jobs/{job}/events", query_string={"after": 10**30}).get_json()

    assert page == {"items": [], "next_after": 10**30}


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v1/ws/acme/runbooks/RB-00001/nothing", "/nothing"])
def test_unknown_route_is_404_problem(api, path):
    body = problem(api.get(path))

    assert body["status"] == 404
    assert body["errors"] == []


def test_wrong_method_is_405_problem_with_allow(api):
    response = api.delete("/runbooks")

    body = problem(response)
    assert response.status_code == 405
    assert body["type"] == "/problems/method-not-allowed"
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_problem_type_is_described_at_its_uri(api, client):
    body = problem(api.get("/runbooks/RB-00404"))

    described = client.get(body["type"])

    assert described.status_code == 200
    assert described.get_json()["status"] == 404


# --- environments --------------------------------------------------------------------------------


def test_environment_says_which_environment_the_runner_serves(client):
    response = client.get("/api/v1/environment")

    assert response.status_code == 200
    body = response.get_json()
    assert (body["id"], body["label"]) == ("eu-qa", "EU QA")
    assert {"id": "eu-production", "label": "EU Production"} in body["known"]


def test_request_for_another_environment_is_421_naming_both(api):
    response = api.get("/runbooks", headers={ENVIRONMENT_HEADER: "eu-production"})

    body = problem(response)
    assert response.status_code == 421
    for name in ("EU QA", "eu-qa", "EU Production", "eu-production"):
        assert name in body["detail"]
    assert (body["runner_environment"], body["requested_environment"]) == ("eu-qa", "eu-production")


def test_write_for_another_environment_is_421_and_changes_nothing(api):
    response = api.post("/runbooks", json=runbook_body(), headers={ENVIRONMENT_HEADER: "eu-production"})

    assert problem(response)["status"] == 421
    assert api.get("/runbooks").get_json()["items"] == []


def test_request_for_an_unknown_environment_is_421(api):
    response = api.get("/runbooks", headers={ENVIRONMENT_HEADER: "mars-1"})

    body = problem(response)
    assert response.status_code == 421
    assert "'mars-1'" in body["detail"]
    assert "EU QA (eu-qa)" in body["detail"]


def test_request_for_this_environment_passes(api):
    create_runbook(api)

    response = api.get("/runbooks", headers={ENVIRONMENT_HEADER: "eu-qa"})

    assert response.status_code == 200
    assert len(response.get_json()["items"]) == 1


def test_required_environment_header_missing_is_421(make_app, api):
    strict = _with_app(make_app(require_environment_header=True), api)

    response = strict.get("/runbooks")

    body = problem(response)
    assert response.status_code == 421
    assert ENVIRONMENT_HEADER in body["detail"]
    assert strict.get("/runbooks", headers={ENVIRONMENT_HEADER: "eu-qa"}).status_code == 200


# --- OpenAPI and health --------------------------------------------------------------------------


@pytest.fixture
def spec(client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_openapi_document_is_valid(spec):
    validate(spec)


def test_openapi_documents_bearer_auth_and_the_runbook_routes(spec):
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert spec["security"] == [{"bearerAuth": []}]
    paths = spec["paths"]
    for path, methods in {
        "/api/v1/ws/{ws}/runbooks": {"get", "post"},
        "/api/v1/ws/{ws}/runbooks/{key}": {"get", "patch"},
        "/api/v1/ws/{ws}/runbooks/{key}/publish": {"post"},
        "/api/v1/ws/{ws}/runbooks/{key}/unpublish": {"post"},
        "/api/v1/ws/{ws}/runbooks/{key}/archive": {"post"},
        "/api/v1/ws/{ws}/runbooks/{key}/versions": {"get", "post"},
        "/api/v1/ws/{ws}/runbooks/{key}/versions/{number}": {"get"},
        "/api/v1/ws/{ws}/runbooks/{key}/diff": {"get"},
        "/api/v1/ws/{ws}/runbooks/import": {"post"},
        "/api/v1/environment": {"get"},
    }.items():
        assert path in paths, sorted(paths)
        assert methods <= set(paths[path]), (path, sorted(paths[path]))


def test_healthz_is_200(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_readyz_is_200_on_a_migrated_database(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


def test_readyz_is_503_on_a_database_without_schema(make_app, tmp_path):
    app = make_app(database_url=f"sqlite:///{tmp_path / 'empty.db'}")

    response = app.test_client().get("/readyz")

    body = problem(response)
    assert response.status_code == 503
    assert "db upgrade" in body["detail"]
