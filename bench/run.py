"""`make bench`: measure a real runner against the machine's ceiling and print PASS/FAIL per target.

Starts `runbook-manager serve` exactly as a user would (embedded SQLite, and
PostgreSQL unless --no-postgres), drives it with `hey` on 127.0.0.1, and
measures in the same run a bare Flask app that commits one row per request
(bench/ceiling.py) under the same gunicorn settings. Results go to stdout and
to bench/results/latest.json (and latest.md, the table the README shows).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


# Events of a job of the step-less "notify" runbook that the benchmark's subscriptions receive, and how many subscriptions
# (each sent every event). The delivery scenario invokes it at a fixed rate, so that events come at a known rate above the
# target's 500 deliveries/s (96 × 3 × 2 = 576) whatever the machine's speed, and latency is measured at that load.
NOTIFY_EVENTS = ("job.created", "job.started", "job.succeeded")
NOTIFY_SUBSCRIBERS = 2
NOTIFY_INVOCATIONS_PER_SECOND = 96


# Seconds the runner gets after starting before the minute whose schedule ticks are watched, and how long they are
# watched at most (watching ends once every schedule due at the tick has its job).
SCHEDULE_SETTLE_SECONDS = 5
SCHEDULE_WATCH_SECONDS = 30


# --- measuring -----------------------------------------------------------------------------------

@dataclass
class Load:
    """What one `hey` run measured."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def hey(url: str, *, n: int, c: int, body: Any = None, headers: dict[str, str] | None = None, count_status: str | None = None,
        rate: float | None = None) -> Load:
    """Run `hey` and read its per-request CSV; throughput counts `count_status` answers only when given.

    With ``rate``, requests are sent at most that many per second in all (`hey -q` limits each of the ``c`` workers).
    """
    cmd = ["hey", "-n", str(n), "-c", str(c), "-t", "60", "-o", "csv"]
    if rate is not None:
        cmd += ["-q", f"{rate / c:g}"]
    if body is not None:
        cmd += ["-m", "POST", "-T", "application/json", "-d", json.dumps(body)]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    started = time.perf_counter()
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=600, check=True).stdout
    seconds = time.perf_counter() - started
    latencies, statuses = [], {}
    for row in csv.DictReader(io.StringIO(out)):
        latencies.append(float(row["response-time"]) * 1000)
        statuses[row["status-code"]] = statuses.get(row["status-code"], 0) + 1
    counted = statuses.get(count_status, 0) if count_status else len(latencies)
    return Load(len(latencies), round(seconds, 3), round(counted / seconds, 1), round(_percentile(latencies, 0.5), 2),
                round(_percentile(latencies, 0.99), 2), statuses)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    found = [pid]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid in found and int(entry.name) not in found:
            found.append(int(entry.name))
    return found


