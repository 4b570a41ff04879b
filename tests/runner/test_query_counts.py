"""The hot routes run a fixed, small number of SQL statements: no N+1 as runbooks, steps or jobs grow."""
from __future__ import annotations

from sqlalchemy import event, inspect

from tests.runner.helpers import counting

# Upper bounds of statements per request; raising one needs a reason (it is paid on every invocation).
INVOKE_STATEMENTS = 10
GET_JOB_STATEMENTS = 6


def _publish(api, name, steps):
    body = {"name": name, "title": name, "callable": True, "steps": steps}
    assert api.post("/runbooks", json=body).status_code == 201
    assert api.post(f"/runbooks/{name}/publish").status_code == 200


def _runbook(api, name, steps):
    _publish(api, name, [{"title": f"Step {i}"} for i in range(1, steps + 1)])


def _parent_calling_child(api, server):
    """Publish "parent": an http step, then a runbook step running "child" (which the caller publishes)."""
    _publish(api, "parent", [{"title": "Call", "action": {"type": "http", "url": server.url + "/ok"}},
                             {"title": "Run the child", "action": {"type": "runbook", "runbook": "child"}}])


def test_invoke_runs_a_bounded_number_of_statements_whatever_the_history(api, rt):
    _runbook(api, "short", 3)
    for _ in range(5):
        api.post("/runbooks/short/jobs", json={})
    with counting(rt.db.engine) as first:
        assert api.post("/runbooks/short/jobs", json={}).status_code == 202
    for _ in range(20):
        api.post("/runbooks/short/jobs", json={})
    with counting(rt.db.engine) as later:
        assert api.post("/runbooks/short/jobs", json={}).status_code == 202
    assert len(first) <= INVOKE_STATEMENTS, first
    assert len(later) == len(first)


def test_get_job_statements_do_not_grow_with_steps(api, rt, worker):
    _runbook(api, "short", 2)
    _runbook(api, "long", 30)
    counts = {}
    for name in ("short", "long"):
        uuid = api.post(f"/runbooks/{name}/jobs", json={}).get_json()["job"]["uuid"]
        worker.run_until_idle()
        for order in range(1, 3):
            assert api.post(f"/jobs/{uuid}/steps/{order}/done", json={}).status_code == 200
            worker.run_until_idle()
        with counting(rt.db.engine) as statements:
            assert api.get(f"/jobs/{uuid}").status_code == 200
        counts[name] = len(statements)
    assert counts["short"] == counts["long"] <= GET_JOB_STATEMENTS, counts
    # Neither runbook calls another, so neither job can have children to look up.
    assert not [sql for sql, _, _ in statements if "WHERE jobs.parent_job_uuid" in sql]


