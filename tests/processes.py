"""Start real runner processes for end-to-end tests, and always clean them up."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

# How long a runner process gets to start answering.
START_TIMEOUT = 30.0


def free_port() -> int:
    """Ask the kernel for a port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunnerProcess:
    """``runbook-manager serve`` in its own process group, so a test can SIGKILL the whole runner."""

    def __init__(self, workdir: Path, database_url: str, *, env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "RUNBOOK_MANAGER_DATABASE_URL": database_url,
            "RUNBOOK_MANAGER_VAR_DIR": str(workdir / "var"),
            "RUNBOOK_MANAGER_OUTBOUND_ALLOWLIST": "127.0.0.1,localhost",
            "RUNBOOK_MANAGER_POLL_INTERVAL": "0.05",
            "RUNBOOK_MANAGER_LEASE_SECONDS": "2",
            "RUNBOOK_MANAGER_WEB_WORKERS": "1",
            **(env or {}),
        }
        self.args = args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"runner-{self.port}.log"

    def start(self) -> RunnerProcess:
        """Start serving and wait until /readyz answers."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runner.cli", "serve", "--port", str(self.port), *self.args],
            cwd=self.workdir, env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"runner exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"runner did not answer within {START_TIMEOUT}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL every process of the runner (API, its workers and the background worker)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def stop(self) -> None:
        """Ask the runner to stop, then make sure it did."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def __enter__(self) -> RunnerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s")


def owner_headers(settings: Any, slug: str = "acme") -> dict[str, str]:
    """Create workspace ``slug`` in the store of ``settings`` and return the headers of an owner token for it."""
    from runner.clock import SystemClock
    from runner.runtime import Runtime
    from runner.services import tenancy

    rt = Runtime.from_settings(settings, clock=SystemClock())
    tenancy.create_workspace(rt, slug)
    token, _ = tenancy.create_token(rt, slug, role="owner", subject="olivia")
    rt.db.dispose()
    return {"Authorization": f"Bearer {token}"}
