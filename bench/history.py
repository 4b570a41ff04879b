"""A long history: what the pages people read and the workers' look-ups cost with a million rows behind them.

``python -m bench.history [--rows N] [--no-postgres]`` (about a minute a store for a million rows) fills a
store with the benchmark's runbooks and N finished jobs, N events of other types, N finished deliveries of one
subscription (one in 100,000 of them failed) and N audit entries, straight through the driver, then times
in-process, through the Flask test client and the product's own functions, what bench/README findings 34-38, 43
and 44 changed: the runbook list, the job list by runbook, status and parent, a filtered poll of the event feed
after its first, the failed and pending deliveries of the subscription, a worker's lease heartbeat and its look for
due jobs and deliveries, and a runbook's audit log. The job list by ``triggered_by`` alone is timed too: it still
walks the history. Each figure is the median of five runs after one to warm up. Results go to stdout and to
bench/results/history.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from bench.run import RESULTS, Receiver, machine, prepare, seed_jobs

# Runs timed per figure, after one to warm up.
RUNS = 5
# One finished delivery in this many failed.
FAILED_EVERY = 100_000


def _bulk(raw: Any, postgres: bool, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
    """Insert ``rows`` through the driver: COPY on PostgreSQL, executemany on SQLite."""
    if postgres:
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        raw.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)


def seed_history(database_url: str, rows: int) -> str:
    """Add ``rows`` events, finished deliveries of the first subscription and audit entries; return that subscription's id."""
    from runner.models import Subscription

    engine = create_engine(database_url)
    postgres = engine.dialect.name == "postgresql"
    when = datetime.now(timezone.utc).replace(tzinfo=None)
    stamp = when if postgres else when.isoformat(" ")
    with engine.begin() as conn:
        subscription, workspace_id = conn.execute(select(Subscription.id, Subscription.workspace_id).order_by(Subscription.id)).first()
        first = (conn.exec_driver_sql("SELECT max(id) FROM events").scalar() or 0) + 1
        raw = conn.connection.dbapi_connection
        _bulk(raw, postgres, "events", ["id", "workspace_id", "type", "runbook_key", "payload", "created_at"],
              ((first + i, workspace_id, "job.succeeded", "RB-00001", "{}", stamp) for i in range(rows)))
        _bulk(raw, postgres, "deliveries", ["id", "workspace_id", "subscription_id", "event_id", "event_type", "status", "attempts",
                                            "created_at", "completed_at"],
              ((f"msg_history{i:013d}", workspace_id, subscription, first + i, "job.succeeded",
                "failed" if i % FAILED_EVERY == 0 else "succeeded", 1, stamp, stamp) for i in range(rows)))
        if postgres:  # the ids were given: move the sequence past them
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('events', 'id'), (SELECT max(id) FROM events))")
        _bulk(raw, postgres, "audit_entries", ["workspace_id", "at", "actor", "role", "action", "target", "source", "detail"],
              # Each about a job, by its UUID, as the entries a job's life writes are.
              ((workspace_id, stamp, "seed", "owner", "job.create", f"{i:08x}-0000-7000-8000-000000000000", "api", "{}") for i in range(rows)))
    if postgres:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE events, deliveries, audit_entries")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return subscription


def _median_ms(operation: Callable[[], Any]) -> float:
    operation()
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        operation()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def measure(name: str, database_url: str, workdir: Path, rows: int) -> dict[str, float]:
    """Fill a store with a long history and time what reads it; return {what: milliseconds}."""
    from runner.app import create_app
    from runner.engine.driver import claim_and_move
    from runner.engine.worker import renew_leases
    from runner.models import Delivery, Job
    from webhooks.delivery import claim_deliveries

    meta = prepare(database_url, workdir, Receiver())
    seed_jobs(database_url, rows)
    subscription = seed_history(database_url, rows)
    app = create_app({"database_url": database_url, "var_dir": str(workdir / "var"), "outbound_allowlist": "127.0.0.1"})
    rt = app.extensions["runbook_manager"]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {meta['token']}"}
    api = "/api/v1/ws/bench"
    # A few live jobs among the finished ones, and a parent with its child.
    for _ in range(5):
        assert client.post(f"{api}/runbooks/invoke-me/jobs", json={"parameters": {"service": "x"}}, headers=headers).status_code == 202
    parent = client.post(f"{api}/runbooks/parent/jobs", json={"wait": 10}, headers=headers).get_json()["job"]["uuid"]
    claim_and_move(rt, "bench-history", 32)
    feed = f"{api}/events?type=job.stopped_by_system&runbooks=invoke-me"
    cursor = client.get(feed, headers=headers).get_json()["next_cursor"]

    def get(path: str) -> Callable[[], Any]:
        def run() -> None:
            answer = client.get(api + path, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"{path} answered {answer.status_code}: {answer.get_data(as_text=True)[:300]}")
        return run

    figures = {
        "GET /runbooks": get("/runbooks"),
        "GET /runbooks/invoke-me": get("/runbooks/invoke-me"),
        "GET /jobs?runbook=parent": get("/jobs?runbook=parent"),
        "GET /jobs?status=queued": get("/jobs?status=queued"),
        "GET /jobs?status=queued,failed,waiting": get("/jobs?status=queued,failed,waiting"),
        "GET /jobs?status=failed": get("/jobs?status=failed"),
        "GET /jobs?parent=(a parent)": get(f"/jobs?parent={parent}"),
        "GET /events (filtered poll after the first)": get(feed[len(api):] + f"&after={cursor}"),
        "GET /hooks/{id}/deliveries?status=failed": get(f"/hooks/{subscription}/deliveries?status=failed"),
        "GET /hooks/{id}/deliveries?status=pending": get(f"/hooks/{subscription}/deliveries?status=pending"),
        "job worker's lease heartbeat": lambda: renew_leases(rt, Job, "bench-history"),
        "delivery worker's lease heartbeat": lambda: renew_leases(rt, Delivery, "bench-history"),
        "idle look for due jobs": lambda: claim_and_move(rt, "bench-history", 8),
        "idle look for due deliveries": lambda: claim_deliveries(rt, "bench-history", 32),
        "still a walk: GET /jobs?triggered_by=schedule": get("/jobs?triggered_by=schedule"),
        "GET /audit?target=RB-00001": get("/audit?target=RB-00001"),
    }
    results = {what: _median_ms(operation) for what, operation in figures.items()}
    rt.db.dispose()
    print(f"\n{name}, {rows:,} finished jobs, events, deliveries and audit entries:")
    for what, ms in results.items():
        print(f"  {what:62} {ms:8.1f} ms")
    return results


def main() -> None:
    """Time the long-history reads on SQLite (and PostgreSQL) and write bench/results/history.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="finished jobs, events, deliveries and audit entries each")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine(), "rows": args.rows, "ms": {}}
    with tempfile.TemporaryDirectory(prefix="rbm-history-") as tmp:
        work = Path(tmp)
        (work / "sqlite").mkdir()
        report["ms"]["sqlite"] = measure("SQLite", f"sqlite:///{work / 'sqlite' / 'runner.db'}", work / "sqlite", args.rows)
        if not args.no_postgres:
            from tests import pg

            pg.ensure_server()
            database = pg.create_database(prefix="rbm_history")
            try:
                (work / "postgres").mkdir()
                report["ms"]["postgres"] = measure("PostgreSQL", pg.url_of(database), work / "postgres", args.rows)
            finally:
                pg.drop_database(database)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "history.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
