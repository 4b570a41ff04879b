"""Ids and numbers past any row's are not found (404), or a cursor this runner cannot have issued (400), on either store.

PostgreSQL keeps every id, version and sequence number in an INTEGER and refuses to compare one with a number past its range.
"""
from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import problem
from tests.runner.helpers import create_runbook, settings_on_each_store

# Each test runs on SQLite and on PostgreSQL.
settings = settings_on_each_store

BEYOND = [2**31, 2**40, 2**63 - 1, 10**30]


@pytest.mark.parametrize("huge", BEYOND)
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/runbooks/{key}/versions/{huge}"),
    ("GET", "/runbooks/{key}/diff?from={huge}&to=1"),
    ("GET", "/runbooks/{key}/diff?from=1&to={huge}"),
    ("DELETE", "/tokens/{huge}"),
], ids=["version", "diff-from", "diff-to", "token"])
def test_a_number_beyond_any_row_is_not_found(api, method, path, huge):
    key = create_runbook(api)["key"]

    body = problem(api.request(method, path.format(key=key, huge=huge)))

    assert body["status"] == 404, body


@pytest.mark.parametrize("huge", BEYOND)
def test_events_after_a_number_beyond_any_event_are_none(api, huge):
    key = create_runbook(api, status="published", callable=True)["key"]
    job_uuid = api.post(f"/runbooks/{key}/jobs", json={}).get_json()["job"]["uuid"]

    answer = api.get(f"/jobs/{job_uuid}/events", query_string={"after": huge})

    assert answer.status_code == 200, answer.get_json()
    assert (answer.get_json()["items"], answer.get_json()["next_after"]) == ([], huge)


@pytest.mark.parametrize("huge", BEYOND)
@pytest.mark.parametrize(("path", "key"), [("/jobs", "before"), ("/audit", "after")])
def test_a_cursor_beyond_any_row_is_400(api, path, key, huge):
    cursor = base64.urlsafe_b64encode(json.dumps({key: huge}).encode()).decode().rstrip("=")

    body = problem(api.get(path, query_string={"cursor": cursor}))

    assert (body["status"], body["errors"][0]["field"]) == (400, "cursor")


def test_a_feed_cursor_takes_a_postgres_transaction_id_past_any_rows_number(api, rt):
    """PostgreSQL's transaction ids pass 2**31 on a busy server: the feed's cursor keeps one (up to a BIGINT), not a row number."""
    def poll(position: dict[str, int]):
        return api.get("/events", query_string={"after": base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")})

    if rt.db.is_postgres:
        assert poll({"tx": 2**40, "after": 0}).status_code == 200
        assert problem(poll({"tx": 2**63, "after": 0}))["status"] == 400
        assert problem(poll({"tx": 0, "after": 2**31}))["status"] == 400
    else:
        assert problem(poll({"after": 2**31}))["status"] == 400
