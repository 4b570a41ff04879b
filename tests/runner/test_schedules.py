"""Cron schedules over HTTP and the scheduler that fires them, driven tick by tick under a manual clock."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from runner.background import BackgroundProcess
from runner.clock import ManualClock
from runner.config import Settings
from runner.roles import Roles
from runner.runtime import Runtime
from runner.scheduling.scheduler import APSCHEDULER_TABLE, ScheduleRunner
from runner.services import tenancy
from tests.conftest import TEST_SETTINGS, Api, problem
from tests.runner.helpers import create_runbook

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
# Where most tests start: a Monday noon, far from any DST change.
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

# Parameters of the scheduled runbook: one required, one with a default.
PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {"service": {"type": "string"}, "replicas": {"type": "integer", "default": 2}},
    "required": ["service"],
    "additionalProperties": False,
}
VALID = {"service": "db"}


# --- fixtures and builders ---------------------------------------------------------------------------


@pytest.fixture
def key(api: Api, clock: ManualClock) -> str:
    """A published callable runbook with PARAMS, created at START."""
    clock.set(START)
    return create_runbook(api, "Rotate the TLS certificates", status="published", name="rotate-tls", callable=True,
                          parameters=PARAMS)["key"]


@pytest.fixture
def scheduler(rt: Runtime) -> ScheduleRunner:
    return ScheduleRunner(rt)


@pytest.fixture
def runtime_like(settings: Settings, clock: ManualClock) -> Iterator[Callable[..., Runtime]]:
    """Build another Runtime on the same database file and clock (a restart, or a differently configured runner)."""
    built: list[Runtime] = []

    def build(**overrides: Any) -> Runtime:
        runtime = Runtime.from_settings(Settings.from_env({}, database_url=settings.database_url, var_dir=settings.var_dir,
                                                          **{**TEST_SETTINGS, **overrides}), clock=clock)
        built.append(runtime)
        return runtime

    yield build
    for runtime in built:
        runtime.db.dispose()


def create_schedule(api: Api, key: str, **body: Any) -> dict[str, Any]:
    response = api.post(f"/runbooks/{key}/schedules", json={"cron": "0 3 * * *", "parameters": VALID, **body})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def schedules(api: Api, key: str) -> list[dict[str, Any]]:
    response = api.get(f"/runbooks/{key}/schedules")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def jobs(api: Api, key: str) -> list[dict[str, Any]]:
    response = api.get("/jobs", query_string={"runbook": key, "limit": 200})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def patch(api: Api, key: str, schedule_id: str, **body: Any) -> dict[str, Any]:
    response = api.patch(f"/runbooks/{key}/schedules/{schedule_id}", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def tick_at(scheduler: ScheduleRunner, clock: ManualClock, when: datetime) -> list[str]:
    clock.set(when)
    return scheduler.tick()


def job_store_ids(rt: Runtime) -> set[str]:
    with rt.db.read() as session:
        return set(session.execute(text(f"SELECT id FROM {APSCHEDULER_TABLE}")).scalars())


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- create, list, enable, delete, access ----------------------------------------------------------------


def test_created_schedule_answers_201_with_its_location(api, key):
    response = api.post(f"/runbooks/{key}/schedules",
                        json={"cron": "15 9 * * 1-5", "timezone": "America/New_York", "parameters": VALID, "enabled": True})

    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert response.headers["Location"].endswith(f"/api/v1/ws/acme/runbooks/{key}/schedules/{created['id']}")
    assert (created["cron"], created["timezone"], created["enabled"], created["runbook"]) == ("15 9 * * 1-5", "America/New_York", True, key)
    assert created["parameters"] == {"service": "db", "replicas": 2}


def test_listed_schedule_shows_its_next_five_fire_times_in_its_zone(api, key, clock):
    clock.set(at(2026, 3, 6, 12, 0))  # a Friday; the US springs forward on Sunday 2026-03-08
    created = create_schedule(api, key, cron="15 9 * * 1-5", timezone="America/New_York")

    [listed] = schedules(api, key)

    assert listed["id"] == created["id"]
    assert listed["next_fire_times"] == [
        "2026-03-06T09:15:00-05:00", "2026-03-09T09:15:00-04:00", "2026-03-10T09:15:00-04:00",
        "2026-03-11T09:15:00-04:00", "2026-03-12T09:15:00-04:00",
    ]
    assert listed["cron_description"] == "At 09:15 AM, Monday through Friday"


def test_next_fire_times_in_a_spring_forward_gap_carry_the_zones_real_offset(api, key, clock):
    clock.set(at(2026, 3, 28, 12, 0))
    create_schedule(api, key, cron="30 2 * * *", timezone="Europe/Berlin")

    [listed] = schedules(api, key)

    times = [datetime.fromisoformat(t) for t in listed["next_fire_times"]]
    assert listed["next_fire_times"][0] == "2026-03-29T03:30:00+02:00"
    assert all(a < b for a, b in zip(times, times[1:]))
    assert all(t.utcoffset() == t.astimezone(BERLIN).utcoffset() for t in times)


def test_disabled_schedule_shows_no_fire_times_and_does_not_fire(api, key, clock, scheduler):
    created = create_schedule(api, key, cron="0 13 * * *")
    scheduler.tick()
    clock.advance(minutes=1)

    disabled = patch(api, key, created["id"], enabled=False)

    assert (disabled["enabled"], disabled["next_fire_times"]) == (False, [])
    assert schedules(api, key)[0]["next_fire_times"] == []
    assert tick_at(scheduler, clock, at(2026, 3, 2, 13, 0)) == []
    assert jobs(api, key) == []


def test_re_enabled_schedule_fires_again(api, key, clock, scheduler):
    created = create_schedule(api, key, cron="0 13 * * *", enabled=False)
    scheduler.tick()
    clock.advance(minutes=1)

    enabled = patch(api, key, created["id"], enabled=True)
    fired = tick_at(scheduler, clock, at(2026, 3, 2, 13, 0))

    assert enabled["next_fire_times"][0] == "2026-03-02T13:00:00+00:00"
    assert len(fired) == 1
    assert [j["uuid"] for j in jobs(api, key)] == fired


def test_deleted_schedule_answers_204_and_no_longer_fires(api, key, clock, scheduler, rt):
    created = create_schedule(api, key, cron="0 13 * * *")
    scheduler.tick()

    response = api.delete(f"/runbooks/{key}/schedules/{created['id']}")

    assert response.status_code == 204
    assert schedules(api, key) == []
    assert tick_at(scheduler, clock, at(2026, 3, 2, 13, 0)) == []
    assert jobs(api, key) == []
    assert job_store_ids(rt) == set()


def test_member_cannot_create_a_schedule(api, make_api, key):
    member = make_api("member", subject="mia")

    response = member.post(f"/runbooks/{key}/schedules", json={"cron": "0 3 * * *", "parameters": VALID})

    assert problem(response)["status"] == 403
    assert schedules(api, key) == []


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("GET", "", None),
    ("POST", "", {"cron": "0 3 * * *", "parameters": VALID}),
    ("PATCH", "/{id}", {"enabled": False}),
    ("DELETE", "/{id}", None),
])
def test_token_of_another_workspace_gets_404(api, make_api, rt, key, method, suffix, body):
    created = create_schedule(api, key)
    tenancy.create_workspace(rt, "globex")
    stranger = make_api("owner", subject="gustav", slug="globex")
    path = f"/runbooks/{key}/schedules" + suffix.format(id=created["id"])

    for url in (f"/api/v1/ws/acme{path}", path):
        response = stranger.request(method, url, json=body)
        assert problem(response)["status"] == 404, url
    assert [(s["id"], s["enabled"]) for s in schedules(api, key)] == [(created["id"], True)]


# --- persistence ---------------------------------------------------------------------------------------


def test_schedule_survives_a_restart(api, key, rt, clock, runtime_like):
    created = create_schedule(api, key, cron="0 13 * * *")
    assert ScheduleRunner(rt).tick() == []
    rt.db.dispose()

    restarted = runtime_like()
    # Back a few minutes after the fire time: only the stored next fire time knows 13:00 is still owed.
    fired = tick_at(ScheduleRunner(restarted), clock, at(2026, 3, 2, 13, 5))

    assert len(fired) == 1
    [job] = jobs(api, key)
    assert (job["uuid"], job["trigger_ref"]) == (fired[0], created["id"])
    assert schedules(api, key)[0]["last_fired_at"] == "2026-03-02T13:00:00+00:00"


def test_job_store_holds_a_row_per_enabled_schedule(api, key, rt, scheduler):
    first = create_schedule(api, key, cron="0 3 * * *")
    second = create_schedule(api, key, cron="0 4 * * *")
    create_schedule(api, key, cron="0 5 * * *", enabled=False)

    scheduler.tick()

    assert job_store_ids(rt) == {first["id"], second["id"]}


def test_disabling_a_schedule_removes_its_job_store_row(api, key, rt, clock, scheduler):
    kept = create_schedule(api, key, cron="0 3 * * *")
    dropped = create_schedule(api, key, cron="0 4 * * *")
    scheduler.tick()

    patch(api, key, dropped["id"], enabled=False)
    scheduler.tick()

    assert job_store_ids(rt) == {kept["id"]}


# --- misfires and coalescing ------------------------------------------------------------------------------


def test_ticks_missed_while_the_runner_was_down_start_one_job(api, key, clock, scheduler):
    create_schedule(api, key, cron="* * * * *")
    clock.advance(seconds=30)
    scheduler.tick()
    before = len(jobs(api, key))

    clock.advance(minutes=60)
    fired = scheduler.tick()

    assert len(fired) == 1
    assert len(jobs(api, key)) == before + 1


def test_tick_missed_beyond_the_grace_time_is_skipped(api, key, clock, runtime_like):
    create_schedule(api, key, cron="0 13 * * *")
    scheduler = ScheduleRunner(runtime_like(scheduler_misfire_grace_seconds=60))
    scheduler.tick()

    assert tick_at(scheduler, clock, at(2026, 3, 2, 13, 2)) == []
    assert jobs(api, key) == []


def test_tick_after_a_skipped_one_fires_normally(api, key, clock, runtime_like):
    create_schedule(api, key, cron="0 13 * * *")
    scheduler = ScheduleRunner(runtime_like(scheduler_misfire_grace_seconds=60))
    scheduler.tick()
    tick_at(scheduler, clock, at(2026, 3, 2, 13, 2))

    fired = tick_at(scheduler, clock, at(2026, 3, 3, 13, 0, 30))

    assert len(fired) == 1
    assert [j["uuid"] for j in jobs(api, key)] == fired


def test_tick_missed_within_the_grace_time_still_fires(api, key, clock, runtime_like):
    create_schedule(api, key, cron="0 13 * * *")
    scheduler = ScheduleRunner(runtime_like(scheduler_misfire_grace_seconds=60))
    scheduler.tick()

    fired = tick_at(scheduler, clock, at(2026, 3, 2, 13, 0, 59))

    assert len(fired) == 1


# --- firing ---------------------------------------------------------------------------------------------


def test_fired_job_is_triggered_by_the_schedule_with_its_parameters(api, key, clock, scheduler):
    created = create_schedule(api, key, cron="0 13 * * *", parameters={"service": "api"})
    scheduler.tick()

    [uuid] = tick_at(scheduler, clock, at(2026, 3, 2, 13, 0))

    job = api.get(f"/jobs/{uuid}").get_json()
    assert (job["status"], job["triggered_by"], job["trigger_ref"]) == ("queued", "schedule", created["id"])
    assert job["parameters"] == {"service": "api", "replicas": 2}
    assert job["runbook"]["key"] == key
    assert schedules(api, key)[0]["last_job_uuid"] == uuid


def test_same_tick_fired_by_two_runners_starts_one_job(api, key, rt, clock):
    create_schedule(api, key, cron="0 13 * * *")
    runners = [ScheduleRunner(rt), ScheduleRunner(rt)]
    for runner in runners:
        runner.tick()
    both_see_it_due = threading.Barrier(2, timeout=10)

    def due_then_wait(store_get_due: Callable[[datetime], list[Any]]) -> Callable[[datetime], list[Any]]:
        def get_due(now: datetime) -> list[Any]:
            due = store_get_due(now)
            both_see_it_due.wait()
            return due
        return get_due

    for runner in runners:
        runner.store.get_due_jobs = due_then_wait(runner.store.get_due_jobs)
    clock.set(at(2026, 3, 2, 13, 0))
    started: list[list[str]] = []
    threads = [threading.Thread(target=lambda r=r: started.append(r.tick())) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    [job] = jobs(api, key)
    assert {uuid for uuids in started for uuid in uuids} == {job["uuid"]}


def test_create_lists_every_failing_field(api, key):
    response = api.post(f"/runbooks/{key}/schedules",
                        json={"cron": "61 * * * *", "timezone": "Mars/Base", "parameters": {"replicas": "two"}})

    body = problem(response)
    assert response.status_code == 422
    assert sorted(e["field"] for e in body["errors"]) == ["cron", "parameters.replicas", "parameters.service", "timezone"]
    assert schedules(api, key) == []


def _break_parameters(api: Api, key: str) -> None:
    """Make the runbook require a parameter the schedule does not give."""
    stricter = {**PARAMS, "properties": {**PARAMS["properties"], "ticket": {"type": "integer"}}, "required": ["service", "ticket"]}
    changed = api.patch(f"/runbooks/{key}", json={"parameters": stricter})
    assert changed.status_code == 200, changed.get_json()


def test_parameters_invalid_at_fire_stop_the_fired_job(api, key, clock, scheduler):
    created = create_schedule(api, key, cron="0 13 * * *")
    scheduler.tick()
    _break_parameters(api, key)

    [uuid] = tick_at(scheduler, clock, at(2026, 3, 2, 13, 0))

    job = api.get(f"/jobs/{uuid}").get_json()
    assert (job["status"], job["stop_reason"], job["ended_by"]) == ("stopped", "params_invalid", "system")
    assert (job["triggered_by"], job["trigger_ref"]) == ("schedule", created["id"])
    assert "parameters.ticket" in job["message"]


def test_parameters_invalid_at_fire_emit_stopped_by_system(api, key, clock, scheduler):
    create_schedule(api, key, cron="0 13 * * *")
    scheduler.tick()
    _break_parameters(api, key)

    [uuid] = tick_at(scheduler, clock, at(2026, 3, 2, 13, 0))

    response = api.get(f"/jobs/{uuid}/events", query_string={"limit": 1000})
    stopped = [e for e in response.get_json()["items"] if e["type"] == "job.stopped_by_system"]
    assert len(stopped) == 1
    assert stopped[0]["data"]["stop_reason"] == "params_invalid"


# --- archived runbooks ----------------------------------------------------------------------------------


def test_archiving_the_runbook_pauses_its_schedules(api, key, scheduler):
    create_schedule(api, key, cron="0 3 * * *")
    create_schedule(api, key, cron="0 4 * * *")

    assert api.post(f"/runbooks/{key}/archive").status_code == 200

    listed = schedules(api, key)
    assert [(s["enabled"], s["next_fire_times"]) for s in listed] == [(False, []), (False, [])]
    assert all(key in s["paused_reason"] for s in listed)


def test_schedule_of_an_archived_runbook_no_longer_fires(api, key, clock, scheduler, rt):
    create_schedule(api, key, cron="0 13 * * *")
    scheduler.tick()

    api.post(f"/runbooks/{key}/archive")

    assert tick_at(scheduler, clock, at(2026, 3, 2, 13, 0)) == []
    assert tick_at(scheduler, clock, at(2026, 3, 3, 13, 0)) == []
    assert jobs(api, key) == []
    assert job_store_ids(rt) == set()


def test_re_enabling_a_schedule_of_an_archived_runbook_conflicts(api, key):
    created = create_schedule(api, key, cron="0 3 * * *")
    api.post(f"/runbooks/{key}/archive")

    response = api.patch(f"/runbooks/{key}/schedules/{created['id']}", json={"enabled": True})

    body = problem(response)
    assert response.status_code == 409
    assert "archived" in body["detail"]
    assert schedules(api, key)[0]["enabled"] is False


# --- daylight saving time in Europe/Berlin ------------------------------------------------------------


@pytest.mark.parametrize(("cron", "window", "expected"), [
    pytest.param("30 2 * * *", (at(2026, 3, 27, 12, 0), at(2026, 3, 30, 12, 0)),
                 [at(2026, 3, 28, 1, 30), at(2026, 3, 29, 1, 30), at(2026, 3, 30, 0, 30)], id="fixed-time-spring-forward"),
    pytest.param("30 2 * * *", (at(2026, 10, 23, 12, 0), at(2026, 10, 26, 12, 0)),
                 [at(2026, 10, 24, 0, 30), at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30)], id="fixed-time-fall-back"),
    pytest.param("*/30 * * * *", (at(2026, 10, 24, 22, 59), at(2026, 10, 25, 2, 0)),
                 [at(2026, 10, 24, 23, 0) + timedelta(minutes=30 * n) for n in range(7)], id="every-half-hour-fall-back"),
    pytest.param("0 3 * * *", (at(2026, 3, 27, 12, 0), at(2026, 3, 30, 12, 0)),
                 [at(2026, 3, 28, 2, 0), at(2026, 3, 29, 1, 0), at(2026, 3, 30, 1, 0)], id="three-oclock-spring-forward"),
])
def test_schedule_fires_at_the_real_times_across_dst(api, key, clock, scheduler, cron, window, expected):
    start, end = window
    clock.set(start)
    create_schedule(api, key, cron=cron, timezone="Europe/Berlin")
    sweep = {start + timedelta(minutes=10 * n) for n in range(int((end - start) / timedelta(minutes=10)) + 1)}
    instants = sorted(sweep | set(expected) | {t + timedelta(seconds=5) for t in expected})

    fired = [(when, uuid) for when in instants for uuid in tick_at(scheduler, clock, when)]

    assert [when for when, _ in fired] == expected
    assert len(jobs(api, key)) == len(expected)


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "field", "value"), [
    pytest.param({"cron": "0 3 * *"}, "cron", "0 3 * *", id="four-fields"),
    pytest.param({"cron": "0 0 3 * * *"}, "cron", "0 0 3 * * *", id="six-fields"),
    pytest.param({"cron": "61 3 * * *"}, "cron", "61 3 * * *", id="minute-61"),
    pytest.param({"cron": "0 24 * * *"}, "cron", "0 24 * * *", id="hour-24"),
    pytest.param({"cron": "0 3 32 * *"}, "cron", "0 3 32 * *", id="day-of-month-32"),
    pytest.param({"cron": "0 3 * 13 *"}, "cron", "0 3 * 13 *", id="month-13"),
    pytest.param({"timezone": "Mars/Base"}, "timezone", "Mars/Base", id="unknown-time-zone"),
    pytest.param({"timezone": "America/"}, "timezone", "America/", id="a-directory-of-time-zones"),
    pytest.param({"timezone": "America"}, "timezone", "America", id="a-region-without-a-city"),
    pytest.param({"parameters": {"service": 5}}, "parameters.service", 5, id="parameter-of-the-wrong-type"),
    pytest.param({"parameters": ["db"]}, "parameters", ["db"], id="parameters-not-an-object"),
    pytest.param({"parameters": {"replicas": 3}}, "parameters.service", None, id="missing-required-parameter"),
    pytest.param({"colour": "red"}, "colour", "red", id="unknown-body-field"),
])
def test_bad_schedule_is_refused_naming_the_field(api, key, body, field, value):
    response = api.post(f"/runbooks/{key}/schedules", json={"cron": "0 3 * * *", "parameters": VALID, **body})

    problem_body = problem(response)
    assert response.status_code == 422
    assert {"field": field, "value": value} in [{"field": e["field"], "value": e.get("value")} for e in problem_body["errors"]]
    assert field in problem_body["detail"]
    assert schedules(api, key) == []


@pytest.mark.parametrize(("fields", "status", "word"), [
    pytest.param({"callable": False}, "published", "not callable", id="not-callable"),
    pytest.param({"callable": True}, "archived", "archived", id="archived"),
])
def test_schedule_of_an_unschedulable_runbook_conflicts(api, fields, status, word):
    other = create_runbook(api, "Purge the caches", status=status, name="purge-caches", **fields)["key"]

    response = api.post(f"/runbooks/{other}/schedules", json={"cron": "0 3 * * *"})

    body = problem(response)
    assert response.status_code == 409
    assert word in body["detail"] and other in body["detail"]
    assert schedules(api, other) == []


def test_schedule_of_an_unknown_runbook_is_not_found(api, key):
    response = api.post("/runbooks/RB-09999/schedules", json={"cron": "0 3 * * *", "parameters": VALID})

    assert problem(response)["status"] == 404
    assert "RB-09999" in problem(response)["detail"]


# --- which processes fire schedules ----------------------------------------------------------------------


@pytest.mark.parametrize(("scheduler", "expected"), [
    (True, ["JobWorker", "DeliveryWorker", "ScheduleRunner"]),
    (False, ["JobWorker", "DeliveryWorker"]),
])
def test_roles_hold_a_schedule_runner_only_with_the_scheduler(rt, scheduler, expected):
    roles = Roles(rt, scheduler=scheduler)

    assert [type(part).__name__ for part in roles.parts] == expected


@pytest.mark.parametrize("scheduler", [True, False])
def test_background_roles_include_the_scheduler_only_when_asked(scheduler):
    options = BackgroundProcess(scheduler=scheduler).options()

    assert options["jobs"] is True and options["deliveries"] is True
    assert options["scheduler"] is scheduler
