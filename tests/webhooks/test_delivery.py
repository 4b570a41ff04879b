"""Outbound deliveries: Standard Webhooks signatures, at-least-once retries, 410 Gone, Retry-After, giving up,
disabling and re-enabling, redelivery; Runbook Action subscribers and flow-backed runbooks; Stopped-by-System."""
from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from tests.conftest import problem

from .conftest import MANUAL, deliveries, drain, get, http_step, lowered, received, runbook, start, subscribe

# --- signed, Standard Webhooks deliveries -----------------------------------------------------------------------


@pytest.fixture
def invoked(api, server):
    """A runbook with a Runbook Action subscriber at ``/hook``: (runbook key, subscription)."""
    key = runbook(api, "Monitored")
    return key, subscribe(api, server.url + "/hook", ["runbook.invoked"], runbooks=[key])


def test_delivery_verifies_with_the_standard_webhooks_library(api, server, deliverer, invoked):
    key, sub = invoked
    uuid = start(api, key, {"x": "hi"})

    deliverer.run_until_idle()

    [request] = received(server, "/hook")
    payload = Webhook(sub["secret"]).verify(request["body"], lowered(request["headers"]))
    assert (payload["type"], payload["data"]["job"]["uuid"], payload["data"]["parameters"]) == ("runbook.invoked", uuid, {"x": "hi"})


def test_delivery_signed_with_another_secret_does_not_verify(api, server, deliverer, invoked):
    from standardwebhooks.webhooks import WebhookVerificationError

    from webhooks.signing import generate_secret

    start(api, invoked[0])
    deliverer.run_until_idle()

    [request] = received(server, "/hook")
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(request["body"], lowered(request["headers"]))


def test_delivery_body_carries_type_timestamp_and_data(api, server, deliverer, invoked):
    key, _ = invoked
    uuid = start(api, key, {"x": "hi"})

    deliverer.run_until_idle()

    [request] = received(server, "/hook")
    body = request["json"]
    assert {"type", "timestamp", "data"} <= set(body)
    assert body["type"] == "runbook.invoked"
    assert body["timestamp"].endswith("Z") and body["timestamp"][:19] == get(api, f"/jobs/{uuid}")["created_at"][:19]
    assert body["data"]["runbook"]["key"] == key


def test_delivery_names_the_runners_environment(api, server, deliverer, invoked, rt):
    start(api, invoked[0])

    deliverer.run_until_idle()

    [request] = received(server, "/hook")
    assert lowered(request["headers"])["x-runbook-environment"] == rt.settings.environment == "eu-qa"


def test_webhook_id_is_the_same_on_every_retry_and_is_the_delivery_id(api, server, clock, deliverer, invoked):
    key, sub = invoked
    server.script("/hook", 500, 500, 200)
    start(api, key)

    drain(deliverer, clock, rounds=3, step=30)

    ids = {lowered(r["headers"])["webhook-id"] for r in received(server, "/hook")}
    [delivery] = deliveries(api, sub["id"])
    assert ids == {delivery["id"]}
    assert delivery["id"].startswith("msg_")


def test_each_attempt_is_signed_with_a_fresh_timestamp(api, server, clock, deliverer, invoked):
    key, sub = invoked
    server.script("/hook", 500, 200)
    start(api, key)

    deliverer.run_until_idle()
    clock.advance(60)
    deliverer.run_until_idle()

    first, retry = (lowered(r["headers"]) for r in received(server, "/hook"))
    assert int(retry["webhook-timestamp"]) - int(first["webhook-timestamp"]) == 60
    assert first["webhook-signature"] != retry["webhook-signature"]
    assert Webhook(sub["secret"]).verify(received(server, "/hook")[1]["body"], retry)["type"] == "runbook.invoked"


# --- at least once, retried with backoff ------------------------------------------------------------------------


