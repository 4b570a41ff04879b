"""A sender's claims and heartbeats, and the delivery log's pages, read their deliveries through indexes, however long the log."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from runner.db import insert_rows
from runner.engine.worker import renew_leases
from runner.models import Delivery, Event
from runner.runtime import Runtime
from tests.runner.helpers import counting, plan, scans, settings_on_each_store
from webhooks import subscriptions
from webhooks.delivery import claim_deliveries

from .conftest import runbook, start, subscribe

# Each test runs on SQLite and on PostgreSQL.
settings = settings_on_each_store

# Finished deliveries in the log: on PostgreSQL, enough that reading the whole table costs more than the index.
FINISHED = 5_000
AT = datetime(2026, 3, 2, 13, 0, tzinfo=timezone.utc)


def finished_log(rt: Runtime, subscription_id: str, count: int, *, failed_every: int = 0) -> None:
    """Add ``count`` deliveries that ended long ago (each with an event of its own), straight into the store.

    They succeeded, but for every ``failed_every``-th one, which failed for good.
    """
    with rt.db.write() as session:
        connection = session.connection()
        workspace_id, last = connection.execute(select(Event.workspace_id, Event.id).order_by(Event.id.desc()).limit(1)).one()
        insert_rows(connection, Event.__table__, [
            {"id": last + 1 + i, "workspace_id": workspace_id, "type": "job.created", "payload": {}, "created_at": AT} for i in range(count)])
        insert_rows(connection, Delivery.__table__, [
            {"id": f"msg_finished{i:012d}", "workspace_id": workspace_id, "subscription_id": subscription_id, "event_id": last + 1 + i,
             "event_type": "job.created", "status": "failed" if failed_every and i % failed_every == 0 else "succeeded",
             "attempts": 1, "next_attempt_at": None, "created_at": AT,
             "completed_at": AT} for i in range(count)])


def one_pending_before(api, rt: Runtime, server, count: int, *, failed_every: int = 0) -> dict[str, Any]:
    """A subscription with one delivery pending, then ``count`` finished ones (``finished_log``) after it."""
    key = runbook(api, "Watched")
    sub = subscribe(api, server.url + "/hook", ["runbook.invoked"], runbooks=[key])
    start(api, key)
    finished_log(rt, sub["id"], count, failed_every=failed_every)
    return sub


def test_claiming_reads_pending_deliveries_through_their_index_not_the_whole_log(api, rt, server):
    """Also on a table PostgreSQL has not analyzed since it grew (a new deployment's first minute): no scan of every delivery."""
    sub = one_pending_before(api, rt, server, FINISHED)

    with counting(rt.db.engine) as statements:
        claimed = claim_deliveries(rt, "w", 32)

    plans = [plan(rt, sql, parameters) for sql, parameters, _ in statements if "deliveries" in sql]
    assert len(claimed) == 1
    assert len(plans) == 2  # whether anything is due, then the lease
    for found in plans:
        assert "ix_deliveries_pending" in found, found
        assert not scans(found, "deliveries"), found


def test_a_senders_heartbeat_reads_only_the_deliveries_it_holds(api, rt, server, clock):
    sub = one_pending_before(api, rt, server, FINISHED)
    [leased] = claim_deliveries(rt, "w", 32)
    clock.advance(2 * rt.settings.delivery_timeout + 5)  # a delivery's lease also covers two timeouts of its attempt

    with counting(rt.db.engine) as statements:
        renewed = renew_leases(rt, Delivery, "w")

    [found] = [plan(rt, sql, parameters) for sql, parameters, _ in statements if sql.startswith("UPDATE deliveries")]
    assert (leased.startswith("msg_"), renewed) == (True, 1)
    assert "ix_deliveries_leased" in found, found
    assert not scans(found, "deliveries"), found


def test_the_failed_deliveries_of_a_long_log_are_read_through_their_own_index(api, rt, server):
    sub = one_pending_before(api, rt, server, FINISHED, failed_every=1_000)

    with counting(rt.db.engine) as statements:
        failed = api.get(f"/hooks/{sub['id']}/deliveries", query_string={"status": "failed"})

    [found] = [plan(rt, sql, parameters) for sql, parameters, _ in statements if "FROM deliveries" in sql]
    assert failed.status_code == 200, failed.get_json()
    assert [d["id"] for d in failed.get_json()["items"]] == [f"msg_finished{i:012d}" for i in (4_000, 3_000, 2_000, 1_000, 0)]
    assert "ix_deliveries_subscription_id_unsuccessful" in found, found
    assert not scans(found, "deliveries"), found


def test_the_pending_deliveries_of_a_long_log_are_read_through_their_own_index(api, rt, server):
    """On SQLite too, which walked the subscription's whole log newest first to find the one pending delivery at its start."""
    sub = one_pending_before(api, rt, server, FINISHED)

    with counting(rt.db.engine) as statements:
        pending = api.get(f"/hooks/{sub['id']}/deliveries", query_string={"status": "pending"})

    plans = {sql: plan(rt, sql, parameters) for sql, parameters, _ in statements if "FROM deliveries" in sql}
    [found] = [found for sql, found in plans.items() if "ORDER BY" in sql]
    assert pending.status_code == 200, pending.get_json()
    assert [d["status"] for d in pending.get_json()["items"]] == ["pending"]
    assert not any(scans(each, "deliveries") for each in plans.values()), plans  # how many are pending is read from their index too
    if rt.db.is_sqlite:  # PostgreSQL chooses by the table's statistics, which this young table does not have yet
        assert "ix_deliveries_pending" in found, found


def test_pages_of_pending_deliveries_are_the_same_when_too_many_are_pending_to_sort(api, rt, server, monkeypatch):
    """Past ``PENDING_SORTED_AT_MOST`` pending deliveries in all, the page walks the subscription's log again: same pages."""
    key = runbook(api, "Watched")
    sub = subscribe(api, server.url + "/hook", ["runbook.invoked"], runbooks=[key])
    other = subscribe(api, server.url + "/other", ["runbook.invoked"], runbooks=[key])
    for _ in range(3):
        start(api, key)
    finished_log(rt, sub["id"], 50)

    def pages() -> list[list[str]]:
        found, cursor = [], None
        while True:
            query = {"status": "pending", "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = api.get(f"/hooks/{sub['id']}/deliveries", query_string=query)
            assert page.status_code == 200, page.get_json()
            found.append([d["id"] for d in page.get_json()["items"]])
            cursor = page.get_json()["next_cursor"]
            if not cursor:
                return found

    sorted_pages = pages()
    monkeypatch.setattr(subscriptions, "PENDING_SORTED_AT_MOST", 5)  # six pending in all: this subscription's three, the other's
    with counting(rt.db.engine) as statements:
        walked_pages = pages()

    plans = [plan(rt, sql, parameters) for sql, parameters, _ in statements if "FROM deliveries" in sql and "ORDER BY" in sql]
    mine = [d["id"] for d in api.get(f"/hooks/{sub['id']}/deliveries", query_string={"limit": 100}).get_json()["items"]
            if d["status"] == "pending"]
    assert other["id"] != sub["id"]
    assert [len(page) for page in sorted_pages] == [2, 1]
    assert sum(sorted_pages, []) == mine  # newest first, this subscription's only
    assert walked_pages == sorted_pages
    if rt.db.is_sqlite:
        assert all("ix_deliveries_pending" not in found for found in plans), plans
