"""A NUL character (U+0000) anywhere in a request is refused with 400, on either store: PostgreSQL keeps none in text or JSON."""
from __future__ import annotations

import pytest

from tests.conftest import problem
from tests.runner.helpers import create_runbook, settings_on_each_store

# Each test runs on SQLite and on PostgreSQL.
settings = settings_on_each_store


@pytest.fixture
def key(api) -> str:
    return create_runbook(api, "Restart the API", status="published", callable=True)["key"]


@pytest.mark.parametrize(("method", "path", "extra", "field", "value"), [
    pytest.param("post", "/runbooks", {"json": {"title": "Re\0start"}}, "title", "\\u0000", id="json-string"),
    pytest.param("post", "/runbooks", {"json": {"title": "Restart", "steps": [{"title": "x", "\0": 1}]}}, "steps.0", "\\u0000",
                 id="json-key"),
    pytest.param("post", "/runbooks/{key}/jobs", {"json": {"change_ref": "CHG\0"}}, "change_ref", "\\u0000", id="json-ref"),
    pytest.param("post", "/runbooks/{key}/jobs", {"json": {}, "headers": {"Idempotency-Key": "a\0b"}}, "header.Idempotency-Key",
                 "a\\u0000b", id="header"),
    pytest.param("get", "/runbooks/RB%0001", {}, "path", "/api/v1/ws/acme/runbooks/RB\\u000001", id="path"),
    pytest.param("get", "/runbooks?category=ops%00", {}, "query.category", "ops\\u0000", id="query"),
    pytest.param("get", "/jobs?runbook=%00", {}, "query.runbook", "\\u0000", id="query-filter"),
])
def test_a_nul_character_is_400_naming_where_and_changes_nothing(api, key, method, path, extra, field, value):
    before = (api.get("/runbooks").get_json()["items"], api.get("/jobs").get_json()["items"])

    response = getattr(api, method)(path.format(key=key), **extra)

    refused = problem(response)
    assert response.status_code == 400, refused
    assert refused["type"] == "/problems/malformed-request"
    assert [(e["field"], e["value"]) for e in refused["errors"]] == [(field, value)]
    assert (api.get("/runbooks").get_json()["items"], api.get("/jobs").get_json()["items"]) == before


def test_a_refusal_does_not_show_a_token_that_holds_a_nul_character(api):
    response = api.get("/runbooks", headers={"Authorization": f"Bearer {api.token}\0"})

    refused = problem(response)
    assert response.status_code == 400
    assert refused["errors"] == [{"field": "header.Authorization", "message": "holds a NUL character", "value": None}]
    assert api.token not in response.get_data(as_text=True)