def test_receiver_failing_twice_gets_exactly_three_attempts_and_one_success(api, server, clock, deliverer, invoked):
    key, sub = invoked
    server.script("/hook", 500, 500, 200)
    start(api, key)

    made = drain(deliverer, clock, rounds=5, step=30)

    [delivery] = deliveries(api, sub["id"])
    log = delivery["attempt_log"]
    assert (made, server.hits["/hook"]) == (3, 3)
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("succeeded", 3, 200)
    assert [(a["status"], a["outcome"]) for a in log] == [(500, "retry"), (500, "retry"), (200, "success")]
    assert all(a["latency_ms"] > 0 for a in log)
    assert ['"status": 500' in a["response_excerpt"] for a in log] == [True, True, False]


def test_retry_waits_for_its_backoff(api, server, clock, deliverer, invoked):
    key, sub = invoked
    server.script("/hook", 500, 200)
    start(api, key)

    first = deliverer.run_until_idle()
    clock.advance(1)  # the first retry waits 2 s ± 20 %
    early = deliverer.run_until_idle()
    clock.advance(2)
    late = deliverer.run_until_idle()

    assert (first, early, late) == (1, 0, 1)
    assert deliveries(api, sub["id"])[0]["status"] == "succeeded"


def test_retry_after_is_honoured(api, server, clock, deliverer, invoked):
    key, sub = invoked
    server.script("/hook", (503, {"Retry-After": "30"}), 200)
    start(api, key)

    deliverer.run_until_idle()
    clock.advance(29)
    before = deliverer.run_until_idle()
    clock.advance(2)
    after = deliverer.run_until_idle()

    [delivery] = deliveries(api, sub["id"])
    assert (before, after, server.hits["/hook"]) == (0, 1, 2)
    assert [a["status"] for a in delivery["attempt_log"]] == [503, 200]


@pytest.mark.settings(delivery_max_attempts=3)
def test_delivery_is_failed_after_max_attempts(api, server, clock, deliverer, invoked):
    key, sub = invoked
    server.script("/hook", *[500] * 10)
    start(api, key)

    made = drain(deliverer, clock)

    [delivery] = deliveries(api, sub["id"])
    assert (made, server.hits["/hook"]) == (3, 3)
    assert (delivery["status"], delivery["attempts"], delivery["next_attempt_at"]) == ("failed", 3, None)
    assert delivery["attempt_log"][-1]["outcome"] == "retry"


def test_gone_receiver_is_unsubscribed(api, server, deliverer, invoked):
    key, sub = invoked
    server.script("/hook", 410)
    start(api, key)

    deliverer.run_until_idle()
    start(api, key)
    later = deliverer.run_until_idle()

    assert problem(api.get(f"/hooks/{sub['id']}"))["status"] == 404
    assert (later, server.hits["/hook"]) == (0, 1)


def test_gone_receiver_writes_a_subscription_disabled_event(api, server, deliverer, invoked):
    key, sub = invoked
    server.script("/hook", 410)
    start(api, key)

    deliverer.run_until_idle()

    [event] = get(api, "/events", type="subscription.disabled")["items"]
    assert event["data"]["subscription"]["id"] == sub["id"]
    assert "410" in event["data"]["reason"]


# --- disabling after repeated failures -------------------------------------------------------------------------------


def fail_deliveries(api, server, deliverer, key: str, count: int) -> None:
    """Start ``count`` jobs whose one-attempt deliveries are answered 500."""
    server.script("/hook", *[500] * count)
    for _ in range(count):
        start(api, key)
        deliverer.run_until_idle()


@pytest.mark.settings(delivery_max_attempts=1, subscription_failure_limit=2)
def test_subscription_failing_for_good_in_a_row_is_disabled(api, server, deliverer, invoked):
    key, sub = invoked

    fail_deliveries(api, server, deliverer, key, 2)

    read = get(api, f"/hooks/{sub['id']}")
    [event] = get(api, "/events", type="subscription.disabled")["items"]
    assert (read["status"], read["failure_streak"]) == ("disabled", 2)
    assert "2 deliveries in a row" in read["disabled_reason"]
    assert (event["data"]["subscription"]["id"], event["data"]["subscription"]["status"]) == (sub["id"], "disabled")


