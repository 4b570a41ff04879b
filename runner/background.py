"""The embedded default's background roles, run in one child process of ``serve``."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

__all__ = ["BackgroundProcess"]

log = logging.getLogger(__name__)

# Seconds a stopping background process gets to finish its current steps before it is killed.
DEFAULT_STOP_GRACE = 10.0


class BackgroundProcess:
    """Start ``runbook-manager worker`` (and the scheduler) beside the API, and stop it with the API."""

    def __init__(self, *, scheduler: bool) -> None:
        self.scheduler = scheduler
        self.process: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        """The command line of the child: ``runbook-manager worker``, with the scheduler when asked."""
        args = [sys.executable, "-m", "runner.cli", "worker", "--parent-pid", str(os.getpid())]
        if self.scheduler:
            args.append("--with-scheduler")
        return args

    def start(self) -> None:
        """Spawn the child; it exits by itself if this process dies."""
        self.process = subprocess.Popen(self.args())
        log.info("background worker started (pid %s)", self.process.pid)

    def stop(self) -> None:
        """Ask the child to finish, then kill it if it does not."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(DEFAULT_STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
