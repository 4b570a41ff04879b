"""Instructions per operation, counted by valgrind rather than timed: repeatable on a noisy machine.

``python -m bench.instructions [invoke|notify|start|wait] [--count N]`` runs the operation in-process (the product's
services on a fresh SQLite store, the benchmark's runbooks and local receiver) under
``valgrind --tool=callgrind`` twice, once with no measured operations and once with N, both after the same
warm-up, and prints the difference divided by N. ``invoke`` creates one job of ``invoke-me`` the way the
API does (``control.invoke``); ``wait`` posts ``{"wait": 10}`` for the parent+child runbook through the
Flask test client (the local receiver's work is counted too); ``notify`` creates a job of the step-less
``notify`` runbook and moves it to its end as the job worker does (``claim_and_move``), events and
deliveries included, sending none; ``start`` creates eight jobs of ``invoke-me`` and starts them in one batch
as the job worker does, up to their step waiting for an operator (a batch of eight is one operation).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

WARM_UP = {"invoke": 50, "notify": 50, "start": 10, "wait": 10}
DEFAULT_COUNT = {"invoke": 200, "notify": 200, "start": 40, "wait": 40}
# Jobs per ``start`` batch: the job worker's first batch size.
START_BATCH = 8


def _operate(scenario: str, warm_up: int, count: int) -> None:
    """Prepare a store, warm up, then run the operation ``count`` times (the child side of ``main``)."""
    from bench.run import Receiver, prepare
    from runner.app import create_app
    from runner.auth import Actor, Role
    from runner.engine import control
    from runner.engine.driver import claim_and_move

    work = Path(tempfile.mkdtemp(prefix="rbm-instructions-"))
    url = f"sqlite:///{work}/runner.db"
    receiver = Receiver()
    meta = prepare(url, work, receiver)
    app = create_app({"database_url": url, "var_dir": str(work / "var"), "outbound_allowlist": "127.0.0.1"})
    rt = app.extensions["runbook_manager"]
    actor = Actor(meta["workspace_id"], "bench", "bench", Role.OWNER)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {meta['token']}"}

    def once() -> None:
        if scenario == "invoke":
            control.invoke(rt, actor, "invoke-me", {"parameters": {"service": "orders-db"}}, idempotency_key=None)
        elif scenario == "start":
            for _ in range(START_BATCH):
                control.invoke(rt, actor, "invoke-me", {"parameters": {"service": "orders-db"}}, idempotency_key=None)
            if len(claim_and_move(rt, "bench", START_BATCH)) != START_BATCH:
                raise RuntimeError("the invoke-me jobs were not started in one batch")
        elif scenario == "notify":
            control.invoke(rt, actor, "notify", {}, idempotency_key=None)
            if len(claim_and_move(rt, "bench", 8)) != 1:
                raise RuntimeError("the notify job was not moved")
        else:
            answer = client.post("/api/v1/ws/bench/runbooks/parent/jobs", json={"wait": 10}, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"the wait round trip answered {answer.status_code}: {answer.get_data(as_text=True)}")

    for _ in range(warm_up + count):
        once()


def _instructions(scenario: str, count: int) -> int:
    """Instructions valgrind counted for a whole child run with ``count`` measured operations."""
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.out", sys.executable, "-m", "bench.instructions",
             "--child", scenario, "--count", str(count)],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
        )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise RuntimeError(f"valgrind printed no instruction count:\n{run.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", choices=sorted(WARM_UP), default="invoke")
    parser.add_argument("--count", type=int, help="measured operations (default: 200 invocations or notify jobs, 40 batches or wait round trips)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    count = args.count if args.count is not None else DEFAULT_COUNT[args.scenario]
    if args.child:
        _operate(args.scenario, WARM_UP[args.scenario], count)
        return
    if count < 1:
        parser.error("--count must be at least 1")
    with ThreadPoolExecutor(2) as pool:
        baseline, measured = pool.map(lambda n: _instructions(args.scenario, n), (0, count))
    print(f"{args.scenario}: {(measured - baseline) / count / 1e6:.2f} million instructions per operation "
          f"({count} measured after {WARM_UP[args.scenario]} to warm up)")


if __name__ == "__main__":
    main()