@pytest.mark.settings(delivery_max_attempts=1, subscription_failure_limit=2)
def test_disabled_subscription_gets_no_deliveries(api, server, deliverer, invoked):
    key, sub = invoked
    fail_deliveries(api, server, deliverer, key, 2)

    start(api, key)
    made = deliverer.run_until_idle()

    assert (made, server.hits["/hook"]) == (0, 2)
    assert len(deliveries(api, sub["id"])) == 2


@pytest.mark.settings(delivery_max_attempts=1, subscription_failure_limit=2)
def test_success_between_failures_keeps_the_subscription_active(api, server, deliverer, invoked):
    key, sub = invoked
    server.script("/hook", 500, 200, 500)

    for _ in range(3):
        start(api, key)
        deliverer.run_until_idle()

    read = get(api, f"/hooks/{sub['id']}")
    assert (read["status"], read["failure_streak"]) == ("active", 1)


@pytest.mark.settings(delivery_max_attempts=1, subscription_failure_limit=2)
def test_patch_status_active_re_enables_a_disabled_subscription(api, server, deliverer, invoked):
    key, sub = invoked
    fail_deliveries(api, server, deliverer, key, 2)

    response = api.patch(f"/hooks/{sub['id']}", json={"status": "active"})
    uuid = start(api, key)
    deliverer.run_until_idle()

    assert response.status_code == 200
    assert (response.get_json()["status"], response.get_json()["failure_streak"]) == ("active", 0)
    assert received(server, "/hook")[-1]["json"]["data"]["job"]["uuid"] == uuid
    assert server.hits["/hook"] == 3


# --- redelivery ----------------------------------------------------------------------------------------------------------


def test_redeliver_sends_again_with_the_same_webhook_id(api, server, deliverer, invoked):
    key, sub = invoked
    start(api, key)
    deliverer.run_until_idle()
    [delivery] = deliveries(api, sub["id"])

    response = api.post(f"/hooks/{sub['id']}/deliveries/{delivery['id']}/redeliver")
    deliverer.run_until_idle()

    first, again = received(server, "/hook")
    assert response.status_code == 202
    assert lowered(first["headers"])["webhook-id"] == lowered(again["headers"])["webhook-id"] == delivery["id"]
    assert first["body"] == again["body"]
    assert Webhook(sub["secret"]).verify(again["body"], lowered(again["headers"]))["type"] == "runbook.invoked"
    assert deliveries(api, sub["id"])[0]["status"] == "succeeded"


def test_redeliver_of_a_pending_delivery_is_refused(api, server, deliverer, invoked):
    key, sub = invoked
    server.script("/hook", 500)
    start(api, key)
    deliverer.run_until_idle()
    [delivery] = deliveries(api, sub["id"])

    response = api.post(f"/hooks/{sub['id']}/deliveries/{delivery['id']}/redeliver")

    assert problem(response)["status"] == 409
    assert deliveries(api, sub["id"])[0]["attempts"] == 1
    assert deliverer.run_until_idle() == 0


def test_redeliver_of_an_unknown_delivery_is_not_found(api, invoked):
    response = api.post(f"/hooks/{invoked[1]['id']}/deliveries/msg_000000000000000000000000/redeliver")

    assert problem(response)["status"] == 404


# --- a delivery never changes the job it reports on ------------------------------------------------------------------


