"""A claimed batch of deliveries: sent concurrently, every outcome recorded as if alone, leases respected."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from runner.models import Delivery, DeliveryAttempt, Subscription
from webhooks.delivery import DeliveryWorker, _fair_order, claim_deliveries, send_deliveries

from .conftest import deliveries, get, runbook, start, subscribe

# How long a receiver below waits for what the test expects before giving up (only a failing test waits this long).
PATIENCE = 5.0


class ScriptedReceiver:
    """A local receiver whose answer for each request comes from ``answer(path)`` (a status), run in the request's thread."""

    def __init__(self, answer: Callable[[str], int]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = answer(self.path)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receive() -> Iterator[Callable[[Callable[[str], int]], ScriptedReceiver]]:
    """Start a ScriptedReceiver: ``receive(lambda path: 200)``."""
    receivers: list[ScriptedReceiver] = []

    def build(answer: Callable[[str], int]) -> ScriptedReceiver:
        receivers.append(ScriptedReceiver(answer))
        return receivers[-1]

    yield build
    for receiver in receivers:
        receiver.close()


def attempts_made(outcome: str) -> float:
    return REGISTRY.get_sample_value("runbook_manager_delivery_attempts_total", {"outcome": outcome}) or 0.0


def stored(rt, sub_id: str) -> list[tuple[Delivery, list[DeliveryAttempt]]]:
    """The deliveries of a subscription (even a deleted one) with their attempts, straight from the store."""
    with rt.db.read() as session:
        rows = session.scalars(select(Delivery).where(Delivery.subscription_id == sub_id).order_by(Delivery.created_at)).all()
        return [(d, session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == d.id)).all()) for d in rows]


def invoked_once(api, urls: list[str]) -> list[dict[str, Any]]:
    """Subscribe each of ``urls`` to the invocations of a new runbook, invoke it once; return the subscriptions."""
    key = runbook(api, "Watched")
    subs = [subscribe(api, url, ["runbook.invoked"], runbooks=[key]) for url in urls]
    start(api, key)
    return subs


# --- mixed outcomes in one batch ---------------------------------------------------------------------------------------


def test_batch_with_a_success_a_retry_and_a_gone_records_each_as_if_alone(api, server, rt, deliverer):
    key = runbook(api, "Watched")
    ok, flaky, gone = (subscribe(api, server.url + path, ["runbook.invoked"], runbooks=[key]) for path in ("/ok", "/flaky", "/gone"))
    server.script("/flaky", 500)
    server.script("/gone", 410)
    before = {outcome: attempts_made(outcome) for outcome in ("success", "retry", "gone")}
    start(api, key)

    claimed = deliverer.run_once()

    [succeeded] = deliveries(api, ok["id"])
    [retried] = deliveries(api, flaky["id"])
    [(gave_up, gone_attempts)] = stored(rt, gone["id"])
    assert claimed == 3
    assert (succeeded["status"], succeeded["attempts"], succeeded["last_status"], succeeded["next_attempt_at"]) == ("succeeded", 1, 200, None)
    assert [(a["status"], a["outcome"]) for a in succeeded["attempt_log"]] == [(200, "success")]
    assert (retried["status"], retried["attempts"], retried["last_status"]) == ("pending", 1, 500)
    assert retried["next_attempt_at"] is not None
    assert [(a["status"], a["outcome"]) for a in retried["attempt_log"]] == [(500, "retry")]
    assert (gave_up.status, gave_up.attempts, [(a.status_code, a.outcome) for a in gone_attempts]) == ("gone", 1, [(410, "gone")])
    assert get(api, "/hooks/" + ok["id"])["status"] == "active"
    assert api.get(f"/hooks/{gone['id']}").status_code == 404
    assert {outcome: attempts_made(outcome) - count for outcome, count in before.items()} == {"success": 1, "retry": 1, "gone": 1}


def test_success_in_a_batch_resets_the_failure_streak_of_its_subscription_only(api, server, rt, deliverer):
    key = runbook(api, "Watched")
    ok, failing = (subscribe(api, server.url + path, ["runbook.invoked"], runbooks=[key]) for path in ("/ok", "/failing"))
    with rt.db.write() as session:
        session.execute(update(Subscription).values(failure_streak=3))
    server.script("/failing", 500)
    start(api, key)

    deliverer.run_once()

    assert (get(api, f"/hooks/{ok['id']}")["failure_streak"], get(api, f"/hooks/{failing['id']}")["failure_streak"]) == (0, 3)


def test_retry_and_gone_for_one_subscription_in_one_batch_both_log_their_attempt(api, server, rt, deliverer):
    key = runbook(api, "Watched")
    sub = subscribe(api, server.url + "/hook", ["runbook.invoked"], runbooks=[key])
    server.script("/hook", 500, 410)
    start(api, key)
    start(api, key)

    deliverer.run_once()

    rows = stored(rt, sub["id"])
    assert sorted(d.status for d, _ in rows) == ["cancelled", "gone"]
    assert sorted(a.outcome for _, attempts in rows for a in attempts) == ["gone", "retry"]


