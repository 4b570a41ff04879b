"""Fewer, shorter write transactions: batches of new jobs, jobs leased to the thread that drives them, call trees moved together."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from runner.engine import JobWorker, driver
from runner.engine.invoke import JobRequest, Trigger, create_job
from runner.engine.machine import Machine, NeedsCall
from runner.models import Job, Workspace
from tests.processes import wait_until
from webhooks.delivery import DeliveryWorker

from .helpers import audit_entries
from .test_engine import calls, events, http, job, manual, publish, runtime_with, start  # noqa: F401 - runtime_with is a fixture


@contextmanager
def commits(engine) -> Iterator[list[int]]:
    """Count the transactions committed on ``engine`` inside the block."""
    seen: list[int] = []

    def count(conn) -> None:  # noqa: ANN001
        seen.append(1)

    event.listen(engine, "commit", count)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", count)


def invoke_on_a_thread(api, key: str, *, wait: float, until: Callable[[], object]) -> tuple[threading.Thread, list]:
    """Invoke ``key`` with ``wait`` on another thread; return the thread and its answer list once ``until()`` holds."""
    answers: list = []
    caller = threading.Thread(target=lambda: answers.append(api.post(f"/runbooks/{key}/jobs", json={"wait": wait})))
    caller.start()
    wait_until(until, timeout=10, what="the invocation's call")
    return caller, answers


def test_worker_starts_a_batch_of_new_jobs_in_one_transaction(api, rt):
    key = publish(api, "Page the on-call engineer", [manual("Acknowledge the page")])
    uuids = [start(api, key) for _ in range(5)]
    worker = JobWorker(rt, worker_id="batch-worker", threads=1)

    with commits(rt.db.engine) as committed:
        assert worker.run_once(limit=8) == 5

    assert len(committed) == 1
    for uuid in uuids:
        moved = job(api, uuid)
        assert (moved["status"], moved["waiting_for"], moved["current_step"]) == ("waiting", "operator", 1)
    with rt.db.read() as session:
        assert session.scalars(select(Job.lease_owner).where(Job.uuid.in_(uuids))).all() == [None] * 5


def test_jobs_a_batch_moves_to_their_end_cost_no_further_transaction(api, rt):
    key = publish(api, "Tell the flow", [])
    uuids = [start(api, key) for _ in range(4)]
    worker = JobWorker(rt, worker_id="batch-worker", threads=1)

    with commits(rt.db.engine) as committed:
        assert worker.run_once(limit=8) == 4

    assert len(committed) == 1
    assert [job(api, uuid)["status"] for uuid in uuids] == ["succeeded"] * 4


def test_a_job_that_breaks_its_batch_is_driven_alone_and_the_others_still_start(api, rt, monkeypatch, caplog):
    key = publish(api, "Page the on-call engineer", [manual("Acknowledge the page")])
    uuids = [start(api, key) for _ in range(3)]
    broken = uuids[1]
    real_run = Machine.run

    def run(self: Machine):  # noqa: ANN202
        if self.job.uuid == broken:
            raise RuntimeError("corrupt step state")
        return real_run(self)

    monkeypatch.setattr(Machine, "run", run)
    worker = JobWorker(rt, worker_id="batch-worker", threads=1)

    with caplog.at_level(logging.WARNING):
        assert worker.run_once(limit=8) == 3

    assert [job(api, uuid)["status"] for uuid in uuids] == ["waiting", "queued", "waiting"]
    assert f"driving job {broken} failed" in caplog.text


def test_a_job_created_for_its_driver_is_not_claimed_by_other_workers_until_that_lease_lapses(api, rt, workspace, clock):
    key = publish(api, "Page the on-call engineer", [manual("Acknowledge the page")])
    with rt.db.read() as session:
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.slug == workspace))
    request = JobRequest(workspace_id=workspace_id, runbook_ref=key, parameters={}, trigger=Trigger("api", "tester"), driver="api:inline")

    created, _ = create_job(rt, request)

    assert JobWorker(rt, worker_id="background", threads=1).run_once() == 0
    assert job(api, created.uuid)["status"] == "queued"
    with rt.db.read() as session:
        assert session.scalar(select(Job.lease_owner).where(Job.uuid == created.uuid)) == "api:inline"
    # The driver died (the runner was killed mid-request): once its lease lapses, a worker takes the job up.
    clock.advance(seconds=rt.settings.lease_seconds + 1)
    assert JobWorker(rt, worker_id="background", threads=1).run_once() == 1
    assert job(api, created.uuid)["status"] == "waiting"


def test_waiting_invocation_runs_parent_and_child_in_three_transactions(api, rt, server):
    child = publish(api, "Flush the cache", [http(server.url + "/flush")])
    parent = publish(api, "Roll out the release", [http(server.url + "/deploy"), calls(child)])

    with commits(rt.db.engine) as committed:
        response = api.post(f"/runbooks/{parent}/jobs", json={"wait": 5})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["job"]["status"] == "succeeded"
    assert server.hits["/deploy"] == server.hits["/flush"] == 1
    # Create and start the parent; record its call, create and start the child; end the child and then the parent.
    assert len(committed) == 3


def test_a_call_tree_driven_by_a_waiting_invocation_is_left_unleased_once_it_waits(api, rt, server):
    server.delays["/slow"] = 0.5
    child = publish(api, "Flush the cache", [http(server.url + "/slow")])
    parent = publish(api, "Roll out the release", [calls(child), manual("Confirm the release")])
    caller, answers = invoke_on_a_thread(api, parent, wait=5, until=lambda: server.hits["/slow"])

    claimed = JobWorker(rt, worker_id="background", threads=1).run_once()
    caller.join(10)

    assert server.hits["/slow"] == 1
    assert claimed == 0
    body = answers[0].get_json()["job"]
    assert (body["status"], body["waiting_for"], body["current_step"]) == ("waiting", "operator", 2)
    with rt.db.read() as session:
        assert session.scalars(select(Job.lease_owner)).all() == [None, None]


def test_idle_worker_threads_look_for_work_one_at_a_time(runtime_with, monkeypatch):
    rt = runtime_with(poll_interval=30.0)
    worker = JobWorker(rt, worker_id="idle-worker", threads=4)
    looked: list[int] = []
    monkeypatch.setattr(worker, "claim", lambda limit: looked.append(limit) or [])
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while not looked and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert len(looked) == 1  # three threads wait their turn instead of probing the store too
        rt.signals[worker.signal_key].set()
        deadline = time.monotonic() + 5
        while len(looked) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert len(looked) == 2  # one wake-up, one look
    finally:
        worker.stop(5)


def test_a_batch_stops_at_the_first_job_that_needs_a_call(api, rt, server):
    key = publish(api, "Ping the service", [http(server.url + "/ping")])
    uuids = [start(api, key) for _ in range(3)]
    worker = JobWorker(rt, worker_id="batch-worker", threads=1)

    [(first, outcome)] = worker.claim(8)

    assert isinstance(outcome, NeedsCall) and first == uuids[0]
    assert [job(api, uuid)["status"] for uuid in uuids] == ["running", "queued", "queued"]
    with rt.db.read() as session:
        assert session.scalars(select(Job.lease_owner).where(Job.uuid.in_(uuids[1:]))).all() == [None, None]


def test_a_job_whose_driving_failed_is_let_go_and_taken_up_again_after_its_lease(api, rt, server, clock, monkeypatch):
    key = publish(api, "Ping the service", [http(server.url + "/ping", step={"idempotent": True})])
    uuid = start(api, key)
    real_perform = driver.perform
    monkeypatch.setattr(driver, "perform", lambda call, policy: (_ for _ in ()).throw(RuntimeError("resolver crashed")))
    first = JobWorker(rt, worker_id="first-worker", threads=1)

    first.run_once()

    with rt.db.read() as session:
        owner, until = session.execute(select(Job.lease_owner, Job.lease_until).where(Job.uuid == uuid)).one()
    assert (owner, first.heartbeat()) == (None, 0)  # no longer held, so no longer renewed
    monkeypatch.setattr(driver, "perform", real_perform)
    second = JobWorker(rt, worker_id="second-worker", threads=1)
    assert second.run_once() == 0  # not before the lease has lapsed
    clock.advance(seconds=(until - clock.now()).total_seconds() + 1)
    second.run_until_idle()
    assert job(api, uuid)["status"] == "succeeded"
    assert server.hits["/ping"] == 1


def test_batches_grow_while_jobs_pile_up_and_shrink_when_they_do_not(api, rt, monkeypatch):
    key = publish(api, "Page the on-call engineer", [manual("Acknowledge the page")])
    uuids = [start(api, key) for _ in range(60)]
    worker = JobWorker(rt, worker_id="busy-worker", threads=1)
    asked: list[tuple[int, int]] = []
    claim = worker.claim

    def counting(limit: int) -> list:
        moved = claim(limit)
        asked.append((limit, len(moved)))
        return moved

    monkeypatch.setattr(worker, "claim", counting)
    worker.start()
    try:
        wait_until(lambda: len(asked) >= 5, timeout=10, what="five claims")
    finally:
        worker.stop(5)

    # 8, 16 and 32 full; 32 again (the ceiling) takes the last four; then back to 8, finding none.
    assert asked[:5] == [(8, 8), (16, 16), (32, 32), (32, 4), (8, 0)]
    assert {job(api, uuid)["status"] for uuid in uuids} == {"waiting"}


def test_a_batch_that_is_not_full_sets_the_next_back_to_the_first_size(rt):
    worker = JobWorker(rt, worker_id="w", threads=1)

    assert [worker.next_batch(8, 8), worker.next_batch(16, 16), worker.next_batch(32, 32), worker.next_batch(32, 31)] == [16, 32, 32, 8]
    assert DeliveryWorker(rt).next_batch(32, 32) == 32  # deliveries keep their one batch size


def test_stopping_a_worker_ends_every_thread_at_once_even_with_a_long_poll(runtime_with):
    rt = runtime_with(poll_interval=30.0)
    worker = JobWorker(rt, worker_id="idle-worker", threads=4)
    worker.start()
    threads = list(worker._threads)
    time.sleep(0.2)

    worker.stop(timeout=5)

    assert not [t.name for t in threads if t.is_alive()]


def test_a_wait_invocation_whose_first_insert_conflicted_calls_out_once(api, rt, server):
    key = publish(api, "Ping the service", [http(server.url + "/ping")])
    conflicts: list[int] = []

    def conflict_once(session) -> None:  # noqa: ANN001
        if not conflicts:
            conflicts.append(1)
            raise IntegrityError("INSERT INTO jobs", {}, Exception("UNIQUE constraint failed"))

    rt.db.before_commit.insert(0, conflict_once)
    try:
        response = api.post(f"/runbooks/{key}/jobs", json={"wait": 5}, headers={"Idempotency-Key": "deploy-42"})
    finally:
        rt.db.before_commit.remove(conflict_once)

    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["job"]["status"], server.hits["/ping"], conflicts) == ("succeeded", 1, [1])


def _invoke_while_the_writer_is_held(rt, api, key: str, count: int) -> tuple[int, list]:
    """Start ``count`` invocations of ``key`` on threads while this thread holds the write lock, let them all queue for it,
    release it; return how many transactions they committed and what ``create_job`` gave each."""
    from runner.engine import invoke

    with rt.db.read() as session:
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.slug == api.slug))
    request = JobRequest(workspace_id=workspace_id, runbook_ref=key, parameters={}, trigger=Trigger("api", "olivia"))
    created: list = []
    callers = [threading.Thread(target=lambda: created.append(create_job(rt, request))) for _ in range(count)]
    with commits(rt.db.engine) as committed:
        with rt.db.write():
            for caller in callers:
                caller.start()
            wait_until(lambda: len(invoke._group_of(rt.db).waiting) == count, timeout=10, what="the invocations to queue for the writer")
        for caller in callers:
            caller.join(timeout=10)
    return len(committed), created


def test_invocations_that_wait_for_the_writer_are_inserted_in_one_transaction(api, rt):
    key = publish(api, "Page the on-call engineer", [manual("Acknowledge the page")])

    committed, created = _invoke_while_the_writer_is_held(rt, api, key, 4)

    assert committed == 1
    assert [new for _, new in created] == [True] * 4
    uuids = {created_job.uuid for created_job, _ in created}
    assert len(uuids) == 4
    for uuid in uuids:
        assert job(api, uuid)["status"] == "queued"
        assert [e["type"] for e in events(api, uuid)] == ["job.created", "runbook.invoked"]
        assert [e["action"] for e in audit_entries(api, target=uuid)] == ["job.create"]


def test_when_the_shared_insert_fails_each_invocation_is_inserted_alone(api, rt, monkeypatch):
    from runner.engine import invoke

    key = publish(api, "Page the on-call engineer", [manual("Acknowledge the page")])
    alone = invoke.insert_jobs

    def refuse_batches(rt_, session, rows, triggers, now):  # noqa: ANN001
        if len(rows) > 1:
            raise IntegrityError("INSERT INTO jobs", {}, Exception("refused for the test"))
        return alone(rt_, session, rows, triggers, now)

    monkeypatch.setattr(invoke, "insert_jobs", refuse_batches)
    committed, created = _invoke_while_the_writer_is_held(rt, api, key, 3)

    assert committed == 3
    assert len({created_job.uuid for created_job, _ in created}) == 3
    with rt.db.read() as session:
        assert session.scalar(select(func.count(Job.id))) == 3


def test_an_invocation_that_cannot_get_the_writer_fails_and_leaves_nothing_queued(api, rt, monkeypatch):
    from runner.engine import invoke

    key = publish(api, "Page the on-call engineer", [manual("Acknowledge the page")])

    @contextmanager
    def unavailable():
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("disk I/O error"))
        yield

    monkeypatch.setattr(rt.db, "write", unavailable)
    answer = api.post(f"/runbooks/{key}/jobs", json={})

    assert answer.status_code >= 500
    assert invoke._group_of(rt.db).waiting == []
    with rt.db.read() as session:
        assert session.scalar(select(func.count(Job.id))) == 0