@pytest.mark.settings(delivery_max_attempts=2)
def test_failing_delivery_never_changes_the_job(api, server, clock, worker, deliverer):
    key = runbook(api, "Ping", [http_step(server.url + "/ok")])
    sub = subscribe(api, server.url + "/hook", ["*"], runbooks=[key])
    server.script("/hook", *[500] * 50)
    uuid = start(api, key)

    worker.run_until_idle()
    drain(deliverer, clock, rounds=3)
    worker.run_until_idle()

    job = get(api, f"/jobs/{uuid}")
    assert (job["status"], job["stop_reason"], job["ended_by"]) == ("succeeded", None, "system")
    assert {d["status"] for d in deliveries(api, sub["id"])} <= {"failed", "cancelled"}
    assert any(d["status"] == "failed" for d in deliveries(api, sub["id"]))


# --- Runbook Action trigger subscribers ----------------------------------------------------------------------------------


def lineage(request: dict) -> tuple:
    data = request["json"]["data"]
    job = data["job"]
    return job["uuid"], data["parameters"], job["parent_job_uuid"], job["root_job_uuid"], job["depth"]


def test_runbook_action_subscriber_receives_every_job_with_uuid_parameters_and_lineage(api, server, deliverer, invoked):
    key, _ = invoked
    first = start(api, key, {"x": "a"})
    second = start(api, key, {"x": "b"})

    deliverer.run_until_idle()

    got = sorted(lineage(r) for r in received(server, "/hook"))
    assert got == sorted([(first, {"x": "a"}, None, first, 0), (second, {"x": "b"}, None, second, 0)])


def test_runbook_action_subscriber_receives_a_child_job_with_its_lineage(api, server, worker, deliverer):
    child = runbook(api, "Child")
    parent = runbook(api, "Parent", [{"title": "Run the child", "action": {"type": "runbook", "runbook": child,
                                                                           "parameters": {"x": "{{ params.x }}"}}}])
    subscribe(api, server.url + "/hook", ["runbook.invoked"], runbooks=[child])
    parent_uuid = start(api, parent, {"x": "db"})

    worker.run_until_idle()
    deliverer.run_until_idle()

    child_uuid = get(api, f"/jobs/{parent_uuid}")["steps"][0]["output"]["child_job_uuid"]
    [request] = received(server, "/hook")
    assert lineage(request) == (child_uuid, {"x": "db"}, parent_uuid, parent_uuid, 1)
    assert request["json"]["data"]["job"]["triggered_by"] == "runbook"


@pytest.fixture
def flow(api, server):
    """A flow-backed runbook (callable, no steps, a Runbook Action subscriber at ``/flow``): (key, subscription)."""
    key = runbook(api, "Flow backed", [])
    return key, subscribe(api, server.url + "/flow", ["runbook.invoked"], runbooks=[key])


def test_flow_backed_job_waits_for_its_delivery(api, worker, flow):
    uuid = start(api, flow[0])

    worker.run_until_idle()

    job = get(api, f"/jobs/{uuid}")
    assert (job["status"], job["waiting_for"]) == ("waiting", "delivery")


def test_flow_backed_job_succeeds_when_its_delivery_is_acknowledged(api, server, worker, deliverer, flow):
    uuid = start(api, flow[0], {"x": "hi"})
    worker.run_until_idle()

    deliverer.run_until_idle()
    worker.run_until_idle()

    job = get(api, f"/jobs/{uuid}")
    assert (job["status"], job["waiting_for"], job["stop_reason"]) == ("succeeded", None, None)
    assert received(server, "/flow")[0]["json"]["data"]["parameters"] == {"x": "hi"}


def test_flow_backed_job_keeps_waiting_while_its_delivery_is_retried(api, server, worker, deliverer, flow):
    server.script("/flow", 500)
    uuid = start(api, flow[0])
    worker.run_until_idle()

    deliverer.run_until_idle()
    worker.run_until_idle()

    job = get(api, f"/jobs/{uuid}")
    assert (job["status"], job["waiting_for"]) == ("waiting", "delivery")