def _memory_kb(pids: list[int], field_name: str) -> int:
    total = 0
    for pid in pids:
        source = "smaps_rollup" if field_name == "Pss" else "status"
        try:
            for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
                if line.startswith(f"{field_name}:") or line.startswith(f"{field_name}\t"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class MemorySampler:
    """Peak memory of a process tree: PSS (shared pages counted once) and the plain sum of RSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_pss_kb = 0
        self.peak_rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            pids = _children(self.pid)
            self.peak_pss_kb = max(self.peak_pss_kb, _memory_kb(pids, "Pss"))
            self.peak_rss_kb = max(self.peak_rss_kb, _memory_kb(pids, "VmRSS"))

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


class Receiver:
    """A local endpoint: answers 200 at once and, for webhook deliveries, notes arrival time minus event time."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        # For each job.succeeded delivery: arrival minus the job's creation (the millisecond its version 7 UUID carries),
        # i.e. from the invocation to its job's last delivery, the time an event waited to be written included.
        self.job_latencies_ms: list[float] = []
        self.arrivals: list[float] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without TCP_NODELAY, Nagle and delayed ACKs add 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._reply()

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/deliveries" and body:
                    now = time.time()
                    event = json.loads(body)
                    sent = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
                    with receiver.lock:
                        receiver.latencies_ms.append((now - sent) * 1000)
                        receiver.arrivals.append(now)
                        if event["type"] == "job.succeeded":
                            created_ms = int(event["data"]["job"]["uuid"].replace("-", "")[:12], 16)
                            receiver.job_latencies_ms.append(now * 1000 - created_ms)
                self._reply()

            def _reply(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# --- processes ---------------------------------------------------------------------------------

def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Runner:
    """`runbook-manager serve` in a process group of its own."""

    def __init__(self, workdir: Path, database_url: str, env: dict[str, str]) -> None:
        self.workdir, self.database_url = workdir, database_url
        self.env = {**os.environ, "RUNBOOK_MANAGER_DATABASE_URL": database_url, "RUNBOOK_MANAGER_VAR_DIR": str(workdir / "var"),
                    "RUNBOOK_MANAGER_OUTBOUND_ALLOWLIST": "127.0.0.1", **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Runner:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.workdir / f"runner-{self.port}.log"
        self.process = subprocess.Popen([sys.executable, "-m", "runner.cli", "serve", "--port", str(self.port)], cwd=self.workdir,
                                        env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait_ready(self.url + "/readyz", self.process, self.log)
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


def start_ceiling(workdir: Path, *, workers: int, threads: int, postgres_dsn: str | None) -> tuple[subprocess.Popen[bytes], str]:
    """Start the ceiling app under the runner's gunicorn settings; return the process and its base URL."""
    port = free_port()
    env = {**os.environ, "CEILING_DATABASE": str(workdir / "ceiling.db")}
    if postgres_dsn:
        env["CEILING_POSTGRES_DSN"] = postgres_dsn
    subprocess.run([sys.executable, "-c", "from bench.ceiling import prepare; prepare()"], cwd=ROOT, env=env, check=True)
    log = workdir / f"ceiling-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "--threads", str(threads), "-k", "gthread", "--log-level", "warning",
         "-b", f"127.0.0.1:{port}", "bench.ceiling:app"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url + "/ingest", process, log)
    return process, url


# --- preparing the runner's database ------------------------------------------------------------------

def prepare(database_url: str, workdir: Path, receiver: Receiver) -> dict[str, Any]:
    """Create the workspace, a token and the benchmark runbooks (with the product's own services)."""
    from runner.auth import Actor, Role
    from runner.config import Settings
    from runner.migrate import upgrade
    from runner.runtime import Runtime
    from runner.schemas.runbook import RunbookBodySchema
    from runner.services import runbooks, tenancy
    from webhooks import subscriptions

    settings = Settings.from_env({}, database_url=database_url, var_dir=str(workdir / "var"), outbound_allowlist="127.0.0.1")
    rt = Runtime.from_settings(settings)
    upgrade(rt.db)
    workspace = tenancy.create_workspace(rt, "bench")
    token, _ = tenancy.create_token(rt, "bench", role="owner", subject="bench")
    actor = Actor(workspace.id, "bench", "bench", Role.OWNER)
    specs = [
        {"name": "invoke-me", "title": "Page and acknowledge", "callable": True,
         "parameters": {"type": "object", "required": ["service"], "properties": {"service": {"type": "string"},
                                                                                "severity": {"type": "string", "default": "sev2"}}},
         # No estimate: thousands of jobs left waiting would all come due for their overdue check minutes later, in the
         # middle of the scenarios that follow.
         "steps": [{"title": "Acknowledge the page for {{ params.service }}"}]},
        {"name": "child", "title": "Child", "callable": True,
         "steps": [{"title": "Call the service", "action": {"type": "http", "url": receiver.url + "/noop"}}]},
        {"name": "parent", "title": "Parent", "callable": True,
         "steps": [{"title": "Call the service", "action": {"type": "http", "url": receiver.url + "/noop"}},
                   {"title": "Run the child", "action": {"type": "runbook", "runbook": "child"}}]},
        {"name": "notify", "title": "Notify", "callable": True, "steps": []},
    ]
    for spec in specs:
        runbooks.create(rt, actor, RunbookBodySchema().load(spec))
        runbooks.transition(rt, actor, spec["name"], "publish")
    # Three events of every job of the step-less "notify" runbook, each sent to every subscription. (Not runbook.invoked: a
    # subscriber to that makes the runbook flow-backed.)
    subscription = {"events": list(NOTIFY_EVENTS), "runbooks": ["notify"], "target_url": receiver.url + "/deliveries"}
    for _ in range(NOTIFY_SUBSCRIBERS):
        subscriptions.subscribe(rt, actor, subscription)
    rt.db.dispose()
    return {"token": token, "workspace_id": workspace.id}


def seed_jobs(database_url: str, total: int) -> None:
    """Add finished jobs straight into the store until it holds ``total`` (bypassing the API).

    The columns every row shares are converted for the database once; rows then go
    through the driver directly: executemany on SQLite, COPY on PostgreSQL.
    """
    from sqlalchemy import create_engine, func, select

    from runner.engine.invoke import new_job_uuid
    from runner.models import Job, Runbook

    engine = create_engine(database_url)
    table = Job.__table__
    with engine.begin() as conn:
        runbook = conn.execute(select(Runbook).where(Runbook.name == "invoke-me")).first()
        have = conn.execute(select(func.count(Job.id))).scalar_one()
        created = datetime.now(timezone.utc) - timedelta(days=30)
        shared = {"workspace_id": runbook.workspace_id, "runbook_id": runbook.id, "runbook_key": runbook.key, "runbook_name": runbook.name,
                  "runbook_version": runbook.version, "version_id": runbook.version_id, "environment": "eu-qa", "status": "succeeded",
                  "triggered_by": "api", "actor": "seed", "depth": 0, "pins": {}, "created_at": created, "cursor": 2,
                  "pause_requested": False, "event_seq": 0, "ended_at": created, "ended_by": "system"}
        bound = {}
        for name, value in shared.items():
            process = table.c[name].type._cached_bind_processor(conn.dialect)  # noqa: SLF001 - the type's own conversion
            bound[name] = process(value) if process else value
        if conn.dialect.name == "postgresql":
            bound["pins"] = json.dumps(shared["pins"])
        columns = ["uuid", "root_job_uuid", "parameters", *bound]
        constants = tuple(bound.values())

        first_ms = int(created.timestamp() * 1000)

        def rows():
            for i in range(have, total):
                # The product's own kind of UUID, as if the jobs had been created one a millisecond.
                job_uuid = new_job_uuid(first_ms + i)
                yield (job_uuid, job_uuid, json.dumps({"service": f"svc-{i}"}), *constants)

        raw = conn.connection.dbapi_connection
        if conn.dialect.name == "postgresql":
            with raw.cursor() as cursor, cursor.copy(f"COPY jobs ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows():
                    copy.write_row(row)
        else:
            raw.executemany(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows())
    if engine.dialect.name == "sqlite":
        # A store that grew over months has long been checkpointed: do not measure a write-ahead log of a million fresh rows.
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE jobs")
    engine.dispose()


def seed_schedules(database_url: str, count: int, *, spread: bool) -> None:
    """Add ``count`` enabled schedules of the invoke runbook: all on one minute, or spread over the hour."""
    from sqlalchemy import create_engine, insert, select

    from runner.models import Runbook, Schedule

    engine = create_engine(database_url)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        runbook = conn.execute(select(Runbook).where(Runbook.name == "invoke-me")).first()
        rows = [{"id": f"sch_bench{i:06d}", "workspace_id": runbook.workspace_id, "runbook_id": runbook.id,
                 "cron": f"{i % 60} * * * *" if spread else "* * * * *", "timezone": "UTC", "parameters": {"service": f"svc-{i}"},
                 "enabled": True, "description": "", "created_at": now, "created_by": "bench", "updated_at": now, "revision": i}
                for i in range(count)]
        conn.execute(insert(Schedule.__table__), rows)
    engine.dispose()


def last_job_id(database_url: str) -> int:
    """The id of the newest job in the store (0 when there is none)."""
    from sqlalchemy import create_engine, func, select

    from runner.models import Job

    engine = create_engine(database_url)
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(Job.id))).scalar() or 0
    engine.dispose()
    return newest


def fired_since(database_url: str, since: datetime, after_id: int = 0) -> int:
    """How many scheduled jobs were created at or after ``since``, among those newer than job ``after_id``.

    Watching a burst polls this every second while the runner fires it: with
    ``after_id`` it reads only the new jobs (along the primary key) instead of
    the whole store, which with the growth scenario's million jobs cost about
    0.13 s of CPU per poll on the machine under test.
    """
    from sqlalchemy import create_engine, func, select

    from runner.models import Job

    engine = create_engine(database_url)
    with engine.connect() as conn:
        fired = conn.execute(select(func.count(Job.id)).where(Job.id > after_id, Job.triggered_by == "schedule",
                                                              Job.created_at >= since)).scalar_one()
    engine.dispose()
    return fired


def schedule_drift(database_url: str, since: datetime, until: datetime) -> list[float]:
    """Seconds between each scheduled tick and the creation of its job, for ticks from ``since`` to ``until``."""
    from sqlalchemy import create_engine, select

    from runner.models import Job

    engine = create_engine(database_url)
    drifts = []
    with engine.connect() as conn:
        for created, key in conn.execute(select(Job.created_at, Job.idempotency_key).where(Job.triggered_by == "schedule")):
            tick = datetime.fromisoformat(key.split(":", 2)[2])  # schedule:<id>:<tick, ISO 8601>
            created = created.replace(tzinfo=timezone.utc) if created.tzinfo is None else created
            if since <= tick <= until:
                drifts.append((created - tick).total_seconds())
    engine.dispose()
    return drifts


# --- scenarios ----------------------------------------------------------------------------------------

@dataclass
class Target:
    name: str
    measured: float
    limit: float
    higher_is_better: bool
    unit: str
    ratio: float | None = None
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.measured >= self.limit if self.higher_is_better else self.measured <= self.limit


@dataclass
class Report:
    mode: str
    machine: dict[str, Any]
    ceiling: dict[str, Any] = field(default_factory=dict)
    scenarios: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)


def run_backend(report: Report, *, name: str, database_url: str, workdir: Path, quick: bool, postgres_dsn: str | None,
                receiver: Receiver, burst: bool = True) -> None:
    """Serve a runner on ``database_url`` as a user would, measure every target against it, and add them to ``report``."""
    from runner.config import Settings

    settings = Settings.from_env({})
    workers, threads = settings.api_processes, settings.web_threads
    scale = 0.3 if quick else 1.0
    n = lambda count: max(50, int(count * scale))  # noqa: E731

    ceiling_process, ceiling_url = start_ceiling(workdir, workers=workers, threads=threads, postgres_dsn=postgres_dsn)
    try:
        ceiling = {f"c{c}": asdict(hey(ceiling_url + "/ingest", n=n(3000 if c > 1 else 1000), c=c, body={"service": "orders-db"}))
                   for c in (1, 8, 32)}
    finally:
        _stop(ceiling_process)
    report.ceiling[name] = {"workers": workers, "threads": threads, **ceiling}

    meta = prepare(database_url, workdir, receiver)
    headers = {"Authorization": f"Bearer {meta['token']}"}
    runner = Runner(workdir, database_url, {}).start()
    results: dict[str, Any] = {}
    try:
        api = f"{runner.url}/api/v1/ws/bench"
        with MemorySampler(runner.process.pid) as memory:
            for c in (1, 8, 32):
                results[f"invoke_c{c}"] = asdict(hey(f"{api}/runbooks/invoke-me/jobs", n=n(2000 if c > 1 else 1000), c=c,
                                                     body={"parameters": {"service": "orders-db"}}, headers=headers))
        results["memory"] = {"peak_pss_mb": round(memory.peak_pss_kb / 1024, 1), "peak_rss_sum_mb": round(memory.peak_rss_kb / 1024, 1)}
        results["e2e_c1"] = asdict(hey(f"{api}/runbooks/parent/jobs", n=n(300), c=1, body={"wait": 10}, headers=headers, count_status="200"))
        results["e2e_c8"] = asdict(hey(f"{api}/runbooks/parent/jobs", n=n(500), c=8, body={"wait": 10}, headers=headers, count_status="200"))
        results["deliveries"] = deliveries(receiver, f"{api}/runbooks/notify/jobs", n=n(1500), headers=headers)
    finally:
        runner.stop()

    small, large = (10_000, 100_000) if quick else (10_000, 1_000_000)
    growth: dict[str, Any] = {}
    for size in (small, large):
        started = time.perf_counter()
        seed_jobs(database_url, size)
        seeded = round(time.perf_counter() - started, 1)
        runner = Runner(workdir, database_url, {}).start()
        try:
            api = f"{runner.url}/api/v1/ws/bench"
            invoke = hey(f"{api}/runbooks/invoke-me/jobs", n=n(500), c=1, body={"parameters": {"service": "x"}}, headers=headers)
            job_uuid = requests.post(f"{api}/runbooks/invoke-me/jobs", json={"parameters": {"service": "x"}}, headers=headers,
                                     timeout=10).json()["job"]["uuid"]
            get = hey(f"{api}/jobs/{job_uuid}", n=n(500), c=1, headers=headers)
            growth[str(size)] = {"seed_seconds": seeded, "invoke_p50_ms": invoke.p50_ms, "get_p50_ms": get.p50_ms}
        finally:
            runner.stop()
    results["growth"] = growth

    if not quick:
        results["schedules"] = schedules(database_url, workdir, count=10_000, burst=burst)
    report.scenarios[name] = results
    _judge(report, name, results)


def deliveries(receiver: Receiver, url: str, *, n: int, headers: dict[str, str]) -> dict[str, Any]:
    """Invoke the step-less runbook ``n`` times at concurrency 8, paced, and measure the deliveries of its jobs' events.

    Each invocation makes ``len(NOTIFY_EVENTS)`` events, each sent to ``NOTIFY_SUBSCRIBERS`` subscriptions: deliveries per
    second from the first arrival to the last, and event-to-delivery latency (arrival minus the event's timestamp).
    """
    receiver.latencies_ms.clear()
    receiver.job_latencies_ms.clear()
    receiver.arrivals.clear()
    # hey sends a whole number of requests per connection (1,500 at c8 is 1,496): count what it got answered.
    invoked = hey(url, n=n, c=8, body={}, headers=headers, rate=NOTIFY_INVOCATIONS_PER_SECOND)
    count = invoked.statuses.get("202", 0) * len(NOTIFY_EVENTS) * NOTIFY_SUBSCRIBERS
    deadline = time.monotonic() + 120
    while len(receiver.arrivals) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    arrivals = sorted(receiver.arrivals)
    # Deliveries still missing when the wait ends count against the rate: it runs to then, not to the last arrival.
    end = arrivals[-1] if len(arrivals) >= count else time.time()
    span = end - arrivals[0] if arrivals else 0
    return {"subscribers": NOTIFY_SUBSCRIBERS, "invocations_per_second": invoked.rps,
            "offered_per_second": round(invoked.rps * len(NOTIFY_EVENTS) * NOTIFY_SUBSCRIBERS, 1), "events": count,
            "delivered": len(arrivals), "per_second": round(len(arrivals) / span, 1) if span else 0,
            "p50_ms": round(_percentile(receiver.latencies_ms, 0.5), 1), "p99_ms": round(_percentile(receiver.latencies_ms, 0.99), 1),
            "invocation_to_last_delivery_p50_ms": round(_percentile(receiver.job_latencies_ms, 0.5), 1)}


def schedules(database_url: str, workdir: Path, *, count: int, burst: bool = True) -> dict[str, Any]:
    """Fire-time drift of ``count`` schedules spread over the hour, then (with ``burst``) of the same number all on one minute."""
    out: dict[str, Any] = {}
    for spread in (True, False) if burst else (True,):
        from sqlalchemy import create_engine, delete

        from runner.models import Schedule

        engine = create_engine(database_url)
        with engine.begin() as conn:
            conn.execute(delete(Schedule))
        engine.dispose()
        seed_schedules(database_url, count, spread=spread)
        newest = last_job_id(database_url)
        runner = Runner(workdir, database_url, {}).start()
        try:
            # The first whole minute at least a few seconds after the runner is up; its ticks are measured.
            now = datetime.now(timezone.utc) + timedelta(seconds=SCHEDULE_SETTLE_SECONDS)
            first_tick = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            due = count if not spread else sum(1 for i in range(count) if i % 60 == first_tick.minute)
            end = first_tick + timedelta(seconds=SCHEDULE_WATCH_SECONDS)
            # Watch until every schedule due at the tick has its job (then one second more), or the time is up.
            while datetime.now(timezone.utc) < end and not (datetime.now(timezone.utc) > first_tick and fired_since(database_url, first_tick, newest) >= due):
                time.sleep(1)
            time.sleep(1)
            drifts = schedule_drift(database_url, first_tick, first_tick)
        finally:
            runner.stop()
        key = "spread_over_hour" if spread else "all_same_minute"
        out[key] = {"schedules": count, "fired": len(drifts), "p50_s": round(_percentile(drifts, 0.5), 3),
                    "p99_s": round(_percentile(drifts, 0.99), 3), "max_s": round(max(drifts), 3) if drifts else None}
    return out


def _judge(report: Report, name: str, results: dict[str, Any]) -> None:
    ceiling = report.ceiling[name]
    c8 = results["invoke_c8"]
    delivered = results["deliveries"]
    report.targets += [
        Target(f"{name}: invoke c8 throughput ≥ 60% of ceiling", c8["rps"], 0.6 * ceiling["c8"]["rps"], True, "req/s",
               round(c8["rps"] / ceiling["c8"]["rps"], 2)),
        Target(f"{name}: invoke c8 p99", c8["p99_ms"], 15, False, "ms", round(c8["p99_ms"] / ceiling["c8"]["p99_ms"], 2)),
        Target(f"{name}: invoke non-2xx at c1/c8/c32", sum(sum(n for k, n in results[f"invoke_c{c}"]["statuses"].items()
                                                             if not k.startswith("2")) for c in (1, 8, 32)), 0, False, "answers"),
        Target(f"{name}: e2e parent+child with wait, c1 p50", results["e2e_c1"]["p50_ms"], 10, False, "ms",
               round(results["e2e_c1"]["p50_ms"] / ceiling["c1"]["p50_ms"], 2)),
        Target(f"{name}: e2e completed parent jobs/s at c8", results["e2e_c8"]["rps"], 440, True, "jobs/s",
               round(results["e2e_c8"]["rps"] / ceiling["c8"]["rps"], 2)),
        Target(f"{name}: deliveries per second", delivered["per_second"], 500, True, "/s",
               round(delivered["per_second"] / ceiling["c8"]["rps"], 2),
               note=f"{delivered['delivered']} of {delivered['events']} delivered; {delivered['offered_per_second']}/s made by "
                    f"{delivered['invocations_per_second']} invocations/s"),
        Target(f"{name}: event-to-delivery p50 at that rate", delivered["p50_ms"], 50, False, "ms",
               note=f"invocation to its job's last delivery: {delivered['invocation_to_last_delivery_p50_ms']} ms p50"),
        Target(f"{name}: peak memory (PSS) under invoke", results["memory"]["peak_pss_mb"], 150, False, "MB",
               note=f"plain RSS sum {results['memory']['peak_rss_sum_mb']} MB"),
    ]
    growth = results["growth"]
    small, large = sorted(growth, key=int)
    for metric in ("invoke_p50_ms", "get_p50_ms"):
        ratio = growth[large][metric] / growth[small][metric]
        report.targets.append(Target(f"{name}: {metric[:-7]} p50 with {int(large):,} jobs vs {int(small):,}", round(ratio, 2), 1.5, False, "×",
                                     note=f"{growth[small][metric]} → {growth[large][metric]} ms"))
    if "schedules" in results:
        spread = results["schedules"]["spread_over_hour"]
        report.targets.append(Target(f"{name}: 10,000 schedules (spread over the hour), drift p99", spread["p99_s"], 1.0, False, "s",
                                     note=f"{spread['fired']} due in the minute watched"))
        if "all_same_minute" in results["schedules"]:
            burst = results["schedules"]["all_same_minute"]
            report.targets.append(Target(f"{name}: 10,000 schedules all on one minute, drift p99", burst["p99_s"], 1.0, False, "s",
                                         note=f"{burst['fired']} fired"))


# --- output -------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """Describe the machine the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "")
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "0")
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gb": round(int(memory) / 1024 / 1024, 1), "python": platform.python_version(),
            "kernel": platform.release(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def table(report: Report) -> str:
    """Render the targets as the markdown table the README shows."""
    lines = ["| target | measured | limit | ratio to ceiling | result |", "|---|---|---|---|---|"]
    for t in report.targets:
        sign = "≥" if t.higher_is_better else "≤"
        ratio = "" if t.ratio is None else f"{t.ratio}×"
        note = f" ({t.note})" if t.note else ""
        lines.append(f"| {t.name} | {t.measured} {t.unit}{note} | {sign} {round(t.limit, 1)} {t.unit} | {ratio} | {'PASS' if t.passed else 'FAIL'} |")
    ceilings = "; ".join(f"{name}: {c['c8']['rps']} req/s at c8 (p99 {c['c8']['p99_ms']} ms), {c['c1']['p50_ms']} ms p50 at c1"
                         for name, c in report.ceiling.items())
    m = report.machine
    return "\n".join([f"Machine: {m['cpus']} × {m['cpu']}, {m['memory_gb']} GB, Python {m['python']}, {m['date']} ({report.mode}).",
                      f"Ceiling (bare Flask committing one row per request, same gunicorn settings): {ceilings}.", "", *lines])


def main() -> None:
    """Run the benchmark and write bench/results/latest.json and latest.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Fewer requests, smaller growth test, no schedules (under a minute).")
    parser.add_argument("--no-postgres", action="store_true", help="Skip the PostgreSQL run.")
    parser.add_argument("--postgres-burst", action="store_true",
                        help="Also fire 10,000 schedules on one minute on PostgreSQL (about a minute and a half more).")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        sys.exit("hey is not installed (make bench installs it from Debian's packages)")
    report = Report(mode="quick" if args.quick else "full", machine=machine())
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="rbm-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "sqlite").mkdir()
        run_backend(report, name="sqlite", database_url=f"sqlite:///{workdir / 'sqlite' / 'runner.db'}", workdir=workdir / "sqlite",
                    quick=args.quick, postgres_dsn=None, receiver=receiver)
        if not args.no_postgres and not args.quick:
            from tests import pg

            pg.ensure_server()
            runner_db, ceiling_db = pg.create_database(prefix="rbm_bench"), pg.create_database(prefix="rbm_ceiling")
            try:
                (workdir / "postgres").mkdir()
                params = dict(part.split("=", 1) for part in pg.ADMIN_DSN.split())
                ceiling_dsn = " ".join(f"{k}={v}" for k, v in {**params, "dbname": ceiling_db}.items())
                run_backend(report, name="postgres", database_url=pg.url_of(runner_db), workdir=workdir / "postgres", quick=False,
                            burst=args.postgres_burst,
                            postgres_dsn=ceiling_dsn, receiver=receiver)
            finally:
                pg.drop_database(runner_db)
                pg.drop_database(ceiling_db)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {**asdict(report), "targets": [{**asdict(t), "passed": t.passed} for t in report.targets]}
    (RESULTS / "latest.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(table(report) + "\n")
    print(table(report))


if __name__ == "__main__":
    main()