# --- concurrency -------------------------------------------------------------------------------------------------------


def test_a_batch_is_sent_concurrently(api, rt, receive):
    together = threading.Barrier(3, timeout=PATIENCE)

    def answer(path: str) -> int:
        try:
            together.wait()  # returns only once three requests are in flight at the same time
        except threading.BrokenBarrierError:
            return 500
        return 200

    receiver = receive(answer)
    subs = invoked_once(api, [f"{receiver.url}/{i}" for i in range(3)])

    DeliveryWorker(rt, worker_id="d", senders=3).run_once()

    assert [deliveries(api, sub["id"])[0]["last_status"] for sub in subs] == [200, 200, 200]


def test_senders_bound_the_requests_in_flight(api, rt, receive):
    changed, in_flight, most = threading.Condition(), [0], [0]

    def answer(path: str) -> int:
        with changed:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            changed.notify_all()
            changed.wait_for(lambda: in_flight[0] > 2, timeout=0.3)  # give a third concurrent request the chance to arrive
            in_flight[0] -= 1
        return 200

    receiver = receive(answer)
    subs = invoked_once(api, [f"{receiver.url}/{i}" for i in range(4)])

    DeliveryWorker(rt, worker_id="d", senders=2).run_once()

    assert most[0] == 2
    assert [deliveries(api, sub["id"])[0]["status"] for sub in subs] == ["succeeded"] * 4


def test_a_receiver_with_many_deliveries_due_does_not_go_first_with_all_of_them():
    rows = [SimpleNamespace(id=f"a{i}", target_url="https://a.example/hook") for i in range(3)]
    rows += [SimpleNamespace(id="b0", target_url="https://b.example/hook"), SimpleNamespace(id="c0", target_url="https://c.example/hook")]

    assert [row.id for row in _fair_order(rows)] == ["a0", "b0", "c0", "a1", "a2"]


def test_a_slow_receiver_does_not_hold_up_recording_the_others(api, rt, receive):
    fast_seen_recorded = threading.Event()

    def answer(path: str) -> int:
        if path == "/slow":  # answer only once the fast delivery is recorded (or give up)
            deadline = time.monotonic() + PATIENCE
            while time.monotonic() < deadline and not fast_seen_recorded.is_set():
                if [d.status for d, _ in stored(rt, fast["id"])] == ["succeeded"]:
                    fast_seen_recorded.set()
                time.sleep(0.02)
        return 200

    receiver = receive(answer)
    fast, slow = invoked_once(api, [receiver.url + "/fast", receiver.url + "/slow"])
    deliverer = DeliveryWorker(rt, worker_id="d", senders=2)
    deliverer.record_early_after = 0.05

    deliverer.run_once()

    assert fast_seen_recorded.is_set()
    assert (deliveries(api, fast["id"])[0]["status"], deliveries(api, slow["id"])[0]["status"]) == ("succeeded", "succeeded")


# --- leases ------------------------------------------------------------------------------------------------------------


def test_a_leased_delivery_is_claimed_by_no_other_worker_until_its_lease_lapses(api, server, rt, clock):
    invoked_once(api, [server.url + "/hook"])

    first = claim_deliveries(rt, "a", 10)
    meanwhile = claim_deliveries(rt, "b", 10, probe=False)
    clock.advance(rt.settings.lease_seconds + 2 * rt.settings.delivery_timeout + 1)
    later = claim_deliveries(rt, "b", 10)

    assert (len(first), meanwhile, later) == (1, [], first)


def test_a_worker_that_lost_its_lease_sends_nothing(api, server, rt, clock, deliverer):
    [sub] = invoked_once(api, [server.url + "/hook"])
    ids = claim_deliveries(rt, "a", 10)
    clock.advance(rt.settings.lease_seconds + 2 * rt.settings.delivery_timeout + 1)
    claim_deliveries(rt, "b", 10)

    statuses = send_deliveries(rt, ids, "a", deliverer.policy)

    assert (statuses, server.hits["/hook"], deliveries(api, sub["id"])[0]["attempts"]) == ({}, 0, 0)


def test_a_success_is_not_recorded_by_a_worker_that_lost_the_lease_while_sending(api, rt, receive):
    def answer(path: str) -> int:
        with rt.db.write() as session:  # another worker takes the delivery over while this one waits for the answer
            session.execute(update(Delivery).values(lease_owner="other"))
        return 200

    receiver = receive(answer)
    subs = invoked_once(api, [f"{receiver.url}/{i}" for i in range(2)])

    DeliveryWorker(rt, worker_id="d", senders=2).run_once()

    for sub in subs:
        [(delivery, attempts)] = stored(rt, sub["id"])
        assert (delivery.status, delivery.attempts, delivery.lease_owner, attempts) == ("pending", 0, "other", [])
