"""The polling feed GET /events: oldest first, an opaque cursor always returned, filters, refusals, and
no event lost or repeated while jobs are being invoked concurrently."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from runner.models import Event, Workspace
from tests.conftest import Api, problem

from .conftest import get, runbook, start


def poll(api: Api, **query) -> dict:
    return get(api, "/events", **query)


def poll_all(api: Api, after: str | None = None, *, max_pages: int = 200, **query) -> tuple[list[list[dict]], str]:
    """Page through the feed from ``after`` until a page is empty; return the non-empty pages and the last cursor."""
    pages = []
    for _ in range(max_pages):
        body = poll(api, **({"after": after} if after else {}), **query)
        after = body["next_cursor"]
        if not body["items"]:
            return pages, after
        pages.append(body["items"])
    raise AssertionError(f"the feed still had events after {max_pages} pages: the cursor does not advance")


def ids(pages: list[list[dict]]) -> list[int]:
    return [event["id"] for page in pages for event in page]


@pytest.fixture
def two_runbooks(api) -> tuple[str, str]:
    return runbook(api, "Deploy", name="deploy"), runbook(api, "Rollback", name="rollback")


def test_feed_lists_events_oldest_first(api, two_runbooks):
    deploy, _ = two_runbooks
    uuid = start(api, deploy)

    items = poll(api)["items"]

    assert [e["type"] for e in items] == ["job.created", "runbook.invoked"]
    assert [e["data"]["job"]["uuid"] for e in items] == [uuid, uuid]
    assert [e["id"] for e in items] == sorted(e["id"] for e in items)


def test_same_cursor_gives_the_same_page(api, two_runbooks):
    for key in two_runbooks * 2:
        start(api, key)
    cursor = poll(api, limit=2)["next_cursor"]

    first, again = poll(api, after=cursor, limit=3), poll(api, after=cursor, limit=3)

    assert first == again
    assert len(first["items"]) == 3


def test_next_cursor_is_returned_even_when_there_are_no_events(api):
    body = poll(api)

    assert body["items"] == []
    assert body["next_cursor"]
    assert poll(api, after=body["next_cursor"]) == body


def test_cursor_of_an_empty_poll_still_finds_later_events(api, two_runbooks):
    cursor = poll(api)["next_cursor"]
    uuid = start(api, two_runbooks[0])

    items = poll(api, after=cursor)["items"]

    assert {e["data"]["job"]["uuid"] for e in items} == {uuid}


def test_cursor_is_opaque(api, two_runbooks):
    start(api, two_runbooks[0])

    body = poll(api)

    last = str(body["items"][-1]["id"])
    assert body["next_cursor"] != last and not body["next_cursor"].isdigit()


def test_paging_with_the_cursor_returns_every_event_once(api, two_runbooks):
    for key in two_runbooks * 3:
        start(api, key)

    pages, _ = poll_all(api, limit=4)

    assert [len(p) for p in pages] == [4, 4, 4]
    assert ids(pages) == sorted(set(ids(pages)))


def test_polling_after_the_last_cursor_returns_only_newer_events(api, two_runbooks):
    deploy, rollback = two_runbooks
    start(api, deploy)
    _, cursor = poll_all(api)

    uuid = start(api, rollback)
    items = poll(api, after=cursor)["items"]

    assert {e["data"]["job"]["uuid"] for e in items} == {uuid}


@pytest.mark.parametrize("types", ["runbook.invoked", "job.created,runbook.invoked"])
def test_feed_filters_by_type(api, two_runbooks, types):
    start(api, two_runbooks[0])

    items = poll(api, type=types)["items"]

    assert {e["type"] for e in items} == set(types.split(","))


@pytest.mark.parametrize("ref", ["RB-00001", "deploy"], ids=["key", "name"])
def test_feed_filters_by_runbook_key_or_name(api, two_runbooks, ref):
    deploy, rollback = two_runbooks
    uuid = start(api, deploy)
    start(api, rollback)

    items = poll(api, runbooks=ref)["items"]

    assert deploy == "RB-00001"
    assert {(e["data"]["runbook"]["key"], e["data"]["job"]["uuid"]) for e in items} == {(deploy, uuid)}


def test_a_filtered_poll_moves_its_cursor_past_the_events_it_passed_over(api, two_runbooks):
    """Else a poll for rare events would read every event since the last match again, each time, as the history grows."""
    deploy, rollback = two_runbooks
    for _ in range(3):
        start(api, rollback)
    _, end = poll_all(api)

    body = poll(api, runbooks=deploy)

    assert body["items"] == []
    assert body["next_cursor"] == end
    uuid = start(api, deploy)
    assert {e["data"]["job"]["uuid"] for e in poll(api, runbooks=deploy, after=body["next_cursor"])["items"]} == {uuid}


def test_filtered_pages_return_each_matching_event_once_in_order(api, two_runbooks):
    deploy, rollback = two_runbooks
    for key in (deploy, rollback, rollback, deploy, rollback, deploy):
        start(api, key)

    pages, _ = poll_all(api, runbooks=deploy, type="runbook.invoked", limit=1)

    assert [len(page) for page in pages] == [1, 1, 1]
    assert ids(pages) == sorted(ids(pages))
    assert {e["data"]["runbook"]["key"] for page in pages for e in page} == {deploy}


def test_feed_shows_no_event_of_another_workspace(api, stranger, two_runbooks):
    start(api, two_runbooks[0])

    assert poll(stranger)["items"] == []
    assert len(poll(api)["items"]) == 2


@pytest.mark.parametrize(("query", "status", "field"), [
    pytest.param({"type": "job.exploded"}, 422, "type", id="unknown-type"),
    pytest.param({"type": "job.succeeded,job.exploded"}, 422, "type", id="one-unknown-type-among-known"),
    pytest.param({"runbooks": "RB-09999"}, 422, "runbooks", id="unknown-runbook"),
    pytest.param({"after": "not-a-cursor"}, 400, "after", id="bad-cursor"),
    pytest.param({"after": "eyJiZWZvcmUiOjF9"}, 400, "after", id="cursor-of-another-list"),
    pytest.param({"limit": 0}, 422, "limit", id="limit-zero"),
])
def test_bad_feed_query_is_refused_naming_the_parameter(api, two_runbooks, query, status, field):
    body = problem(api.get("/events", query_string=query))

    assert body["status"] == status
    assert field in [e["field"] for e in body["errors"]], body


# --- concurrency ---------------------------------------------------------------------------------------------------------

THREADS = 4
INVOCATIONS = 25


def test_concurrent_invocations_are_each_seen_once_in_increasing_order(api, app, rt, two_runbooks):
    failures: list[str] = []

    def invoke_many(index: int) -> None:
        own = Api(app.test_client(), api.slug, api.token)
        for n in range(INVOCATIONS):
            response = own.post(f"/runbooks/{two_runbooks[index % 2]}/jobs", json={"parameters": {"x": f"{index}-{n}"}})
            if response.status_code != 202:
                failures.append(response.get_data(as_text=True))

    threads = [threading.Thread(target=invoke_many, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    pages: list[list[dict]] = []
    cursor = None
    while any(t.is_alive() for t in threads):
        more, cursor = poll_all(api, cursor, limit=7)
        pages += more
    for thread in threads:
        thread.join(timeout=60)
    more, _ = poll_all(api, cursor, limit=7)
    pages += more

    seen = ids(pages)
    with rt.db.read() as session:
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.slug == api.slug))
        stored = list(session.scalars(select(Event.id).where(Event.workspace_id == workspace_id).order_by(Event.id)))
    assert failures == []
    assert len(stored) == 2 * THREADS * INVOCATIONS
    assert seen == stored
    assert all(a < b for a, b in zip(seen, seen[1:]))