def test_running_jobs_scans_no_table_that_grows(api, rt, worker):
    _runbook(api, "one-step", 1)
    body = {"name": "flow-only", "title": "flow-only", "callable": True, "steps": []}
    assert api.post("/runbooks", json=body).status_code == 201
    assert api.post("/runbooks/flow-only/publish").status_code == 200
    with counting(rt.db.engine) as statements:
        stepless = api.post("/runbooks/flow-only/jobs", json={}).get_json()["job"]["uuid"]
        stepped = api.post("/runbooks/one-step/jobs", json={}).get_json()["job"]["uuid"]
        worker.run_until_idle()
        assert api.post(f"/jobs/{stepped}/steps/1/done", json={}).status_code == 200
        worker.run_until_idle()
        assert [api.get(f"/jobs/{uuid}").get_json()["status"] for uuid in (stepless, stepped)] == ["succeeded", "succeeded"]
    with rt.db.engine.connect() as conn:
        plans = {statement: [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
                 for statement, parameters, many in statements
                 if not many and statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE"))}
    assert len(plans) > 10
    scans = {statement: plan for statement, plan in plans.items() if any(step.startswith("SCAN") for step in plan)}
    assert not scans


def test_events_on_sqlite_keep_only_the_indexes_their_reads_use(api, rt):
    """SQLite leaves events.txid NULL and its feed pages by id, through (workspace, id): no (workspace, txid, id) index to write."""
    _runbook(api, "one-step", 1)
    api.post("/runbooks/one-step/jobs", json={})
    with counting(rt.db.engine) as statements:
        assert api.get("/events").status_code == 200
    [(feed, parameters, _)] = [entry for entry in statements if "FROM events" in entry[0]]
    with rt.db.engine.connect() as conn:
        indexes = {index["name"] for index in inspect(conn).get_indexes("events")}
        plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {feed}", parameters)]
    assert indexes == {"ix_events_workspace_id_id", "ix_events_job_id_seq"}
    assert any("ix_events_workspace_id_id" in step for step in plan) and not any("TEMP B-TREE" in step for step in plan), plan


def test_invoke_builds_no_schema_per_request(api, monkeypatch):
    import marshmallow

    _runbook(api, "short", 1)
    built: list[str] = []
    original = marshmallow.Schema.__init__

    def counting_init(self, *args, **kwargs):  # noqa: ANN001
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(marshmallow.Schema, "__init__", counting_init)
    for _ in range(2):
        assert api.post("/runbooks/short/jobs", json={}).status_code == 202
    assert built == []


def test_invoke_builds_and_loads_no_job_object(api):
    """The 202 answer is shaped from the inserted row: an ORM ``Job`` costs more to build than the insert itself."""
    from runner.models import Job

    _runbook(api, "short", 1)
    made: list[str] = []
    listeners = {"init": lambda target, args, kwargs: made.append("built"), "load": lambda target, context: made.append("loaded")}
    for name, listener in listeners.items():
        event.listen(Job, name, listener)
    try:
        for _ in range(2):
            answer = api.post("/runbooks/short/jobs", json={})
            assert answer.status_code == 202
            assert answer.json["job"]["started_at"] is None and answer.json["job"]["status"] == "queued"
    finally:
        for name, listener in listeners.items():
            event.remove(Job, name, listener)
    assert made == []


def test_a_called_runbooks_version_is_read_once_per_process(api, rt, worker):
    """A saved version never changes: the second call tree reads no runbook_versions row."""
    _runbook(api, "child", 1)
    _publish(api, "parent", [{"title": "Run the child", "action": {"type": "runbook", "runbook": "child", "wait": False}}])
    reads = []
    for _ in range(2):
        with counting(rt.db.engine) as statements:
            uuid = api.post("/runbooks/parent/jobs", json={}).get_json()["job"]["uuid"]
            worker.run_until_idle()
        assert api.get(f"/jobs/{uuid}").get_json()["summary"]["children"]
        reads.append([sql for sql, _, _ in statements if "FROM runbook_versions" in sql])
    assert reads[1] == [], reads


def test_a_transaction_looks_its_subscriptions_up_once(api, rt):
    """A step-less job created and moved in one transaction fans events out twice, from one look at the subscriptions."""
    _publish(api, "empty", [])
    with counting(rt.db.engine) as statements:
        answer = api.post("/runbooks/empty/jobs", json={"wait": 0.05})
    assert (answer.status_code, answer.json["job"]["status"]) == (200, "succeeded")
    assert len([sql for sql, _, _ in statements if "FROM subscriptions" in sql]) == 1
    assert len([sql for sql, _, _ in statements if sql.startswith("INSERT INTO events")]) == 2


def test_a_job_with_steps_created_and_moved_in_one_transaction_writes_its_events_together(api, rt):
    """Only a step-less job needs its events written before it moves; any other job's go in with those of the move."""
    _runbook(api, "short", 1)
    with counting(rt.db.engine) as statements:
        answer = api.post("/runbooks/short/jobs", json={"wait": 0.05})
    assert (answer.status_code, answer.json["job"]["status"]) == (202, "waiting")
    assert len([sql for sql, _, _ in statements if sql.startswith("INSERT INTO events")]) == 1
    types = [event["type"] for event in api.get(f"/jobs/{answer.json['job']['uuid']}/events").get_json()["items"]]
    assert types == ["job.created", "runbook.invoked", "job.started", "step.started", "job.waiting"]


def test_a_job_created_and_moved_in_one_transaction_is_not_read_back(api, rt, server):
    """The parent and the child it starts are moved right after their inserts, from the rows just written."""
    _runbook(api, "child", 1)
    _parent_calling_child(api, server)
    with counting(rt.db.engine) as statements:
        answer = api.post("/runbooks/parent/jobs", json={"wait": 0.2})
    assert (answer.status_code, answer.json["job"]["status"]) == (202, "waiting")
    assert server.hits["/ok"] == 1
    assert [sql for sql, _, _ in statements if "FROM jobs" in sql and "WHERE jobs.id = ?" in sql] == []


def test_a_batch_of_jobs_looks_up_runbook_statuses_and_flow_deliveries_once(api, rt):
    """A job worker's batch of starting jobs checks their runbooks and looks for their flows' deliveries with one query each."""
    from runner.engine.driver import claim_and_move

    _publish(api, "flow-only", [])
    _runbook(api, "one-step", 1)
    uuids = [api.post(f"/runbooks/{name}/jobs", json={}).get_json()["job"]["uuid"] for name in ["flow-only"] * 4 + ["one-step"] * 2]
    with counting(rt.db.engine) as statements:
        moved = claim_and_move(rt, "worker-1", 8)
    assert sorted(job_uuid for job_uuid, _ in moved) == sorted(uuids)
    assert [api.get(f"/jobs/{uuid}").get_json()["status"] for uuid in uuids] == ["succeeded"] * 4 + ["waiting"] * 2
    assert len([sql for sql, _, _ in statements if "FROM runbooks" in sql]) == 1
    assert len([sql for sql, _, _ in statements if "FROM deliveries" in sql]) == 1


def _parent_and_child_round_trip(api, rt, server):
    """Invoke a parent (an http step, then a child with one http step) with wait; return the answer and every statement run."""
    _publish(api, "child", [{"title": "Call", "action": {"type": "http", "url": server.url + "/ok"}}])
    _parent_calling_child(api, server)
    with counting(rt.db.engine) as statements:
        answer = api.post("/runbooks/parent/jobs", json={"wait": 5})
    assert (answer.status_code, answer.json["job"]["status"]) == (200, "succeeded")
    return answer, statements


def test_a_parent_resumed_by_its_ending_child_does_not_read_the_child_again(api, rt, server):
    """The child's last transaction moves the waiting parent on, from the child row it already holds."""
    answer, statements = _parent_and_child_round_trip(api, rt, server)
    child_uuid = answer.json["job"]["steps"][1]["output"]["child_job_uuid"]
    reads = [sql for sql, parameters, _ in statements
             if sql.startswith("SELECT jobs.id, jobs.uuid") and child_uuid in (parameters if isinstance(parameters, (tuple, list)) else ())]
    assert len(reads) == 1, reads  # taking the child up after its http call; not again when its parent resumes


def _answer_and_reads(api, rt, name):
    """Invoke ``name`` with wait; return the answer's job and the step-event reads made after the call tree's last write."""
    with counting(rt.db.engine) as statements:
        answer = api.post(f"/runbooks/{name}/jobs", json={"wait": 5})
    assert answer.status_code == 200, answer.json
    last_write = max(i for i, (sql, _, _) in enumerate(statements) if not sql.startswith("SELECT"))
    return answer.json["job"], [sql for sql, _, _ in statements[last_write:] if "FROM step_events" in sql]


def test_a_job_that_ends_while_waited_for_is_answered_as_its_last_transaction_left_it(api, rt, server):
    """The answer to a wait is the job as a later GET shows it, without reading the job and its steps again."""
    server.script("/down", 503)
    _publish(api, "child", [{"title": "Call", "action": {"type": "http", "url": server.url + "/ok"}}])
    _parent_calling_child(api, server)
    _publish(api, "broken", [{"title": "Prepare", "action": {"type": "http", "url": server.url + "/ok"}, "rollback_note": "Undo it"},
                             {"title": "Call", "action": {"type": "http", "url": server.url + "/down"}}])
    for name, status in (("parent", "succeeded"), ("broken", "stopped")):
        answered, reads = _answer_and_reads(api, rt, name)
        assert answered["status"] == status
        assert answered == api.get(f"/jobs/{answered['uuid']}").get_json()
        assert reads == [], reads
    assert answered["summary"]["rollback_notes"] == [{"order": 1, "title": "Prepare", "rollback_note": "Undo it"}]


def test_a_waited_job_that_ended_in_its_first_transaction_is_read_for_its_answer(api, rt):
    """A step-less runbook ends in the transaction that creates it: its answer is read back, and is the same."""
    _publish(api, "empty", [])
    answered, reads = _answer_and_reads(api, rt, "empty")
    assert answered["status"] == "succeeded"
    assert answered == api.get(f"/jobs/{answered['uuid']}").get_json()
    assert len(reads) == 1


def test_a_job_moved_after_its_http_calls_reads_its_step_events_with_its_row(api, rt, server):
    """The parent after its call, the child after its call and the parent its child resumes: each read together with its step events."""
    answer, statements = _parent_and_child_round_trip(api, rt, server)
    assert [step["status"] for step in answer.json["job"]["steps"]] == ["done", "done"]
    reads = [sql for sql, _, _ in statements if sql.startswith("SELECT jobs.id, jobs.uuid")]
    assert len(reads) == 3 and all("JOIN step_events" in sql for sql in reads), reads
    assert not [sql for sql, _, _ in statements if sql.startswith("SELECT step_events.")]