@pytest.mark.settings(delivery_max_attempts=3)
def test_flow_backed_job_is_stopped_when_its_delivery_fails_for_good(api, server, clock, worker, deliverer, flow):
    server.script("/flow", *[500] * 10)
    uuid = start(api, flow[0])
    worker.run_until_idle()

    drain(deliverer, clock)
    worker.run_until_idle()

    job = get(api, f"/jobs/{uuid}")
    assert (job["status"], job["stop_reason"], job["ended_by"]) == ("stopped", "delivery_failed", "system")
    assert "127.0.0.1" in job["message"] and "HTTP 500" in job["message"]
    assert server.hits["/flow"] == 3


def test_flow_backed_job_is_stopped_when_its_receiver_is_gone(api, server, worker, deliverer, flow):
    server.script("/flow", 410)
    uuid = start(api, flow[0])
    worker.run_until_idle()

    deliverer.run_until_idle()
    worker.run_until_idle()

    job = get(api, f"/jobs/{uuid}")
    assert (job["status"], job["stop_reason"]) == ("stopped", "delivery_failed")
    assert "127.0.0.1" in job["message"] and "HTTP 410" in job["message"]


def test_flow_backed_job_is_stopped_when_its_subscription_is_deleted(api, server, worker, deliverer, flow):
    key, sub = flow
    server.script("/flow", 500)
    uuid = start(api, key)
    worker.run_until_idle()
    deliverer.run_until_idle()

    assert api.delete(f"/hooks/{sub['id']}").status_code == 204
    worker.run_until_idle()

    job = get(api, f"/jobs/{uuid}")
    assert (job["status"], job["stop_reason"]) == ("stopped", "delivery_failed")


def test_runbook_without_steps_or_subscriber_simply_succeeds(api, worker):
    key = runbook(api, "Empty", [])
    uuid = start(api, key)

    worker.run_until_idle()

    job = get(api, f"/jobs/{uuid}")
    assert (job["status"], job["waiting_for"], job["stop_reason"]) == ("succeeded", None, None)


# --- Runbook Stopped by System ---------------------------------------------------------------------------------------------


def test_system_stop_is_delivered_with_the_structured_payload(api, server, clock, worker, deliverer):
    server.script("/down", 500)
    key = runbook(api, "Ping", [http_step(server.url + "/down", "Ping the service")])
    subscribe(api, server.url + "/hook", ["job.stopped_by_system"], runbooks=[key])
    uuid = start(api, key)

    worker.run_until_idle()
    deliverer.run_until_idle()

    job = get(api, f"/jobs/{uuid}")
    [request] = received(server, "/hook")
    data = request["json"]["data"]
    assert request["json"]["type"] == "job.stopped_by_system"
    assert (data["stop_reason"], data["message"]) == ("step_failed", job["message"])
    assert "HTTP 500" in data["message"]
    assert data["stopped_at"][:19] == clock.now().isoformat()[:19]
    assert data["step"] == {"order": 1, "title": "Ping the service"}
    assert (data["runbook"]["key"], data["runbook"]["version"], data["environment"]) == (key, 1, "eu-qa")
    assert (data["job"]["uuid"], data["job"]["parent_job_uuid"], data["job"]["root_job_uuid"], data["job"]["depth"]) == (uuid, None, uuid, 0)


def test_stopped_child_payload_carries_its_lineage(api, server, worker, deliverer):
    server.script("/down", 500)
    child = runbook(api, "Child", [http_step(server.url + "/down")])
    parent = runbook(api, "Parent", [{"title": "Run the child", "action": {"type": "runbook", "runbook": child, "parameters": {}}}])
    subscribe(api, server.url + "/hook", ["job.stopped_by_system"], runbooks=[child])
    parent_uuid = start(api, parent)

    worker.run_until_idle()
    deliverer.run_until_idle()

    [request] = received(server, "/hook")
    job = request["json"]["data"]["job"]
    assert (job["parent_job_uuid"], job["root_job_uuid"], job["depth"]) == (parent_uuid, parent_uuid, 1)
    assert request["json"]["data"]["runbook"]["key"] == child


def test_person_abort_is_never_delivered_as_stopped_by_system(api, server, worker, deliverer):
    key = runbook(api, "Manual", MANUAL)
    subscribe(api, server.url + "/stopped", ["job.stopped_by_system"])
    subscribe(api, server.url + "/cancelled", ["job.cancelled"])
    uuid = start(api, key)
    worker.run_until_idle()

    aborted = api.post(f"/jobs/{uuid}/abort", json={"reason": "wrong window"})
    worker.run_until_idle()
    deliverer.run_until_idle()

    assert aborted.status_code == 200
    assert get(api, f"/jobs/{uuid}")["status"] == "cancelled"
    assert (server.hits["/stopped"], server.hits["/cancelled"]) == (0, 1)
    assert get(api, "/events", type="job.stopped_by_system")["items"] == []


def test_subscription_filtered_to_one_runbook_gets_nothing_about_another(api, server, worker, deliverer):
    server.script("/down", 500, 500)
    watched = runbook(api, "Watched", [http_step(server.url + "/down")])
    other = runbook(api, "Other", [http_step(server.url + "/down")])
    subscribe(api, server.url + "/hook", ["job.stopped_by_system"], runbooks=[watched])
    start(api, other)
    uuid = start(api, watched)

    worker.run_until_idle()
    deliverer.run_until_idle()

    assert [(r["json"]["data"]["runbook"]["key"], r["json"]["data"]["job"]["uuid"]) for r in received(server, "/hook")] == [(watched, uuid)]
    assert len(get(api, "/events", type="job.stopped_by_system")["items"]) == 2


# --- what an attempt records when there is no answer, or an odd one ------------------------------------------


def test_refused_connection_is_recorded_as_such_and_retried(api, rt, deliverer):
    from tests.processes import free_port

    key = runbook(api, "Monitored")
    sub = subscribe(api, f"http://127.0.0.1:{free_port()}/hook", ["runbook.invoked"], runbooks=[key])
    start(api, key)

    deliverer.run_until_idle()

    [delivery] = deliveries(api, sub["id"])
    [attempt] = delivery["attempt_log"]
    assert (delivery["status"], attempt["status"], attempt["outcome"]) == ("pending", None, "retry")
    assert attempt["error"].startswith("ConnectionError: ")


def test_receiver_slower_than_the_timeout_is_recorded_as_timed_out(api, server, runtime_with_timeout, invoked):
    key, sub = invoked
    server.delays["/hook"] = 1.5
    start(api, key)

    runtime_with_timeout.run_until_idle()

    [delivery] = deliveries(api, sub["id"])
    [attempt] = delivery["attempt_log"]
    assert (attempt["status"], attempt["outcome"], attempt["error"]) == (None, "retry", "timed out after 0.5s")


@pytest.mark.parametrize(("content_type", "raw", "expected"), [
    ("text/plain; charset=iso-8859-1", "caf\xe9".encode("latin-1"), "café"),
    ("text/plain", "café".encode(), "café"),
    ("text/plain", b"caf\xff", "caf\ufffd"),
    ("text/plain; charset=no-such-charset", b"ok", "ok"),
])
def test_answer_excerpt_is_decoded_with_the_declared_charset(content_type, raw, expected):
    from webhooks.delivery import _excerpt

    assert _excerpt(raw, content_type) == expected


@pytest.fixture
def runtime_with_timeout(settings, clock):
    import dataclasses

    from runner.runtime import Runtime
    from webhooks.delivery import DeliveryWorker

    runtime = Runtime.from_settings(dataclasses.replace(settings, delivery_timeout=0.5), clock=clock)
    yield DeliveryWorker(runtime, worker_id="slow-test", threads=1)
    runtime.db.dispose()
